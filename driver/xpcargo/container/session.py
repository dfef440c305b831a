"""The container session: the one owner of a container's life.

A session starts one container from a request, runs commands in it through the runtime, and removes it when the
``with`` block ends, whatever ends it: a return, an error, or a signal (``interrupts`` turns those into exceptions,
so removal is ordinary ``finally`` code). Nothing else in xpcargo creates or removes containers.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from xpcargo.container.spec import (
    HOST_LABEL,
    MANAGED_LABEL,
    REQUEST_LABEL,
    SESSION_LABEL,
    ContainerRequest,
    Output,
    Runtime,
)
from xpcargo.errors import CancelledError, InterruptError, ProjectError, XpcargoError
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

    def changes(self) -> list[tuple[str, str]]:
        """What the commands run so far changed in the image's file system (see ``Runtime.changes``)."""
        return self._runtime.changes(self.container_id)


def this_host() -> str:
    """This machine's name and the boot of its kernel: where a pid in SESSION_LABEL can be looked up."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        boot = "unknown-boot"
    return f"{socket.gethostname()}/{boot}"


def labelled(request: ContainerRequest, purpose: str) -> ContainerRequest:
    """The request with the labels every container of xpcargo's carries: managed, whose, where, and a request id."""
    labels = {
        **request.labels,
        MANAGED_LABEL: "true",
        SESSION_LABEL: f"{purpose}:{os.getpid()}",
        HOST_LABEL: this_host(),
        REQUEST_LABEL: uuid.uuid4().hex,
    }
    return replace(request, labels=labels)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap_orphans(runtime: Runtime) -> list[str]:
    """Remove xpcargo's containers whose process, on this machine, is gone; return their ids.

    A container ends by itself when its xpcargo process goes, even by SIGKILL; what is left to reap is a container
    whose process died between creating it and tying it to itself. Containers of other machines sharing the
    engine are never touched: their pids mean nothing here.
    """
    reaped = []
    host = this_host()
    for container in runtime.list_containers(f"{MANAGED_LABEL}=true"):
        owner = container.labels.get(SESSION_LABEL, "").rpartition(":")[2]
        if container.labels.get(HOST_LABEL) != host or not owner.isdigit() or _process_exists(int(owner)):
            continue
        try:
            runtime.remove(container.id)
        except XpcargoError:
            # Someone else's cleanup, not this command's: it must not fail the build. The next command tries again.
            continue
        reaped.append(container.id)
    return reaped


class Cancellation:
    """Lets one thread stop what the sessions of other threads run: the other targets of a multi-target build,
    when one fails with --fail-fast or on Ctrl-C. Cancelling removes the live container of every session that
    shares it (their commands end with it), and a session that has not started yet does not start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: dict[str, Runtime] = {}
        self._cancelled = False
        # Containers the engine did not confirm removed when they were cancelled.
        self.left_behind: list[str] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        if self._cancelled:
            raise CancelledError("cancelled: another target failed or the build was interrupted")

    def _enter(self, runtime: Runtime, container_id: str) -> None:
        with self._lock:
            self._live[container_id] = runtime
        if self._cancelled:
            raise CancelledError("cancelled: another target failed or the build was interrupted")

    def _leave(self, container_id: str) -> None:
        with self._lock:
            self._live.pop(container_id, None)

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            live = dict(self._live)
        for container_id, runtime in live.items():
            try:
                runtime.remove(container_id)
            except XpcargoError:
                self.left_behind.append(container_id)


@contextmanager
def open_session(
    runtime: Runtime, request: ContainerRequest, *, purpose: str, cancellation: Cancellation | None = None
) -> Iterator[Session]:
    """A container that lives exactly as long as the ``with`` block."""
    for mount in request.mounts:
        # Created here, as the invoking user: the engine would create a missing bind source as root.
        if not mount.read_only and mount.source is None:
            try:
                mount.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ProjectError(
                    f"cannot create {mount.path}: {error.strerror}",
                    hint="point --target-dir (or CARGO_TARGET_DIR, CARGO_HOME) at a writable place",
                ) from None
    if cancellation is not None:
        cancellation.check()
    reap_orphans(runtime)
    container_id = runtime.start(labelled(request, purpose))
    try:
        if cancellation is not None:
            cancellation._enter(runtime, container_id)
        yield Session(runtime, container_id)
    except KeyboardInterrupt:
        interrupt = InterruptError("interrupted")
        _remove_after_error(runtime, container_id, interrupt)
        raise interrupt from None
    except XpcargoError as error:
        _remove_after_error(runtime, container_id, error)
        raise
    except BaseException:
        runtime.remove(container_id)
        raise
    else:
        runtime.remove(container_id)
    finally:
        if cancellation is not None:
            cancellation._leave(container_id)


def _remove_after_error(runtime: Runtime, container_id: str, error: XpcargoError) -> None:
    """Remove the container on the way out of a failure; if the engine does not confirm it, the failure still
    says what happened first, and adds what may be left running."""
    try:
        runtime.remove(container_id)
    except (XpcargoError, KeyboardInterrupt):
        # A second Ctrl-C cuts the cleanup short: that too leaves the container unconfirmed.
        error.left_behind.append(container_id)
