"""Build scripts that try to hurt the tool reading what they printed: terminal control sequences in the values of a
report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .helpers import X86_64, Cli, copy_fixture

pytestmark = pytest.mark.engine

# Anything that acts on a terminal: C0 (except the newline between lines), DEL, C1, Unicode line separators and
# bidirectional controls.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _entry(xpcargo: Cli, project: Path, name: str) -> dict[str, Any]:
    reported = xpcargo(["report", "--target", X86_64, "--json"], cwd=project)
    assert reported.code == 0, reported
    entries: list[dict[str, Any]] = json.loads(reported.stdout)
    (entry,) = (entry for entry in entries if entry["package"] == name)
    return entry


def test_report_shows_no_control_characters_but_json_keeps_them(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "build-script-controls")
    built = xpcargo(["build", "--target", X86_64], cwd=project)
    assert built.code == 0, built

    shown = xpcargo(["report", "--target", X86_64], cwd=project)

    assert shown.code == 0, shown
    assert not CONTROL.findall(shown.stdout), shown.stdout
    assert r"retitled \x1b]0;pwned\x07 cleared \x1b[2J\x1b[H overwritten\rforged" in shown.stdout
    assert r"C1 \x9b31m CSI, NUL \x00, backspace \x08, DEL \x7f, bidi \u202e reversed, LS \u2028 line" in shown.stdout
    assert r"CONTROLS=red \x1b[31m text \x0b tab \t end" in shown.stdout
    assert r"DEP_CONTROLS_ESCAPED=\x1b[1;32mgreen\x1b[0m" in shown.stdout
    # One line per value: nothing was split or overwritten.
    assert sum(line.lstrip().startswith(("warnings:", r"C1 \x9b")) for line in shown.stdout_lines) == 2

    as_json = xpcargo(["report", "--target", X86_64, "--json"], cwd=project)
    assert not CONTROL.findall(as_json.stdout), as_json.stdout
    entry = _entry(xpcargo, project, "build-script-controls")
    assert entry["warnings"] == [
        "retitled \x1b]0;pwned\x07 cleared \x1b[2J\x1b[H overwritten\rforged",
        "C1 \x9b31m CSI, NUL \x00, backspace \x08, DEL \x7f, bidi \u202e reversed, LS \u2028 line",
    ]
    assert entry["env"] == {"CONTROLS": "red \x1b[31m text \x0b tab \t end"}
    assert entry["metadata"] == {"ESCAPED": "\x1b[1;32mgreen\x1b[0m"}
