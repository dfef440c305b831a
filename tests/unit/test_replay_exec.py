"""The replay's requests (``container.docker.replay_exec``) against a unix socket that answers with real bad bytes:
each failure is one of the module's two, never another exception. The real engine's answers are
tests/integration/test_replay.py's."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from xpcargo.container.docker import replay_exec


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[tuple[str, list[bytes]]]:
    """A socket that answers each connection with the next of the answers the test puts in the list."""
    path = str(tmp_path / "engine.sock")
    answers: list[bytes] = []
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                connection.recv(65536)
                if answers:
                    connection.sendall(answers.pop(0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path, answers
    server.close()


def test_a_listings_answer_is_its_body_whole(engine: tuple[str, list[bytes]]) -> None:
    path, answers = engine
    answers.append(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")
    answers.append(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n[\r\n1\r\n]\r\n0\r\n\r\n")
    assert replay_exec.answer(path, "/images/json", timeout=5) == b"[]"
    assert replay_exec.answer(path, "/images/json", timeout=5) == b"[]"


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n[]\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n[]",
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\n\r\n{}",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        b"",
    ],
    ids=["chunk-size", "cut", "status", "not-http", "nothing"],
)
def test_a_bad_answer_is_no_answer(engine: tuple[str, list[bytes]], answer: bytes) -> None:
    path, answers = engine
    answers.append(answer)
    with pytest.raises(replay_exec.NotStarted):
        replay_exec.answer(path, "/images/json", timeout=5)


def test_an_image_the_engine_lacks_is_none_and_garbage_is_no_answer(engine: tuple[str, list[bytes]]) -> None:
    path, answers = engine
    answers.append(b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}")
    assert replay_exec.image_id(path, "1.41", "xpcargo/x:1", timeout=5) is None
    answers.append(b'HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{"Id": 1}')
    with pytest.raises(replay_exec.NotStarted):
        replay_exec.image_id(path, "1.41", "xpcargo/x:1", timeout=5)


def test_an_exec_that_names_no_hex_id_is_not_started(engine: tuple[str, list[bytes]]) -> None:
    path, answers = engine
    answers.append(b'HTTP/1.1 201 Created\r\nContent-Length: 15\r\n\r\n{"Id": "../x"} ')
    with pytest.raises(replay_exec.NotStarted):
        replay_exec.create_exec(path, "1.41", "c0ffee", b"{}", timeout=5)


def test_an_exec_whose_output_is_cut_in_a_frame_is_lost(engine: tuple[str, list[bytes]]) -> None:
    path, answers = engine
    # A frame that claims 100 bytes of stdout and brings 3.
    answers.append(b"HTTP/1.1 101 UPGRADED\r\n\r\n\x01\x00\x00\x00\x00\x00\x00\x64abc")
    got: list[bytes] = []
    with pytest.raises(replay_exec.Lost):
        replay_exec.run_exec(path, "1.41", "ab", timeout=5, on_stdout=got.append, on_stderr=got.append)
    assert got == [b"abc"]
