"""A unix-socket proxy in front of the Docker engine socket, for tests that freeze or cut the engine.

In-process (a daemon thread runs one selector loop)::

    with EngineProxy("/tmp/proxy.sock") as proxy:
        api = docker.APIClient(base_url=proxy.url, version="1.41", timeout=5)
        proxy.freeze()   # connections stay open, no byte moves either way, new connections are accepted but idle
        proxy.thaw()     # everything buffered moves on
        proxy.cut()      # every connection closed, new ones refused (ECONNREFUSED; the socket file stays)
        proxy.restore()  # listen again

In a child process, so that the proxy itself can be SIGSTOPped or SIGKILLed, or outlive a test process that is
SIGKILLed::

    with ProxyProcess("/tmp/proxy.sock") as proxy:
        proxy.freeze()
        os.kill(proxy.pid, signal.SIGSTOP)  # a hung engine, even for new connections

As a program: ``python engine_proxy.py LISTEN_PATH [UPSTREAM_PATH]`` prints ``ready``, then reads the commands
``freeze``, ``thaw``, ``cut``, ``restore`` one a line from stdin and answers ``ok``; EOF or ``quit`` ends it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Self

DEFAULT_UPSTREAM = "/var/run/docker.sock"
_CHUNK = 65536
_HIGH_WATER = 1 << 20  # stop reading one side while this much waits to be written to the other


class _Side:
    """One socket of a proxied connection and the bytes waiting to be written to it."""

    __slots__ = ("eof_in", "out", "shut_out", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.out = bytearray()
        self.eof_in = False  # this socket's peer will send no more
        self.shut_out = False  # we have shut down writing to this socket


class _Conn:
    __slots__ = ("client", "upstream")

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = _Side(client)
        self.upstream = _Side(upstream)

    def other(self, side: _Side) -> _Side:
        return self.upstream if side is self.client else self.client

    def sides(self) -> tuple[_Side, _Side]:
        return self.client, self.upstream


class EngineProxy:
    """Forwards every connection made to ``path`` to ``upstream``, byte for byte, unless frozen or cut."""

    def __init__(self, path: str, upstream: str = DEFAULT_UPSTREAM) -> None:
        self.path = path
        self.upstream = upstream
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._listener: socket.socket | None = None
        self._conns: list[_Conn] = []
        self._registered: dict[socket.socket, int] = {}
        self._frozen = False
        self._stopping = False
        self._pending: list[tuple[Callable[[], None], threading.Event]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"engine-proxy {path}", daemon=True)

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    @property
    def connections(self) -> int:
        """How many client connections are open (read without locking; for assertions and logs only)."""
        return len(self._conns)

    def start(self) -> Self:
        self._listen()
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._call(self._shutdown)
            self._thread.join(5)
        self._wake_r.close()
        self._wake_w.close()
        self._sel.close()
        Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def freeze(self) -> None:
        self._call(lambda: setattr(self, "_frozen", True))

    def thaw(self) -> None:
        self._call(lambda: setattr(self, "_frozen", False))

    def cut(self) -> None:
        self._call(self._cut)

    def restore(self) -> None:
        self._call(self._restore)

    # Everything below runs on the loop thread, except _call and _listen before start().

    def _call(self, fn: Callable[[], None]) -> None:
        done = threading.Event()
        with self._lock:
            self._pending.append((fn, done))
        self._wake_w.send(b"x")
        if not done.wait(10):
            raise TimeoutError(f"engine proxy {self.path} did not answer")

    def _listen(self) -> None:
        Path(self.path).unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        listener.listen(64)
        listener.setblocking(False)
        self._listener = listener
        self._sel.register(listener, selectors.EVENT_READ)

    def _cut(self) -> None:
        if self._listener is not None:
            self._sel.unregister(self._listener)
            self._listener.close()  # the socket file stays: connect() now fails with ECONNREFUSED
            self._listener = None
        for conn in list(self._conns):
            self._close(conn)

    def _restore(self) -> None:
        if self._listener is None:
            self._listen()

    def _shutdown(self) -> None:
        self._cut()
        self._stopping = True

    def _close(self, conn: _Conn) -> None:
        for side in conn.sides():
            if side.sock in self._registered:
                self._sel.unregister(side.sock)
                del self._registered[side.sock]
            side.sock.close()
        if conn in self._conns:
            self._conns.remove(conn)

    def _accept(self, listener: socket.socket) -> None:
        try:
            client, _ = listener.accept()
        except BlockingIOError:
            return
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
        except OSError:
            upstream.close()
            client.close()
            return
        client.setblocking(False)
        upstream.setblocking(False)
        self._conns.append(_Conn(client, upstream))

    def _run_pending(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass
        with self._lock:
            pending, self._pending = self._pending, []
        for fn, done in pending:
            try:
                fn()
            finally:
                done.set()

    def _pump(self, conn: _Conn, side: _Side, mask: int) -> None:
        """Moves bytes for one ready socket; closes the connection on any socket error."""
        other = conn.other(side)
        try:
            if mask & selectors.EVENT_READ:
                data = side.sock.recv(_CHUNK)
                if data:
                    other.out += data
                else:
                    side.eof_in = True
            if mask & selectors.EVENT_WRITE and side.out:
                sent = side.sock.send(side.out)
                del side.out[:sent]
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(conn)

    def _settle(self, conn: _Conn) -> None:
        """Passes half-closes on, closes finished connections and sets what the selector waits for."""
        if not self._frozen:
            for side in conn.sides():
                if conn.other(side).eof_in and not side.out and not side.shut_out:
                    with contextlib.suppress(OSError):
                        side.sock.shutdown(socket.SHUT_WR)
                    side.shut_out = True
            if all(side.shut_out for side in conn.sides()):
                self._close(conn)
                return
        for side in conn.sides():
            self._want(conn, side.sock, self._interest(conn, side))

    def _interest(self, conn: _Conn, side: _Side) -> int:
        if self._frozen:
            return 0
        events = 0
        if not side.eof_in and len(conn.other(side).out) < _HIGH_WATER:
            events |= selectors.EVENT_READ
        if side.out:
            events |= selectors.EVENT_WRITE
        return events

    def _want(self, conn: _Conn, sock: socket.socket, events: int) -> None:
        current = self._registered.get(sock, 0)
        if events == current:
            return
        if current == 0:
            self._sel.register(sock, events, conn)
        elif events == 0:
            self._sel.unregister(sock)
        else:
            self._sel.modify(sock, events, conn)
        if events:
            self._registered[sock] = events
        else:
            self._registered.pop(sock, None)

    def _loop(self) -> None:
        while not self._stopping:
            for conn in list(self._conns):
                self._settle(conn)
            for key, mask in self._sel.select():
                sock = key.fileobj
                if sock is self._wake_r:
                    self._run_pending()
                elif sock is self._listener and self._listener is not None:
                    self._accept(self._listener)
                elif isinstance(key.data, _Conn) and key.data in self._conns:
                    conn = key.data
                    side = conn.client if conn.client.sock is sock else conn.upstream
                    self._pump(conn, side, mask)


class ProxyProcess:
    """An EngineProxy in a child process, driven over the child's stdin; ``pid`` is there to signal it."""

    def __init__(self, path: str, upstream: str = DEFAULT_UPSTREAM, python: str = sys.executable) -> None:
        self.path = path
        self.upstream = upstream
        self._python = python
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    @property
    def pid(self) -> int:
        return self._running().pid

    def _running(self) -> subprocess.Popen[str]:
        if self._proc is None:
            raise RuntimeError("the proxy process is not started")
        return self._proc

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        proc = self._running()
        if proc.stdin is None or proc.stdout is None:
            raise RuntimeError("the proxy process has no pipes")
        return proc.stdin, proc.stdout

    def start(self) -> Self:
        self._proc = subprocess.Popen(
            [self._python, str(Path(__file__).resolve()), self.path, self.upstream],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self._pipes()[1].readline().strip()
        if line != "ready":
            self.stop()
            raise RuntimeError(f"engine proxy did not start: {line!r}")
        return self

    def _send(self, command: str) -> None:
        stdin, stdout = self._pipes()
        stdin.write(command + "\n")
        stdin.flush()
        answer = stdout.readline().strip()
        if answer != "ok":
            raise RuntimeError(f"engine proxy answered {answer!r} to {command!r}")

    def freeze(self) -> None:
        self._send("freeze")

    def thaw(self) -> None:
        self._send("thaw")

    def cut(self) -> None:
        self._send("cut")

    def restore(self) -> None:
        self._send("restore")

    def stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.stdin is not None:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        Path(self.path).unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not 1 <= len(args) <= 2:
        print("usage: engine_proxy.py LISTEN_PATH [UPSTREAM_PATH]", file=sys.stderr)
        return 2
    with EngineProxy(args[0], *args[1:]) as proxy:
        commands: dict[str, Callable[[], None]] = {
            "freeze": proxy.freeze,
            "thaw": proxy.thaw,
            "cut": proxy.cut,
            "restore": proxy.restore,
        }
        print("ready", flush=True)
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            action = commands.get(command)
            if action is None:
                print(f"unknown command {command!r}", flush=True)
                continue
            action()
            print("ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
