"""Status lines on stderr, in Cargo's own style, so that xpcargo's steps read like part of the build."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO


@dataclass(kw_only=True)
class Reporter:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    color: bool = False
    # Put before every line: the target's name when several targets build at once.
    prefix: str = ""

    def _line(self, text: str) -> None:
        # One write per whole line: lines of targets building side by side never mix.
        self.stream.write(f"{self.prefix}{text}\n")
        self.stream.flush()

    def status(self, verb: str, message: str) -> None:
        if self.quiet:
            return
        label = f"{verb:>12}"
        if self.color:
            label = f"\x1b[1;32m{label}\x1b[0m"
        self._line(f"{label} {message}")

    def detail(self, message: str) -> None:
        """A line of a long step's own progress (an image build's), indented under its status line."""
        if self.quiet:
            return
        self._line(f"{'':>12} {message}")

    def warn(self, message: str) -> None:
        label = "warning"
        if self.color:
            label = f"\x1b[1;33m{label}\x1b[0m"
        self._line(f"{label}: {message}")


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.start:.1f}s"


def binary_writer(stream: TextIO) -> Callable[[bytes], None]:
    """Pass bytes from the container straight through, as they come, without decoding them."""
    raw: BinaryIO = stream.buffer

    def write(chunk: bytes) -> None:
        raw.write(chunk)
        raw.flush()

    return write


class LineWriter:
    """Passes a stream on in whole lines, each with ``prefix`` before it, under one lock shared by every writer of
    the same stream: the output of targets building side by side stays attributable, line by line."""

    def __init__(self, write: Callable[[bytes], None], lock: threading.Lock, prefix: bytes = b"") -> None:
        self._write = write
        self._lock = lock
        self._prefix = prefix
        self._pending = b""

    def __call__(self, chunk: bytes) -> None:
        self._pending += chunk
        if b"\n" not in self._pending:
            return
        complete, _, self._pending = self._pending.rpartition(b"\n")
        lines = b"".join(self._prefix + line + b"\n" for line in complete.split(b"\n"))
        with self._lock:
            self._write(lines)

    def close(self) -> None:
        if self._pending:
            with self._lock:
                self._write(self._prefix + self._pending + b"\n")
            self._pending = b""
