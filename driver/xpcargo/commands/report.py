"""`xpcargo report`: what every build script of a target's last build decided, or its artifacts' glibc needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpcargo.report import render, store

if TYPE_CHECKING:
    from xpcargo.context import Context


def report(
    context: Context,
    triple: str,
    *,
    release: bool,
    profile: str | None,
    manifest_path: str | None,
    target_dir: str | None,
    artifacts: bool,
    as_json: bool,
) -> str:
    """The last build's report, as a table or JSON; with ``artifacts``, its final artifacts instead."""
    args = [*(["--release"] if release else []), *(["--profile", profile] if profile else [])]
    args += [*(["--manifest-path", manifest_path] if manifest_path else [])]
    args += [*(["--target-dir", target_dir] if target_dir else [])]
    loaded = store.load_last(triple, args, cwd=context.cwd, environ=context.host.environ)
    if artifacts:
        return render.render_artifacts_json(loaded) if as_json else render.render_artifacts(loaded)
    return render.render_json(loaded) if as_json else render.render_table(loaded)
