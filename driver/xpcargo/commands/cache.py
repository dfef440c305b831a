"""`xpcargo cache stats|clear|path`: the compile caches (sccache) of this machine's builds, as the host recorded
them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from xpcargo.commands import Answer
from xpcargo.pipeline import compile_cache
from xpcargo.ui import size

if TYPE_CHECKING:
    from xpcargo.context import Context


def _here(context: Context, manifest_path: str | None) -> tuple[Path, Path, Path]:
    """The workspace root here, the cache directory its builds use and the host's record of it."""
    from xpcargo.cargo.project import find_manifest, find_workspace_root  # noqa: PLC0415

    root = find_workspace_root(find_manifest(context.cwd.resolve(), manifest_path))
    settings = context.host.settings
    directory, record = compile_cache.directory_for(settings.cache_dir, root, settings.shared_compile_cache)
    return root, directory, record


def path(context: Context, manifest_path: str | None = None) -> Answer:
    """`xpcargo cache path`: the directory the workspace's builds keep their compile cache in (for a CI cache)."""
    _, directory, _ = _here(context, manifest_path)
    return Answer(lines=(str(directory),))


def rows(context: Context) -> list[tuple[str, ...]]:
    """`xpcargo cache stats`: every compile cache a build recorded into, with what the builds found in it."""
    table: list[tuple[str, ...]] = [("WORKSPACE", "BUILDS", "HITS", "MISSES", "HIT RATE", "SIZE", "DIRECTORY")]
    for record in compile_cache.records(context.host.settings.cache_dir):
        stats = record.stats
        rate = stats.rate
        table.append(
            (
                ", ".join(record.workspaces) or "-",
                str(record.builds),
                str(stats.hits),
                str(stats.misses),
                f"{rate:.0%}" if rate is not None else "-",
                size(compile_cache.size_of(record.directory)),
                str(record.directory),
            )
        )
    return table


def clear(context: Context, *, everything: bool, manifest_path: str | None = None) -> Answer:
    """`xpcargo cache clear`: empty the workspace's compile cache (with ``everything``, every recorded one)."""
    cache_dir = context.host.settings.cache_dir
    if everything:
        caches = [(record.directory, record.path) for record in compile_cache.records(cache_dir)]
    else:
        _, directory, record_path = _here(context, manifest_path)
        caches = [(directory, record_path)]
    statuses: list[tuple[str, str]] = []
    for directory, record_path in caches:
        freed = compile_cache.size_of(directory)
        compile_cache.clear(directory, record_path, shared=directory.parent != compile_cache.root(cache_dir))
        statuses.append(("Removed", f"the compile cache {directory} ({size(freed)})"))
    if not statuses:
        statuses.append(("Removed", "nothing: no compile cache recorded"))
    return Answer(statuses=tuple(statuses))
