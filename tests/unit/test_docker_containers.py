"""What the Docker runtime's containers are created with, and what happens when the engine's answer is lost: a
dropped connection right after the engine created a container cannot be produced on cue, so here (only) the engine's
API is a stand-in."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.errors
import pytest
import requests

from xpcargo.container import warm
from xpcargo.container.docker import containers
from xpcargo.container.docker.containers import DockerContainers
from xpcargo.container.spec import REQUEST_LABEL, ContainerRequest
from xpcargo.errors import ContainerGoneError, EngineError, EngineLostError, EngineUnavailableError


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
    def __init__(self, api: object) -> None:
        self.api = api


class _NoWatch:
    oom = False

    def __init__(self, *args: object) -> None:
        pass

    def death(self, *, grace: float) -> str | None:
        return None

    def close(self) -> None:
        pass


def _containers(api: object, monkeypatch: pytest.MonkeyPatch) -> DockerContainers:
    runtime = DockerContainers(
        _Client(api),  # type: ignore[arg-type]
        "unix:///nowhere.sock",
        engine_timeout=1,
        connection={"base_url": "unix:///nowhere.sock", "version": "1.41"},
    )
    # The watch on the container's events talks to an engine of its own; there is none here.
    monkeypatch.setattr(runtime, "_watch", _NoWatch)
    return runtime


def test_a_create_whose_answer_was_lost_is_found_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    api = LosesTheFirstAnswer()
    runtime = _containers(api, monkeypatch)
    request = ContainerRequest(image="i", user="0:0", workdir=Path("/"), labels={REQUEST_LABEL: "req-1"})
    container = runtime.start(request)
    assert container == "c1"
    assert [c["Id"] for c in api.created] == ["c1"], "a second container was created for the same request"
    assert api.started == ["c1"]


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
    api = Records()
    runtime = _containers(api, monkeypatch)
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


class HangsAfterCreating(Records):
    """An engine that stops answering once the container is created: its start and its removal time out."""

    def attach_socket(self, container: str, params: dict[str, int]) -> object:
        self.tether = socket.socketpair()
        return self.tether[0]

    def start(self, container: str) -> None:
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")

    def remove_container(self, container: str, **options: Any) -> None:
        raise requests.exceptions.ReadTimeout("Read timed out. (read timeout=5)")


def test_a_start_that_fails_says_why_and_names_the_container_it_could_not_remove(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = HangsAfterCreating()
    runtime = _containers(api, monkeypatch)
    monkeypatch.setattr(runtime, "_client_like", lambda **_: api)
    with pytest.raises(EngineUnavailableError, match=r"while trying to start the container") as caught:
        runtime.start(ContainerRequest(image="i", user="0:0", workdir=Path("/")))
    assert caught.value.left_behind == ["c1"]
    assert "docker rm -f c1" in caught.value.summary()
    api.tether[1].close()


def _api_error(status: int, explanation: str = "") -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} error", response=response, explanation=explanation or None)


class _Output:
    """An exec's demultiplexed output stream, as the SDK gives it."""

    def __init__(self, pieces: list[tuple[bytes | None, bytes | None]]) -> None:
        self._pieces = pieces
        self.closed = False

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        return iter(self._pieces)

    def close(self) -> None:
        self.closed = True


class Execs:
    """An engine API that runs execs: each prints ``pieces`` and exits with ``code``; or refuses with ``refusal``."""

    def __init__(self, *, code: int | None = 0, refusal: Exception | None = None) -> None:
        self.code = code
        self.refusal = refusal
        self.asked: list[dict[str, Any]] = []
        self.removals: list[Exception | None] = []
        self.removed: list[str] = []
        # How long the engine takes to delete a container (a large one, on a busy machine).
        self.removal_takes = 0.0

    def exec_create(self, container: str, argv: list[str], **options: Any) -> dict[str, str]:
        if self.refusal is not None:
            raise self.refusal
        self.asked.append({"argv": argv, **options})
        return {"Id": "e1"}

    def exec_start(self, exec_id: str, **options: Any) -> _Output:
        return _Output([(b"out", None), (None, b"err")])

    def exec_inspect(self, exec_id: str) -> dict[str, Any]:
        return {"ExitCode": self.code, "Running": False}

    def ping(self) -> bool:
        return True

    def remove_container(self, container: str, **options: Any) -> None:
        time.sleep(self.removal_takes)
        failure = self.removals.pop(0) if self.removals else None
        if failure is not None:
            raise failure
        self.removed.append(container)

    def containers(self, *, all: bool, filters: dict[str, str]) -> list[dict[str, Any]]:
        return [{"Id": "c1", "Labels": {"k": "v"}, "State": "running", "Image": "sha256:i", "Created": 3}]

    def diff(self, container: str) -> list[dict[str, Any]]:
        return [{"Kind": 1, "Path": "/usr/bin/tool"}]

    def put_archive(self, container: str, path: str, data: object) -> bool:
        return False


