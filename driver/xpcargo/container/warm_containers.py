"""The warm containers this user's builds left running for the next command, as `xpcargo ps` and `xpcargo down`
see them.

They are the session's (``container.session``), which starts, finds and removes them; this module lists them (asking
whether each is busy), stops those of a given workspace, and describes what it found or stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from xpcargo.container import session
from xpcargo.container.runtime import ContainerInfo, Containers
from xpcargo.container.spec import KEEP_WARM_LABEL, TARGET_LABEL, WORKSPACE_LABEL


@dataclass(frozen=True, kw_only=True)
class WarmContainer:
    id: str
    target: str
    workspace: str
    # None when the container could not be asked.
    busy: bool | None
    up_seconds: float
    keep_warm: str


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


def down(runtime: Containers, *, workspace: Path | None) -> list[WarmContainer]:
    """Stop the warm containers of ``workspace`` (or, with none, all of this user's), with whatever runs in them."""
    found = session.warm_containers(runtime, workspace=workspace)
    now = time.time()
    session.stop(runtime, found)
    return [_describe(container, now, busy=None) for container in found]
