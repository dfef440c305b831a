"""Signals become exceptions inside `interrupts.as_errors()`, and the previous handlers come back afterwards."""

from __future__ import annotations

import os
import signal

import pytest

from xpcargo import interrupts
from xpcargo.errors import InterruptError


@pytest.mark.parametrize(("signum", "name"), [(signal.SIGTERM, "SIGTERM"), (signal.SIGHUP, "SIGHUP")])
def test_terminating_signals_raise(signum: signal.Signals, name: str) -> None:
    before = signal.getsignal(signum)
    with pytest.raises(InterruptError, match=name) as caught, interrupts.as_errors():
        os.kill(os.getpid(), signum)
    assert caught.value.exit_code == 130
    assert signal.getsignal(signum) == before


def test_ctrl_c_raises() -> None:
    with pytest.raises(InterruptError, match="interrupted"), interrupts.as_errors():
        os.kill(os.getpid(), signal.SIGINT)
