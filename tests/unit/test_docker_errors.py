"""The SDK's and requests' exceptions as xpcargo's errors, and which are tried again: built by hand, no engine."""

from __future__ import annotations

from typing import Any

import docker.errors
import pytest
import requests

from xpcargo.container.docker import errors
from xpcargo.container.engine import Engine, EngineKind
from xpcargo.errors import ContainerGoneError, EngineError, EngineUnavailableError

ENGINE = Engine(kind=EngineKind.PODMAN, version="4.3.1", api_version="1.41", host="unix:///run/podman/podman.sock")


def _api_error(status: int, explanation: str = "") -> docker.errors.APIError:
    response = requests.Response()
    response.status_code = status
    return docker.errors.APIError(f"{status} Server Error", response=response, explanation=explanation or None)


def _lost_socket() -> requests.exceptions.ConnectionError:
    """As requests raises it: the socket's own words a few exceptions deep."""
    try:
        try:
            raise FileNotFoundError(2, "No such file or directory")
        except OSError as cause:
            raise requests.exceptions.ConnectionError(("Connection aborted.", cause)) from cause
    except requests.exceptions.ConnectionError as exc:
        return exc


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (requests.exceptions.ConnectionError("reset"), True),
        (requests.exceptions.ReadTimeout("read timed out"), False),
        (requests.exceptions.ConnectTimeout("connect timed out"), False),
        (_api_error(500), True),
        (_api_error(500, "No such container: c1"), False),
        (_api_error(404), False),
        (ValueError("not the engine's"), False),
    ],
)
def test_which_failures_are_worth_another_try(exc: BaseException, transient: bool) -> None:
    assert errors.transient(exc) is transient


def test_the_words_are_the_socket_s_the_engine_s_or_the_first_line() -> None:
    assert errors.describe(_lost_socket()) == "No such file or directory"
    assert errors.describe(_api_error(500, "conflict: image in use")) == "conflict: image in use"
    assert errors.describe(ValueError("first\nsecond")) == "first"
    assert errors.describe(ValueError()) == "ValueError"


def test_a_timeout_says_how_long_and_which_knob() -> None:
    error = errors.translate(ENGINE, "list images", requests.exceptions.ReadTimeout("x"), timeout=30)
    assert isinstance(error, EngineUnavailableError)
    assert str(error) == (
        "the Podman engine at unix:///run/podman/podman.sock did not answer within 30s while trying to list images"
    )
    assert "XPCARGO_ENGINE_TIMEOUT" in (error.hint or "")
    assert "`podman info`" in (error.hint or "")


def test_a_lost_connection_says_why() -> None:
    error = errors.translate(ENGINE, "tag an image", _lost_socket(), timeout=30)
    assert isinstance(error, EngineUnavailableError)
    assert str(error).endswith("while trying to tag an image: No such file or directory")


def test_an_engine_refusal_is_an_engine_error_and_anything_else_is_left_alone() -> None:
    error = errors.translate(ENGINE, "remove image i", _api_error(409, "image is in use"), timeout=30)
    assert type(error) is EngineError
    assert str(error) == "the Podman engine could not remove image i: image is in use"
    mistake = KeyError("Id")
    assert errors.translate(ENGINE, "anything", mistake, timeout=30) is mistake


@pytest.mark.parametrize("status", [404, 409])
def test_an_exec_in_a_container_gone_or_stopping_ran_nothing(status: int) -> None:
    error = errors.translate_exec(ENGINE, "0123456789abcdef", "cargo build", _api_error(status), timeout=30)
    assert isinstance(error, ContainerGoneError)
    assert str(error) == "container 0123456789ab was no longer running when asked to run `cargo build`"


def test_another_exec_failure_is_translated_as_any_call() -> None:
    error = errors.translate_exec(ENGINE, "c1", "cargo build", _api_error(500, "oops"), timeout=30)
    assert type(error) is EngineError
    assert str(error) == "the Podman engine could not start `cargo build` in the container: oops"


def test_transient_engine_errors_are_tried_again_with_growing_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr("xpcargo.container.docker.errors.time.sleep", waits.append)
    calls: list[int] = []

    def drops(times: int) -> Any:
        def operation() -> str:
            calls.append(1)
            if len(calls) <= times:
                raise requests.exceptions.ConnectionError("Connection aborted.")
            return "answer"

        return operation

    assert errors.retry(drops(3)) == "answer"
    assert waits == [0.25, 0.5, 1.0]
    calls.clear()
    with pytest.raises(requests.exceptions.ConnectionError):
        errors.retry(drops(4))
    assert len(calls) == 4


def test_an_engine_that_did_not_answer_in_time_is_not_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("xpcargo.container.docker.errors.time.sleep", lambda _: None)
    calls: list[int] = []

    def hangs() -> None:
        calls.append(1)
        raise requests.exceptions.ReadTimeout("read timed out")

    with pytest.raises(requests.exceptions.ReadTimeout):
        errors.retry(hangs)
    assert calls == [1]
