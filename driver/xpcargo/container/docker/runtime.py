"""``DockerRuntime``: the images, containers and volumes of one engine, over one connection made from the
environment (``connect``); the connection is the only place the SDK's client is made. An engine on a unix socket is
pinged through ``socket_api``, and its SDK client made (the SDK imported) only for a request that needs it."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from xpcargo.container import location, sockets
from xpcargo.container.docker import socket_api
from xpcargo.container.docker.containers import DockerContainers
from xpcargo.container.docker.errors import describe
from xpcargo.container.docker.images import DockerImages
from xpcargo.container.docker.volumes import DockerVolumes
from xpcargo.container.engine import check_supported, identify
from xpcargo.errors import ConfigError, EngineUnavailableError

# Held while the SDK is imported with paramiko kept out, so that no other thread (targets side by side, each with
# an engine of its own) imports the SDK's ssh transport in that window and finds paramiko "not installed".
_SDK_IMPORT = threading.Lock()
# The API version of the ping's client: any the floor accepts (the ping's URL carries none).
_PROBE_API = "1.41"


class DockerRuntime(DockerImages, DockerContainers, DockerVolumes):
    """A connection to a Docker engine (or one that speaks its API): a ``Runtime``."""

    @classmethod
    def connect(
        cls, environ: Mapping[str, str], *, address: location.EngineAddress | None = None, engine_timeout: float = 30
    ) -> DockerRuntime:
        """Connect to the engine at ``address``, by default the one the environment names (``location.locate``)."""
        address = address or location.locate(environ)
        host = address.url
        path = sockets.path_of(host)
        if path is not None:
            return cls._connect_socket(environ, address, str(path), engine_timeout=engine_timeout)
        if address.needs_ssh and importlib.util.find_spec("paramiko") is None:
            # The SDK's own words ("Install paramiko package...") would come with a hint to start the engine.
            raise EngineUnavailableError(
                f"cannot reach the Docker engine at {host}: ssh:// needs the paramiko package, which is not installed",
                hint="install xpcargo with its ssh extra: `pip install 'xpcargo[ssh]'`",
            )
        # Not imported for an engine on a socket: paramiko's logging and the rest are for ssh:// (and the SDK, which
        # the paths below import, costs far more).
        from xpcargo.container.docker import ssh  # noqa: PLC0415

        # The docker context's endpoint (or Podman's socket), when that is where the engine is: the SDK reads
        # DOCKER_HOST only.
        environ = {**environ, "DOCKER_HOST": host}
        docker = import_sdk(ssh=address.needs_ssh)
        _check_client_config()
        if address.needs_ssh:
            ssh.silence_paramiko_log()
        try:
            connection: dict[str, Any] = docker.utils.kwargs_from_env(environment={**environ, "DOCKER_HOST": host})
            # One request says which engine this is, its API version, and that it is there: the ping (see
            # ``container.engine``). A client given a version asks nothing on its own; for an ssh:// engine, making
            # it makes the ssh connection.
            probe = docker.APIClient(version=_PROBE_API, timeout=math.ceil(engine_timeout), **connection)
            if address.needs_ssh:
                ssh.one_pool(probe)
        except Exception as exc:  # noqa: BLE001 - the SDK raises a zoo of types for "not there"
            raise _unreachable(address, exc) from None
        try:
            answer = probe.get(f"{probe.base_url}/_ping")
            answer.raise_for_status()
        except Exception as exc:  # noqa: BLE001 - as above
            if address.needs_ssh:
                raise ssh.no_engine(host, exc, probe) from None
            raise _unreachable(address, exc) from None
        engine = identify(
            server=answer.headers.get("Server", ""), api_version=answer.headers.get("Api-Version", ""), host=host
        )
        check_supported(engine)
        connection["version"] = engine.api_version
        try:
            if address.needs_ssh:
                # The client (and each of ``Connection._client_like``) goes over the probe's login.
                client = docker.DockerClient(
                    timeout=math.ceil(engine_timeout), **{**connection, "base_url": ssh.PLACEHOLDER}
                )
                ssh.over_login(probe, client.api)
            else:
                client = docker.DockerClient(timeout=math.ceil(engine_timeout), **connection)
            return cls(client, host, engine_timeout=engine_timeout, connection=connection, engine=engine)
        except Exception as exc:  # noqa: BLE001 - as above: the engine went away between the ping and these
            raise _unreachable(address, exc) from None

    @classmethod
    def _connect_socket(
        cls, environ: Mapping[str, str], address: location.EngineAddress, path: str, *, engine_timeout: float
    ) -> DockerRuntime:
        """The engine on the unix socket at ``path``: the ping and the requests of a warm build through
        ``socket_api``, the SDK's client made when another request first needs it."""
        host = address.url
        try:
            answer = socket_api.SocketAPI(path, version=_PROBE_API).ping(timeout=engine_timeout)
        except socket_api.SocketAPIError as exc:
            raise _unreachable(address, exc) from None
        engine = identify(server=answer.get("server", ""), api_version=answer.get("api-version", ""), host=host)
        check_supported(engine)

        def make_client() -> tuple[Any, dict[str, Any]]:
            docker = import_sdk(ssh=False)
            _check_client_config()
            try:
                connection: dict[str, Any] = docker.utils.kwargs_from_env(environment={**environ, "DOCKER_HOST": host})
                connection["version"] = engine.api_version
                return docker.DockerClient(timeout=math.ceil(engine_timeout), **connection), connection
            except Exception as exc:  # noqa: BLE001 - as in ``connect``
                raise _unreachable(address, exc) from None

        return cls(
            None,
            host,
            engine_timeout=engine_timeout,
            engine=engine,
            local=socket_api.SocketAPI(path, version=engine.api_version),
            make_client=make_client,
        )


