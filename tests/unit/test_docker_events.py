"""How a container died, told from its events: as Docker sends them, here from a stand-in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xpcargo.container.docker.events import ContainerWatch


class _Events:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._events)

    def close(self) -> None:
        pass


def _api(*events: dict[str, Any]) -> Callable[[], _Events]:
    return lambda: _Events(list(events))


def _event(action: str, **attributes: str) -> dict[str, Any]:
    return {"Action": action, "Actor": {"Attributes": attributes}}


@pytest.mark.parametrize(
    ("events", "death"),
    [
        ([_event("oom"), _event("die", exitCode="137")], "was killed by the kernel's OOM killer"),
        ([_event("kill", signal="9"), _event("die", exitCode="137")], "was killed (SIGKILL from outside xpcargo"),
        ([_event("kill", signal="15"), _event("die", exitCode="143")], "was stopped by signal 15 from outside xpcargo"),
        ([_event("die", exitCode="2")], "stopped: its main process exited with 2"),
    ],
)
def test_a_death_is_told_as_it_was(events: list[dict[str, Any]], death: str) -> None:
    watch = ContainerWatch(_api(*events))
    told = watch.death(grace=5)
    assert told is not None
    assert told.startswith(death)
    watch.close()


def test_a_container_alive_has_no_death() -> None:
    watch = ContainerWatch(_api(_event("start")))
    assert watch.death(grace=0.05) is None
    assert not watch.oom
    watch.close()
