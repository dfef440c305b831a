"""The engine requests of a replayed command (``xpcargo.replay``): an image's id, one exec in a warm container with
its standard input held open as its tether, and the answer to a listing, on the engine's unix socket. Written on
``_socket`` and ``_json`` alone: ``socket`` imports ``enum`` and ``selectors``, ``json`` imports ``re``, and each
costs more than the whole request (docs/costs.md). The requests and their bodies are ``socket_api``'s, which made the
replay's record: the exec's body is the one it encoded, kept in the record as bytes around the wrapper's token.

Two failures, by what they leave: ``NotStarted`` (nothing ran: the caller takes the usual way) and ``Lost`` (the
command may have run or may run on: the caller names it). The engine's bytes are read with limits, as
``socket_api`` reads them.
"""

from __future__ import annotations

import _socket
import os
from _json import make_scanner

# Not `typing.TYPE_CHECKING`: importing typing would cost more than this module does.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_LINE_LIMIT = 16 * 1024
_BODY_LIMIT = 1024 * 1024
_RECEIVE = 64 * 1024
_FRAME_HEADER = 8
_STDOUT, _STDERR = 1, 2
_HEX = frozenset("0123456789abcdef")


class NotStarted(Exception):
    """The request failed before the engine was asked to start the command: nothing ran."""


class Lost(Exception):
    """The command was started, and its end was not seen: it may run on."""


class _Decoder:
    """What ``_json.make_scanner`` reads off its context: ``json.JSONDecoder``'s settings, without ``json``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, Any] = {}  # noqa: RUF012 - the scanner's cache of keys, cleared after each document

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(name)


_scan = make_scanner(_Decoder())  # type: ignore[arg-type]  # typeshed asks for a scanner, the C code for its settings


def parse_json(data: bytes) -> Any:
    """A JSON document; ValueError for anything else."""
    text = data.decode("utf-8").strip()
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError("not JSON") from None
    finally:
        _Decoder.memo.clear()
    if end != len(text):
        raise ValueError("more than one JSON document")
    return value


class _Connection:
    def __init__(self, path: str, timeout: float) -> None:
        self._sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._buffer = b""
        try:
            self._sock.connect(path)
        except OSError:
            self._sock.close()
            raise

    def send(self, method: str, target: str, body: bytes | None, *, upgrade: bool = False) -> None:
        lines = [f"{method} {target} HTTP/1.1", "Host: docker", "User-Agent: xpcargo"]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += ["Connection: Upgrade", "Upgrade: tcp"] if upgrade else ["Connection: close"]
        self._sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))

    def _fill(self) -> bool:
        data = self._sock.recv(_RECEIVE)
        self._buffer += data
        return bool(data)

    def head(self) -> tuple[int, dict[str, str]]:
        """The status and the headers (names in lower case)."""
        while b"\r\n\r\n" not in self._buffer:
            if len(self._buffer) > _LINE_LIMIT * 8 or not self._fill():
                raise OSError("no complete answer")
        head, self._buffer = self._buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise OSError(f"not an HTTP answer: {status_line[:80]!r}")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked()
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit() or int(length) > _BODY_LIMIT:
                raise OSError(f"a body of {length!r} bytes")
            while len(self._buffer) < int(length):
                if not self._fill():
                    raise OSError("the answer was cut short")
            return self._buffer[: int(length)]
        while self._fill():
            if len(self._buffer) > _BODY_LIMIT:
                raise OSError("an answer over the limit")
        return self._buffer

    def _chunked(self) -> bytes:
        body = b""
        while True:
            while b"\r\n" not in self._buffer:
                if len(self._buffer) > _LINE_LIMIT or not self._fill():
                    raise OSError("the answer was cut short")
            size_line, self._buffer = self._buffer.split(b"\r\n", 1)
            size = int(size_line.split(b";", 1)[0].strip() or b"x", 16)
            if size == 0:
                return body
            if len(body) + size > _BODY_LIMIT:
                raise OSError("an answer over the limit")
            while len(self._buffer) < size + 2:
                if not self._fill():
                    raise OSError("the answer was cut short")
            body += self._buffer[:size]
            self._buffer = self._buffer[size + 2 :]

    def frames(
        self, on_stdout: Callable[[bytes], None], on_stderr: Callable[[bytes], None], *, alive: Callable[[], bool]
    ) -> None:
        """An exec's multiplexed output, until the engine closes the stream. However long the command is silent, the
        stream is waited for while the engine answers ``alive``."""
        while True:
            while len(self._buffer) < _FRAME_HEADER:
                if not self._watched_fill(alive):
                    if self._buffer:
                        raise OSError("the output was cut in a frame's header")
                    return
            header, self._buffer = self._buffer[:_FRAME_HEADER], self._buffer[_FRAME_HEADER:]
            stream, size = header[0], int.from_bytes(header[4:8], "big")
            if stream not in (_STDOUT, _STDERR):
                raise OSError(f"a frame of stream {stream}")
            while size:
                if not self._buffer and not self._watched_fill(alive):
                    raise OSError("the output was cut in a frame")
                piece, self._buffer = self._buffer[:size], self._buffer[size:]
                size -= len(piece)
                (on_stdout if stream == _STDOUT else on_stderr)(piece)

    def _watched_fill(self, alive: Callable[[], bool]) -> bool:
        while True:
            try:
                return self._fill()
            except TimeoutError:
                if not alive():
                    raise OSError("the engine stopped answering") from None

    def close(self) -> None:
        self._sock.close()


def _answer(socket_path: str, method: str, target: str, *, timeout: float, body: bytes | None) -> tuple[int, bytes]:
    connection = _Connection(socket_path, timeout)
    try:
        connection.send(method, target, body)
        status, headers = connection.head()
        return status, connection.body(headers)
    finally:
        connection.close()


def answer(socket_path: str, target: str, *, timeout: float) -> bytes:
    """The body of the engine's answer to a GET of ``target``; NotStarted for anything but a whole answer with
    status 200."""
    try:
        status, data = _answer(socket_path, "GET", target, timeout=timeout, body=None)
    except (OSError, ValueError) as error:
        # ValueError: a chunk's size that is no number.
        raise NotStarted(f"{target}: {error}") from None
    if status != 200:
        raise NotStarted(f"{target}: status {status}")
    return data


def _request(socket_path: str, method: str, target: str, *, timeout: float, body: bytes | None = None) -> Any:
    """A request's answer as JSON, None for 404 (no such thing); OSError or ValueError for anything else."""
    status, data = _answer(socket_path, method, target, timeout=timeout, body=body)
    if status == 404:
        return None
    if status >= 400:
        raise OSError(f"status {status}")
    return parse_json(data)


