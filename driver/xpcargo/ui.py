"""Status lines on stderr, in Cargo's own style, so that xpcargo's steps read like part of the build; and durations
as people write and read them."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from xpcargo.errors import UsageError


@dataclass(kw_only=True)
class Reporter:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    color: bool = False
    # A copy of every line, without colour: an image build's progress, for another xpcargo waiting on that build.
    copy: TextIO | None = None

    def status(self, verb: str, message: str) -> None:
        label = f"{verb:>12}"
        self._emit(f"{label} {message}", f"\x1b[1;32m{label}\x1b[0m {message}")

    def detail(self, message: str) -> None:
        """A line of a long step's own progress (an image build's), indented under its status line."""
        self._emit(f"{'':>12} {message}")

    def relay(self, line: str) -> None:
        """A line as another xpcargo printed it (the progress of a build this one waits for)."""
        self._emit(line)

    def warn(self, message: str) -> None:
        self._emit(f"warning: {message}", f"\x1b[1;33mwarning\x1b[0m: {message}", always=True)

    def _emit(self, plain: str, colored: str | None = None, *, always: bool = False) -> None:
        if self.copy is not None:
            self.copy.write(f"{plain}\n")
            self.copy.flush()
        if self.quiet and not always:
            return
        self.stream.write(f"{colored if self.color and colored else plain}\n")
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


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]+)([smhdw])")


def parse_duration(text: str, *, option: str) -> float:
    """`30m`, `12h`, `7d` (also `s` and `w`) as seconds; anything else is a usage error naming ``option``."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise UsageError(
            f"{option} {text!r} is not a duration", hint="write a whole number and a unit: 30m, 12h, 7d or 2w"
        )
    return int(found[1]) * _UNITS[found[2]]


def ago(seconds: float) -> str:
    """How long ago, as people say it: `40s`, `25m`, `3h`, `12d`."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f}{unit}"
    return f"{max(seconds, 0):.0f}s"
