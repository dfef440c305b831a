"""Cargo's JSON messages (``--message-format=json``): split Cargo's stdout into its messages and the output of the
program or tests that Cargo runs after them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(kw_only=True)
class MessageReader:
    """Splits Cargo's stdout into its JSON messages and the program output that follows them.

    With a format xpcargo injected, diagnostics are printed (as Cargo rendered them) to stderr and other messages
    are kept, not shown. With a JSON format the user asked for, every line goes to stdout unchanged as well.
    Once Cargo reports ``build-finished``, what follows is the output of the program or tests it runs.
    """

    echo_messages: bool
    write_stdout: Callable[[bytes], None]
    write_stderr: Callable[[bytes], None]
    messages: list[dict[str, Any]] = field(default_factory=list)
    finished: bool | None = None
    _pending: bytes = b""

    def feed(self, chunk: bytes) -> None:
        if self.finished is not None and not self._pending:
            self.write_stdout(chunk)
            return
        self._pending += chunk
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            self._line(line + b"\n")
            if self.finished is not None:
                rest, self._pending = self._pending, b""
                if rest:
                    self.write_stdout(rest)
                return

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = b""

    def _line(self, line: bytes) -> None:
        message = _parse_message(line) if self.finished is None else None
        if message is None:
            self.write_stdout(line)
            return
        self.messages.append(message)
        if self.echo_messages:
            self.write_stdout(line)
        elif message["reason"] == "compiler-message":
            rendered = (message.get("message") or {}).get("rendered")
            if rendered:
                self.write_stderr(str(rendered).encode())
        if message["reason"] == "build-finished":
            self.finished = bool(message.get("success"))


def _parse_message(line: bytes) -> dict[str, Any] | None:
    if not line.startswith(b'{"reason":'):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
