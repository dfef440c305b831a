"""Where the engine is (its address, read from the environment and the Docker CLI's own files before any connection
is made) and whether it is on this machine; what the engine is (Docker, Podman, its version) is `engine`'s.

An engine is remote when bind mounts would not reach this machine's files: its address is `tcp://` or `ssh://`
(loopback included: a port on 127.0.0.1 is as likely to lead into a VM or a container with a root of its own, as
Docker Desktop, colima and a dockerd in a container do), directly in `DOCKER_HOST` or through the current docker
context (`DOCKER_CONTEXT`, else `currentContext` in `~/.docker/config.json`). A `unix://` socket is local.
`XPCARGO_REMOTE=1` forces remote mode (an engine on this machine that cannot see its files, or a test of remote
mode), `XPCARGO_REMOTE=0` forces local mode (a `tcp://` engine that shares this machine's file system). A target
may name an engine of its own (`engine` in `[target.T]`, or `XPCARGO_TARGET_<TRIPLE>_ENGINE`), which is remote or
local by the same rules.

Images are built only on this machine's engine (a layer build bind-mounts xpcargo's caches) and sent from there to
a remote one. This machine's engine is the first `unix://` socket of: `DOCKER_HOST`, the current docker context,
the default socket (/var/run/docker.sock) and the rootless one ($XDG_RUNTIME_DIR/docker.sock), that exists.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xpcargo.container import sockets
from xpcargo.container.runtime import Runtime
from xpcargo.errors import EngineUnavailableError

_LOCAL_SCHEMES = ("unix://", "npipe://", "fd://")


@dataclass(frozen=True, kw_only=True)
class EngineAddress:
    # The engine's URL, as the SDK takes it (`unix:///var/run/docker.sock`, `ssh://user@builder`).
    url: str
    # Whether the build's files must travel in volumes (see the module's docstring).
    remote: bool
    # Why it is remote or local, for messages: "DOCKER_HOST is tcp://", "XPCARGO_REMOTE=1".
    why: str

    @property
    def needs_ssh(self) -> bool:
        return self.url.startswith("ssh://")


def _context_host(environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The docker endpoint of the current docker context and its name, or None for the default context."""
    config_dir = Path(environ.get("DOCKER_CONFIG") or Path(environ.get("HOME") or "~").expanduser() / ".docker")
    name = environ.get("DOCKER_CONTEXT", "")
    if not name:
        try:
            config = json.loads((config_dir / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        name = str(config.get("currentContext") or "") if isinstance(config, dict) else ""
    if not name or name == "default":
        return None
    # The CLI keeps a context's endpoints in meta/<sha256 of its name>/meta.json.
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest() / "meta.json"
    try:
        document = json.loads(meta.read_text(encoding="utf-8"))
        host = document["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (str(host), name) if isinstance(host, str) and host else None


def locate(environ: Mapping[str, str]) -> EngineAddress:
    """Where the engine is: `DOCKER_HOST`, else the current docker context, else Podman's `CONTAINER_HOST` or the
    first socket there is (``sockets.default_host``: Docker's, then Podman's)."""
    host = environ.get("DOCKER_HOST", "")
    source = "DOCKER_HOST"
    if not host:
        found = _context_host(environ)
        if found is not None:
            host, name = found
            source = f"docker context `{name}`"
    if host:
        return at(host, environ, source=source)
    return at(sockets.default_host(environ, uid=os.getuid()), environ, source="the default")


def at(url: str, environ: Mapping[str, str], *, source: str) -> EngineAddress:
    """The engine at ``url`` (which ``source`` names, for messages), remote or not."""
    forced = environ.get("XPCARGO_REMOTE", "")
    if forced in ("1", "0"):
        return EngineAddress(url=url, remote=forced == "1", why=f"XPCARGO_REMOTE={forced}")
    if url.startswith(_LOCAL_SCHEMES):
        return EngineAddress(url=url, remote=False, why=f"{source} is a local socket")
    scheme = url.split("://", 1)[0]
    return EngineAddress(url=url, remote=True, why=f"{source} is {scheme}://")


def this_machine(environ: Mapping[str, str]) -> EngineAddress | None:
    """This machine's engine, where images are built (see the module's docstring); None when there is none."""
    candidates = [environ.get("DOCKER_HOST", "")]
    found = _context_host(environ)
    candidates.append(found[0] if found is not None else "")
    candidates += sockets.docker_hosts(environ)
    for url in candidates:
        path = sockets.path_of(url)
        if path is not None and path.is_socket():
            return EngineAddress(url=url, remote=False, why="this machine's engine")
    return None


class Engines:
    """The engines one command talks to, each connected once, on first use: each target's (several, when targets
    name engines of their own), and this machine's, which builds the images that are sent to a remote one."""

    def __init__(self, connect: Callable[[EngineAddress], Runtime], environ: Mapping[str, str]) -> None:
        self._connect = connect
        self._environ = environ
        self._runtimes: dict[str, Runtime] = {}
        # Targets side by side ask at once; a connection is made once.
        self._lock = threading.Lock()

    def runtime(self, address: EngineAddress) -> Runtime:
        with self._lock:
            found = self._runtimes.get(address.url)
            if found is None:
                found = self._runtimes[address.url] = self._connect(address)
            return found

    def local(self, *, missing: str) -> Runtime:
        """This machine's engine; ``missing`` says what it was needed for, in the error when there is none."""
        address = this_machine(self._environ)
        if address is None:
            raise EngineUnavailableError(
                f"{missing}, and there is no Docker engine on this machine to build it on (no socket at "
                f"{sockets.DOCKER_SOCKET}, nor in DOCKER_HOST or the docker context)",
                hint="build and save it on a machine with an engine (`xpcargo image save TARGET -o DIR`), then load "
                "it into the remote one (`DOCKER_HOST=... xpcargo image load DIR`)",
            )
        return self.runtime(address)


def client_id() -> str:
    """This machine and user, as a remote engine's volumes are named after: two machines (or two users) that
    share an engine and build the same path never share a volume."""
    return f"{os.uname().nodename}\0{os.getuid()}"
