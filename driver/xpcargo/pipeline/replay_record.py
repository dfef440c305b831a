"""The record a no-op build leaves for ``xpcargo.replay``: what its plan read, what it asked of the engine and
what Cargo answered. Written only when a replay of the same command would do exactly what this one did; forgotten
whenever a command with the same arguments, in the same place, did anything else.

What the plan depends on is named here, once: every file it reads or looks for (``inputs``), the files of the
workspace and of its path dependencies (``project_files``, ``_outside_files``) and xpcargo's own in the target dir
(``state_files``). tests/integration/test_replay.py watches a build's every open and checks that nothing it read
is missing from the record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpcargo import replay, replay_listing
from xpcargo.cargo.messages import MessageReader
from xpcargo.config.trust import store_path
from xpcargo.container.host_view import host_view, read_mount_table
from xpcargo.container.session import ReplayableCommand
from xpcargo.context import Settings
from xpcargo.pipeline import compile_cache
from xpcargo.pipeline.plan import BuildPlan
from xpcargo.pipeline.workspace import LocalWorkspace, Step
from xpcargo.report import store
from xpcargo.report.model import target_dir_name

# The most of Cargo's standard output a capture keeps: a no-op's messages of some thousand units (a build script
# can print far more there, and xpcargo's memory must not grow with it).
_MOST_STDOUT = 16 << 20


@dataclass(kw_only=True)
class Capture:
    """What the usual way saw of a build that may be recorded: filled in as it runs."""

    argv: tuple[str, ...]
    cwd: str
    path: str
    settings: Settings
    # The project's files before the build (compared with after: an edit while Cargo ran is no no-op).
    sources_before: list[tuple[str, replay.Signature]] | None
    command: ReplayableCommand | None = None
    # Cargo's standard output, up to _MOST_STDOUT bytes (None past that: no no-op's).
    stdout: list[bytes] | None = field(default_factory=list)
    _kept: int = 0

    def tee(self, write: Callable[[bytes], None]) -> Callable[[bytes], None]:
        def both(chunk: bytes) -> None:
            if self.stdout is not None:
                self._kept += len(chunk)
                if self._kept > _MOST_STDOUT:
                    self.stdout = None
                else:
                    self.stdout.append(chunk)
            write(chunk)

        return both


def capture(command_line: Sequence[str], cwd: Path, plan: BuildPlan, *, settings: Settings) -> Capture | None:
    """A capture for this build, or None when no replay could run it."""
    argv = tuple(command_line)
    path = replay.record_path(str(settings.cache_dir), argv, str(cwd))
    recordable = (
        argv[:1] == (plan.invocation.command,)
        and plan.invocation.command in replay.COMMANDS
        and plan.invocation.injects_json
        and plan.flags.reproducible is None
        and plan.warm.keep > 0
        and plan.warm.locks is not None
        and isinstance(plan.workspace, LocalWorkspace)
    )
    if not recordable:
        # A record of the same arguments stays: it names the environment it was made in, and what it read.
        return None
    return Capture(argv=argv, cwd=str(cwd), path=path, settings=settings, sources_before=project_files(plan))


def keep_or_forget(
    capture: Capture,
    plan: BuildPlan,
    *,
    code: int,
    metadata: Mapping[str, Any] | None,
    quiet: bool,
    image_id: Callable[[str], str | None],
) -> None:
    """Record the build when a replay would do what it did: Cargo did nothing and said so (exit code 0, every
    artifact fresh), xpcargo said nothing, the project did not change meanwhile. Else forget any record."""
    command = capture.command
    stdout = b"".join(capture.stdout) if capture.stdout is not None else None
    no_op = code == 0 and quiet and command is not None and metadata is not None and stdout is not None
    lines = _lines(stdout) if no_op and stdout is not None and _did_nothing(stdout) else None
    # The project's files after the build (the same as before it, or Cargo may have seen an edit), and those of its
    # path dependencies outside the workspace.
    inside = project_files(plan) if lines is not None else None
    outside = _outside_files(plan, metadata) if inside is not None and inside == capture.sources_before else None
    if command is None or lines is None or inside is None or outside is None:
        replay.forget(capture.path)
        return
    image = image_id(command.image)
    if image is None:
        replay.forget(capture.path)
        return
    sources = _mount_sources(plan, command.image)
    named = inputs(plan, capture.cwd, mount_sources=sources, settings=capture.settings)
    if named is None:
        replay.forget(capture.path)
        return
    files = [(path, replay.signature(path)) for path in named]
    table = read_mount_table()
    record = {
        **replay_listing.common(capture.argv, capture.cwd, kind="build"),
        "files": [*files, *inside, *outside, *_build_outputs(plan)],
        "contents": [(path, replay.content_digest(path)) for path in state_files(plan)],
        "views": [(source, host_view(source, table)) for source in sources],
        "absent_after": [str(path) for path in _absent_after(plan)],
        "socket": command.exec.socket,
        "api": command.exec.api,
        "timeout": command.exec.timeout,
        "image": (command.image, image),
        "container": command.container_id,
        "container_ends": command.ends,
        "lock": str(command.lock) if command.lock is not None else None,
        "exec_head": command.exec.body_head,
        "exec_tail": command.exec.body_tail,
        "lines": lines,
        "name": " ".join(plan.cargo_argv()[:2]),
    }
    replay_listing.write(capture.path, record)


def _mount_sources(plan: BuildPlan, image: str) -> list[str]:
    """Where the build container's bind mounts come from on the host (the warm container's key holds what the host
    shows there)."""
    return [str(mount.source or mount.path) for mount in plan.request(Step.BUILD, image).mounts if not mount.volume]


def _did_nothing(stdout: bytes) -> bool:
    """Whether Cargo's messages say that every artifact was fresh and the build finished well, and nothing but its
    messages was printed (a diagnostic of a fresh unit is Cargo's replay of it, as on every build)."""
    finished = False
    for line in stdout.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            return False
        if not isinstance(message, dict):
            return False
        reason = message.get("reason")
        if reason == "compiler-artifact" and message.get("fresh") is not True:
            return False
        if reason == "build-finished":
            finished = message.get("success") is True
        elif reason not in ("compiler-artifact", "build-script-executed", "compiler-message"):
            return False
    return finished


def _lines(stdout: bytes) -> list[tuple[str, bytes]] | None:
    """Each line of Cargo's standard output (a digest) with what the usual way printed for it on standard error (a
    diagnostic as Cargo rendered it), read by the reader the usual way reads them with; None when it would have
    printed anything on standard output."""
    printed: list[bytes] = []
    rendered: list[bytes] = []
    reader = MessageReader(echo_messages=False, write_stdout=printed.append, write_stderr=rendered.append)
    lines = []
    for line in stdout.splitlines(keepends=True):
        reader.feed(line)
        lines.append((replay.digest(line), b"".join(rendered)))
        rendered.clear()
    reader.close()
    return None if printed or rendered else lines


def inputs(plan: BuildPlan, cwd: str, *, mount_sources: Sequence[str], settings: Settings) -> list[str] | None:
    """Every file the plan read or looked for, whether or not it is there now, and where the container's mounts
    lead (a link in the project that leads elsewhere now would mount another place); None when there are too many
    to check."""
    project = plan.project
    configuration = replay_listing.configuration(settings, Path(cwd), project.workspace_root)
    if configuration is None:
        return None
    found = [*configuration, str(store_path(os.environ)), *mount_sources]
    found += [str(path) for path in (*project.manifests, *project.cargo_config_files)]
    cargo_home = Path(os.environ.get("CARGO_HOME") or Path.home() / ".cargo")
    found += [str(cargo_home / name) for name in ("config", "config.toml")]
    found.append(str(plan.workspace.fetch_record))
    cache = plan.compile_cache
    if isinstance(cache, compile_cache.CompileCache):
        found += [str(cache.wrapper), str(cache.record)]
    if plan.flags.sysroot is not None:
        found.append(str(plan.flags.sysroot.directory))
    return sorted(set(found))


def project_files(plan: BuildPlan) -> list[tuple[str, replay.Signature]] | None:
    """The signatures of the files of the workspace (its target dir left out); None for a project too large."""
    project = plan.project
    return replay.walk([str(project.workspace_root)], skip=[str(project.target_dir)], limit=replay_listing.MOST_FILES)


def _outside_files(plan: BuildPlan, metadata: Mapping[str, Any] | None) -> list[tuple[str, replay.Signature]] | None:
    """The signatures of the files of the path dependencies outside the workspace that ``metadata`` names (each
    directory once, however the packages nest); None for too many."""
    root = plan.project.workspace_root
    roots: list[Path] = []
    for package in sorted(set(_local_packages(metadata))):
        if not package.is_relative_to(root) and not any(package.is_relative_to(kept) for kept in roots):
            roots.append(package)
    return replay.walk(
        [str(path) for path in roots], skip=[str(plan.project.target_dir)], limit=replay_listing.MOST_FILES
    )


def state_files(plan: BuildPlan) -> list[str]:
    """xpcargo's files of this target in the target dir (its Cargo config files, the report): checked by their
    contents, which a command that builds anew writes again (the same, when nothing changed)."""
    found = []
    for directory in (plan.flags.state_dir, _report_dir(plan)):
        try:
            found += [entry.path for entry in os.scandir(directory) if entry.is_file(follow_symlinks=False)]
        except OSError:
            continue
    return sorted(path for path in found if not path.endswith(".tmp"))


def _report_dir(plan: BuildPlan) -> Path:
    return store.report_path(plan.project.target_dir, plan.triple, plan.invocation.profile_dir).parent


def _build_outputs(plan: BuildPlan) -> Iterator[tuple[str, replay.Signature]]:
    """The profile directory's own files (the final artifacts; not their dep-info, which Cargo writes again on
    every build) and each build script's `output` and `root-output`."""
    profile = plan.project.target_dir / target_dir_name(plan.triple) / plan.invocation.profile_dir
    for directory, names in ((profile, None), (profile / "build", ("output", "root-output"))):
        try:
            entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            paths = [entry.path] if names is None else [str(Path(entry.path) / name) for name in names]
            for path in paths:
                found = replay.signature(path)
                if found is not None and (names is not None or not (entry.is_dir() or entry.name.endswith(".d"))):
                    yield path, found


def _local_packages(metadata: Mapping[str, Any] | None) -> list[Path]:
    """The directories of the packages Cargo builds from local paths (path dependencies outside the workspace)."""
    packages = metadata.get("packages") if metadata is not None else None
    found = []
    for package in packages if isinstance(packages, list) else []:
        if isinstance(package, dict) and package.get("source") is None:
            manifest = package.get("manifest_path")
            if isinstance(manifest, str):
                found.append(Path(manifest).parent)
    return found


def _absent_after(plan: BuildPlan) -> list[Path]:
    cache = plan.compile_cache
    return [cache.stats_file] if isinstance(cache, compile_cache.CompileCache) else []
