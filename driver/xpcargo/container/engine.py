"""Which engine xpcargo talks to, and whether it is on this machine (read from the environment and the Docker CLI's
own files, before any connection is made).

An engine is remote when bind mounts would not reach this machine's files: its address is `tcp://` or `ssh://`
(loopback included: a port on 127.0.0.1 is as likely to lead into a VM or a container with a root of its own, as
Docker Desktop, colima and a dockerd in a container do), directly in `DOCKER_HOST` or through the current docker
context (`DOCKER_CONTEXT`, else `currentContext` in `~/.docker/config.json`). A `unix://` socket is local.
`XPCARGO_REMOTE=1` forces remote mode (an engine on this machine that cannot see its files, or a test of remote
mode), `XPCARGO_REMOTE=0` forces local mode (a `tcp://` engine that shares this machine's file system).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_HOST = "unix:///var/run/docker.sock"
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
    """Where the engine is: `DOCKER_HOST`, else the current docker context, else the default socket."""
    host = environ.get("DOCKER_HOST", "")
    source = "DOCKER_HOST"
    if not host:
        found = _context_host(environ)
        if found is not None:
            host, name = found
            source = f"docker context `{name}`"
    url = host or DEFAULT_HOST
    forced = environ.get("XPCARGO_REMOTE", "")
    if forced in ("1", "0"):
        return EngineAddress(url=url, remote=forced == "1", why=f"XPCARGO_REMOTE={forced}")
    if url.startswith(_LOCAL_SCHEMES):
        return EngineAddress(url=url, remote=False, why=f"{source if host else 'the default'} is a local socket")
    scheme = url.split("://", 1)[0]
    return EngineAddress(url=url, remote=True, why=f"{source} is {scheme}://")


def client_id() -> str:
    """This machine and user, as a remote engine's volumes are named after: two machines (or two users) that
    share an engine and build the same path never share a volume."""
    return f"{os.uname().nodename}\0{os.getuid()}"
