"""The commands, one module per command group: each takes the ``Context`` and the parsed options, finds there the
project and the targets the command is about, passes the layers below just what they need, and returns what
``cli.py`` prints: rows, lines, or an exit code. A command that builds or removes images shows its progress as it
goes, through the Host's reporter."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    """What a command has to say once it is done: ``lines`` for stdout, then ``statuses`` (verb, message) on stderr
    as status lines in Cargo's style."""

    lines: tuple[str, ...] = ()
    statuses: tuple[tuple[str, str], ...] = ()
