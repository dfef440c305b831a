"""One connection to an engine: which engine it is, what it says about itself, and its calls' failures as xpcargo's
errors; the SDK's client, and for an engine on a unix socket ``socket_api``'s, which serves the requests of a warm
build and of `image list` (the SDK's client is then made only when another request needs it). The images,
containers and volumes of ``DockerRuntime`` are each built on it."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from xpcargo.container.docker import answers
from xpcargo.container.docker.errors import retry, translate
from xpcargo.container.docker.events import ContainerWatch
from xpcargo.container.docker.socket_api import SocketAPI
from xpcargo.container.engine import Engine, EngineKind
from xpcargo.container.runtime import EngineDetails

if TYPE_CHECKING:
    import docker

_T = TypeVar("_T")
# The version of Podman's own API that xpcargo asks (`/v4.0.0/libpod/info`): every Podman 4 and 5 answers it.
_PODMAN_API = "4.0.0"
# The SDK's client, made when first needed, and the options that make another like it (``Connection._client_like``).
SDKClient = Callable[[], "tuple[docker.DockerClient, Mapping[str, Any]]"]


class Connection:
    """A connection to a Docker engine (or one that speaks its API)."""

    def __init__(
        self,
        client: docker.DockerClient | None,
        host: str,
        *,
        engine_timeout: float,
        connection: Mapping[str, Any] | None = None,
        engine: Engine | None = None,
        local: SocketAPI | None = None,
        make_client: SDKClient | None = None,
    ) -> None:
        """``client`` is the SDK's client and ``connection`` how to open another like it; or, with no client,
        ``make_client`` makes both when first needed. ``local``: the engine's socket, for the requests it serves."""
        self._host = host
        self._engine = engine or Engine(kind=EngineKind.DOCKER, version="", api_version="", host=host)
        self._local = local
        self._sdk_lock = threading.RLock()
        self._make_client = make_client
        self._sdk = client
        # How to open another connection to the same engine (base URL, TLS, API version).
        self._connection: dict[str, Any] = dict(connection or {})
        self._sdk_stream: docker.APIClient | None = None
        self._engine_timeout = engine_timeout
        # The containers': rootless Podman or not, asked when first needed (see ``DockerContainers._keep_id``), never
        # on the way to a warm container; and per container, xpcargo's end of the tether (kept referenced: dropping
        # it ends the container) and the watch on its events.
        self._rootless: bool | None = None
        self._tethers: dict[str, Any] = {}
        self._watches: dict[str, ContainerWatch] = {}

    @property
    def _client(self) -> docker.DockerClient:
        """The SDK's client: for an engine on a socket, made (and the SDK imported) by the first request that is
        not ``socket_api``'s."""
        with self._sdk_lock:
            if self._sdk is None:
                if self._make_client is None:
                    raise RuntimeError("a connection made with neither the SDK's client nor a way to make it")
                self._sdk, connection = self._make_client()
                self._connection = dict(connection)
            return self._sdk

    @property
    def _stream(self) -> docker.APIClient:
        """The SDK's client for streams: builds can be silent for minutes (a long link), and must not time out
        like a control call."""
        with self._sdk_lock:
            if self._sdk_stream is None:
                self._sdk_stream = self._client_like(timeout=None)
            return self._sdk_stream

    @property
    def host(self) -> str:
        return self._host

    @property
    def engine(self) -> Engine:
        return self._engine

    def describe(self) -> EngineDetails:
        if self._engine.kind is EngineKind.PODMAN:
            return answers.podman_engine_details(self._engine, self._call("describe itself", self._podman_info))
        return answers.engine_details(self._engine, self._call("describe itself", self._client.info))

    def _podman_info(self) -> dict[str, Any]:
        api = self._client.api
        answer = api.get(f"{api.base_url}/v{_PODMAN_API}/libpod/info", timeout=math.ceil(self._engine_timeout))
        answer.raise_for_status()
        info: dict[str, Any] = answer.json()
        return info

    def _name(self, reference: str) -> str:
        """An image name as xpcargo gave it (see ``answers.short_name``)."""
        return answers.short_name(reference, self._engine.kind)

    def _client_like(self, *, timeout: float | None) -> docker.APIClient:
        """Another connection to the same engine: a watch or a health check must not queue behind a stream."""
        import docker  # noqa: PLC0415

        sdk = self._client
        if self._host.startswith("ssh://"):
            from xpcargo.container.docker import ssh  # noqa: PLC0415 - paramiko's logging is for ssh:// only

            # Over the command's one ssh login (``ssh.over_login``), a channel of its own for each request.
            client = docker.APIClient(
                timeout=None if timeout is None else math.ceil(timeout),  # type: ignore[arg-type]
                **{**self._connection, "base_url": ssh.PLACEHOLDER},
            )
            ssh.over_login(sdk.api, client)
            return client
        return docker.APIClient(
            timeout=None if timeout is None else math.ceil(timeout),  # type: ignore[arg-type]
            **self._connection,
        )

    def _watch(self, container_id: str, since: float) -> ContainerWatch:
        """A watch on the container's events from ``since`` on, on a connection of its own."""
        local = self._local
        if local is not None:
            return ContainerWatch(lambda: local.events(container_id, since=since, timeout=None))
        api = self._client_like(timeout=None)
        filters = {"container": container_id, "type": "container"}
        return ContainerWatch(lambda: api.events(since=int(since), filters=filters, decode=True))

    def _call(self, what: str, operation: Callable[[], _T]) -> _T:
        try:
            return retry(operation)
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors; anything else is re-raised
            raise self._translate(what, exc) from None

    def _translate(self, what: str, exc: Exception) -> Exception:
        return translate(self._engine, what, exc, timeout=self._engine_timeout)
