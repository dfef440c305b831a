"""A watch on one container's events, so that a container that dies under a command is told as it is: killed,
OOM-killed, or stopped."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from typing import Any, Protocol


class EventStream(Protocol):
    """A container's events as they come, the SDK's (decoded) or ``socket_api``'s; ``close`` ends them."""

    def __iter__(self) -> Iterator[dict[str, Any]]: ...
    def close(self) -> None: ...


class ContainerWatch:
    """Follows one container's events from before it started: whether it was OOM-killed, killed, or died."""

    def __init__(self, open_events: Callable[[], EventStream]) -> None:
        """``open_events`` asks the engine for the container's events, from a time before it started."""
        self.oom = False
        self._kill_signal: str | None = None
        self._exit_code: str | None = None
        self._died = threading.Event()
        self._stream: EventStream | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._follow, args=(open_events,), name="xpcargo-container-events", daemon=True
        )
        self._thread.start()

    def _follow(self, open_events: Callable[[], EventStream]) -> None:
        with suppress(Exception):
            self._stream = open_events()
            if self._closed:
                self._stream.close()
            for event in self._stream:
                action = str(event.get("Action") or event.get("status") or "")
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                if action == "oom":
                    self.oom = True
                elif action == "kill":
                    self._kill_signal = str(attributes.get("signal", ""))
                elif action == "die":
                    self._exit_code = str(attributes.get("exitCode", ""))
                    self._died.set()

    def death(self, *, grace: float) -> str | None:
        """How the container died, in words, or None while it lives (the engine's word may lag a little)."""
        if not self._died.wait(grace):
            return None
        if self.oom:
            return "was killed by the kernel's OOM killer"
        if self._kill_signal in ("9", "KILL", "SIGKILL"):
            return "was killed (SIGKILL from outside xpcargo, e.g. `docker kill`)"
        if self._kill_signal:
            return f"was stopped by signal {self._kill_signal} from outside xpcargo (e.g. `docker stop`)"
        return f"stopped: its main process exited with {self._exit_code or 'an unknown code'}"

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            with suppress(Exception):
                self._stream.close()
