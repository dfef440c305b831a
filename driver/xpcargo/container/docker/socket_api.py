"""The engine's HTTP API on its unix socket, written on the standard library: the requests of a warm build and of
`image list` (the ping, image and container lookups, an exec with its standard input held open as a tether and its
multiplexed output, a container's events), for Docker's and Podman's sockets. Importing the Docker SDK (requests,
urllib3 and more under it) costs more than a whole `docker exec` (docs/costs.md); every other request, and engines at
tcp:// (TLS) and ssh://, stay the SDK's.

One connection per request (`Connection: close`): on a unix socket a connection costs microseconds, and a stream (an
exec's output, the events) holds its own anyway. Nothing here is shared between threads but the socket's path.

Failures are this module's own exceptions, which ``errors`` translates as it does the SDK's: ``NoAnswerError`` (no
answer in time), ``ConnectionFailedError`` (no connection, or lost, or an answer cut short), ``RefusedError`` (an
error status, with the engine's words), ``GarbledError`` (bytes that are not the API's). The engine's bytes are read
with limits: a line, the headers, a body and an event each have a ceiling, and an exec's frames are passed on in
pieces, whatever size they claim.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

# The largest status or header line, the most header lines, the largest body read whole (an image list of a few
# thousand images is a few MB) and the largest event or error text.
_LINE_LIMIT = 16 * 1024
_HEADER_LINES = 128
_BODY_LIMIT = 256 * 1024 * 1024
_EVENT_LIMIT = 1024 * 1024
_RECEIVE = 64 * 1024
# Docker's stream multiplexing (`stdcopy`): an 8-byte header per frame, the stream (0 stdin, 1 stdout, 2 stderr, 3
# the engine's own error), three zero bytes and the payload's length, big-endian.
FRAME_HEADER = 8
_STDERR, _SYSTEM_ERROR = 2, 3
_HEX_DIGITS = b"0123456789abcdefABCDEF"


def exec_body(argv: Sequence[str], *, env: Mapping[str, str], workdir: str, stdin: bool, user: str) -> dict[str, Any]:
    """An exec's creation request."""
    return {
        "AttachStdin": stdin,
        "AttachStdout": True,
        "AttachStderr": True,
        "Tty": False,
        "Privileged": False,
        "User": user,
        "Cmd": list(argv),
        "Env": [f"{name}={value}" for name, value in env.items()],
        "WorkingDir": workdir,
    }


def encode(body: object) -> bytes:
    """A request's body as it is sent."""
    return json.dumps(body).encode()


class SocketAPIError(Exception):
    """A request to the engine that failed: one of the four below."""


class NoAnswerError(SocketAPIError):
    """No answer (or no connection) within the time allowed: the engine may be hung."""


class ConnectionFailedError(SocketAPIError):
    """No connection could be made, or it was lost, or the engine closed it before its answer was complete."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RefusedError(SocketAPIError):
    """The engine answered with an error status; ``explanation`` (the message) is its own words."""

    def __init__(self, status: int, explanation: str) -> None:
        super().__init__(explanation)
        self.status = status
        self.explanation = explanation


class GarbledError(SocketAPIError):
    """Bytes that are not the engine's API: not HTTP, a malformed chunk or frame, a body that is not JSON."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"an answer that is not the engine API's: {detail}")


@dataclass(frozen=True)
class Answer:
    status: int
    # Names in lower case.
    headers: Mapping[str, str]
    body: bytes