def _on(api: Execs, monkeypatch: pytest.MonkeyPatch) -> DockerContainers:
    runtime = _containers(api, monkeypatch)
    # The stream, the health check's pings and the removal each talk on a connection of their own: the stand-in.
    monkeypatch.setattr(runtime, "_sdk_stream", api)
    monkeypatch.setattr(runtime, "_client_like", lambda **_: api)
    return runtime


def _exec(runtime: DockerContainers, argv: list[str], output: list[bytes]) -> int:
    return runtime.exec(
        "c1", argv, env={"A": "1"}, workdir=Path("/w"), on_stdout=output.append, on_stderr=output.append, user="u"
    )


def test_an_exec_streams_its_output_and_returns_its_code(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Execs(code=3)
    output: list[bytes] = []
    assert _exec(_on(api, monkeypatch), warm.wrapped("t0ken", ["cargo", "build"], tether=False), output) == 3
    assert output == [b"out", b"err"]
    (asked,) = api.asked
    assert (asked["environment"], asked["workdir"], asked["stdin"], asked["user"]) == ({"A": "1"}, "/w", False, "u")


@pytest.mark.parametrize("status", [404, 409])
def test_an_exec_refused_by_a_container_gone_ran_nothing(monkeypatch: pytest.MonkeyPatch, status: int) -> None:
    runtime = _on(Execs(refusal=_api_error(status)), monkeypatch)
    command = warm.wrapped("t0ken", ["cargo", "build", "-v"], tether=True)
    with pytest.raises(ContainerGoneError, match=r"when asked to run `cargo build`"):
        _exec(runtime, command, [])


def test_an_exec_whose_result_is_lost_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lost once started: the command may run on, which a warm session names.
    with pytest.raises(EngineLostError, match=r"lost the output of `true` while it still ran"):
        _exec(_on(Execs(code=None), monkeypatch), ["true"], [])


def test_an_exec_the_engine_never_took_is_not_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    unanswered = requests.exceptions.ReadTimeout("read timed out")
    with pytest.raises(EngineUnavailableError, match=r"while trying to start `true`") as caught:
        _exec(_on(Execs(refusal=unanswered), monkeypatch), ["true"], [])
    assert not isinstance(caught.value, EngineLostError)


def test_a_removal_tries_again_then_says_what_it_could_not_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    api = Execs()
    runtime = _on(api, monkeypatch)
    # Gone already, or being removed by the engine (409): done.
    api.removals = [docker.errors.NotFound("gone")]
    runtime.remove("c1")
    api.removals = [_api_error(409)]
    runtime.remove("c1")
    # Podman refusing while the container ends by itself: asked again.
    api.removals = [_api_error(500, "container state improper")]
    runtime.remove("c1")
    assert api.removed == ["c1"]
    api.removals = [_api_error(500, "container state improper")] * 3
    with pytest.raises(EngineUnavailableError, match=r"did not remove container c1: container state improper"):
        runtime.remove("c1")


def test_only_a_removal_nobody_waits_on_gives_a_slow_engine_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(containers, "_REMOVAL_DEADLINE", 0.2)
    monkeypatch.setattr(containers, "_UNHURRIED_REMOVAL_DEADLINE", 3.0)
    api = Execs()
    api.removal_takes = 1.5
    runtime = _on(api, monkeypatch)
    with pytest.raises(EngineUnavailableError, match=r"did not remove container c1: no answer within 0s"):
        runtime.remove("c1")
    runtime.remove("c2", unhurried=True)
    assert "c2" in api.removed


def test_containers_are_listed_with_their_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = _on(Execs(), monkeypatch)
    (listed,) = runtime.list_containers("k=v")
    assert (listed.id, listed.running, listed.image) == ("c1", True, "sha256:i")
    assert [c.id for c in runtime.containers_using("sha256:i")] == ["c1"]
    assert runtime.changes("c1") == [("A", "/usr/bin/tool")]


def test_an_archive_the_engine_refuses_to_unpack_is_an_engine_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    archive = tmp_path / "files.tar"
    archive.write_bytes(b"")
    with pytest.raises(EngineError, match=r"refused to unpack files.tar at /w"):
        _on(Execs(), monkeypatch).put_archive("c1", Path("/w"), archive)