def image_id(socket_path: str, api: str, reference: str, *, timeout: float) -> str | None:
    """The id of the image ``reference`` names now; None when the engine has none of that name. NotStarted when
    the engine cannot say."""
    quoted = "".join(c if c.isalnum() or c in "/:._-" else f"%{ord(c):02X}" for c in reference)
    try:
        found = _request(socket_path, "GET", f"/v{api}/images/{quoted}/json", timeout=timeout)
    except (OSError, ValueError) as error:
        raise NotStarted(f"the image {reference}: {error}") from None
    if found is None:
        return None
    if not isinstance(found, dict) or not isinstance(found.get("Id"), str):
        raise NotStarted(f"the image {reference}: an answer that names no id")
    return str(found["Id"])


def create_exec(socket_path: str, api: str, container_id: str, body: bytes, *, timeout: float) -> str:
    """The id of a new exec in the container; NotStarted when there is no such container or it refuses one."""
    try:
        created = _request(socket_path, "POST", f"/v{api}/containers/{container_id}/exec", timeout=timeout, body=body)
    except (OSError, ValueError) as error:
        raise NotStarted(f"an exec in {container_id[:12]}: {error}") from None
    exec_id = created.get("Id") if isinstance(created, dict) else None
    if not isinstance(exec_id, str) or not exec_id or not set(exec_id) <= _HEX:
        raise NotStarted(f"an exec in {container_id[:12]}: no exec named")
    return exec_id


def run_exec(
    socket_path: str,
    api: str,
    exec_id: str,
    *,
    timeout: float,
    on_stdout: Callable[[bytes], None],
    on_stderr: Callable[[bytes], None],
) -> int:
    """Start the exec (its standard input open until this process closes the connection or ends) and wait for it:
    its exit code; its output goes to the callbacks as it comes. NotStarted when the engine refused the start; Lost
    when the command's end was not seen."""
    try:
        connection = _Connection(socket_path, timeout)
    except OSError as error:
        raise NotStarted(f"the exec's start: {error}") from None
    try:
        try:
            connection.send("POST", f"/v{api}/exec/{exec_id}/start", b'{"Detach":false,"Tty":false}', upgrade=True)
            status, _ = connection.head()
        except OSError as error:
            raise Lost(f"the exec's start: {error}") from None
        if status not in (101, 200):
            raise Lost(f"the exec's start: status {status}")
        try:
            connection.frames(on_stdout, on_stderr, alive=lambda: _answers(socket_path, timeout))
        except OSError as error:
            raise Lost(f"the command's output: {error}") from None
    finally:
        connection.close()
    try:
        state = _request(socket_path, "GET", f"/v{api}/exec/{exec_id}/json", timeout=timeout)
    except (OSError, ValueError) as error:
        raise Lost(f"the command's exit code: {error}") from None
    code = state.get("ExitCode") if isinstance(state, dict) else None
    if not isinstance(code, int) or state.get("Running") is not False:
        raise Lost("the engine named no exit code")
    return code


def _answers(socket_path: str, timeout: float) -> bool:
    """Whether the engine answers its ping within ``timeout``."""
    try:
        connection = _Connection(socket_path, timeout)
        try:
            connection.send("GET", "/_ping", None)
            status, _ = connection.head()
        finally:
            connection.close()
    except OSError:
        return False
    return status == 200


def write_stderr(piece: bytes) -> None:
    """Pass a piece of the command's standard error on, whole."""
    view = memoryview(piece)
    while view:
        view = view[os.write(2, view) :]
