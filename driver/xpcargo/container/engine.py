"""Which engine xpcargo talks to: what kind it is (Docker, Podman), which version, and whether xpcargo supports it
(where it listens is ``sockets``'s). Pure: the runtime asks the engine, this module reads the answer.

The engine's answer to `/_ping`, its cheapest request, names the API version (`Api-Version`) and the server
(`Server: Docker/20.10.24 (linux)`, `Server: Libpod/4.3.1 (linux)`). It takes 10 ms where `/version` takes 0.45 s on
Podman (which asks conmon and the OCI runtime for theirs), and it replaces the SDK's own version negotiation, so
knowing the engine costs no request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from xpcargo.errors import EngineTooOldError


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
