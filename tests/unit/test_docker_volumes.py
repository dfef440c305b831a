"""The Docker runtime's volumes over a stand-in for the engine's API."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests

from xpcargo.container.docker.volumes import DockerVolumes
from xpcargo.errors import EngineError


def _api_error(status: int) -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation="refused")


class Volumes:
    def __init__(self) -> None:
        self.refusal: Exception | None = None
        self.asked_containers = 0

    def create_volume(self, name: str, *, labels: dict[str, str]) -> dict[str, Any]:
        return {"Name": name, "Labels": labels, "CreatedAt": "2026-11-25T00:00:00Z"}

    def volumes(self, *, filters: dict[str, str]) -> dict[str, Any]:
        return {"Volumes": [{"Name": "v1", "Labels": {"k": "v"}}] if filters["label"] == "k=v" else None}

    def containers(self, *, all: bool) -> list[dict[str, Any]]:
        self.asked_containers += 1
        return [{"Id": "c1", "Mounts": [{"Type": "volume", "Name": "v1"}]}]

    def remove_volume(self, name: str) -> None:
        if self.refusal is not None:
            raise self.refusal


class _Client:
    def __init__(self, api: Volumes) -> None:
        self.api = api


def _volumes(api: Volumes) -> DockerVolumes:
    return DockerVolumes(
        _Client(api),  # type: ignore[arg-type]
        "unix:///nowhere.sock",
        engine_timeout=1,
        connection={"base_url": "unix:///nowhere.sock", "version": "1.41"},
    )


def test_volumes_are_made_and_listed_with_their_users() -> None:
    api = Volumes()
    runtime = _volumes(api)
    assert runtime.create_volume("v1", labels={"k": "v"}).created == "2026-11-25T00:00:00Z"
    (listed,) = runtime.list_volumes("k=v")
    assert (listed.name, listed.users) == ("v1", ("c1",))
    # No volume: no question about the containers.
    assert runtime.list_volumes("k=other") == []
    assert api.asked_containers == 1


@pytest.mark.parametrize(
    ("refusal", "removed"), [(None, True), (docker.errors.NotFound("gone"), True), (_api_error(409), False)]
)
def test_a_volume_in_use_is_not_removed(refusal: Exception | None, removed: bool) -> None:
    api = Volumes()
    api.refusal = refusal
    assert _volumes(api).remove_volume("v1") is removed


def test_another_refusal_is_an_engine_error() -> None:
    api = Volumes()
    api.refusal = _api_error(400)
    with pytest.raises(EngineError, match=r"could not remove volume v1: refused"):
        _volumes(api).remove_volume("v1")
