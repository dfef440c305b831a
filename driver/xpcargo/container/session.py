"""The container session: the one owner of a container's life.

A session runs commands in a container through the runtime. Most containers live exactly as long as their ``with``
block, whatever ends it: a return, an error, or a signal (``interrupts`` turns those into exceptions, so removal is
ordinary ``finally`` code). A request with ``keep_warm`` is served by a warm container instead: one already running
for the same workspace, target and user whose key still matches (``warm.key``), or a new one, which ends by itself
after that many idle seconds. Nothing else in xpcargo creates or removes containers.
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from xpcargo.container import warm
from xpcargo.container.host_view import read_mount_table
from xpcargo.container.runtime import ContainerInfo, Containers, Output, RecordedExec
from xpcargo.container.spec import (
    HOST_LABEL,
    KEEP_WARM_LABEL,
    MANAGED_LABEL,
    REQUEST_LABEL,
    SESSION_LABEL,
    SLOT_LABEL,
    TARGET_LABEL,
    USER_LABEL,
    WARM_KEY_LABEL,
    WORKSPACE_LABEL,
    ContainerRequest,
)
from xpcargo.errors import (
    CancelledError,
    ContainerBusyError,
    ContainerGoneError,
    EngineLostError,
    EngineUnavailableError,
    InterruptError,
    ProjectError,
    XpcargoError,
)
from xpcargo.ui import binary_writer

# How often a command is moved to a new warm container when the one it was given had just ended or was closing.
_WARM_ATTEMPTS = 3
# How long the engine has to take the stop of an interrupted command: Ctrl-C must not wait on a hung engine.
_STOP_ANSWER_WITHIN = 3.0


@dataclass(frozen=True, kw_only=True)
class ReplayableCommand:
    """A command of a warm session as ``xpcargo.replay`` runs it again: the container, until when (seconds since
    the epoch) it takes commands, the slot's lock, its image's reference and the exec's request."""

    container_id: str
    ends: float
    lock: Path | None
    image: str
    exec: RecordedExec


def invoking_user() -> str:
    return f"{os.getuid()}:{os.getgid()}"


