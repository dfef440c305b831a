"""What the Docker runtime does when the engine's answer is lost: a dropped connection right after the engine
created a container cannot be produced on cue, so here (only) the engine's API is a stand-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import requests

from xpcargo.container import docker_runtime
from xpcargo.container.docker_runtime import DockerRuntime
from xpcargo.container.spec import REQUEST_LABEL, ContainerRequest
from xpcargo.errors import ConfigError


class LosesTheFirstAnswer:
    """An engine API whose first create succeeds but whose answer never arrives."""

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.started: list[str] = []

    def create_host_config(self, **options: Any) -> dict[str, Any]:
        return options

    def create_container(self, image: str, **options: Any) -> dict[str, str]:
        self.created.append({"Id": f"c{len(self.created) + 1}", "Labels": options["labels"]})
        if len(self.created) == 1:
            raise requests.exceptions.ConnectionError("Connection aborted.")
        return {"Id": self.created[-1]["Id"]}

    def containers(self, *, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:
        name, _, value = filters["label"].partition("=")
        return [c for c in self.created if c["Labels"].get(name) == value]

    def attach_socket(self, container: str, params: dict[str, int]) -> object:
        return object()

    def start(self, container: str) -> None:
        self.started.append(container)


class _Client:
    def __init__(self, api: LosesTheFirstAnswer) -> None:
        self.api = api


class _NoWatch:
    def __init__(self, *args: object) -> None:
        pass


def test_a_create_whose_answer_was_lost_is_found_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    # The watch on the container's events talks to an engine of its own; there is none here.
    monkeypatch.setattr(docker_runtime, "_ContainerWatch", _NoWatch)
    api = LosesTheFirstAnswer()
    runtime = DockerRuntime(
        _Client(api),  # type: ignore[arg-type]
        "unix:///nowhere.sock",
        engine_timeout=1,
        connection={"base_url": "unix:///nowhere.sock", "version": "1.41"},
    )
    request = ContainerRequest(image="i", user="0:0", workdir=Path("/"), labels={REQUEST_LABEL: "req-1"})
    container = runtime.start(request)
    assert container == "c1"
    assert [c["Id"] for c in api.created] == ["c1"], "a second container was created for the same request"
    assert api.started == ["c1"]


def test_transient_engine_errors_are_tried_again_with_growing_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("xpcargo.container.docker_runtime.time.sleep", waits.append)
    calls: list[int] = []

    def drops(times: int) -> Any:
        def operation() -> str:
            calls.append(1)
            if len(calls) <= times:
                raise requests.exceptions.ConnectionError("Connection aborted.")
            return "answer"

        return operation

    assert docker_runtime._retry(drops(3)) == "answer"
    assert waits == [0.25, 0.5, 1.0]
    calls.clear()
    with pytest.raises(requests.exceptions.ConnectionError):
        docker_runtime._retry(drops(4))
    assert len(calls) == 4


def test_an_engine_that_did_not_answer_in_time_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("xpcargo.container.docker_runtime.time.sleep", lambda _: None)
    calls: list[int] = []

    def hangs() -> None:
        calls.append(1)
        raise requests.exceptions.ReadTimeout("read timed out")

    with pytest.raises(requests.exceptions.ReadTimeout):
        docker_runtime._retry(hangs)
    assert calls == [1]


@pytest.mark.parametrize("auth", ["!!notbase64", "bm9jb2xvbg=="])
def test_a_malformed_login_in_the_client_config_names_the_file_and_the_entry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, auth: str
) -> None:
    """The SDK decodes it while making a client: read as "cannot reach a container engine" before."""
    (tmp_path / "config.json").write_text(f'{{"auths": {{"r.example": {{"auth": "{auth}"}}}}}}', encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    with pytest.raises(ConfigError, match=r"the `auth` of `auths.r.example` is malformed") as caught:
        docker_runtime._check_client_config()
    assert str(tmp_path / "config.json") in str(caught.value)


def test_a_sound_client_config_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config.json").write_text('{"auths": {"r.example": {"auth": "dTpw"}}}', encoding="utf-8")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    docker_runtime._check_client_config()


class Records(LosesTheFirstAnswer):
    """An engine API that answers every create, and keeps what it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.options: list[dict[str, Any]] = []

    def create_container(self, image: str, **options: Any) -> dict[str, str]:
        self.options.append(options)
        self.created.append({"Id": f"c{len(self.created) + 1}", "Labels": options["labels"]})
        return {"Id": self.created[-1]["Id"]}


@pytest.mark.parametrize(("user", "keeper"), [("1000:1000", "0"), ("0:0", "65534")])
def test_a_confined_container_is_read_only_with_a_keeper_of_its_own(
    monkeypatch: pytest.MonkeyPatch, user: str, keeper: str
) -> None:
    monkeypatch.setattr(docker_runtime, "_ContainerWatch", _NoWatch)
    api = Records()
    runtime = DockerRuntime(
        _Client(api),  # type: ignore[arg-type]
        "unix:///nowhere.sock",
        engine_timeout=1,
        connection={"base_url": "unix:///nowhere.sock", "version": "1.41"},
    )
    request = ContainerRequest(
        image="i", user=user, workdir=Path("/"), confined=True, scratch=(Path("/tmp"), Path("/var/tmp"))
    )
    runtime.start(request, main=["sh"])
    (options,) = api.options
    assert options["user"] == f"{keeper}:{keeper}"
    host = options["host_config"]
    assert host["read_only"] is True
    assert host["tmpfs"] == {
        "/tmp": "exec,mode=1777",
        "/var/tmp": "exec,mode=1777",
        "/run/xpcargo": f"uid={keeper},gid={keeper},mode=0755",
    }
    # An image build's container is neither.
    runtime.start(ContainerRequest(image="i", user=user, workdir=Path("/")), main=["sh"])
    assert api.options[1]["user"] == user
    assert api.options[1]["host_config"]["read_only"] is False
