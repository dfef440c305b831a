"""The container session: the one owner of a container's life.

A session starts one container from a request, runs commands in it through the runtime, and removes it when the
``with`` block ends, whatever ends it: a return, an error, or a signal (``interrupts`` turns those into exceptions,
so removal is ordinary ``finally`` code). Nothing else in xpcargo creates or removes containers.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace

from xpcargo.container.spec import (
    MANAGED_LABEL,
    REQUEST_LABEL,
    SESSION_LABEL,
    ContainerRequest,
    Output,
    Runtime,
)
from xpcargo.errors import InterruptError, XpcargoError
from xpcargo.ui import binary_writer


def invoking_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


class Session:
    """A running container and the commands run in it."""

    def __init__(self, runtime: Runtime, container_id: str) -> None:
        self._runtime = runtime
        self.container_id = container_id

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
    ) -> int:
        """Run ``argv``; its output goes to this process's stdout and stderr unless callbacks take it."""
        return self._runtime.exec(
            self.container_id,
            argv,
            env=env or {},
            on_stdout=on_stdout or binary_writer(sys.stdout),
            on_stderr=on_stderr or binary_writer(sys.stderr),
        )

    def run_interactive(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        return self._runtime.exec_interactive(self.container_id, argv, env=env or {})


def labelled(request: ContainerRequest, purpose: str) -> ContainerRequest:
    """The request with the labels every container of xpcargo's carries: managed, whose, and a request id."""
    labels = {
        **request.labels,
        MANAGED_LABEL: "true",
        SESSION_LABEL: f"{purpose}:{os.getpid()}",
        REQUEST_LABEL: uuid.uuid4().hex,
    }
    return replace(request, labels=labels)


@contextmanager
def open_session(runtime: Runtime, request: ContainerRequest, *, purpose: str) -> Iterator[Session]:
    """A container that lives exactly as long as the ``with`` block."""
    for mount in request.mounts:
        # Created here, as the invoking user: the engine would create a missing bind source as root.
        if not mount.read_only:
            mount.path.mkdir(parents=True, exist_ok=True)
    container_id = runtime.start(labelled(request, purpose))
    try:
        yield Session(runtime, container_id)
    except (InterruptError, KeyboardInterrupt) as caught:
        interrupt = caught if isinstance(caught, InterruptError) else InterruptError("interrupted")
        try:
            runtime.remove(container_id)
        except XpcargoError:
            # The user asked to stop: say what is left, rather than how the cleanup failed.
            interrupt.left_behind.append(container_id)
        raise interrupt from None
    except BaseException:
        runtime.remove(container_id)
        raise
    else:
        runtime.remove(container_id)
