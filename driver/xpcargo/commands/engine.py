"""`xpcargo info`, `ps` and `down`: the engine, and the warm containers on it; and the connection to the engine
that every command makes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from xpcargo import __version__
from xpcargo.commands import Answer
from xpcargo.container import warm_containers
from xpcargo.errors import ProjectError
from xpcargo.ui import ago

if TYPE_CHECKING:
    from xpcargo.container.location import EngineAddress
    from xpcargo.container.runtime import Runtime
    from xpcargo.context import Context, Host


def connect(host: Host, address: EngineAddress | None = None, /) -> Runtime:
    """A connection to the engine at ``address``, by default the one the environment names."""
    from xpcargo.container.docker.runtime import DockerRuntime  # noqa: PLC0415 - the SDK is not for `--help`

    return DockerRuntime.connect(host.environ, address=address, engine_timeout=host.settings.engine_timeout)


def info(runtime: Runtime, *, as_json: bool) -> list[str]:
    """`xpcargo info`: which engine, its version and API version, rootless or not, where; as one JSON object, or a
    line each."""
    fields = {"xpcargo": __version__, **runtime.describe().fields()}
    if as_json:
        return [json.dumps(fields, indent=2)]
    width = max(len(name) for name in fields)
    lines = []
    for name, value in fields.items():
        shown = ("yes" if value else "no") if isinstance(value, bool) else value
        lines.append(f"{name + ':':<{width + 1}} {shown}")
    return lines


_PS_HEADER = ("CONTAINER", "TARGET", "STATE", "UP", "IDLE LIMIT", "WORKSPACE")


def ps(runtime: Runtime) -> list[tuple[str, ...]]:
    """`xpcargo ps`: this user's warm containers on the engine, a row each."""
    rows: list[tuple[str, ...]] = [_PS_HEADER]
    for container in warm_containers.listing(runtime):
        busy = container.busy
        state = "unknown" if busy is None else "running a command" if busy else "idle"
        rows.append(
            (
                container.id[:12],
                container.target,
                state,
                ago(container.up_seconds),
                f"{container.keep_warm}s",
                container.workspace,
            )
        )
    return rows


def down(context: Context, runtime: Runtime, *, everything: bool) -> Answer:
    """`xpcargo down`: stop the warm containers of the workspace here (or all of this user's), and say which."""
    stopped = warm_containers.down(runtime, workspace=None if everything else _workspace(context))
    statuses = [
        ("Stopped", f"warm container {container.id[:12]} of {container.target} ({container.workspace})")
        for container in stopped
    ]
    if not stopped:
        statuses.append(("Stopped", "nothing: no warm container" + ("" if everything else " for this workspace")))
    return Answer(statuses=tuple(statuses))


def _workspace(context: Context) -> Path:
    from xpcargo.cargo.project import find_manifest, find_workspace_root  # noqa: PLC0415

    try:
        return find_workspace_root(find_manifest(context.cwd, None))
    except ProjectError as error:
        error.hint = "run it in a Cargo project, or pass --all to stop every warm container of yours"
        raise
