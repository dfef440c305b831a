"""The lock an image build holds, from its first download until its image is tagged, and what a second xpcargo
sees while it waits for that build.

The holder writes its pid into the lock file and its progress lines into a file beside it, so a process that needs
the same image says which process it waits for and shows that build's progress, instead of a silent wait of a
minute or more. The kernel releases the lock of a process that dies in any way, SIGKILL included.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TextIO

from xpcargo.ui import Reporter

# How often a waiter looks at the lock and the holder's progress.
POLL_SECONDS = 0.25
# How long a waiter gives a holder that has just taken the lock to write its pid.
_PID_WAIT = 2.0


def lock_path(cache: Path, name: str) -> Path:
    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return locks / f"{name}.lock"


def _open(path: Path) -> int:
    # Never truncated on open: that would erase the holder's pid under its feet.
    return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


@contextmanager
def try_held(cache: Path, name: str) -> Iterator[bool]:
    """The lock for ``name`` if nobody holds it, without waiting; yields whether it was free."""
    fd = _open(lock_path(cache, name))
    try:
        yield _try_lock(fd)
    finally:
        os.close(fd)


@contextmanager
def held(cache: Path, name: str, *, reference: str, reporter: Reporter) -> Iterator[TextIO]:
    """The lock for ``name``, waited for while another process builds ``reference`` (its progress shown meanwhile).

    Yields the file the holder writes its progress lines to, for the next waiter.
    """
    path = lock_path(cache, name)
    progress_path = path.with_suffix(".progress")
    fd = _open(path)
    try:
        if not _try_lock(fd):
            _wait(fd, path, progress_path, reference, reporter)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            with progress_path.open("w", encoding="utf-8") as progress:
                yield progress
        finally:
            # A waiter still reading the file keeps it open; the next holder starts a new one.
            progress_path.unlink(missing_ok=True)
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)


def _holder(fd: int) -> str | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return text if text.isdigit() else None


def _wait(fd: int, path: Path, progress_path: Path, reference: str, reporter: Reporter) -> None:
    pid_deadline = time.monotonic() + _PID_WAIT
    pid = _holder(fd)
    while pid is None and time.monotonic() < pid_deadline:
        if _try_lock(fd):
            return
        time.sleep(POLL_SECONDS / 5)
        pid = _holder(fd)
    who = f"process {pid}" if pid else "another process"
    reporter.status("Waiting", f"for {who} to finish building image {reference}")
    tail = _Tail(progress_path)
    try:
        while not _try_lock(fd):
            tail.relay(reporter)
            time.sleep(POLL_SECONDS)
        # The holder's last lines ("Built ...") were written before it let go.
        tail.relay(reporter)
    finally:
        tail.close()


class _Tail:
    """Follows another process's progress file: new complete lines, and a new file when the next build starts."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stream: TextIO | None = None
        self._partial = ""

    def relay(self, reporter: Reporter) -> None:
        self._reopen_if_replaced()
        if self._stream is None:
            return
        text = self._partial + self._stream.read()
        *lines, self._partial = text.split("\n")
        for line in lines:
            reporter.relay(line)

    def _reopen_if_replaced(self) -> None:
        try:
            current = self._path.stat()
        except FileNotFoundError:
            return
        if self._stream is not None:
            mine = os.fstat(self._stream.fileno())
            if (mine.st_dev, mine.st_ino) == (current.st_dev, current.st_ino):
                return
            self.close()
        with suppress(FileNotFoundError):
            self._stream = self._path.open(encoding="utf-8", errors="replace")
            self._partial = ""

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
