"""The engine's API on its unix socket, read off a real socket: a server in the test answers each connection with
the bytes a test gives it (an engine's answers as Docker writes them, cut at awkward places, truncated, or garbage),
and sees what the client sends, and when it closes."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from xpcargo.container.docker import errors, socket_api
from xpcargo.container.docker.socket_api import (
    ConnectionFailedError,
    GarbledError,
    NoAnswerError,
    RefusedError,
    SocketAPI,
)
from xpcargo.container.engine import Engine, EngineKind
from xpcargo.errors import ContainerGoneError, EngineError, EngineUnavailableError

# What a handler does with a connection, given the request the client sent.
Handler = Callable[[socket.socket, bytes], None]


class ScriptedEngine:
    """A unix socket server: the n-th connection is answered by the n-th handler; the requests are kept."""

    def __init__(self, path: Path, *handlers: Handler) -> None:
        self.path = path
        self.requests: list[bytes] = []
        self.errors: list[BaseException] = []
        self._handlers = list(handlers)
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        self._listener.listen(8)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        for handler in self._handlers:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            with connection:
                try:
                    request = _read_request(connection)
                    self.requests.append(request)
                    handler(connection, request)
                except BaseException as exc:  # noqa: BLE001 - the test asserts there were none
                    self.errors.append(exc)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(5)
        assert not self.errors, self.errors


def _read_request(connection: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        piece = connection.recv(65536)
        if not piece:
            return data
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            while len(body) < int(value):
                body += connection.recv(65536)
    return data


def answer(*pieces: bytes, pause: float = 0.02) -> Handler:
    """Send ``pieces`` one at a time (each its own write, a pause between), then close."""

    def handle(connection: socket.socket, request: bytes) -> None:
        # A client that has read enough to refuse the answer closes before the rest is sent.
        with suppress(BrokenPipeError, ConnectionResetError):
            for piece in pieces:
                connection.sendall(piece)
                time.sleep(pause)

    return handle


def http(status: str, body: bytes, *, content_type: str = "application/json") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
UPGRADED = (
    b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\n"
    b"Upgrade: tcp\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


def frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


# Starts a scripted engine with these handlers; the client for it.
Start = Callable[..., tuple[ScriptedEngine, SocketAPI]]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Start]:
    started: list[ScriptedEngine] = []

    def start(*handlers: Handler) -> tuple[ScriptedEngine, SocketAPI]:
        server = ScriptedEngine(tmp_path / f"e{len(started)}.sock", *handlers)
        started.append(server)
        return server, SocketAPI(str(server.path), version="1.41")

    yield start
    for server in started:
        server.close()


ENGINE = Engine(kind=EngineKind.DOCKER, version="20.10.24", api_version="1.41", host="unix:///e.sock")


# --- Requests and whole answers ------------------------------------------------------------------------------------


def test_an_answer_of_a_content_length_and_the_request_that_asked_it(engine: Start) -> None:
    image = {"Id": "sha256:abc", "RepoTags": ["xpcargo/t:1"]}
    server, api = engine(answer(http("200 OK", json.dumps(image).encode())))
    assert api.inspect_image("xpcargo/aarch64-unknown-linux-gnu:1f38", timeout=5) == image
    (request,) = server.requests
    assert request.startswith(b"GET /v1.41/images/xpcargo/aarch64-unknown-linux-gnu:1f38/json HTTP/1.1\r\n")
    assert b"\r\nConnection: close\r\n" in request


def test_a_missing_image_is_none_and_a_missing_container_the_engine_s_words(engine: Start) -> None:
    missing = http("404 Not Found", b'{"message":"No such container: c1"}')
    _, api = engine(answer(http("404 Not Found", b'{"message":"No such image: x:1"}')), answer(missing))
    assert api.inspect_image("x:1", timeout=5) is None
    with pytest.raises(RefusedError) as caught:
        api.exec_create("c1", ["true"], env={}, workdir="/", stdin=False, user="", timeout=5)
    assert (caught.value.status, caught.value.explanation) == (404, "No such container: c1")
    gone = errors.translate_exec(ENGINE, "c1", "cargo build", caught.value, timeout=30)
    assert isinstance(gone, ContainerGoneError)
    assert str(gone) == "container c1 was no longer running when asked to run `cargo build`"


def test_an_exec_is_created_with_its_environment_user_and_tether(engine: Start) -> None:
    server, api = engine(answer(http("201 Created", b'{"Id":"e1"}')))
    created = api.exec_create(
        "c1", ["cargo", "build"], env={"A": "1 2"}, workdir="/w", stdin=True, user="1000:1000", timeout=5
    )
    assert created == "e1"
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1.41/containers/c1/exec HTTP/1.1\r\n")
    asked = json.loads(body)
    assert (asked["Cmd"], asked["Env"], asked["WorkingDir"], asked["User"]) == (
        ["cargo", "build"],
        ["A=1 2"],
        "/w",
        "1000:1000",
    )
    assert (asked["AttachStdin"], asked["AttachStdout"], asked["AttachStderr"], asked["Tty"]) == (
        True,
        True,
        True,
        False,
    )


def test_a_chunked_answer_cut_at_awkward_places(engine: Start) -> None:
    listing = json.dumps([{"Id": "sha256:a", "RepoTags": ["x:1"]}, {"Id": "sha256:b"}]).encode()
    body = chunk(listing[:7]) + b"1;name=ext\r\n" + listing[7:8] + b"\r\n" + chunk(listing[8:]) + b"0\r\nX-T: 1\r\n\r\n"
    # Every byte in a write of its own, through the size lines, the CRLFs and the trailer.
    pieces = [CHUNKED_HEAD, *(body[i : i + 1] for i in range(len(body)))]
    server, api = engine(answer(*pieces, pause=0))
    assert [image["Id"] for image in api.images("org.xpcargo.managed=true", timeout=5)] == ["sha256:a", "sha256:b"]
    assert b"filters=%7B%22label%22%3A+%5B%22org.xpcargo.managed%3Dtrue%22%5D%7D" in server.requests[0]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"zz\r\n{}\r\n0\r\n\r\n", GarbledError),  # not a size
        (b"-2\r\n{}\r\n0\r\n\r\n", GarbledError),
        (b"0_2\r\n{}\r\n0\r\n\r\n", GarbledError),  # what int() would take, and HTTP does not
        (b"0x2\r\n{}\r\n0\r\n\r\n", GarbledError),
        (b"2\r\n[]\r\n0\r\n" + b"T: 1\r\n" * 200 + b"\r\n", GarbledError),  # endless trailers
        (b"2\r\n{}XX0\r\n\r\n", GarbledError),  # no CRLF after the chunk
        (b"10\r\n[{}]", ConnectionFailedError),  # the connection ends in the middle of a chunk
        (b"2\r\n[]\r\n", ConnectionFailedError),  # no last chunk
        (b"2\r\n{]\r\n0\r\n\r\n", GarbledError),  # not JSON
    ],
)
def test_a_broken_chunked_answer(engine: Start, body: bytes, error: type[Exception]) -> None:
    _, api = engine(answer(CHUNKED_HEAD, body))
    with pytest.raises(error):
        api.images("l=v", timeout=5)


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02\xff garbage\r\n\r\n",
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 200 + b"\r\n",
        # A length no answer of the engine's has: refused before anything is read.
        b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n",
    ],
)
def test_garbage_is_garbled_not_a_crash(engine: Start, garbage: bytes) -> None:
    _, api = engine(answer(garbage))
    with pytest.raises(GarbledError) as caught:
        api.ping(timeout=5)
    error = errors.translate(ENGINE, "list images", caught.value, timeout=30)
    assert type(error) is EngineError
    assert str(error).startswith("the Docker engine could not list images: an answer that is not the engine API's")
    assert not errors.transient(caught.value)


def test_an_answer_cut_short_is_a_lost_connection_worth_another_try(engine: Start) -> None:
    _, api = engine(answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n[{"))
    with pytest.raises(ConnectionFailedError) as caught:
        api.containers("l=v", timeout=5)
    assert errors.transient(caught.value)
    error = errors.translate(ENGINE, "list containers", caught.value, timeout=30)
    assert type(error) is EngineUnavailableError
    assert str(error) == (
        "lost the Docker engine at unix:///e.sock while trying to list containers: the engine closed the connection "
        "in the middle of its answer"
    )


def test_an_engine_that_does_not_answer_in_time(engine: Start) -> None:
    held = threading.Event()

    def hold(connection: socket.socket, request: bytes) -> None:
        held.wait(10)

    _, api = engine(hold)
    started = time.monotonic()
    with pytest.raises(NoAnswerError) as caught:
        api.ping(timeout=0.3)
    held.set()
    assert time.monotonic() - started < 3
    assert not errors.transient(caught.value)
    error = errors.translate(ENGINE, "inspect image x", caught.value, timeout=0.3)
    assert str(error) == "the Docker engine at unix:///e.sock did not answer within 0s while trying to inspect image x"


def test_no_socket_and_no_listener_say_the_socket_s_words(tmp_path: Path) -> None:
    with pytest.raises(ConnectionFailedError, match=r"^No such file or directory$"):
        SocketAPI(str(tmp_path / "none.sock"), version="1.41").ping(timeout=5)
    dead = tmp_path / "dead.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(dead))
    listener.close()
    with pytest.raises(ConnectionFailedError, match=r"^Connection refused$") as caught:
        SocketAPI(str(dead), version="1.41").ping(timeout=5)
    assert errors.describe(caught.value) == "Connection refused"


def test_the_ping_names_the_engine(engine: Start) -> None:
    ping = b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nServer: Libpod/4.3.1 (linux)\r\nContent-Length: 2\r\n\r\nOK"
    server, api = engine(answer(ping))
    headers = api.ping(timeout=5)
    assert (headers["api-version"], headers["server"]) == ("1.41", "Libpod/4.3.1 (linux)")
    assert server.requests[0].startswith(b"GET /_ping HTTP/1.1\r\n")


# --- An exec's stream ---------------------------------------------------------------------------------------------


def test_an_exec_s_frames_split_anywhere_and_its_tether_held_until_the_end(engine: Start) -> None:
    big = bytes(range(256)) * 1000
    stream = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(0, b"in-as-out") + frame(1, big)
    tether: list[bytes] = []

    def start(connection: socket.socket, request: bytes) -> None:
        connection.sendall(UPGRADED)
        # A frame's header split in two writes, then the rest in odd pieces.
        for start in range(0, len(stream), 3):
            connection.sendall(stream[start : start + 3] if start < 60 else stream[start:])
            if start >= 60:
                break
            time.sleep(0.001)
        # The exec's standard input stays open while its output comes: nothing read, no end.
        connection.settimeout(0.3)
        try:
            tether.append(connection.recv(1))
        except TimeoutError:
            tether.append(b"still open")
        connection.shutdown(socket.SHUT_WR)
        connection.settimeout(5)
        tether.append(connection.recv(1))

    server, api = engine(start)
    output = api.exec_start("e1", timeout=5)
    out = b"".join(piece for piece, _ in output if piece)
    server.close()  # its handler done: it saw the tether open while the output came, then its end
    assert out == b"out\nin-as-out" + big
    assert tether == [b"still open", b""]
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    assert b"POST /v1.41/exec/e1/start HTTP/1.1\r\n" in head
    assert head.endswith(b"\r\nConnection: Upgrade\r\nUpgrade: tcp")
    assert json.loads(body) == {"Detach": False, "Tty": False}


def test_stdout_and_stderr_stay_apart(engine: Start) -> None:
    _, api = engine(answer(UPGRADED + frame(2, b"e1") + frame(1, b"o1") + frame(2, b"e2")))
    assert list(api.exec_start("e1", timeout=5)) == [(None, b"e1"), (b"o1", None), (None, b"e2")]


def _drain(output: socket_api.ExecOutput, received: list[bytes]) -> None:
    for out, err in output:
        received.append(out or err or b"")


@pytest.mark.parametrize(
    ("tail", "error", "words"),
    [
        (frame(1, b"complete")[:5], ConnectionFailedError, "in the middle of a frame"),  # half a header
        (frame(1, b"complete")[:11], ConnectionFailedError, "in the middle of a frame"),  # half a payload
        (b"\x01\x00\x07\x00\x00\x00\x00\x02ab", GarbledError, "not a stream frame's header: 0100070000000002"),
        (b"\x09\x00\x00\x00\x00\x00\x00\x02ab", GarbledError, "not a stream frame's header"),
        (b"HTTP/1.1 200 OK\r\n\r\n", GarbledError, "not a stream frame's header"),
        (frame(3, b"exec failed: no such user\n"), RefusedError, "exec failed: no such user"),
    ],
)
def test_a_cut_or_garbled_stream_after_what_came_whole(
    engine: Start, tail: bytes, error: type[Exception], words: str
) -> None:
    _, api = engine(answer(UPGRADED + frame(1, b"first"), tail))
    received: list[bytes] = []
    output = api.exec_start("e1", timeout=5)
    with pytest.raises(error, match=words):
        _drain(output, received)
    assert received[0] == b"first"
    # A stream that failed is of no more use: its connection (and the exec's standard input) is closed.
    assert output._sock.fileno() == -1


def test_a_frame_that_claims_gigabytes_is_passed_on_as_it_comes(engine: Start) -> None:
    claim = b"\x01\x00\x00\x00\xff\xff\xff\xff"
    _, api = engine(answer(UPGRADED + claim + b"x" * 100000))
    output = api.exec_start("e1", timeout=5)
    received: list[bytes] = []
    with pytest.raises(ConnectionFailedError):
        _drain(output, received)
    assert len(b"".join(received)) == 100000


def test_an_exec_start_refused_or_answered_oddly(engine: Start) -> None:
    conflict = http("409 Conflict", b'{"message":"Container c1 is not running"}')
    _, api = engine(answer(conflict), answer(http("302 Found", b"")))
    with pytest.raises(RefusedError, match=r"is not running") as caught:
        api.exec_start("e1", timeout=5)
    assert isinstance(errors.translate_exec(ENGINE, "c1", "true", caught.value, timeout=30), ContainerGoneError)
    with pytest.raises(GarbledError, match=r"status 302"):
        api.exec_start("e2", timeout=5)


def test_an_interrupt_while_the_output_is_read_leaves_the_tether_to_the_session(engine: Start) -> None:
    """A signal arrives as an exception raised inside the read (``interrupts``): the session then passes the signal
    on to the command, through another exec, which a closed tether would have pre-empted."""
    done = threading.Event()

    def silent(connection: socket.socket, request: bytes) -> None:
        connection.sendall(UPGRADED + frame(1, b"compiling"))
        done.wait(10)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    _, api = engine(silent)
    output = api.exec_start("e1", timeout=5)
    previous = signal.signal(signal.SIGALRM, interrupt)
    received: list[bytes] = []
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        with pytest.raises(KeyboardInterrupt):
            _drain(output, received)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert received == [b"compiling"]
    assert output._sock.fileno() != -1
    output.close()
    done.set()


def test_a_stream_closed_from_another_thread_ends_the_read(engine: Start) -> None:
    done = threading.Event()

    def silent(connection: socket.socket, request: bytes) -> None:
        connection.sendall(UPGRADED)
        done.wait(10)

    _, api = engine(silent)
    output = api.exec_start("e1", timeout=5)
    threading.Timer(0.2, output.close).start()
    started = time.monotonic()
    assert list(output) == []
    assert time.monotonic() - started < 3
    done.set()


# --- Events -------------------------------------------------------------------------------------------------------


def test_events_split_and_joined_across_chunks(engine: Start) -> None:
    first = json.dumps({"Action": "kill", "Actor": {"Attributes": {"signal": "9"}}}).encode() + b"\n"
    second = json.dumps({"Action": "die", "Actor": {"Attributes": {"exitCode": "137"}}}).encode() + b"\n"
    third = json.dumps({"status": "destroy"}).encode() + b"\n"
    server, api = engine(
        answer(CHUNKED_HEAD, chunk(first[:10]), chunk(first[10:] + second), chunk(third), b"0\r\n\r\n")
    )
    events = api.events("c1", since=1700000000.5, timeout=5)
    assert [event.get("Action") or event.get("status") for event in events] == ["kill", "die", "destroy"]
    target = server.requests[0].split(b" ")[1]
    assert target.startswith(b"/v1.41/events?since=1700000000&filters=")
    assert b"%22container%22%3A+%5B%22c1%22%5D" in target


@pytest.mark.parametrize(
    "events",
    [
        chunk(b'{"Action": "die"\n'),  # cut in the middle of the object
        chunk(b"[1, 2]\n"),  # not an object
        chunk(b"\xff\xfe\n"),  # not UTF-8
    ],
)
def test_garbled_events(engine: Start, events: bytes) -> None:
    _, api = engine(answer(CHUNKED_HEAD, events, b"0\r\n\r\n"))
    with pytest.raises(GarbledError):
        list(api.events("c1", since=0, timeout=5))


def test_an_endless_event_is_refused(engine: Start) -> None:
    _, api = engine(answer(CHUNKED_HEAD, *(chunk(b"x" * 60000) for _ in range(20))))
    with pytest.raises(GarbledError, match=r"an event of more than"):
        list(api.events("c1", since=0, timeout=5))


def test_the_module_needs_nothing_beyond_the_standard_library() -> None:
    source = Path(socket_api.__file__).read_text(encoding="utf-8")
    imported = {line.split()[1].split(".")[0] for line in source.splitlines() if line.startswith(("import ", "from "))}
    assert imported <= {"__future__", "json", "socket", "collections", "contextlib", "dataclasses", "typing", "urllib"}
