"""Status lines on stderr, in Cargo's own style, so that xpcargo's steps read like part of the build."""

from __future__ import annotations

import re
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
