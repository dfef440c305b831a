"""Status lines on stderr, in Cargo's own style, so that xpcargo's steps read like part of the build; tables; and
durations as people write and read them."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, TextIO

from xpcargo.errors import UsageError


@dataclass(kw_only=True)
class Reporter:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    quiet: bool = False
    color: bool = False
    # Put before every line: the target's name when several targets build at once.
    prefix: str = ""
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

    def hint(self, message: str) -> None:
        """What xpcargo can add to a failure that is not its own (Cargo's): the setting that fixes it."""
        self._emit(f"hint: {message}", f"\x1b[1;36mhint\x1b[0m: {message}", always=True)

    def _emit(self, plain: str, colored: str | None = None, *, always: bool = False) -> None:
        if self.copy is not None:
            self.copy.write(f"{plain}\n")
            self.copy.flush()
        if self.quiet and not always:
            return
        # One write per whole line: lines of targets building side by side never mix.
        self.stream.write(f"{self.prefix}{colored if self.color and colored else plain}\n")
        self.stream.flush()


# What must never reach a terminal from text xpcargo did not write: C0 controls (tab and newline too, so that one
# value stays one line), DEL, C1 controls (0x9b alone starts a sequence on some terminals), the Unicode line and
# paragraph separators, the bidirectional controls that reorder what a line shows, and lone surrogates (which no
# UTF-8 terminal can be sent). Escaping ESC is enough to disarm a whole escape sequence: the rest of it is printable.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape_controls(text: str) -> str:
    """``text`` with each control character written out as an escape (ESC as ``\\x1b``), as Python's ``repr`` would.

    For text from build scripts and other programs: it can then retitle, clear or recolour no terminal, and forge no
    line. Backslashes are left alone, so paths and values read as printed; an escape is therefore not proof that
    the character was there.
    """
    return _CONTROLS.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


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
    the same stream: the output of targets building side by side stays attributable, line by line.

    A line longer than ``MAX_HELD`` is passed on in pieces as it comes (memory stays bounded whatever a program
    prints); only then can another target's line come between its pieces."""

    MAX_HELD = 64 * 1024

    def __init__(self, write: Callable[[bytes], None], lock: threading.Lock, prefix: bytes = b"") -> None:
        self._write = write
        self._lock = lock
        self._prefix = prefix
        self._pending = b""
        # The current line's start (and prefix) was already passed on.
        self._started = False

    def _lead(self) -> bytes:
        return b"" if self._started else self._prefix

    def __call__(self, chunk: bytes) -> None:
        self._pending += chunk
        if b"\n" in self._pending:
            complete, _, self._pending = self._pending.rpartition(b"\n")
            first, *rest = complete.split(b"\n")
            lines = self._lead() + first + b"\n" + b"".join(self._prefix + line + b"\n" for line in rest)
            self._started = False
            with self._lock:
                self._write(lines)
        if len(self._pending) > self.MAX_HELD:
            with self._lock:
                self._write(self._lead() + self._pending)
            self._pending, self._started = b"", True

    def close(self) -> None:
        if self._pending or self._started:
            with self._lock:
                self._write(self._lead() + self._pending + b"\n")
        self._pending, self._started = b"", False


def render_table(rows: Sequence[Sequence[str]]) -> str:
    """``rows`` in columns, each as wide as its widest cell and two spaces from the next: one line per row."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n" for row in rows
    )


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"([0-9]+)([smhdw])")


def size(count: int) -> str:
    """A number of bytes as people read it: `512 B`, `3.5 KiB`, `12.0 MiB`, `1.2 GiB`."""
    if count < 1024:
        return f"{count} B"
    if count < 1024**2:
        return f"{count / 1024:.1f} KiB"
    if count < 1024**3:
        return f"{count / 1024**2:.1f} MiB"
    return f"{count / 1024**3:.1f} GiB"


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
