"""Where engines listen: the socket found when none is configured, and the sockets `unix://` addresses name."""

from __future__ import annotations

from pathlib import Path

from xpcargo.container import sockets

ROOTLESS = "/run/user/1000/podman/podman.sock"
ROOTFUL = "/run/podman/podman.sock"
DOCKER = "/var/run/docker.sock"


def _host(environ: dict[str, str], present: set[str], *, uid: int = 1000, usable: set[str] | None = None) -> str:
    allowed = present if usable is None else usable
    return sockets.default_host(environ, uid=uid, exists=present.__contains__, usable=allowed.__contains__)


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


def test_only_a_unix_address_names_a_socket() -> None:
    assert sockets.path_of("unix:///run/podman/podman.sock") == Path("/run/podman/podman.sock")
    assert sockets.path_of("tcp://10.0.0.5:2376") is None
    assert sockets.path_of(sockets.url("/x.sock")) == Path("/x.sock")


def test_the_socket_no_mount_may_reach_is_the_engine_s_own_or_docker_s() -> None:
    assert sockets.engine_socket("unix:///run/user/1000/podman/podman.sock") == Path(
        "/run/user/1000/podman/podman.sock"
    )
    assert sockets.engine_socket("ssh://builder") == Path("/var/run/docker.sock")


def test_this_machine_s_docker_listens_at_the_system_socket_then_the_rootless_one() -> None:
    assert sockets.docker_hosts({}) == ["unix:///var/run/docker.sock"]
    assert sockets.docker_hosts({"XDG_RUNTIME_DIR": "/run/user/1000"}) == [
        "unix:///var/run/docker.sock",
        "unix:///run/user/1000/docker.sock",
    ]
