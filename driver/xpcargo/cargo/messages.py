"""Cargo's JSON messages (``--message-format=json``): split Cargo's stdout into its messages and the output of the
program or tests that Cargo runs after them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_PREFIX = b'{"reason":'
# The messages the report cannot do without: a package's build-script run, and where its units were built.
_NEEDED = (b'{"reason":"build-script-executed"', b'{"reason":"compiler-artifact"')
# How much of a line's start tells whether it is one of those.
_START = max(map(len, _NEEDED))

# The longest line read as a message. Cargo's own lines are far shorter (a diagnostic is some KiB; a
# build-script-executed message grows with the script's cfgs and libraries), but Cargo's stdout is not only Cargo's:
# a build script can write to it too. A longer line is passed on unchanged, as it comes, like any other line that is
# no message, so that xpcargo's memory does not grow with it.
MAX_MESSAGE_BYTES = 4 << 20
# The most messages kept for the report. A real build has one build-script run and a few artifacts per unit, some
# thousands at most; beyond this the stream is not Cargo's alone, and the report is not made (see ``overflowed``).
MAX_KEPT_MESSAGES = 50_000
# What the report reads of a message (see ``report.collect``); the rest is not kept.
# What the report reads (which units were built where) and what a multi-target summary lists (final artifacts:
# `executable`, and the kinds of the target that made `filenames`).
_KEPT_FIELDS = ("reason", "package_id", "out_dir", "filenames", "executable")


@dataclass(kw_only=True)
class MessageReader:
    """Splits Cargo's stdout into its JSON messages and the program output that follows them.

    With a format xpcargo injected, diagnostics are printed (as Cargo rendered them) to stderr and other messages
    are kept, not shown. With a JSON format the user asked for, every line goes to stdout unchanged as well.
    Once Cargo reports ``build-finished``, what follows is the output of the program or tests it runs.

    Memory stays bounded whatever Cargo's stdout holds: a line is buffered only while it can still be a message
    (it starts like one and is at most ``MAX_MESSAGE_BYTES`` long), and of each message only what the report needs
    is kept (``messages``), each distinct record once.
    """

    echo_messages: bool
    write_stdout: Callable[[bytes], None]
    write_stderr: Callable[[bytes], None]
    # The messages about a package, each reduced to the fields in _KEPT_FIELDS, in order, without repeats.
    messages: list[dict[str, Any]] = field(default_factory=list)
    finished: bool | None = None
    # Messages the report needs that were not read (too long) or not kept (too many): the report of such a build
    # would be incomplete.
    overflowed: int = 0
    _pending: bytearray = field(default_factory=bytearray)
    # The current line is being passed on as it comes, up to its newline.
    _passing: bool = False
    _seen: set[tuple[object, ...]] = field(default_factory=set)

    def feed(self, chunk: bytes) -> None:
        position = 0
        while position < len(chunk):
            if self.finished is not None and not self._pending and not self._passing:
                self.write_stdout(chunk[position:])
                return
            newline = chunk.find(b"\n", position)
            end = len(chunk) if newline < 0 else newline + 1
            piece, position = chunk[position:end], end
            if self._passing:
                self.write_stdout(piece)
                self._passing = newline < 0
                continue
            start = (bytes(self._pending[:_START]) + piece[:_START])[:_START]
            # +1: the newline, which a message may end with.
            too_long = len(self._pending) + len(piece) > MAX_MESSAGE_BYTES + 1
            if too_long or not _PREFIX.startswith(start[: len(_PREFIX)]):
                # No message, or too long to read as one: passed on as it comes, not held.
                if too_long and self.finished is None and start.startswith(_NEEDED):
                    self.overflowed += 1
                if self._pending:
                    self.write_stdout(bytes(self._pending))
                    self._pending.clear()
                self.write_stdout(piece)
                self._passing = newline < 0
            elif newline >= 0:
                line = bytes(self._pending) + piece
                self._pending.clear()
                self._line(line)
            else:
                self._pending += piece

    def close(self) -> None:
        if self._pending:
            line = bytes(self._pending)
            self._pending.clear()
            self._line(line)
        self._passing = False

    def _line(self, line: bytes) -> None:
        message = _parse_message(line) if self.finished is None else None
        if message is None:
            self.write_stdout(line)
            return
        self._keep(message)
        if self.echo_messages:
            self.write_stdout(line)
        elif message["reason"] == "compiler-message":
            diagnostic = message.get("message")
            rendered = diagnostic.get("rendered") if isinstance(diagnostic, dict) else None
            if isinstance(rendered, str) and rendered:
                # A JSON string may hold lone surrogates (`\ud800`), which UTF-8 cannot encode.
                self.write_stderr(rendered.encode("utf-8", "replace"))
        if message["reason"] == "build-finished":
            self.finished = bool(message.get("success"))

    def _keep(self, message: dict[str, Any]) -> None:
        if "package_id" not in message:
            return
        kept = {name: message[name] for name in _KEPT_FIELDS if name in message}
        target = message.get("target")
        if isinstance(target, dict) and isinstance(target.get("kind"), list):
            kept["target"] = {"kind": [kind for kind in target["kind"] if isinstance(kind, str)]}
        identity = tuple((name, _hashable(value)) for name, value in kept.items())
        if identity in self._seen:
            return
        if len(self.messages) >= MAX_KEPT_MESSAGES:
            self.overflowed += 1
            return
        self._seen.add(identity)
        self.messages.append(kept)


def _hashable(value: object) -> object:
    if isinstance(value, dict):
        return tuple(sorted((str(key), _hashable(item)) for key, item in value.items()))
    return tuple(map(_hashable, value)) if isinstance(value, list) else value if isinstance(value, str) else repr(value)


def _parse_message(line: bytes) -> dict[str, Any] | None:
    if not line.startswith(_PREFIX):
        return None
    try:
        message = json.loads(line)
    except (ValueError, RecursionError):
        # RecursionError: a line nested thousands deep, which Cargo never prints.
        return None
    return message if isinstance(message, dict) else None