class _Reader:
    """A socket's bytes, buffered: a line, an exact count, or what has come."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        """Receive more; False at the end of the stream."""
        if self._eof:
            return False
        try:
            data = self._sock.recv(_RECEIVE)
        except TimeoutError:
            raise NoAnswerError("no answer in time") from None
        except OSError as exc:
            raise ConnectionFailedError(exc.strerror or str(exc) or type(exc).__name__) from None
        if not data:
            self._eof = True
            return False
        self._buffer += data
        return True

    def line(self) -> bytes:
        """One line, its CRLF (or LF) removed."""
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end > _LINE_LIMIT:
                raise GarbledError(f"a line of more than {_LINE_LIMIT} bytes")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line.removesuffix(b"\r")
            if len(self._buffer) > _LINE_LIMIT:
                raise GarbledError(f"a line of more than {_LINE_LIMIT} bytes")
            start = len(self._buffer)
            if not self._fill():
                raise ConnectionFailedError("the engine closed the connection in the middle of its answer")

    def exactly(self, count: int) -> bytes:
        while len(self._buffer) < count:
            if not self._fill():
                raise ConnectionFailedError("the engine closed the connection in the middle of its answer")
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data

    def some(self, most: int) -> bytes:
        """At most ``most`` bytes, at least one; empty at the end of the stream."""
        if not self._buffer and not self._fill():
            return b""
        data = bytes(self._buffer[:most])
        del self._buffer[:most]
        return data

    def rest(self, limit: int) -> bytes:
        """Everything up to the end of the stream."""
        while self._fill():
            if len(self._buffer) > limit:
                raise GarbledError(f"an answer of more than {limit} bytes")
        data = bytes(self._buffer)
        self._buffer.clear()
        return data


def read_head(reader: _Reader) -> tuple[int, dict[str, str]]:
    """The status and headers of an answer."""
    status_line = reader.line()
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
        raise GarbledError(f"not an HTTP answer: {status_line[:80]!r}")
    headers: dict[str, str] = {}
    for _ in range(_HEADER_LINES):
        line = reader.line()
        if not line:
            return int(parts[1]), headers
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise GarbledError(f"not an HTTP header: {line[:80]!r}")
        headers[name.decode("latin-1").lower()] = value.strip().decode("latin-1")
    raise GarbledError(f"more than {_HEADER_LINES} header lines")


def chunks(reader: _Reader) -> Iterator[bytes]:
    """A chunked body's pieces, as they come; its trailers are read and dropped."""
    while True:
        line = reader.line()
        size_text = line.split(b";", 1)[0].strip()
        # Hex digits only: Python's int() would also take a sign, `0x`, underscores and spaces.
        if not size_text or len(size_text) > 16 or size_text.strip(_HEX_DIGITS):
            raise GarbledError(f"not a chunk's size: {line[:80]!r}")
        size = int(size_text, 16)
        if size == 0:
            for _ in range(_HEADER_LINES):
                if not reader.line():
                    return
            raise GarbledError(f"more than {_HEADER_LINES} trailer lines")
        yield from _pieces(reader, size, cut="the engine closed the connection in the middle of a chunk")
        if reader.exactly(2) != b"\r\n":
            raise GarbledError("a chunk not followed by CRLF")


def read_body(reader: _Reader, status: int, headers: Mapping[str, str], *, limit: int = _BODY_LIMIT) -> bytes:
    """A whole body: chunked, of a Content-Length, or up to the end of the connection."""
    if 100 <= status < 200 or status in (204, 304):
        return b""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        for piece in chunks(reader):
            body += piece
            if len(body) > limit:
                raise GarbledError(f"an answer of more than {limit} bytes")
        return bytes(body)
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise GarbledError(f"not a Content-Length: {length[:40]!r}")
        if int(length) > limit:
            raise GarbledError(f"an answer of {length} bytes, more than {limit}")
        return reader.exactly(int(length))
    return reader.rest(limit)


def frames(reader: _Reader) -> Iterator[tuple[int, bytes]]:
    """An exec's output as Docker multiplexes it: ``(stream, piece)``, 1 for standard output (and 0), 2 for standard
    error, a frame's payload passed on in pieces as it comes. The engine's own error (stream 3) is raised."""
    while True:
        header = reader.some(FRAME_HEADER)
        if not header:
            return
        if len(header) < FRAME_HEADER:
            header += _within_frame(reader, FRAME_HEADER - len(header))
        kind, size = header[0], int.from_bytes(header[4:], "big")
        if kind > _SYSTEM_ERROR or header[1:4] != b"\0\0\0":
            raise GarbledError(f"not a stream frame's header: {header.hex()}")
        if kind == _SYSTEM_ERROR:
            text = _within_frame(reader, min(size, _EVENT_LIMIT))
            raise RefusedError(500, text.decode("utf-8", "replace").strip() or "an error in the output stream")
        stream = _STDERR if kind == _STDERR else 1
        for piece in _pieces(reader, size, cut="the engine closed the stream in the middle of a frame"):
            yield (stream, piece)


def _pieces(reader: _Reader, size: int, *, cut: str) -> Iterator[bytes]:
    """The next ``size`` bytes, in pieces as they come; an end of the connection first is ``cut``."""
    remaining = size
    while remaining:
        piece = reader.some(min(remaining, _RECEIVE))
        if not piece:
            raise ConnectionFailedError(cut)
        remaining -= len(piece)
        yield piece


def _within_frame(reader: _Reader, count: int) -> bytes:
    """The rest of a frame's header, or its error text: an end of the stream here cuts a frame."""
    try:
        return reader.exactly(count)
    except ConnectionFailedError:
        raise ConnectionFailedError("the engine closed the stream in the middle of a frame") from None


