"""Which engine xpcargo talks to: where its socket is, what kind it is (Docker, Podman), which version, and whether
xpcargo supports it. Pure: the runtime asks the engine, this module reads the answer.

Where: `DOCKER_HOST`, then Podman's `CONTAINER_HOST`, then the first socket that exists and that this user may open,
of Docker's (`/var/run/docker.sock`), the invoking user's Podman and the other Podman (rootless
`$XDG_RUNTIME_DIR/podman/podman.sock` first for a user, the rootful `/run/podman/podman.sock` first for root). A
Docker user sees nothing change: Docker's variable and Docker's socket come first.

What: the engine's answer to `/_ping`, its cheapest request, names the API version (`Api-Version`) and the server
(`Server: Docker/20.10.24 (linux)`, `Server: Libpod/4.3.1 (linux)`). It takes 10 ms where `/version` takes 0.45 s on
Podman (which asks conmon and the OCI runtime for theirs), and it replaces the SDK's own version negotiation, so
knowing the engine costs no request.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from xpcargo.errors import EngineTooOldError

DOCKER_SOCKET = "/var/run/docker.sock"
PODMAN_ROOTFUL_SOCKET = "/run/podman/podman.sock"


class EngineKind(Enum):
    DOCKER = "Docker"
    PODMAN = "Podman"
    OTHER = "container"


# The oldest of each that xpcargo is tested against, and so supports: Docker 20.10 (API 1.41, Debian 12's docker.io)
# and Podman 4.3 (Debian 12's, whose Docker-compatible API is 1.41). Older ones are refused rather than left to fail
# half-way through a build in ways nobody has seen.
MINIMUM_API = (1, 41)
MINIMUM_VERSION = {EngineKind.DOCKER: (20, 10), EngineKind.PODMAN: (4, 3)}


@dataclass(frozen=True, kw_only=True)
class Engine:
    kind: EngineKind
    # As the engine says it: `20.10.24+dfsg1`, `4.3.1`; empty when it did not say.
    version: str
    api_version: str
    host: str

    @property
    def name(self) -> str:
        """For messages: `the Docker engine`, `the Podman engine`."""
        return f"the {self.kind.value} engine"

    @property
    def cli(self) -> str:
        """The engine's own command-line client, for hints."""
        return "podman" if self.kind is EngineKind.PODMAN else "docker"


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
    return f"unix://{chosen}"


_SERVER = re.compile(r"^(?P<name>[A-Za-z]+)/(?P<version>\S+)")


def identify(*, server: str, api_version: str, host: str) -> Engine:
    """The engine from its `/_ping` answer's `Server` and `Api-Version` headers."""
    match = _SERVER.match(server.strip())
    name, version = (match["name"], match["version"]) if match else ("", "")
    kind = {"docker": EngineKind.DOCKER, "libpod": EngineKind.PODMAN}.get(name.lower(), EngineKind.OTHER)
    return Engine(kind=kind, version=version, api_version=api_version, host=host)


def _numbers(version: str) -> tuple[int, ...]:
    """`20.10.24+dfsg1` -> (20, 10, 24); what is not a leading number ends it."""
    numbers = []
    for part in version.split("."):
        digits = re.match(r"\d+", part)
        if digits is None:
            break
        numbers.append(int(digits[0]))
        if digits[0] != part:
            break
    return tuple(numbers)


def check_supported(engine: Engine) -> None:
    """Refuse an engine older than xpcargo's floor, saying which and what to do."""
    minimum = MINIMUM_VERSION.get(engine.kind)
    floor = f"{engine.kind.value} {'.'.join(map(str, minimum))}" if minimum else None
    api = _numbers(engine.api_version)
    if not api or api < MINIMUM_API:
        needs = f"API {'.'.join(map(str, MINIMUM_API))}" + (f" ({floor})" if floor else "")
        raise EngineTooOldError(
            f"{engine.name} at {engine.host} speaks API {engine.api_version or '(none said)'}; xpcargo needs {needs}",
            hint=f"upgrade {engine.name.removeprefix('the ')}, or point DOCKER_HOST at a newer one",
        )
    version = _numbers(engine.version)
    if minimum is not None and version and version < minimum:
        raise EngineTooOldError(
            f"{engine.name} at {engine.host} is version {engine.version}; xpcargo needs {floor} or newer",
            hint=f"upgrade {engine.kind.value} (`{engine.cli} version` shows it), or point DOCKER_HOST at a newer "
            "engine",
        )
