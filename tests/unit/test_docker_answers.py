"""The engine's JSON answers read into xpcargo's values: as Docker and Podman give them."""

from __future__ import annotations

from typing import Any

from xpcargo.container.docker import answers
from xpcargo.container.engine import Engine, EngineKind

DOCKER = Engine(kind=EngineKind.DOCKER, version="20.10.24", api_version="1.41", host="unix:///var/run/docker.sock")
PODMAN = Engine(kind=EngineKind.PODMAN, version="4.3.1", api_version="1.41", host="unix:///run/podman/podman.sock")


def test_podman_s_registry_prefixes_are_left_out_of_a_name() -> None:
    assert answers.short_name("localhost/xpcargo/base:1", EngineKind.PODMAN) == "xpcargo/base:1"
    assert answers.short_name("docker.io/xpcargo/base:1", EngineKind.PODMAN) == "xpcargo/base:1"
    assert answers.short_name("docker.io/library/debian:13", EngineKind.PODMAN) == "docker.io/library/debian:13"
    assert answers.short_name("localhost/xpcargo/base:1", EngineKind.DOCKER) == "localhost/xpcargo/base:1"


def test_the_engine_describes_itself() -> None:
    docker_info = {"SecurityOptions": ["name=seccomp", "name=rootless"], "Architecture": "x86_64", "Driver": "overlay2"}
    details = answers.engine_details(DOCKER, {**docker_info, "OperatingSystem": "Debian GNU/Linux 13"})
    assert (details.rootless, details.architecture, details.storage_driver) == (True, "x86_64", "overlay2")
    assert details.operating_system == "Debian GNU/Linux 13"
    podman_info = {
        "host": {"security": {"rootless": True}, "arch": "arm64", "distribution": {"distribution": "debian"}},
        "store": {"graphDriverName": "overlay"},
    }
    details = answers.podman_engine_details(PODMAN, podman_info)
    assert (details.rootless, details.architecture, details.operating_system) == (True, "arm64", "debian")
    assert details.storage_driver == "overlay"
    assert answers.engine_details(DOCKER, {}).rootless is False


def test_images_as_inspected_and_listed() -> None:
    raw = {
        "Id": "sha256:abc",
        "RepoTags": ["localhost/xpcargo/x:1"],
        "Config": {"Labels": {"org.xpcargo.managed": "true"}},
        "RootFS": {"Layers": ["sha256:l1", "sha256:l2"]},
    }
    details = answers.image_details(raw, EngineKind.PODMAN)
    assert (details.id, details.tags, details.layers) == ("sha256:abc", ("xpcargo/x:1",), ("sha256:l1", "sha256:l2"))
    assert answers.image_details({"Id": "sha256:abc", "Config": None}, EngineKind.DOCKER).labels == {}
    (listed,) = answers.image_infos(
        [{"Id": "sha256:abc", "RepoTags": ["<none>:<none>"], "Labels": None, "Size": 7, "Created": 1}],
        EngineKind.DOCKER,
    )
    assert (listed.tags, listed.labels, listed.size, listed.created) == ((), {}, 7, "1")


def test_volumes_with_the_containers_that_mount_them() -> None:
    volumes: list[dict[str, Any]] = [
        {"Name": "v1", "Labels": {"k": "v"}, "CreatedAt": "2026-11-25T00:00:00Z"},
        {"Name": "v2"},
    ]
    containers: list[dict[str, Any]] = [
        {"Id": "c1", "Mounts": [{"Type": "volume", "Name": "v1"}, {"Type": "bind", "Name": "v2"}]},
        {"Id": "c2", "Mounts": None},
    ]
    first, second = answers.volume_infos(volumes, containers)
    assert (first.name, first.labels, first.users) == ("v1", {"k": "v"}, ("c1",))
    assert (second.users, second.created) == ((), "")


def test_containers_and_their_changes() -> None:
    (running, exited) = answers.container_infos(
        [
            {"Id": "c1", "Labels": {"a": "1"}, "State": "running", "Image": "sha256:i", "Created": 5},
            {"Id": "c2", "State": "exited", "Labels": None},
        ]
    )
    assert (running.running, running.image, running.created) == (True, "sha256:i", 5.0)
    assert (exited.running, exited.labels, exited.created) == (False, {}, 0.0)
    diff = [
        {"Kind": 0, "Path": "/etc"},
        {"Kind": 1, "Path": "/new"},
        {"Kind": 2, "Path": "/gone"},
        {"Kind": 9, "Path": "/x"},
    ]
    assert answers.changes(diff) == [("C", "/etc"), ("A", "/new"), ("D", "/gone"), ("C", "/x")]
    assert answers.changes(None) == []