def events(pieces: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The engine's events, JSON objects one a line (Docker's and Podman's encoders end each with a newline)."""
    pending = bytearray()
    decoder = json.JSONDecoder()
    for piece in pieces:
        pending += piece
        while (end := pending.find(b"\n")) >= 0:
            line = bytes(pending[:end]).strip()
            del pending[: end + 1]
            text = _text(line)
            position = 0
            while position < len(text):
                try:
                    event, position = decoder.raw_decode(text, position)
                except ValueError:
                    raise GarbledError(f"not an event: {line[:80]!r}") from None
                if not isinstance(event, dict):
                    raise GarbledError(f"not an event: {line[:80]!r}")
                yield event
                while position < len(text) and text[position].isspace():
                    position += 1
        if len(pending) > _EVENT_LIMIT:
            raise GarbledError(f"an event of more than {_EVENT_LIMIT} bytes")


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise GarbledError(f"not UTF-8: {data[:80]!r}") from None


def parse_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise GarbledError(f"not JSON: {data[:80]!r}") from None


def _refusal(answer: Answer) -> RefusedError:
    """An error answer: Docker and Podman say why in `{"message": ...}`."""
    explanation = answer.body.decode("utf-8", "replace").strip()
    with suppress(ValueError):
        document = json.loads(answer.body)
        if isinstance(document, dict) and isinstance(document.get("message"), str):
            explanation = document["message"]
    return RefusedError(answer.status, explanation or f"status {answer.status}")


class Stream:
    """An answer read as it comes (an exec's output, the events), on a connection of its own, which ends with the
    reading; ``close`` from any thread ends the reading (and, for an exec, its standard input: the tether)."""

    def __init__(self, sock: socket.socket, reader: _Reader) -> None:
        self._sock = sock
        self.reader = reader

    def close(self) -> None:
        # A shutdown wakes a reader blocked in another thread; a close alone would not.
        with suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with suppress(OSError):
            self._sock.close()


class ExecOutput(Stream):
    """An exec's output, demultiplexed as the SDK gives it: ``(stdout, None)`` or ``(None, stderr)``. Its standard
    input, when attached, is this connection's: it stays open until the output ends or fails, ``close``, or this
    process's end. Not at an interrupt raised while it is read: the session passes the signal on to the command
    first, which closing its tether would pre-empt."""

    def __iter__(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        try:
            for kind, piece in frames(self.reader):
                yield (None, piece) if kind == _STDERR else (piece, None)
        except SocketAPIError:
            self.close()
            raise
        self.close()


class Events(Stream):
    def __init__(self, sock: socket.socket, reader: _Reader, *, chunked: bool) -> None:
        super().__init__(sock, reader)
        self._chunked = chunked

    def __iter__(self) -> Iterator[dict[str, Any]]:
        pieces = chunks(self.reader) if self._chunked else iter(lambda: self.reader.some(_RECEIVE), b"")
        try:
            yield from events(pieces)
        finally:
            self.close()


class SocketAPI:
    """The engine at the unix socket ``path``, spoken to in API ``version`` (the one its ping named)."""

    def __init__(self, path: str, *, version: str) -> None:
        self.path = path
        self.version = version

    def _connect(self, timeout: float | None) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.path)
        except TimeoutError:
            sock.close()
            raise NoAnswerError(f"no connection within {timeout or 0:.0f}s") from None
        except OSError as exc:
            sock.close()
            raise ConnectionFailedError(exc.strerror or str(exc)) from None
        return sock

    def _target(self, path: str, params: Mapping[str, object] | None, *, versioned: bool = True) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{f'/v{self.version}' if versioned else ''}{path}{query}"

    def _send(
        self, sock: socket.socket, method: str, target: str, body: object | None = None, *, upgrade: bool = False
    ) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: docker", "User-Agent: xpcargo"]
        payload = b""
        if body is not None:
            payload = encode(body)
            lines.append("Content-Type: application/json")
        if body is not None or method in ("POST", "PUT"):
            lines.append(f"Content-Length: {len(payload)}")
        # An exec's start asks for the connection itself, as the docker CLI does (Docker answers 101, Podman 4 may
        # answer 200): either way the rest of the connection is the exec's.
        lines += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
        try:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload)
        except TimeoutError:
            raise NoAnswerError("the engine took no request in time") from None
        except OSError as exc:
            raise ConnectionFailedError(exc.strerror or str(exc)) from None

    def request(self, method: str, target: str, *, timeout: float | None, body: object | None = None) -> Answer:
        """One request, its whole answer."""
        sock = self._connect(timeout)
        try:
            self._send(sock, method, target, body)
            reader = _Reader(sock)
            status, headers = read_head(reader)
            return Answer(status, headers, read_body(reader, status, headers))
        finally:
            sock.close()

    def _json(self, method: str, target: str, *, timeout: float | None, body: object | None = None) -> Any:
        answer = self.request(method, target, timeout=timeout, body=body)
        if answer.status >= 400:
            raise _refusal(answer)
        return parse_json(answer.body)

    def _found(self, target: str, *, timeout: float | None) -> dict[str, Any] | None:
        """A JSON object, or None when the engine has no such thing (404)."""
        answer = self.request("GET", target, timeout=timeout)
        if answer.status == 404:
            return None
        if answer.status >= 400:
            raise _refusal(answer)
        found = parse_json(answer.body)
        if not isinstance(found, dict):
            raise GarbledError(f"not a JSON object: {answer.body[:80]!r}")
        return found

    def _list(self, target: str, *, timeout: float | None) -> list[dict[str, Any]]:
        found = self._json("GET", target, timeout=timeout)
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise GarbledError(f"not a list of JSON objects: {json.dumps(found)[:80]!r}")
        return found

    def ping(self, *, timeout: float | None) -> Mapping[str, str]:
        """The engine's `/_ping` (no version in its path, as the SDK asks it): its headers name it."""
        answer = self.request("GET", self._target("/_ping", None, versioned=False), timeout=timeout)
        if answer.status != 200:
            raise _refusal(answer)
        return answer.headers

    def inspect_image(self, reference: str, *, timeout: float | None) -> dict[str, Any] | None:
        return self._found(self._target(f"/images/{quote(reference, safe='/:')}/json", None), timeout=timeout)

    def images_target(self, label: str) -> str:
        """The request target of the list of the images with ``label``."""
        return self._target("/images/json", {"filters": json.dumps({"label": [label]})})

    def images(self, label: str, *, timeout: float | None) -> list[dict[str, Any]]:
        return self._list(self.images_target(label), timeout=timeout)

    def containers(self, label: str, *, timeout: float | None) -> list[dict[str, Any]]:
        params = {"all": 1, "filters": json.dumps({"label": [label]})}
        return self._list(self._target("/containers/json", params), timeout=timeout)

    def remove_container(self, container_id: str, *, timeout: float | None) -> None:
        params = {"force": 1, "v": 1}
        answer = self.request("DELETE", self._target(f"/containers/{quote(container_id)}", params), timeout=timeout)
        if answer.status >= 400:
            raise _refusal(answer)

    def exec_create(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: str,
        stdin: bool,
        user: str,
        timeout: float | None,
    ) -> str:
        body = exec_body(argv, env=env, workdir=workdir, stdin=stdin, user=user)
        created = self._json(
            "POST", self._target(f"/containers/{quote(container_id)}/exec", None), timeout=timeout, body=body
        )
        if not isinstance(created, dict) or not isinstance(created.get("Id"), str):
            raise GarbledError(f"an exec's creation that names no exec: {json.dumps(created)[:80]!r}")
        return str(created["Id"])

    def exec_start(self, exec_id: str, *, timeout: float | None) -> ExecOutput:
        """Start the exec and take its connection: the engine's answer within ``timeout``, then the output as it
        comes, however long the command is silent (the caller watches the engine's health meanwhile)."""
        target = self._target(f"/exec/{quote(exec_id)}/start", None)
        body = {"Detach": False, "Tty": False}
        sock, reader, _ = self._open_stream("POST", target, body, upgrade=True, timeout=timeout)
        return ExecOutput(sock, reader)

    def exec_inspect(self, exec_id: str, *, timeout: float | None) -> dict[str, Any] | None:
        """The exec's state (`Running`, `ExitCode`); None when the engine has no such exec (its container is gone)."""
        return self._found(self._target(f"/exec/{quote(exec_id)}/json", None), timeout=timeout)

    def events(self, container_id: str, *, since: float, timeout: float | None) -> Events:
        """A container's events from ``since`` on, as they come."""
        filters = json.dumps({"container": [container_id], "type": ["container"]})
        target = self._target("/events", {"since": int(since), "filters": filters})
        sock, reader, headers = self._open_stream("GET", target, None, upgrade=False, timeout=timeout)
        return Events(sock, reader, chunked="chunked" in headers.get("transfer-encoding", "").lower())

    def _open_stream(
        self, method: str, target: str, body: object | None, *, upgrade: bool, timeout: float | None
    ) -> tuple[socket.socket, _Reader, dict[str, str]]:
        """A request whose answer is read as it comes: its head within ``timeout``, its stream with no timeout.
        ``upgrade`` asks for the connection itself (an exec's start, as the docker CLI asks it)."""
        sock = self._connect(timeout)
        try:
            reader, headers = self._stream_head(sock, method, target, body, upgrade=upgrade)
        except BaseException:
            sock.close()
            raise
        return sock, reader, headers

    def _stream_head(
        self, sock: socket.socket, method: str, target: str, body: object | None, *, upgrade: bool
    ) -> tuple[_Reader, dict[str, str]]:
        self._send(sock, method, target, body, upgrade=upgrade)
        reader = _Reader(sock)
        status, headers = read_head(reader)
        if status >= 400:
            raise _refusal(Answer(status, headers, read_body(reader, status, headers, limit=_EVENT_LIMIT)))
        if status not in (101, 200):
            raise GarbledError(f"a stream answered with status {status}")
        sock.settimeout(None)
        return reader, headers
