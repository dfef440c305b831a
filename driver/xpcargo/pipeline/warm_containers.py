"""`xpcargo ps` and `xpcargo down`: the warm containers this user's builds left running for the next command.

They are the session's (``container.session``), which starts, finds and removes them; this module only chooses
which ones a command is about and says what it found or did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from xpcargo.container import session
from xpcargo.container.runtime import ContainerInfo, Containers
from xpcargo.container.spec import KEEP_WARM_LABEL, TARGET_LABEL, WORKSPACE_LABEL
from xpcargo.context import Context
from xpcargo.errors import ProjectError
from xpcargo.ui import ago


@dataclass(frozen=True, kw_only=True)
class WarmContainer:
    id: str
    target: str
    workspace: str
    # None when the container could not be asked.
    busy: bool | None
    up_seconds: float
    keep_warm: str

    def row(self) -> tuple[str, ...]:
        state = "unknown" if self.busy is None else "running a command" if self.busy else "idle"
        return (self.id[:12], self.target, state, ago(self.up_seconds), f"{self.keep_warm}s", self.workspace)


HEADER = ("CONTAINER", "TARGET", "STATE", "UP", "IDLE LIMIT", "WORKSPACE")


def _workspace(context: Context) -> Path:
    from xpcargo.cargo.project import find_manifest, find_workspace_root  # noqa: PLC0415

    try:
        return find_workspace_root(find_manifest(context.cwd, None))
    except ProjectError as error:
        error.hint = "run it in a Cargo project, or pass --all to stop every warm container of yours"
        raise


def _describe(container: ContainerInfo, now: float, *, busy: bool | None) -> WarmContainer:
    return WarmContainer(
        id=container.id,
        target=container.labels.get(TARGET_LABEL, "?"),
        workspace=container.labels.get(WORKSPACE_LABEL, "?"),
        busy=busy,
        up_seconds=max(0.0, now - container.created),
        keep_warm=container.labels.get(KEEP_WARM_LABEL, "?"),
    )


def listing(runtime: Containers) -> list[WarmContainer]:
    """Every warm container of this user's on this engine, each asked whether a command runs in it."""
    now = time.time()
    found = sorted(session.warm_containers(runtime), key=lambda c: (c.labels.get(WORKSPACE_LABEL, ""), c.created))
    return [_describe(container, now, busy=session.is_busy(runtime, container)) for container in found]


def down(context: Context, runtime: Containers, *, everything: bool) -> list[WarmContainer]:
    """Stop the warm containers of the workspace here (or all of this user's), with whatever runs in them."""
    workspace = None if everything else _workspace(context)
    found = session.warm_containers(runtime, workspace=workspace)
    now = time.time()
    session.stop(runtime, found)
    return [_describe(container, now, busy=None) for container in found]