class Session:
    """A running container and the commands run in it, each with the request's working directory and environment
    (and its own additions)."""

    def __init__(self, runtime: Containers, container_id: str, request: ContainerRequest) -> None:
        self._runtime = runtime
        self.container_id = container_id
        self._request = request

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        return {**self._request.env, **(env or {})}

    def _confined(self, argv: Sequence[str]) -> tuple[list[str], str | None, str | None]:
        """The command as it runs in the container: in a confined one, under the wrapper that kills whatever it
        left when it ends, as the request's user (the container's own is the keeper), with the wrapper's token."""
        if not self._request.confined:
            return list(argv), None, None
        token = uuid.uuid4().hex[:16]
        return warm.wrapped(token, argv, tether=False), self._request.user, token

    def _checked(self, code: int, token: str | None, argv: Sequence[str]) -> int:
        """``code``, unless the wrapper refused to start the command: in a container of the command's own that
        means a process of the command's user that xpcargo did not start runs there (a `docker exec` into it)."""
        if token is None or code != warm.REFUSED:
            return code
        try:
            refused = self._wrapper_refused(token)
        except ContainerGoneError:
            return code
        if not refused:
            return code
        raise ContainerBusyError(
            f"`{' '.join(argv[:2])}` did not start: a process that xpcargo did not start runs as its user in the "
            f"container {self.container_id[:12]}",
            hint="a `docker exec` into a build's container as its user must end before the build's next command; "
            "run the command again",
        )

    def _wrapper_refused(self, token: str) -> bool:
        """Whether exit code ``warm.REFUSED`` came from the wrapper of ``token``, not from the command (raises
        ContainerGoneError when the container has ended)."""
        return _quietly(self._runtime, self.container_id, warm.refused_argv(token)) == 0

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
        name: str | None = None,
    ) -> int:
        """Run ``argv``; its output goes to this process's stdout and stderr unless callbacks take it. ``name`` is
        how a message names the command (a warm session's, when the engine does not confirm its end)."""
        command, user, token = self._confined(argv)
        code = self._runtime.exec(
            self.container_id,
            command,
            env=self._env(env),
            workdir=self._request.workdir,
            on_stdout=on_stdout or binary_writer(sys.stdout),
            on_stderr=on_stderr or binary_writer(sys.stderr),
            user=user,
        )
        return self._checked(code, token, argv)

    def run_interactive(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        command, user, token = self._confined(argv)
        code = self._runtime.exec_interactive(
            self.container_id, command, env=self._env(env), workdir=self._request.workdir, user=user
        )
        return self._checked(code, token, argv)

    def put_archive(self, directory: Path, archive: Path) -> None:
        """Unpack the tar file ``archive`` at ``directory`` in the container (see ``Containers.put_archive``)."""
        self._runtime.put_archive(self.container_id, directory, archive)

    def changes(self) -> list[tuple[str, str]]:
        """What the commands run so far changed in the image's file system (see ``Containers.changes``)."""
        return self._runtime.changes(self.container_id)

    def cancel(self, signal_name: str) -> None:
        """From another thread: end what runs here (by removing the container, which ends its commands)."""
        self._runtime.remove(self.container_id)


class WarmSession(Session):
    """Commands in a warm container, one xpcargo command at a time (the caller holds the slot's lock). Each runs
    under ``warm``'s wrapper, so that a signal for xpcargo reaches the command's whole process group, nothing of it
    is left when it ends, and the container is ready for the next command; a command refused by a container that
    was closing, or sent to one that had just ended, runs in a new one."""

    def __init__(
        self, runtime: Containers, request: ContainerRequest, *, purpose: str, lock: Path | None = None
    ) -> None:
        """``request`` as ``warm_labelled`` made it; ``lock``, the slot's lock file that the caller holds."""
        super().__init__(runtime, "", request)
        self._purpose = purpose
        self.lock = lock
        # When the container in use was created (seconds since the epoch), when it was found rather than started.
        self.created: float | None = None
        # Containers this session started, whose start-time watch it releases at the end.
        self.started: list[str] = []
        # The token and name of the command that runs now, for cancel() from another thread.
        self._running: tuple[str, str] | None = None
        self._cancelled = False
        self.container_id = self._find_or_start(unusable=frozenset())

    def _find_or_start(self, *, unusable: frozenset[str]) -> str:
        """The slot's container if it still fits (its key, and its lifetime by the engine's clock of its creation,
        which nothing in the container can change); else a new one, once the old ones are retired."""
        request = self._request
        chosen = None
        born_after = time.time() - request.warm_lifetime
        for container in self._runtime.list_containers(f"{SLOT_LABEL}={request.labels[SLOT_LABEL]}"):
            fits = (
                container.running
                and container.labels.get(WARM_KEY_LABEL) == request.labels[WARM_KEY_LABEL]
                and container.created > born_after
            )
            if fits and chosen is None and container.id not in unusable:
                chosen = container.id
                self.created = container.created
            else:
                retire(self._runtime, container)
        if chosen is not None:
            return chosen
        # Orphans are reaped when a container is started, as a command of its own would: a reused warm
        # container costs no more questions to the engine than it must.
        reap_orphans(self._runtime)
        self.created = None
        container_id = self._runtime.start(
            labelled(request, self._purpose), main=warm.main_argv(request.keep_warm, request.warm_lifetime)
        )
        self.started.append(container_id)
        return container_id

    def run(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        on_stdout: Output | None = None,
        on_stderr: Output | None = None,
        name: str | None = None,
    ) -> int:
        name = name or " ".join(argv[:2])
        for _ in range(_WARM_ATTEMPTS):
            token = uuid.uuid4().hex[:16]
            # Set before the check, read after cancel() sets the flag: one of the two sees the other.
            self._running = (token, name)
            if self._cancelled:
                raise CancelledError("cancelled: another target failed or the build was interrupted")
            try:
                code = self._runtime.exec(
                    self.container_id,
                    warm.wrapped(token, argv, tether=True),
                    env=self._env(env),
                    workdir=self._request.workdir,
                    tether=True,
                    on_stdout=on_stdout or binary_writer(sys.stdout),
                    on_stderr=on_stderr or binary_writer(sys.stderr),
                    user=self._request.user,
                )
            except ContainerGoneError:
                self._move(unusable=False)
                continue
            except EngineLostError as error:
                # The command may run on in a container that stays (a container of its own would be removed here):
                # stopped if the engine takes that now, else named.
                self._stop(token, "TERM", error, name)
                raise
            except (InterruptError, KeyboardInterrupt) as caught:
                interrupt = caught if isinstance(caught, InterruptError) else InterruptError("interrupted")
                self._stop(token, interrupt.signal_name, interrupt, name)
                raise interrupt from None
            finally:
                self._running = None
            if code == warm.REFUSED and self._refused(token):
                self._move(unusable=True)
                continue
            return code
        raise ContainerGoneError(
            f"no warm container stayed up long enough to run `{' '.join(argv[:2])}`",
            hint="run the command again, or turn warm containers off with XPCARGO_KEEP_WARM=0",
        )

    def recorded(self, argv: Sequence[str]) -> ReplayableCommand | None:
        """How ``xpcargo.replay`` runs ``argv`` again as ``run`` ran it (with no ``env`` of its own), in this
        container while it lives; None when it cannot (a container this session started, whose creation time it
        did not see, or an engine not on a local socket)."""
        if self.created is None:
            return None
        token = uuid.uuid4().hex[:16]
        recorded = self._runtime.recorded_exec(
            self.container_id,
            warm.wrapped(token, argv, tether=True),
            env=self._env(None),
            workdir=self._request.workdir,
            user=self._request.user,
            token=token,
        )
        if recorded is None:
            return None
        return ReplayableCommand(
            container_id=self.container_id,
            ends=self.created + self._request.warm_lifetime,
            lock=self.lock,
            image=self._request.image,
            exec=recorded,
        )

    def run_interactive(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> int:
        return self._runtime.exec_interactive(
            self.container_id,
            warm.wrapped(uuid.uuid4().hex[:16], argv, tether=False),
            env=self._env(env),
            workdir=self._request.workdir,
            user=self._request.user,
        )

    def _refused(self, token: str) -> bool:
        """Whether exit code ``warm.REFUSED`` came from the wrapper, not from the command; a container that has
        ended refused it too (the command runs in the next one)."""
        try:
            return self._wrapper_refused(token)
        except ContainerGoneError:
            return True

    def _move(self, *, unusable: bool) -> None:
        previous = self.container_id
        self.container_id = self._find_or_start(unusable=frozenset({previous}) if unusable else frozenset())

    def _stop(self, token: str, signal_name: str, error: XpcargoError, name: str) -> None:
        """Pass the signal on to the command's process group and wait for it to end. If the engine does not take
        that at once, the command (``name``) is named in ``error`` as still running (it ends when its tether does,
        once the engine hears that this process is gone); if the stop fails otherwise, or a second Ctrl-C cuts it
        short, the container is removed, which certainly ends the command."""
        try:
            _quietly(
                self._runtime,
                self.container_id,
                warm.stop_argv(token, signal_name),
                answer_within=_STOP_ANSWER_WITHIN,
                user=self._request.user,
            )
        except EngineUnavailableError:
            error.still_running.append((self.container_id, name))
        except (XpcargoError, KeyboardInterrupt):
            try:
                self._runtime.remove(self.container_id)
            except (XpcargoError, KeyboardInterrupt):
                error.left_behind.append(self.container_id)

    def cancel(self, signal_name: str) -> None:
        self._cancelled = True
        running = self._running
        if running is not None:
            token, name = running
            stopped = CancelledError("cancelled")
            self._stop(token, signal_name, stopped, name)
            if stopped.left_behind or stopped.still_running:
                # Cancellation names it among what may still run.
                unconfirmed = EngineUnavailableError(
                    f"the engine did not confirm the stop of a command in {self.container_id}"
                )
                unconfirmed.left_behind, unconfirmed.still_running = stopped.left_behind, stopped.still_running
                raise unconfirmed

    def close(self) -> None:
        for container_id in self.started:
            self._runtime.release(container_id)


def _ignore(chunk: bytes) -> None:
    pass


def _quietly(
    runtime: Containers,
    container_id: str,
    argv: Sequence[str],
    *,
    answer_within: float | None = None,
    user: str | None = None,
) -> int:
    """One of xpcargo's own commands in a warm container (``warm``'s scripts), its output dropped; as the keeper
    unless ``user`` says otherwise."""
    return runtime.exec(
        container_id,
        argv,
        env={},
        workdir=Path("/"),
        on_stdout=_ignore,
        on_stderr=_ignore,
        answer_within=answer_within,
        user=user,
    )


def warm_labelled(runtime: Containers, request: ContainerRequest) -> ContainerRequest:
    """``request`` with its warm container's labels: slot, key, idle time and user."""
    image = runtime.inspect_image(request.image)
    key = warm.key(request, image.id if image is not None else request.image, mount_table=read_mount_table())
    slot = warm.slot(
        request.labels.get(WORKSPACE_LABEL, str(request.workdir)), request.labels.get(TARGET_LABEL, ""), request.user
    )
    labels = {
        **request.labels,
        SLOT_LABEL: slot,
        WARM_KEY_LABEL: key,
        KEEP_WARM_LABEL: str(request.keep_warm),
        USER_LABEL: str(os.getuid()),
    }
    return replace(request, labels=labels)


@contextmanager
def _slot_lock(directory: Path, slot: str) -> Iterator[bool]:
    """An exclusive lock on the slot, for as long as the session runs commands in its container; yields False when
    another command of this user holds it (it is not waited for: an open `xpcargo shell` may hold it for hours).
    Without a writable lock directory, the wrappers still refuse to run two commands at once in one container."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(_lock_file(directory, slot), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        yield True
        return
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(descriptor)


def _lock_file(directory: Path, slot: str) -> Path:
    return directory / f"{slot}.lock"


def retire(runtime: Containers, container: ContainerInfo) -> bool:
    """Remove a warm container unless a command runs in it; return whether it is gone. An idle one is first told
    to refuse new commands, so that none starts in it while it is removed; a busy one ends by itself once idle."""
    if container.running:
        try:
            code = _quietly(runtime, container.id, warm.retire_argv())
        except ContainerGoneError:
            code = 0
        if code != 0:
            return False
    runtime.remove(container.id)
    return True


def without_idle_warm(runtime: Containers, containers: Sequence[ContainerInfo]) -> list[ContainerInfo]:
    """``containers`` but the idle warm ones, which are retired (so that an image they use can go)."""
    return [c for c in containers if SLOT_LABEL not in c.labels or not retire(runtime, c)]


def warm_containers(runtime: Containers, *, workspace: Path | None = None) -> list[ContainerInfo]:
    """This user's warm containers, of one workspace or of all."""
    found = runtime.list_containers(f"{USER_LABEL}={os.getuid()}")
    return [
        container
        for container in found
        if SLOT_LABEL in container.labels
        and (workspace is None or container.labels.get(WORKSPACE_LABEL) == str(workspace))
    ]


def is_busy(runtime: Containers, container: ContainerInfo) -> bool | None:
    """Whether a command runs in a warm container; None when it could not be asked."""
    if not container.running:
        return False
    try:
        code = _quietly(runtime, container.id, warm.busy_argv())
    except XpcargoError:
        return None
    return code == 0


def stop(runtime: Containers, containers: Sequence[ContainerInfo]) -> None:
    """Remove these containers now, with whatever runs in them (`xpcargo down`)."""
    for container in containers:
        runtime.remove(container.id)


def this_host() -> str:
    """This machine's name and the boot of its kernel: where a pid in SESSION_LABEL can be looked up."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="ascii").strip()
    except OSError:
        boot = "unknown-boot"
    return f"{socket.gethostname()}/{boot}"


# Before a warm container's pid in SESSION_LABEL: xpcargo before warm containers reaped every container whose
# process was gone, and would remove warm ones; it takes this for no pid at all.
_WARM_OWNER = "warm-"


def labelled(request: ContainerRequest, purpose: str) -> ContainerRequest:
    """The request with the labels every container of xpcargo's carries: managed, whose, where, and a request id."""
    owner = f"{_WARM_OWNER if request.keep_warm else ''}{os.getpid()}"
    labels = {
        **request.labels,
        MANAGED_LABEL: "true",
        SESSION_LABEL: f"{purpose}:{owner}",
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


def reap_orphans(runtime: Containers) -> list[str]:
    """Remove xpcargo's containers whose process, on this machine, is gone; return their ids.

    A container ends by itself when its xpcargo process goes, even by SIGKILL; what is left to reap is a container
    whose process died between creating it and tying it to itself (or starting it, for a warm one: a running warm
    container outlives its process by design). Containers of other machines sharing the engine are never touched:
    their pids mean nothing here.
    """
    reaped = []
    host = this_host()
    for container in runtime.list_containers(f"{MANAGED_LABEL}=true"):
        owner = container.labels.get(SESSION_LABEL, "").rpartition(":")[2]
        warm = owner.startswith(_WARM_OWNER)
        owner = owner.removeprefix(_WARM_OWNER)
        if container.labels.get(HOST_LABEL) != host or not owner.isdigit() or _process_exists(int(owner)):
            continue
        if warm and container.running:
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
    when one fails with --fail-fast or on Ctrl-C. Cancelling ends what every session that shares it runs (a
    session's own container is removed; in a warm one, the command's process group gets the signal), and a session
    that has not started yet does not start."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: list[Session] = []
        self._cancelled = False
        # Containers the engine did not confirm removed when they were cancelled, and the warm containers where it
        # did not confirm that the cancelled command ended.
        self.left_behind: list[str] = []
        self.still_running: list[tuple[str, str]] = []

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def check(self) -> None:
        if self._cancelled:
            raise CancelledError("cancelled: another target failed or the build was interrupted")

    def _enter(self, session: Session) -> None:
        with self._lock:
            self._live.append(session)
        if self._cancelled:
            raise CancelledError("cancelled: another target failed or the build was interrupted")

    def _leave(self, session: Session) -> None:
        with self._lock:
            if session in self._live:
                self._live.remove(session)

    def cancel(self, signal_name: str = "TERM") -> None:
        with self._lock:
            self._cancelled = True
            live = list(self._live)
        for session in live:
            try:
                session.cancel(signal_name)
            except XpcargoError as error:
                if error.still_running:
                    self.still_running += error.still_running
                else:
                    self.left_behind.append(session.container_id)


@contextmanager
def open_session(
    runtime: Containers,
    request: ContainerRequest,
    *,
    purpose: str,
    cancellation: Cancellation | None = None,
    warm_locks: Path | None = None,
) -> Iterator[Session]:
    """A container for the ``with`` block: its own, or with ``request.keep_warm`` (and a directory for the slot
    locks, ``warm_locks``), a warm one that outlives it."""
    _make_mount_sources(request)
    if cancellation is not None:
        cancellation.check()
    if request.keep_warm > 0 and warm_locks is not None:
        warm_request = warm_labelled(runtime, request)
        slot = warm_request.labels[SLOT_LABEL]
        with _slot_lock(warm_locks, slot) as mine:
            if mine:
                with _warm_session(
                    runtime, warm_request, purpose=purpose, cancellation=cancellation, lock=_lock_file(warm_locks, slot)
                ) as warmed:
                    yield warmed
                return
        # Another command runs in the slot's container: this one gets a container of its own.
        request = replace(request, keep_warm=0)
    reap_orphans(runtime)
    container_id = runtime.start(labelled(request, purpose))
    session = Session(runtime, container_id, request)
    try:
        if cancellation is not None:
            cancellation._enter(session)
        yield session
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
        runtime.remove(container_id, unhurried=True)
    finally:
        if cancellation is not None:
            cancellation._leave(session)


@contextmanager
def _warm_session(
    runtime: Containers, request: ContainerRequest, *, purpose: str, cancellation: Cancellation | None, lock: Path
) -> Iterator[WarmSession]:
    """The container stays when the block ends, however it ends: the session has already stopped whatever an
    interrupt stopped, and the container ends by itself once idle."""
    session = WarmSession(runtime, request, purpose=purpose, lock=lock)
    try:
        if cancellation is not None:
            cancellation._enter(session)
        yield session
    except KeyboardInterrupt:
        raise InterruptError("interrupted") from None
    finally:
        session.close()
        if cancellation is not None:
            cancellation._leave(session)


def _make_mount_sources(request: ContainerRequest) -> None:
    for mount in request.mounts:
        # Created here, as the invoking user: the engine would create a missing bind source as root.
        if not mount.read_only and mount.source is None and mount.volume is None:
            try:
                mount.path.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ProjectError(
                    f"cannot create {mount.path}: {error.strerror}",
                    hint="point --target-dir (or CARGO_TARGET_DIR, CARGO_HOME) at a writable place",
                ) from None


def _remove_after_error(runtime: Containers, container_id: str, error: XpcargoError) -> None:
    """Remove the container on the way out of a failure; if the engine does not confirm it, the failure still
    says what happened first, and adds what may be left running."""
    try:
        runtime.remove(container_id)
    except (XpcargoError, KeyboardInterrupt):
        # A second Ctrl-C cuts the cleanup short: that too leaves the container unconfirmed.
        error.left_behind.append(container_id)
