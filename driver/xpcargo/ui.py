"""Status lines on stderr, in Cargo's own style, so that xpcargo's steps read like part of the build."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO


@dataclass(kw_only=True)
class Reporter:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    color: bool = False

    def status(self, verb: str, message: str) -> None:
        if self.quiet:
            return
        label = f"{verb:>12}"
        if self.color:
            label = f"\x1b[1;32m{label}\x1b[0m"
        self.stream.write(f"{label} {message}\n")
        self.stream.flush()

    def detail(self, message: str) -> None:
        """A line of a long step's own progress (an image build's), indented under its status line."""
        if self.quiet:
            return
        self.stream.write(f"{'':>12} {message}\n")
        self.stream.flush()

    def warn(self, message: str) -> None:
        label = "warning"
        if self.color:
            label = f"\x1b[1;33m{label}\x1b[0m"
        self.stream.write(f"{label}: {message}\n")
        self.stream.flush()


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
