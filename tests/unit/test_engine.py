"""Which engine xpcargo talks to: the socket it finds, the kind and version it reads, the floor it keeps."""

from __future__ import annotations

import pytest

from xpcargo.container.engine import EngineKind, check_supported, default_host, identify
from xpcargo.errors import EngineTooOldError

ROOTLESS = "/run/user/1000/podman/podman.sock"
ROOTFUL = "/run/podman/podman.sock"
DOCKER = "/var/run/docker.sock"


def _host(environ: dict[str, str], present: set[str], *, uid: int = 1000, usable: set[str] | None = None) -> str:
    allowed = present if usable is None else usable
    return default_host(environ, uid=uid, exists=present.__contains__, usable=allowed.__contains__)


def test_docker_host_then_container_host_come_first() -> None:
    everything = {DOCKER, ROOTFUL, ROOTLESS}
    both = {"DOCKER_HOST": "tcp://a:2375", "CONTAINER_HOST": "unix:///b.sock"}
    assert _host(both, everything) == "tcp://a:2375"
    assert _host({"CONTAINER_HOST": "unix:///b.sock"}, everything) == "unix:///b.sock"


def test_docker_socket_first_then_the_users_own_podman() -> None:
    assert _host({}, {DOCKER, ROOTFUL, ROOTLESS}) == f"unix://{DOCKER}"
    assert _host({}, {ROOTFUL, ROOTLESS}) == f"unix://{ROOTLESS}"
    assert _host({}, {ROOTFUL, "/run/user/0/podman/podman.sock"}, uid=0) == f"unix://{ROOTFUL}"
    assert (
        _host({"XDG_RUNTIME_DIR": "/tmp/run"}, {"/tmp/run/podman/podman.sock"}) == "unix:///tmp/run/podman/podman.sock"
    )


def test_a_socket_the_user_may_not_open_gives_way_and_is_named_when_alone() -> None:
    assert _host({}, {DOCKER, ROOTLESS}, usable={ROOTLESS}) == f"unix://{ROOTLESS}"
    assert _host({}, {DOCKER}, usable=set()) == f"unix://{DOCKER}"
    assert _host({}, set()) == f"unix://{DOCKER}"


def test_the_ping_names_the_engine() -> None:
    docker = identify(server="Docker/20.10.24+dfsg1 (linux)", api_version="1.41", host="h")
    podman = identify(server="Libpod/4.3.1 (linux)", api_version="1.41", host="h")
    other = identify(server="", api_version="1.43", host="h")
    assert (docker.kind, docker.version, docker.name, docker.cli) == (
        EngineKind.DOCKER,
        "20.10.24+dfsg1",
        "the Docker engine",
        "docker",
    )
    assert (podman.kind, podman.version, podman.cli) == (EngineKind.PODMAN, "4.3.1", "podman")
    assert (other.kind, other.version) == (EngineKind.OTHER, "")
    for engine in (docker, podman, other):
        check_supported(engine)


@pytest.mark.parametrize(
    ("server", "api", "said"),
    [
        ("Docker/19.03.15 (linux)", "1.40", "speaks API 1.40; xpcargo needs API 1.41 (Docker 20.10)"),
        ("Libpod/4.2.0 (linux)", "1.41", "is version 4.2.0; xpcargo needs Podman 4.3 or newer"),
        ("Libpod/3.4.4 (linux)", "1.40", "speaks API 1.40; xpcargo needs API 1.41 (Podman 4.3)"),
        ("", "", "speaks API (none said)"),
    ],
)
def test_an_engine_below_the_floor_is_refused_with_a_hint(server: str, api: str, said: str) -> None:
    with pytest.raises(EngineTooOldError) as caught:
        check_supported(identify(server=server, api_version=api, host="unix:///e.sock"))
    assert said in caught.value.message
    assert caught.value.exit_code == 7
    assert caught.value.hint is not None
    assert "upgrade" in caught.value.hint
