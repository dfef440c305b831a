"""What the engine says about itself, asked of Docker's `/info` or Podman's own `/libpod/info`."""

from __future__ import annotations

from typing import Any

from xpcargo.container.docker.connection import Connection
from xpcargo.container.engine import Engine, EngineKind


class _Answer:
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def raise_for_status(self) -> None:
        pass

    def json(self) -> dict[str, Any]:
        return self._body


class _Api:
    base_url = "http+docker://localhost"

    def __init__(self) -> None:
        self.asked: list[str] = []

    def get(self, url: str, *, timeout: int) -> _Answer:
        self.asked.append(url)
        return _Answer({"host": {"security": {"rootless": True}, "arch": "amd64"}, "store": {}})


class _Client:
    def __init__(self) -> None:
        self.api = _Api()

    def info(self) -> dict[str, Any]:
        return {"Architecture": "x86_64", "SecurityOptions": ["name=seccomp"], "Driver": "overlay2"}


def _connection(kind: EngineKind) -> tuple[Connection, _Client]:
    client = _Client()
    engine = Engine(kind=kind, version="", api_version="1.41", host="unix:///e.sock")
    connection = Connection(
        client,  # type: ignore[arg-type]
        engine.host,
        engine_timeout=1,
        connection={"base_url": engine.host, "version": "1.41"},
        engine=engine,
    )
    return connection, client


def test_docker_describes_itself_through_its_info() -> None:
    connection, client = _connection(EngineKind.DOCKER)
    details = connection.describe()
    assert (details.rootless, details.architecture, details.storage_driver) == (False, "x86_64", "overlay2")
    assert client.api.asked == []


def test_podman_says_whether_it_is_rootless_through_its_own_api() -> None:
    connection, client = _connection(EngineKind.PODMAN)
    details = connection.describe()
    assert (details.rootless, details.architecture) == (True, "amd64")
    assert client.api.asked == ["http+docker://localhost/v4.0.0/libpod/info"]
