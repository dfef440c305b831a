"""An engine's containers and the commands run in them.

Three things keep a container from outliving its command, or a command from hanging on a sick engine:
- a tether: the main process of a container started without one of its own reads its standard input, which xpcargo
  holds open through an attached socket; when xpcargo goes, however it goes (SIGKILL too), the kernel closes the
  socket, the main process sees the end of its input and exits, and the engine removes the container
  (``auto_remove``). A command run with ``tether`` is tied the same way through its exec's standard input (a warm
  container's commands: see ``warm``);
- a watch on the container's events (``events``), so that a container that dies under a command is told as it is:
  killed, OOM-killed, or stopped;
- a health check while a command's output is awaited (a command may be silent for minutes, an engine may not):
  an engine that does not answer a ping for ``engine_timeout`` seconds ends the wait with an error.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from xpcargo.container.docker import answers, socket_api
from xpcargo.container.docker.connection import Connection
from xpcargo.container.docker.errors import describe, retry, status, translate_exec
from xpcargo.container.docker.options import create_options, host_options, shown
from xpcargo.container.engine import EngineKind
from xpcargo.container.runtime import ContainerInfo, Output, RecordedExec
from xpcargo.container.spec import REQUEST_LABEL, ContainerRequest
from xpcargo.errors import ContainerDiedError, EngineError, EngineLostError, EngineUnavailableError, XpcargoError

# How long the removal on the way out may take before xpcargo says what it could not confirm and exits; and, when
# nobody waits (the work ended well), how long a busy engine may take to delete a large container (an image layer's,
# measured over 5 s on 2 cores while other builds ran).
_REMOVAL_DEADLINE = 5.0
_UNHURRIED_REMOVAL_DEADLINE = 60.0
_REMOVAL_ATTEMPTS = 3
# How long to wait for the engine's word on a container after a command in it ended by a signal.
_DEATH_GRACE = 2.0


class DockerContainers(Connection):
    def _keep_id(self) -> bool:
        """Whether containers need Podman's `keep-id` user namespace: under rootless Podman the invoking user is
        the container's root unless told otherwise, and a build's uid would be a subordinate one on the host. With
        `keep-id` the user's uid is the same inside and out (and root, for an image layer, a subordinate one, which
        owns nothing on the host that xpcargo does not give back). Asked once, when a container is first made."""
        if self._engine.kind is not EngineKind.PODMAN:
            return False
        if self._rootless is None:
            self._rootless = self.describe().rootless
        return self._rootless

    def start(self, request: ContainerRequest, *, main: Sequence[str] | None = None) -> str:
        import docker.types  # noqa: PLC0415

        mounts = [
            docker.types.Mount(
                target=str(m.path),
                source=m.volume if m.volume is not None else str(m.source or m.path),
                type="volume" if m.volume is not None else "bind",
                read_only=m.read_only,
                # A remote volume is filled by xpcargo alone: never with what the image holds at that path.
                no_copy=m.volume is not None,
            )
            for m in request.mounts
        ]
        request_id = request.labels.get(REQUEST_LABEL)
        since = time.time() - 1

        attempts: list[None] = []
        keep_id = self._keep_id()

        def create() -> str:
            # A create whose answer was lost (a dropped connection) may still have made the container: a retry finds
            # it rather than make a second one that nobody would ever remove.
            if attempts and request_id is not None:
                found = self._api_containers(f"{REQUEST_LABEL}={request_id}")
                if found:
                    return str(found[0]["Id"])
            attempts.append(None)
            host_config = self._client.api.create_host_config(
                mounts=mounts, **host_options(request, podman=self._engine.kind is EngineKind.PODMAN)
            )
            if keep_id:
                # The SDK accepts only "host" here; Podman's compatible API takes its own modes.
                host_config["UsernsMode"] = "keep-id"
            answer = self._client.api.create_container(
                request.image, host_config=host_config, **create_options(request, main)
            )
            return str(answer["Id"])

        container_id = self._call(f"create a container from {request.image}", create)
        try:
            if main is None:
                # Tied before it starts: a container that ran untied could outlive a process killed right then.
                self._tethers[container_id] = self._call(
                    "attach to the container",
                    lambda: self._client.api.attach_socket(container_id, params={"stdin": 1, "stream": 1}),
                )
            self._watches[container_id] = self._watch(container_id, since)
            self._call("start the container", lambda: self._client.api.start(container_id))
        except BaseException as error:
            try:
                self.remove(container_id)
            except XpcargoError:
                # A hung engine fails the start and then the removal: the start's failure is what happened.
                if not isinstance(error, XpcargoError):
                    raise
                error.left_behind.append(container_id)
            raise
        return container_id

    def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        on_stdout: Output,
        on_stderr: Output,
        tether: bool = False,
        answer_within: float | None = None,
        user: str | None = None,
    ) -> int:
        command = shown(argv)
        # A container started elsewhere (a warm one) is followed for as long as this command runs.
        watch = None
        if container_id not in self._watches:
            watch = self._watches[container_id] = self._watch(container_id, time.time() - 1)
        try:
            exec_id = self._exec_create(
                container_id,
                argv,
                env=env,
                workdir=workdir,
                command=command,
                tether=tether,
                timeout=answer_within,
                user=user,
            )
            try:
                return self._exec_start(
                    container_id, exec_id, command, on_stdout=on_stdout, on_stderr=on_stderr, timeout=answer_within
                )
            except EngineUnavailableError as error:
                # Once asked to start, the command may run whether or not the engine said so.
                raise EngineLostError(error.message, hint=error.hint) from None
        finally:
            if watch is not None:
                self.release(container_id)

    def recorded_exec(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str, token: str
    ) -> RecordedExec | None:
        if self._local is None:
            return None
        body = socket_api.encode(socket_api.exec_body(argv, env=env, workdir=str(workdir), stdin=True, user=user))
        quoted = socket_api.encode(token)
        if body.count(quoted) != 1:
            return None
        head, tail = body.split(quoted)
        return RecordedExec(
            socket=self._local.path,
            api=self._local.version,
            timeout=self._engine_timeout,
            body_head=head + b'"',
            body_tail=b'"' + tail,
        )

    def _exec_start(
        self,
        container_id: str,
        exec_id: str,
        command: str,
        *,
        on_stdout: Output,
        on_stderr: Output,
        timeout: float | None,
    ) -> int:
        try:
            if self._local is not None:
                # The engine's answer within the timeout; then the output, however long the command is silent.
                stream: Any = self._local.exec_start(exec_id, timeout=timeout or self._engine_timeout)
            else:
                stream = self._stream.exec_start(exec_id, stream=True, demux=True)
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors
            raise self._translate_exec(container_id, command, exc) from None
        with self._health_check(on_hung=stream.close) as hung:
            try:
                for out, err in stream:
                    if out:
                        on_stdout(out)
                    if err:
                        on_stderr(err)
            except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors
                # A stream cut by the health check ends however the cut found it: the hung engine is what happened.
                if not hung.is_set():
                    raise self._translate(f"read the output of `{command}`", exc) from None
        return self._exec_result(container_id, exec_id, command, hung=hung.is_set())

    def _exec_create(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        command: str,
        tether: bool,
        timeout: float | None,
        user: str | None,
    ) -> str:
        local = self._local

        def create() -> str:
            # An attached standard input is held by the stream's connection, which the kernel closes when this
            # process ends, however it ends.
            if local is not None:
                return local.exec_create(
                    container_id,
                    argv,
                    env=env,
                    workdir=str(workdir),
                    stdin=tether,
                    user=user or "",
                    timeout=timeout or self._engine_timeout,
                )
            api = self._client.api if timeout is None else self._client_like(timeout=timeout)
            created = api.exec_create(
                container_id, list(argv), environment=dict(env), workdir=str(workdir), stdin=tether, user=user or ""
            )
            return str(created["Id"])

        try:
            return retry(create) if timeout is None else create()
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors
            raise self._translate_exec(container_id, command, exc) from None

    def _translate_exec(self, container_id: str, command: str, exc: Exception) -> Exception:
        return translate_exec(self._engine, container_id, command, exc, timeout=self._engine_timeout)

    def _exec_result(self, container_id: str, exec_id: str, command: str, *, hung: bool) -> int:
        if hung:
            raise EngineUnavailableError(
                f"{self._engine.name} at {self._host} stopped answering while `{command}` ran "
                f"(no answer for {self._engine_timeout:.0f}s)",
                hint=f"check the engine (`{self._engine.cli} info`), then run the command again; "
                "XPCARGO_ENGINE_TIMEOUT sets how long xpcargo waits",
            )
        try:
            result = self._exec_state(exec_id)
        except Exception as exc:  # noqa: BLE001 - the stream ended because the connection did: say that first
            raise EngineUnavailableError(
                f"lost the connection to {self._engine.name} at {self._host} while `{command}` ran: {describe(exc)}",
                hint="check that the engine is still running, then run the command again",
            ) from None
        code = result.get("ExitCode") if result is not None else None
        if code is None or code >= 128:
            self._raise_if_died(container_id, command, code)
        if result is None or result.get("Running") or code is None:
            raise EngineUnavailableError(
                f"lost the output of `{command}` while it still ran: the connection to {self._engine.name} at "
                f"{self._host} dropped",
                hint="check that the engine is still running, then run the command again",
            )
        return int(code)

    def _exec_state(self, exec_id: str) -> dict[str, Any] | None:
        """The exec's `Running` and `ExitCode`; None when the container is gone, and its execs with it."""
        if self._local is not None:
            return self._local.exec_inspect(exec_id, timeout=self._engine_timeout)
        try:
            found: dict[str, Any] = self._client.api.exec_inspect(exec_id)
        except Exception as exc:
            if status(exc) == 404:
                return None
            raise
        return found

    def _raise_if_died(self, container_id: str, command: str, code: int | None) -> None:
        watch = self._watches.get(container_id)
        if watch is None:
            return
        death = watch.death(grace=_DEATH_GRACE)
        if death is not None:
            raise ContainerDiedError(
                f"the container running `{command}` {death}",
                hint=(
                    "give the engine more memory, or build with fewer jobs (`-j 1`)"
                    if "OOM" in death
                    else "something outside xpcargo stopped the container; run the command again"
                ),
            )
        if watch.oom and code == 137:
            raise ContainerDiedError(
                f"`{command}` was killed by the kernel's OOM killer in the container (exit 137)",
                hint="give the engine more memory, or build with fewer jobs (`-j 1`)",
            )

    @contextmanager
    def _health_check(self, *, on_hung: Callable[[], None]) -> Iterator[threading.Event]:
        """While the block waits on a stream, ping the engine on a connection of its own; after ``engine_timeout``
        seconds without an answer, call ``on_hung`` (which ends the wait) and set the event it yields."""
        hung, stop = threading.Event(), threading.Event()
        interval = max(self._engine_timeout / 3, 0.5)
        local = self._local
        ping: Callable[[], object] = (
            (lambda: local.ping(timeout=interval)) if local is not None else self._client_like(timeout=interval).ping
        )

        def watch() -> None:
            last_answer = time.monotonic()
            while not stop.wait(interval):
                # Any failure to answer counts as silence.
                with suppress(Exception):
                    ping()
                    last_answer = time.monotonic()
                if time.monotonic() - last_answer >= self._engine_timeout:
                    hung.set()
                    on_hung()
                    return

        thread = threading.Thread(target=watch, name="xpcargo-engine-health", daemon=True)
        thread.start()
        try:
            yield hung
        finally:
            stop.set()

    def exec_interactive(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str | None = None
    ) -> int:
        """Run ``argv`` attached to this terminal. The SDK has no terminal handling, so this uses the docker CLI."""
        cli = shutil.which("docker")
        if cli is None:
            raise EngineError(
                "an interactive shell needs the `docker` command-line client, which is not on PATH",
                hint="install it (Debian: `apt-get install docker-cli` or `docker.io`), or pass a command after --",
            )
        command = [cli, "--host", self._host, "exec", "--interactive", "--tty", "--workdir", str(workdir)]
        if user is not None:
            command += ["--user", user]
        for name, value in env.items():
            command += ["--env", f"{name}={value}"]
        return subprocess.call([*command, container_id, *argv])

    def changes(self, container_id: str) -> list[tuple[str, str]]:
        return self._call("list the container's changes", lambda: answers.changes(self._client.api.diff(container_id)))

    def remove(self, container_id: str, *, unhurried: bool = False) -> None:
        """Untie the container (which ends it, with no request to the engine), then remove it for certain, within
        a deadline: on the way out of a Ctrl-C, a hung engine must not hold xpcargo."""
        watch = self._watches.pop(container_id, None)
        if watch is not None:
            watch.close()
        tether = self._tethers.pop(container_id, None)
        if tether is not None:
            untie(tether)
        done = threading.Event()
        failure: list[Exception] = []
        deadline = _UNHURRIED_REMOVAL_DEADLINE if unhurried else _REMOVAL_DEADLINE
        local = self._local
        remove_container: Callable[[], None]
        if local is not None:
            remove_container = lambda: local.remove_container(container_id, timeout=deadline)  # noqa: E731
        else:
            remover = self._client_like(timeout=deadline)
            remove_container = lambda: remover.remove_container(container_id, force=True, v=True)  # noqa: E731

        def remove() -> None:
            for attempt in range(_REMOVAL_ATTEMPTS):
                try:
                    remove_container()
                except Exception as exc:  # noqa: BLE001 - reported below as xpcargo's own error
                    code = status(exc)
                    # 404: gone already. 409: the engine is already removing it (auto_remove after the untie).
                    # Podman may also refuse while the container ends by itself ("could not be stopped ...
                    # container state improper"): asked again a moment later, it removes it or says it is gone.
                    if code is not None and code not in (404, 409) and attempt + 1 < _REMOVAL_ATTEMPTS:
                        time.sleep(0.25)
                        continue
                    if code not in (404, 409):
                        failure.append(exc)
                break
            done.set()

        threading.Thread(target=remove, name="xpcargo-remove", daemon=True).start()
        if not done.wait(deadline + 1) or failure:
            cause = describe(failure[0]) if failure else f"no answer within {deadline:.0f}s"
            raise EngineUnavailableError(
                f"{self._engine.name} at {self._host} did not remove container {container_id[:12]}: {cause}",
                hint=f"check the engine (`{self._engine.cli} info`)",
            )

    def release(self, container_id: str) -> None:
        watch = self._watches.pop(container_id, None)
        if watch is not None:
            watch.close()

    def _api_containers(self, label: str) -> list[dict[str, Any]]:
        if self._local is not None:
            return self._local.containers(label, timeout=self._engine_timeout)
        found: list[dict[str, Any]] = self._client.api.containers(all=True, filters={"label": label})
        return found

    def list_containers(self, label: str) -> list[ContainerInfo]:
        raw = self._call("list containers", lambda: self._api_containers(label))
        return answers.container_infos(raw)

    def containers_using(self, image_id: str) -> list[ContainerInfo]:
        def containers() -> list[dict[str, Any]]:
            # `ancestor` matches the image and every image built on it: the engine would refuse to remove it too.
            found: list[dict[str, Any]] = self._client.api.containers(all=True, filters={"ancestor": image_id})
            return found

        return answers.container_infos(self._call(f"list the containers of image {image_id[7:19]}", containers))

    def put_archive(self, container_id: str, directory: Path, archive: Path) -> None:
        def put() -> None:
            with archive.open("rb") as stream:
                if not self._stream.put_archive(container_id, str(directory), stream):
                    raise EngineError(f"the Docker engine refused to unpack {archive.name} at {directory}")

        # An unpack of the same archive again is harmless: retried like any other call.
        self._call(f"copy files to {directory} in container {container_id[:12]}", put)


def untie(tether: Any) -> None:
    """Close xpcargo's end of the tether: the container's main process reads the end of its input and exits.
    Only a shutdown reaches the engine; closing the Python object leaves the socket open underneath."""
    raw = getattr(tether, "_sock", tether)
    with suppress(OSError):
        raw.shutdown(socket.SHUT_WR)
    with suppress(OSError):
        raw.close()
