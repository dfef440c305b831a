"""The Docker engine as a ``Runtime``: the only module that imports the Docker SDK.

Everything else asks for what it needs (an image's presence, an import, a container, an exec) in xpcargo's own
terms (``container.spec``), and gets xpcargo errors back: never a ``docker`` exception, never a traceback.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from xpcargo.container.spec import REQUEST_LABEL, ContainerInfo, ContainerRequest, ImageInfo, Output
from xpcargo.errors import EngineError, EngineUnavailableError, XpcargoError

if TYPE_CHECKING:
    import docker

_CONTROL_TIMEOUT = 120
_T = TypeVar("_T")


def _transient(exc: BaseException) -> bool:
    """Engine errors worth another try: the daemon restarting, a dropped connection, a 5xx."""
    import docker.errors  # noqa: PLC0415
    import requests  # noqa: PLC0415

    if isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout):
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


def _default_host(environ: Mapping[str, str]) -> str:
    return environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


class DockerRuntime:
    """A connection to a Docker engine (or one that speaks its API)."""

    def __init__(self, client: docker.DockerClient, stream_client: docker.APIClient, host: str) -> None:
        self._client = client
        self._stream = stream_client
        self._host = host

    @property
    def host(self) -> str:
        return self._host

    @classmethod
    def connect(cls, environ: Mapping[str, str]) -> DockerRuntime:
        import docker  # noqa: PLC0415 - the SDK pulls in requests and urllib3: keep it off `xpcargo --help`

        host = _default_host(environ)
        try:
            # Negotiating the API version is the first request, so this is also the check that the engine is there.
            client = docker.from_env(environment=dict(environ), timeout=_CONTROL_TIMEOUT)
            version = client.api.api_version
        except XpcargoError:
            raise
        except Exception as exc:  # noqa: BLE001 - the SDK raises a zoo of types for "not there"
            raise EngineUnavailableError(
                f"cannot reach the Docker engine at {host}: {_describe(exc)}",
                hint="start it (`sudo systemctl start docker`, or `dockerd &`) or point DOCKER_HOST at a running one",
            ) from None
        # Builds can be silent for minutes (a long link); the stream must not time out like a control call.
        kwargs = docker.utils.kwargs_from_env(environment=dict(environ))  # type: ignore[attr-defined]
        stream_client = docker.APIClient(version=version, timeout=None, **kwargs)  # type: ignore[arg-type]
        return cls(client, stream_client, host)

    def _call(self, what: str, operation: Callable[[], _T]) -> _T:
        try:
            return _retry(operation)
        except Exception as exc:
            import docker.errors  # noqa: PLC0415
            import requests  # noqa: PLC0415

            if isinstance(exc, requests.exceptions.ConnectionError):
                raise EngineUnavailableError(
                    f"lost the Docker engine at {self._host} while trying to {what}: {_describe(exc)}",
                    hint="check that the engine is still running, then run the command again",
                ) from None
            if isinstance(exc, docker.errors.DockerException):
                raise EngineError(f"the Docker engine could not {what}: {_describe(exc)}") from None
            raise

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

    def list_images(self, label: str) -> list[ImageInfo]:
        raw: list[dict[str, Any]] = self._call("list images", lambda: self._client.api.images(filters={"label": label}))
        return [
            ImageInfo(
                id=item["Id"],
                tags=tuple(tag for tag in item.get("RepoTags") or () if tag != "<none>:<none>"),
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
            answer = self._client.api.import_image_from_file(str(tarball), changes=list(changes))
            # The engine answers with one JSON object per line; the last names the new image.
            for line in reversed(str(answer).strip().splitlines()):
                status = json.loads(line)
                if "error" in status:
                    raise EngineError(f"the Docker engine could not import {tarball.name}: {status['error']}")
                if str(status.get("status", "")).startswith("sha256:"):
                    return str(status["status"])
            raise EngineError(f"the Docker engine imported {tarball.name} but named no image: {answer!r}")

        # An import is not idempotent (a retry would leave a second copy behind), so it is tried once.
        try:
            return run()
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own error right here
            raise EngineError(f"the Docker engine could not import {tarball.name}: {_describe(exc)}") from None

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self._call(f"tag {image_id} as {repository}:{tag}", lambda: self._client.api.tag(image_id, repository, tag))

    # --- containers ----------------------------------------------------------------------------------------------

    def start(self, request: ContainerRequest) -> str:
        import docker.types  # noqa: PLC0415

        mounts = [
            docker.types.Mount(target=str(m.path), source=str(m.path), type="bind", read_only=m.read_only)
            for m in request.mounts
        ]
        request_id = request.labels.get(REQUEST_LABEL)

        def create() -> str:
            # A create whose answer was lost (a dropped connection) may still have made the container: find it
            # rather than make a second one that nobody would ever remove.
            if request_id is not None:
                found = self._api_containers(f"{REQUEST_LABEL}={request_id}")
                if found:
                    return str(found[0]["Id"])
            host_config = self._client.api.create_host_config(
                mounts=mounts,
                network_mode=request.network,
                init=True,
                tmpfs={str(path): "" for path in request.hidden},
            )
            answer = self._client.api.create_container(
                request.image,
                # The container only hosts the commands xpcargo execs into it; it idles until it is removed.
                command=["sleep", "infinity"],
                user=request.user,
                working_dir=str(request.workdir),
                environment=dict(request.env),
                labels=dict(request.labels),
                host_config=host_config,
            )
            return str(answer["Id"])

        container_id = self._call(f"create a container from {request.image}", create)
        try:
            self._call("start the container", lambda: self._client.api.start(container_id))
        except BaseException:
            self.remove(container_id)
            raise
        return container_id

    def exec(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], on_stdout: Output, on_stderr: Output
    ) -> int:
        created = self._call(
            f"start `{argv[0]}` in the container",
            lambda: self._client.api.exec_create(container_id, list(argv), environment=dict(env)),
        )
        exec_id = created["Id"]
        try:
            for out, err in self._stream.exec_start(exec_id, stream=True, demux=True):
                if out:
                    on_stdout(out)
                if err:
                    on_stderr(err)
        except Exception as exc:
            import docker.errors  # noqa: PLC0415
            import requests  # noqa: PLC0415

            if isinstance(exc, docker.errors.DockerException | requests.exceptions.RequestException):
                raise EngineError(f"lost the output of `{argv[0]}` in the container: {_describe(exc)}") from None
            raise
        result = self._call("read the exit code", lambda: self._client.api.exec_inspect(exec_id))
        code = result.get("ExitCode")
        return int(code) if code is not None else 1

    def exec_interactive(self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str]) -> int:
        """Run ``argv`` attached to this terminal. The SDK has no terminal handling, so this uses the docker CLI."""
        cli = shutil.which("docker")
        if cli is None:
            raise EngineError(
                "an interactive shell needs the `docker` command-line client, which is not on PATH",
                hint="install it (Debian: `apt-get install docker-cli` or `docker.io`), or pass a command after --",
            )
        command = [cli, "--host", self._host, "exec", "--interactive", "--tty"]
        for name, value in env.items():
            command += ["--env", f"{name}={value}"]
        return subprocess.call([*command, container_id, *argv])

    def remove(self, container_id: str) -> None:
        import docker.errors  # noqa: PLC0415

        def remove() -> None:
            with suppress(docker.errors.NotFound):
                self._client.api.remove_container(container_id, force=True, v=True)

        self._call(f"remove container {container_id[:12]}", remove)

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


def _container_infos(raw: list[dict[str, Any]]) -> list[ContainerInfo]:
    return [
        ContainerInfo(id=str(item["Id"]), labels=dict(item.get("Labels") or {}), running=item.get("State") == "running")
        for item in raw
    ]


def _retry(operation: Callable[[], _T], *, attempts: int = 4) -> _T:
    import tenacity  # noqa: PLC0415

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.25, max=4),
        retry=tenacity.retry_if_exception(_transient),
        reraise=True,
    )
    return retrying(operation)
