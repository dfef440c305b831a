"""How a container died, told from its events: as Docker sends them, here from a stand-in."""

from __future__ import annotations

from collections.abc import Iterator
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


class _Api:
    def __init__(self, *events: dict[str, Any]) -> None:
        self.events_given = list(events)

    def events(self, **options: Any) -> _Events:
        return _Events(self.events_given)


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
    watch = ContainerWatch(_Api(*events), "c1", 0)  # type: ignore[arg-type]
    told = watch.death(grace=5)
    assert told is not None
    assert told.startswith(death)
    watch.close()


def test_a_container_alive_has_no_death() -> None:
    watch = ContainerWatch(_Api(_event("start")), "c1", 0)  # type: ignore[arg-type]
    assert watch.death(grace=0.05) is None
    assert not watch.oom
    watch.close()