def import_sdk(*, ssh: bool) -> ModuleType:
    """The Docker SDK, with its ssh transport only for an ssh:// engine. The SDK's ``docker.transport`` imports its
    ssh adapter, and with it paramiko (and invoke, cryptography), whenever paramiko is installed (xpcargo's ssh
    extra): as long again as the rest of the SDK, on every command, for an engine reached over a socket or tcp://
    that needs none of it."""
    with _SDK_IMPORT:
        if not ssh and "docker" not in sys.modules and "paramiko" not in sys.modules:
            # None in sys.modules makes `import paramiko` raise ImportError, which the SDK takes for "no ssh
            # support"; only for the time of this import: paramiko stays importable for anything else.
            sys.modules["paramiko"] = None  # type: ignore[assignment]
            try:
                import docker  # noqa: PLC0415 - the SDK pulls in requests and urllib3: keep it off `xpcargo --help`
            finally:
                del sys.modules["paramiko"]
        import docker  # noqa: PLC0415
        import docker.api.client  # noqa: PLC0415
        import docker.transport  # noqa: PLC0415

        if ssh and not hasattr(docker.api.client, "SSHHTTPAdapter"):
            # Imported without it earlier in this process (a local engine first): the adapter the SDK would have had.
            from docker.transport.sshconn import SSHHTTPAdapter  # noqa: PLC0415

            for module in (docker.transport, docker.api.client):
                setattr(module, "SSHHTTPAdapter", SSHHTTPAdapter)  # noqa: B010 - an attribute typeshed lacks
        return docker


def _unreachable(address: location.EngineAddress, exc: BaseException) -> EngineUnavailableError:
    """No connection to the engine at ``address`` could be made (``exc``): one line, with a hint that fits it."""
    if address.needs_ssh:
        from xpcargo.container.docker import ssh  # noqa: PLC0415 - see ``connect``

        return ssh.unreachable(address.url, exc)
    return EngineUnavailableError(
        f"cannot reach a container engine at {address.url}: {describe(exc)}",
        hint="start Docker (`sudo systemctl start docker`) or Podman (`systemctl --user start podman.socket`, "
        "or `podman system service --time=0 &`), or point DOCKER_HOST at a running engine",
    )


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
            f"{path}: {_bad_login(path) or 'a registry login'} is malformed: {describe(exc)}",
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
