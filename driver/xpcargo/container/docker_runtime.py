"""The Docker engine, or Podman through its Docker-compatible API, as a ``Runtime``: the only module that imports
the Docker SDK.

Everything else asks for what it needs (an image's presence, an import, a container, an exec) in xpcargo's own
terms (``container.spec``), and gets xpcargo errors back: never a ``docker`` exception, never a traceback.

Three things keep a container from outliving its command, or a command from hanging on a sick engine:
- a tether: the main process of a container started without one of its own reads its standard input, which xpcargo
  holds open through an attached socket; when xpcargo goes, however it goes (SIGKILL too), the kernel closes the
  socket, the main process sees the end of its input and exits, and the engine removes the container
  (``auto_remove``). A command run with ``tether`` is tied the same way through its exec's standard input (a warm
  container's commands: see ``warm``);
- a watch on the container's events, so that a container that dies under a command is told as it is: killed,
  OOM-killed, or stopped;
- a health check while a command's output is awaited (a command may be silent for minutes, an engine may not):
  an engine that does not answer a ping for ``engine_timeout`` seconds ends the wait with an error.
"""

from __future__ import annotations

import importlib.util
import json
import math
import shutil
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

from xpcargo.container import location
from xpcargo.container.engine import Engine, EngineKind, check_supported, identify
from xpcargo.container.spec import (
    KEEPER_DIR,
    REQUEST_LABEL,
    ContainerInfo,
    ContainerRequest,
    EngineDetails,
    ImageDetails,
    ImageInfo,
    Output,
    VolumeInfo,
    keeper,
)
from xpcargo.errors import (
    ConfigError,
    ContainerDiedError,
    ContainerGoneError,
    EngineError,
    EngineUnavailableError,
    XpcargoError,
)

if TYPE_CHECKING:
    import docker

_T = TypeVar("_T")
# The main process of every container: it ends, and with it the container, when xpcargo's end of the tether closes.
_TETHERED_MAIN = ["sh", "-c", "cat >/dev/null"]
# The API version of the ping's client: any the floor accepts (the ping's URL carries none).
_PROBE_API = "1.41"
# The version of Podman's own API that xpcargo asks (`/v4.0.0/libpod/info`): every Podman 4 and 5 answers it.
_PODMAN_API = "4.0.0"
# How long the removal on the way out may take before xpcargo says what it could not confirm and exits.
_REMOVAL_DEADLINE = 5.0
_REMOVAL_ATTEMPTS = 3
# How long to wait for the engine's word on a container after a command in it ended by a signal.
_DEATH_GRACE = 2.0


def _transient(exc: BaseException) -> bool:
    """Engine errors worth another try: the daemon restarting, a dropped connection, a 5xx. Not a timeout: an engine
    that did not answer in time is hung, and asking again would only double the wait."""
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    if isinstance(exc, requests.exceptions.Timeout):
        return False
    if isinstance(exc, requests.exceptions.ConnectionError):
        return True
    if isinstance(exc, docker.errors.APIError):
        status = exc.status_code or 0
        return status >= 500 and "No such" not in str(exc)
    return False


