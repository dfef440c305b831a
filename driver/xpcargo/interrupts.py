"""Signals as exceptions: Ctrl-C, SIGTERM and SIGHUP unwind the stack like any error, so every container, temporary
file and untagged image is cleaned up by ordinary ``finally`` code on the way out."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from xpcargo.errors import InterruptError

# SIGHUP is what a closed terminal or a dropped ssh session sends: the user is gone, as with SIGTERM.
_MESSAGES = {
    signal.SIGINT: "interrupted",
    signal.SIGTERM: "terminated by SIGTERM",
    signal.SIGHUP: "terminated by SIGHUP",
}
SIGNALS = frozenset(_MESSAGES)


@contextmanager
def as_errors() -> Iterator[None]:
    """Within the block, SIGINT, SIGTERM and SIGHUP raise ``InterruptError``.

    Ctrl-C raises it too, rather than Python's ``KeyboardInterrupt``: typer turns a ``KeyboardInterrupt`` into a
    silent exit 130, with no line to say what happened.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        received = signal.Signals(signum)
        raise InterruptError(_MESSAGES[received], signal_name=received.name.removeprefix("SIG"))

    previous = {signum: signal.signal(signum, on_signal) for signum in _MESSAGES}
    try:
        yield
    except KeyboardInterrupt:
        raise InterruptError("interrupted") from None
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
