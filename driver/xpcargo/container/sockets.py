"""Where engines listen on a machine, and the `unix://` addresses that name those sockets: the one place that knows
Docker's socket (`/var/run/docker.sock`), rootless Docker's (`$XDG_RUNTIME_DIR/docker.sock`) and Podman's (rootless
`$XDG_RUNTIME_DIR/podman/podman.sock`, rootful `/run/podman/podman.sock`).

The engine when none is configured: `DOCKER_HOST`, then Podman's `CONTAINER_HOST`, then the first socket that exists
and that this user may open, of Docker's, the invoking user's Podman and the other Podman (rootless first for a
user, the rootful first for root). A Docker user sees nothing change: Docker's variable and Docker's socket come
first.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

DOCKER_SOCKET = "/var/run/docker.sock"
PODMAN_ROOTFUL_SOCKET = "/run/podman/podman.sock"
_UNIX = "unix://"


def url(path: str | Path) -> str:
    """The address of the socket at ``path``: `unix:///var/run/docker.sock`."""
    return f"{_UNIX}{path}"


def path_of(address: str) -> Path | None:
    """The socket a `unix://` address names; None for any other address (`tcp://`, `ssh://`)."""
    return Path(address.removeprefix(_UNIX)) if address.startswith(_UNIX) else None


def engine_socket(address: str) -> Path:
    """The socket of the engine at ``address``, which no mount may reach: its own, or, for an engine elsewhere,
    Docker's (which this machine may have too)."""
    return path_of(address) or Path(DOCKER_SOCKET)


def docker_hosts(environ: Mapping[str, str]) -> list[str]:
    """The addresses this machine's Docker listens at by default: the system's socket, then the rootless one."""
    runtime_dir = environ.get("XDG_RUNTIME_DIR")
    return [url(DOCKER_SOCKET), *([url(f"{runtime_dir}/docker.sock")] if runtime_dir else [])]


def default_host(
    environ: Mapping[str, str],
    *,
    uid: int,
    exists: Callable[[str], bool] = os.path.exists,
    usable: Callable[[str], bool] = lambda path: os.access(path, os.R_OK | os.W_OK),
) -> str:
    """The engine's address when none is configured otherwise (see the module's docstring for the order)."""
    for variable in ("DOCKER_HOST", "CONTAINER_HOST"):
        if environ.get(variable):
            return environ[variable]
    runtime_dir = environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}"
    rootless = f"{runtime_dir}/podman/podman.sock"
    podmans = [PODMAN_ROOTFUL_SOCKET, rootless] if uid == 0 else [rootless, PODMAN_ROOTFUL_SOCKET]
    present = [path for path in (DOCKER_SOCKET, *podmans) if exists(path)]
    # A socket this user may not open (Docker's, for a user outside the `docker` group) gives way to one it may
    # (the user's own rootless Podman); when there is none, the first is named, so the error says what it is.
    chosen = next((path for path in present if usable(path)), present[0] if present else DOCKER_SOCKET)
    return url(chosen)