def _root_os_error(exc: BaseException) -> OSError | None:
    """requests buries the socket's own words (`No such file or directory`) a few exceptions deep."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen or not isinstance(current, BaseException):
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current
        pending += [current.__cause__, current.__context__, *current.args]
    return None


def _describe(exc: BaseException) -> str:
    import docker.errors  # noqa: PLC0415

    root = _root_os_error(exc)
    if root is not None:
        return str(root.strerror)
    if isinstance(exc, docker.errors.APIError) and exc.explanation:
        text = exc.explanation
        return text if isinstance(text, str) else str(text)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _check_client_config() -> None:
    """The Docker client config (``~/.docker/config.json``, or DOCKER_CONFIG's) that the SDK decodes when a client
    is made: a malformed registry login there would otherwise read as an engine that is not running."""
    import docker.auth  # noqa: PLC0415

    # The SDK's own search (DOCKER_CONFIG, ~/.docker/config.json, ~/.dockercfg), so that the file checked is the
    # one it reads.
    found = docker.auth.config.find_config_file()  # type: ignore[attr-defined]
    if found is None:
        return
    path = str(found)
    try:
        docker.auth.load_config(path)
    except Exception as exc:  # noqa: BLE001 - base64, unpacking and the SDK's own errors, from the user's file
        raise ConfigError(
            f"{path}: {_bad_login(path) or 'a registry login'} is malformed: {_describe(exc)}",
            hint="run `docker login` for that registry again, or remove the entry (each `auths.<registry>.auth` is "
            "the base64 of `user:password`)",
        ) from None


def _bad_login(path: str) -> str | None:
    """Which entry of the client config's ``auths`` cannot be decoded, for the message."""
    import docker.auth  # noqa: PLC0415

    try:
        logins = json.loads(Path(path).read_text(encoding="utf-8")).get("auths") or {}
        entries = list(logins.items())
    except (OSError, ValueError, AttributeError):
        return None
    for registry, entry in entries:
        try:
            docker.auth.decode_auth(entry["auth"])
        except Exception:  # noqa: BLE001 - whatever the SDK's decoding raises is what is wrong with this entry
            return f"the `auth` of `auths.{registry}`"
    return None


class DockerRuntime:
    """A connection to a Docker engine (or one that speaks its API)."""

    def __init__(
        self,
        client: docker.DockerClient,
        host: str,
        *,
        engine_timeout: float,
        connection: Mapping[str, Any],
        engine: Engine | None = None,
    ) -> None:
        self._client = client
        self._host = host
        self._engine = engine or Engine(kind=EngineKind.DOCKER, version="", api_version="", host=host)
        # Rootless Podman or not: asked when first needed (see ``_keep_id``), never on the way to a warm container.
        self._rootless: bool | None = None
        # How to open another connection to the same engine (base URL, TLS, API version).
        self._connection = dict(connection)
        # Builds can be silent for minutes (a long link); the stream must not time out like a control call.
        self._stream = self._client_like(timeout=None)
        self._engine_timeout = engine_timeout
        # Per container: xpcargo's end of the tether (kept referenced: dropping it ends the container) and the
        # watch on its events.
        self._tethers: dict[str, Any] = {}
        self._watches: dict[str, _ContainerWatch] = {}

    @property
    def host(self) -> str:
        return self._host

    @classmethod
    def connect(
        cls, environ: Mapping[str, str], *, address: location.EngineAddress | None = None, engine_timeout: float = 30
    ) -> DockerRuntime:
        """Connect to the engine at ``address``, by default the one the environment names (``location.locate``)."""
        import docker  # noqa: PLC0415 - the SDK pulls in requests and urllib3: keep it off `xpcargo --help`

        address = address or location.locate(environ)
        host = address.url
        if address.needs_ssh and importlib.util.find_spec("paramiko") is None:
            # The SDK's own words ("Install paramiko package...") would come with a hint to start the engine.
            raise EngineUnavailableError(
                f"cannot reach the Docker engine at {host}: ssh:// needs the paramiko package, which is not installed",
                hint="install xpcargo with its ssh extra: `pip install 'xpcargo[ssh]'`",
            )
        # The docker context's endpoint (or Podman's socket), when that is where the engine is: the SDK reads
        # DOCKER_HOST only.
        environ = {**environ, "DOCKER_HOST": host}
        _check_client_config()
        try:
            connection: dict[str, Any] = docker.utils.kwargs_from_env(environment={**environ, "DOCKER_HOST": host})  # type: ignore[attr-defined]
            # One request says which engine this is, its API version, and that it is there: the ping (see
            # ``container.engine``). A client given a version asks nothing on its own.
            probe = docker.APIClient(version=_PROBE_API, timeout=math.ceil(engine_timeout), **connection)
            answer = probe.get(f"{probe.base_url}/_ping")
            answer.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - the SDK raises a zoo of types for "not there"
            raise EngineUnavailableError(
                f"cannot reach a container engine at {host}: {_describe(exc)}",
                hint="start Docker (`sudo systemctl start docker`) or Podman (`systemctl --user start podman.socket`, "
                "or `podman system service --time=0 &`), or point DOCKER_HOST at a running engine",
            ) from None
        engine = identify(
            server=answer.headers.get("Server", ""), api_version=answer.headers.get("Api-Version", ""), host=host
        )
        check_supported(engine)
        connection["version"] = engine.api_version
        client = docker.DockerClient(timeout=math.ceil(engine_timeout), **connection)
        return cls(client, host, engine_timeout=engine_timeout, connection=connection, engine=engine)

    @property
    def engine(self) -> Engine:
        return self._engine

    def describe(self) -> EngineDetails:
        if self._engine.kind is EngineKind.PODMAN:
            # Podman's Docker-compatible `/info` does not say whether it runs rootless; its own API does.
            raw: dict[str, Any] = self._call("describe itself", self._podman_info)
            host_info, store = raw.get("host") or {}, raw.get("store") or {}
            return EngineDetails(
                engine=self._engine,
                rootless=bool((host_info.get("security") or {}).get("rootless")),
                architecture=str(host_info.get("arch", "")),
                operating_system=str((host_info.get("distribution") or {}).get("distribution", "")),
                storage_driver=str(store.get("graphDriverName", "")),
            )
        info: dict[str, Any] = self._call("describe itself", self._client.info)
        return EngineDetails(
            engine=self._engine,
            rootless=any("name=rootless" in option for option in info.get("SecurityOptions") or ()),
            architecture=str(info.get("Architecture", "")),
            operating_system=str(info.get("OperatingSystem", "")),
            storage_driver=str(info.get("Driver", "")),
        )

    def _podman_info(self) -> dict[str, Any]:
        api = self._client.api
        answer = api.get(f"{api.base_url}/v{_PODMAN_API}/libpod/info", timeout=math.ceil(self._engine_timeout))
        answer.raise_for_status()
        info: dict[str, Any] = answer.json()
        return info

    def _name(self, reference: str) -> str:
        """An image name as xpcargo gave it. Podman files a name without a registry under one: `localhost/` when
        loaded, `docker.io/` when tagged through its Docker-compatible API; it finds the image by the short name too,
        which is what xpcargo compares."""
        if self._engine.kind is EngineKind.PODMAN:
            for registry in ("localhost/", "docker.io/"):
                if reference.startswith(registry) and not reference.startswith(f"{registry}library/"):
                    return reference.removeprefix(registry)
        return reference

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

    def _client_like(self, *, timeout: float | None) -> docker.APIClient:
        """Another connection to the same engine: a watch or a health check must not queue behind a stream."""
        import docker  # noqa: PLC0415

        return docker.APIClient(
            timeout=None if timeout is None else math.ceil(timeout),  # type: ignore[arg-type]
            **self._connection,
        )

    def _call(self, what: str, operation: Callable[[], _T]) -> _T:
        try:
            return _retry(operation)
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors; anything else is re-raised
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: Exception) -> Exception:
        import docker.errors  # noqa: PLC0415
        import requests  # noqa: PLC0415

        if isinstance(exc, requests.exceptions.Timeout):
            return EngineUnavailableError(
                f"{self._engine.name} at {self._host} did not answer within {self._engine_timeout:.0f}s while trying "
                f"to {what}",
                hint=f"check the engine (`{self._engine.cli} info`); XPCARGO_ENGINE_TIMEOUT sets how long xpcargo "
                "waits",
            )
        if isinstance(exc, requests.exceptions.ConnectionError):
            return EngineUnavailableError(
                f"lost {self._engine.name} at {self._host} while trying to {what}: {_describe(exc)}",
                hint="check that the engine is still running, then run the command again",
            )
        if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException):
            return EngineError(f"{self._engine.name} could not {what}: {_describe(exc)}")
        return exc

    # --- images --------------------------------------------------------------------------------------------------

    def architecture(self) -> str:
        info: dict[str, Any] = self._call("report its architecture", self._client.info)
        return str(info.get("Architecture", ""))

    def image_exists(self, reference: str) -> bool:
        import docker.errors  # noqa: PLC0415

        def inspect() -> bool:
            try:
                self._client.api.inspect_image(reference)  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                return False
            return True

        return self._call(f"inspect image {reference}", inspect)

    def inspect_image(self, reference: str) -> ImageDetails | None:
        import docker.errors  # noqa: PLC0415

        def inspect() -> ImageDetails | None:
            try:
                raw: dict[str, Any] = self._client.api.inspect_image(reference)  # type: ignore[no-untyped-call]
            except docker.errors.ImageNotFound:
                return None
            return ImageDetails(
                id=str(raw["Id"]),
                tags=tuple(self._name(tag) for tag in raw.get("RepoTags") or ()),
                labels=dict((raw.get("Config") or {}).get("Labels") or {}),
                layers=tuple(str(layer) for layer in (raw.get("RootFS") or {}).get("Layers") or ()),
            )

        return self._call(f"inspect image {reference}", inspect)

    def list_images(self, label: str) -> list[ImageInfo]:
        raw: list[dict[str, Any]] = self._call("list images", lambda: self._client.api.images(filters={"label": label}))
        return [
            ImageInfo(
                id=item["Id"],
                tags=tuple(self._name(tag) for tag in item.get("RepoTags") or () if tag != "<none>:<none>"),
                labels=dict(item.get("Labels") or {}),
                size=int(item.get("Size", 0)),
                created=str(item.get("Created", "")),
            )
            for item in raw
        ]

    def remove_image(self, image: str) -> None:
        self._call(f"remove image {image}", lambda: self._client.api.remove_image(image, noprune=False))

    def import_rootfs(self, tarball: Path, *, changes: Sequence[str]) -> str:
        """Import a root filesystem tarball as an untagged image and return its id."""

        def run() -> str:
            answer = self._stream.import_image_from_file(str(tarball), changes=list(changes))
            # The engine answers with one JSON object per line; the last names the new image.
            for line in reversed(str(answer).strip().splitlines()):
                status = json.loads(line)
                if "error" in status:
                    raise EngineError(f"{self._engine.name} could not import {tarball.name}: {status['error']}")
                if str(status.get("status", "")).startswith("sha256:"):
                    return str(status["status"])
            raise EngineError(f"{self._engine.name} imported {tarball.name} but named no image: {answer!r}")

        # An import is not idempotent (a retry would leave a second copy behind), so it is tried once.
        try:
            return run()
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own error right here
            raise EngineError(f"{self._engine.name} could not import {tarball.name}: {_describe(exc)}") from None

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self._call(f"tag {image_id} as {repository}:{tag}", lambda: self._client.api.tag(image_id, repository, tag))

    def save_image(self, reference: str, destination: Path) -> None:
        def save() -> None:
            with destination.open("wb") as stream:
                for chunk in self._stream.get_image(reference):
                    stream.write(chunk)

        self._call(f"save image {reference}", save)

    def load_image(self, source: Path, *, base: str | None = None) -> list[str]:
        if base is None or self._engine.kind is not EngineKind.PODMAN:
            # Docker skips a layer it holds without reading it, so an archive may leave it out.
            return self._load(source)
        # Podman refuses an archive without every layer's tar ("Some layer tarfiles are missing"): the ones left
        # out come from `base`, saved for the purpose.
        donor, complete = source.with_name(f"{source.name}.base"), source.with_name(f"{source.name}.complete")
        try:
            self.save_image(base, donor)
            _fill_layers(source, donor, complete)
            donor.unlink()
            return self._load(complete)
        finally:
            donor.unlink(missing_ok=True)
            complete.unlink(missing_ok=True)

    def _load(self, source: Path) -> list[str]:
        with source.open("rb") as stream:
            return self._load_stream(stream, what=source.name)

    def save_chunks(self, reference: str) -> Iterator[bytes]:
        # The request is made here, so that an engine that lacks the image says so before anything is sent.
        chunks = self._call(f"save image {reference}", lambda: self._stream.get_image(reference, chunk_size=1 << 20))

        def stream() -> Iterator[bytes]:
            try:
                yield from chunks
            except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors
                raise self._translate(f"save image {reference}", exc) from None

        return stream()

    def load_chunks(self, chunks: Iterable[bytes]) -> list[str]:
        # A generator is sent with chunked transfer encoding, as it comes: nothing is held in memory or on disk.
        return self._load_stream(chunks, what="an image")

    def _load_stream(self, data: Iterable[bytes] | IO[bytes], *, what: str) -> list[str]:
        """Load a `docker save` archive from a file or a stream of chunks; return the names it gave (as xpcargo
        named them: see ``_name``)."""

        def load() -> list[str]:
            loaded: list[str] = []
            for status in self._stream.load_image(data):  # type: ignore[no-untyped-call]
                if "error" in status:
                    raise EngineError(f"{self._engine.name} could not load {what}: {status['error']}")
                text = str(status.get("stream", ""))
                if text.startswith("Loaded image: "):
                    loaded.append(self._name(text.removeprefix("Loaded image: ").strip()))
            return loaded

        # A load is not idempotent in what it reports, and the archive can be read once: tried once.
        try:
            return load()
        except XpcargoError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own error right here
            raise self._translate(f"load {what}", exc) from None

    # --- volumes -------------------------------------------------------------------------------------------------

    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> VolumeInfo:
        # The engine answers a create of a volume that exists with that volume: two commands may ask at once.
        raw: dict[str, Any] = self._call(
            f"create volume {name}", lambda: self._client.api.create_volume(name, labels=dict(labels))
        )
        return VolumeInfo(name=str(raw["Name"]), labels=dict(raw.get("Labels") or {}), created=str(raw["CreatedAt"]))

    def list_volumes(self, label: str) -> list[VolumeInfo]:
        def volumes() -> list[VolumeInfo]:
            raw = self._client.api.volumes(filters={"label": label}).get("Volumes") or []
            users: dict[str, list[str]] = {}
            if raw:
                for container in self._client.api.containers(all=True):
                    for mount in container.get("Mounts") or ():
                        if mount.get("Type") == "volume":
                            users.setdefault(str(mount.get("Name")), []).append(str(container["Id"]))
            return [
                VolumeInfo(
                    name=str(item["Name"]),
                    labels=dict(item.get("Labels") or {}),
                    created=str(item.get("CreatedAt", "")),
                    users=tuple(users.get(str(item["Name"]), ())),
                )
                for item in raw
            ]

        return self._call("list volumes", volumes)

    def remove_volume(self, name: str) -> bool:
        import docker.errors  # noqa: PLC0415

        def remove() -> bool:
            try:
                self._client.api.remove_volume(name)
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as exc:
                # 409: a container uses it; the engine never removes such a volume.
                if exc.status_code == 409:
                    return False
                raise
            return True

        return self._call(f"remove volume {name}", remove)

    def put_archive(self, container_id: str, directory: Path, archive: Path) -> None:
        def put() -> None:
            with archive.open("rb") as stream:
                if not self._stream.put_archive(container_id, str(directory), stream):
                    raise EngineError(f"the Docker engine refused to unpack {archive.name} at {directory}")

        # An unpack of the same archive again is harmless: retried like any other call.
        self._call(f"copy files to {directory} in container {container_id[:12]}", put)

    # --- containers ----------------------------------------------------------------------------------------------

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
                mounts=mounts,
                network_mode=request.network,
                init=True,
                auto_remove=True,
                cap_drop=["ALL"],
                cap_add=list(request.capabilities) or None,
                security_opt=["no-new-privileges"],
                tmpfs=_tmpfs(request, podman=self._engine.kind is EngineKind.PODMAN),
                read_only=request.confined,
            )
            if keep_id:
                # The SDK accepts only "host" here; Podman's compatible API takes its own modes.
                host_config["UsernsMode"] = "keep-id"
            answer = self._client.api.create_container(
                request.image,
                command=list(main) if main is not None else _TETHERED_MAIN,
                # An open stdin that closes for good when its one attached client goes: the tether.
                stdin_open=main is None,
                detach=False,
                user=keeper(request.user) if request.confined else request.user,
                working_dir=str(request.workdir),
                # Each command gets the environment with its exec; the main process needs none.
                labels=dict(request.labels),
                host_config=host_config,
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
            self._watches[container_id] = _ContainerWatch(self._client_like(timeout=None), container_id, since)
            self._call("start the container", lambda: self._client.api.start(container_id))
        except BaseException:
            self.remove(container_id)
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
        command = _shown(argv)
        # A container started elsewhere (a warm one) is followed for as long as this command runs.
        watch = None
        if container_id not in self._watches:
            watch = self._watches[container_id] = _ContainerWatch(
                self._client_like(timeout=None), container_id, time.time() - 1
            )
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
                    raise self._translate(f"read the output of `{command}`", exc) from None
            return self._exec_result(container_id, exec_id, command, hung=hung.is_set())
        finally:
            if watch is not None:
                self.release(container_id)

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
        api = self._client.api if timeout is None else self._client_like(timeout=timeout)

        def create() -> str:
            # An attached standard input is held by the stream's connection, which the kernel closes when this
            # process ends, however it ends.
            created = api.exec_create(
                container_id, list(argv), environment=dict(env), workdir=str(workdir), stdin=tether, user=user or ""
            )
            return str(created["Id"])

        try:
            return _retry(create) if timeout is None else create()
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors
            raise self._translate_exec(container_id, command, exc) from None

    def _translate_exec(self, container_id: str, command: str, exc: Exception) -> Exception:
        """An exec refused because the container is gone or stopping: nothing ran, which the session may mend."""
        import docker.errors  # noqa: PLC0415

        if isinstance(exc, docker.errors.APIError) and exc.status_code in (404, 409):
            return ContainerGoneError(
                f"container {container_id[:12]} was no longer running when asked to run `{command}`",
                hint="run the command again",
            )
        return self._translate(f"start `{command}` in the container", exc)

    def _exec_result(self, container_id: str, exec_id: str, command: str, *, hung: bool) -> int:
        import docker.errors  # noqa: PLC0415

        if hung:
            raise EngineUnavailableError(
                f"{self._engine.name} at {self._host} stopped answering while `{command}` ran "
                f"(no answer for {self._engine_timeout:.0f}s)",
                hint=f"check the engine (`{self._engine.cli} info`), then run the command again; "
                "XPCARGO_ENGINE_TIMEOUT sets how long xpcargo waits",
            )
        try:
            result = self._client.api.exec_inspect(exec_id)
        except docker.errors.NotFound:
            result = None  # the container is gone, and its execs with it
        except Exception as exc:  # noqa: BLE001 - the stream ended because the connection did: say that first
            raise EngineUnavailableError(
                f"lost the connection to {self._engine.name} at {self._host} while `{command}` ran: {_describe(exc)}",
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
        pinger = self._client_like(timeout=interval)

        def watch() -> None:
            last_answer = time.monotonic()
            while not stop.wait(interval):
                # Any failure to answer counts as silence.
                with suppress(Exception):
                    pinger.ping()
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
        kinds = {0: "C", 1: "A", 2: "D"}

        def diff() -> list[tuple[str, str]]:
            answer = self._client.api.diff(container_id) or []
            return [(kinds.get(int(entry["Kind"]), "C"), str(entry["Path"])) for entry in answer]

        return self._call("list the container's changes", diff)

    def remove(self, container_id: str) -> None:
        """Untie the container (which ends it, with no request to the engine), then remove it for certain, within
        a deadline: on the way out of a Ctrl-C, a hung engine must not hold xpcargo."""
        import docker.errors  # noqa: PLC0415

        watch = self._watches.pop(container_id, None)
        if watch is not None:
            watch.close()
        tether = self._tethers.pop(container_id, None)
        if tether is not None:
            _untie(tether)
        done = threading.Event()
        failure: list[Exception] = []
        remover = self._client_like(timeout=_REMOVAL_DEADLINE)

        def remove() -> None:
            for attempt in range(_REMOVAL_ATTEMPTS):
                try:
                    remover.remove_container(container_id, force=True, v=True)
                except docker.errors.NotFound:
                    pass
                except docker.errors.APIError as exc:
                    # 409: the engine is already removing it (auto_remove after the untie). Podman may also refuse
                    # while the container ends by itself ("could not be stopped ... container state improper"):
                    # asked again a moment later, it removes it or says it is gone.
                    if exc.status_code != 409:
                        if attempt + 1 < _REMOVAL_ATTEMPTS:
                            time.sleep(0.25)
                            continue
                        failure.append(exc)
                except Exception as exc:  # noqa: BLE001 - reported below as xpcargo's own error
                    failure.append(exc)
                break
            done.set()

        threading.Thread(target=remove, name="xpcargo-remove", daemon=True).start()
        if not done.wait(_REMOVAL_DEADLINE + 1) or failure:
            cause = _describe(failure[0]) if failure else f"no answer within {_REMOVAL_DEADLINE:.0f}s"
            raise EngineUnavailableError(
                f"{self._engine.name} at {self._host} did not remove container {container_id[:12]}: {cause}",
                hint=f"check the engine (`{self._engine.cli} info`)",
            )

    def release(self, container_id: str) -> None:
        watch = self._watches.pop(container_id, None)
        if watch is not None:
            watch.close()

    def _api_containers(self, label: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._client.api.containers(all=True, filters={"label": label})
        return found

    def list_containers(self, label: str) -> list[ContainerInfo]:
        raw = self._call("list containers", lambda: self._api_containers(label))
        return _container_infos(raw)

    def containers_using(self, image_id: str) -> list[ContainerInfo]:
        def containers() -> list[dict[str, Any]]:
            # `ancestor` matches the image and every image built on it: the engine would refuse to remove it too.
            found: list[dict[str, Any]] = self._client.api.containers(all=True, filters={"ancestor": image_id})
            return found

        return _container_infos(self._call(f"list the containers of image {image_id[7:19]}", containers))


def _archive_json(archive: tarfile.TarFile, name: str) -> Any:
    member = archive.extractfile(name)
    if member is None:
        raise EngineError(f"`{name}` in an image archive is not a file")
    return json.load(member)


def _fill_layers(partial: Path, donor: Path, destination: Path) -> None:
    """Write ``partial`` (a `docker save` archive that leaves out layers) to ``destination`` with the layers it
    leaves out taken from ``donor`` (a saved image that holds them), matched by diff_id."""
    with tarfile.open(partial) as archive, tarfile.open(donor) as giver:
        given = _archive_json(giver, "manifest.json")[0]
        given_ids = _archive_json(giver, given["Config"])["rootfs"]["diff_ids"]
        layer_of = dict(zip(given_ids, given["Layers"], strict=True))
        manifest = _archive_json(archive, "manifest.json")[0]
        diff_ids = _archive_json(archive, manifest["Config"])["rootfs"]["diff_ids"]
        present = set(archive.getnames())
        with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as out:
            for member in archive.getmembers():
                out.addfile(member, archive.extractfile(member) if member.isfile() else None)
            for name, diff_id in zip(manifest["Layers"], diff_ids, strict=True):
                if name in present:
                    continue
                if diff_id not in layer_of:
                    raise EngineError(f"the engine's copy of the base image has no layer {diff_id[:19]}")
                member = giver.getmember(layer_of[diff_id])
                copy = tarfile.TarInfo(name)
                copy.size, copy.mode = member.size, 0o644
                out.addfile(copy, giver.extractfile(member))


def _tmpfs(request: ContainerRequest, *, podman: bool) -> dict[str, str]:
    """Empty file systems: over each hidden path; and in a confined container, the scratch directories (programs
    run from there: doctests, configure checks) and the keeper's own directory, which only the keeper may write
    (the container's own user: Podman says so with `U`, and refuses Docker's `uid=`)."""
    mounts = {str(path): "" for path in request.hidden}
    if request.confined:
        mounts.update({str(path): "exec,mode=1777" for path in request.scratch})
        uid, _, gid = keeper(request.user).partition(":")
        mounts[str(KEEPER_DIR)] = "U,mode=0755" if podman else f"uid={uid},gid={gid},mode=0755"
    return mounts


def _container_infos(raw: list[dict[str, Any]]) -> list[ContainerInfo]:
    return [
        ContainerInfo(
            id=str(item["Id"]),
            labels=dict(item.get("Labels") or {}),
            running=item.get("State") == "running",
            image=str(item.get("Image", "")),
            created=float(item.get("Created") or 0),
        )
        for item in raw
    ]


def _shown(argv: Sequence[str]) -> str:
    """A command as messages name it: its first two words, after xpcargo's own wrapper."""
    if argv[:1] == ["sh"] and len(argv) > 3 and str(argv[3]).startswith("xpcargo-run"):
        argv = argv[7:]
    return " ".join(argv[:2])


def _untie(tether: Any) -> None:
    """Close xpcargo's end of the tether: the container's main process reads the end of its input and exits.
    Only a shutdown reaches the engine; closing the Python object leaves the socket open underneath."""
    raw = getattr(tether, "_sock", tether)
    with suppress(OSError):
        raw.shutdown(socket.SHUT_WR)
    with suppress(OSError):
        raw.close()


class _ContainerWatch:
    """Follows one container's events from before it started: whether it was OOM-killed, killed, or died."""

    def __init__(self, api: docker.APIClient, container_id: str, since: float) -> None:
        self.oom = False
        self._kill_signal: str | None = None
        self._exit_code: str | None = None
        self._died = threading.Event()
        self._stream: Any = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._follow, args=(api, container_id, since), name="xpcargo-container-events", daemon=True
        )
        self._thread.start()

    def _follow(self, api: docker.APIClient, container_id: str, since: float) -> None:
        with suppress(Exception):
            self._stream = api.events(
                since=int(since), filters={"container": container_id, "type": "container"}, decode=True
            )
            if self._closed:
                self._stream.close()
            for event in self._stream:
                action = str(event.get("Action") or event.get("status") or "")
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                if action == "oom":
                    self.oom = True
                elif action == "kill":
                    self._kill_signal = str(attributes.get("signal", ""))
                elif action == "die":
                    self._exit_code = str(attributes.get("exitCode", ""))
                    self._died.set()

    def death(self, *, grace: float) -> str | None:
        """How the container died, in words, or None while it lives (the engine's word may lag a little)."""
        if not self._died.wait(grace):
            return None
        if self.oom:
            return "was killed by the kernel's OOM killer"
        if self._kill_signal in ("9", "KILL", "SIGKILL"):
            return "was killed (SIGKILL from outside xpcargo, e.g. `docker kill`)"
        if self._kill_signal:
            return f"was stopped by signal {self._kill_signal} from outside xpcargo (e.g. `docker stop`)"
        return f"stopped: its main process exited with {self._exit_code or 'an unknown code'}"

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            with suppress(Exception):
                self._stream.close()


def _retry(operation: Callable[[], _T], *, attempts: int = 4) -> _T:
    """``operation``, tried again after 0.25, 0.5 and 1 s while it fails in a way that another try may not.

    The first try runs as it is: tenacity (and the asyncio it imports) is loaded only when a retry is due, so that
    a command whose engine answers does not pay more for the import than for its call."""
    try:
        return operation()
    except Exception as exc:
        if not _transient(exc) or attempts < 2:
            raise
    import tenacity  # noqa: PLC0415

    time.sleep(0.25)
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts - 1),
        wait=tenacity.wait_exponential(multiplier=0.5, max=4),
        retry=tenacity.retry_if_exception(_transient),
        reraise=True,
    )
    return retrying(operation)
