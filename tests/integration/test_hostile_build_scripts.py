"""Build scripts that try to hurt the tool reading what they printed: a gigabyte of output, a line of hundreds of
MiB forged into Cargo's own stdout, and terminal control sequences in the values of a report."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from .helpers import X86_64, Cli, copy_fixture, measure_cli

pytestmark = pytest.mark.engine

# The flood the hardening issue asks xpcargo to survive, and the memory it may use meanwhile (measured: about 37 MiB,
# the same as for a build that prints nothing). 1 GiB takes some 25 s here, most of it Cargo's.
FLOOD_MIB = 1024
FORGED_MIB = 256
PEAK_RSS_LIMIT_MIB = 100

# Anything that acts on a terminal: C0 (except the newline between lines), DEL, C1, Unicode line separators and
# bidirectional controls.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _entry(xpcargo: Cli, project: Path, name: str) -> dict[str, Any]:
    reported = xpcargo(["report", "--target", X86_64, "--json"], cwd=project)
    assert reported.code == 0, reported
    entries: list[dict[str, Any]] = json.loads(reported.stdout)
    (entry,) = (entry for entry in entries if entry["package"] == name)
    return entry


def test_a_gigabyte_of_build_script_output_keeps_xpcargo_small(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, tmp_path: Path
) -> None:
    project = copy_fixture(tmp_path_factory, "build-script-flood")
    (project / "flood-mib").write_text(f"{FLOOD_MIB}\n")
    (project / "forged-mib").write_text(f"{FORGED_MIB}\n")

    built = measure_cli(["build", "--target", X86_64], cwd=project, stderr_file=tmp_path / "stderr", env=xpcargo.env)

    assert built.code == 0, built.stderr_file.read_bytes()[-4000:].decode(errors="replace")
    # The flood really happened: Cargo kept it all, and the forged line went through xpcargo's stdout.
    (output,) = (project / "target" / X86_64 / "debug" / "build").glob("build-script-flood-*/output")
    assert output.stat().st_size >= FLOOD_MIB << 20
    assert built.stdout_bytes >= FORGED_MIB << 20
    assert built.peak_rss_mib < PEAK_RSS_LIMIT_MIB, (
        f"xpcargo peaked at {built.peak_rss_mib:.0f} MiB for {FLOOD_MIB} MiB of build-script output"
    )

    entry = _entry(xpcargo, project, "build-script-flood")
    assert entry["cfgs"] == [f"flood_cfg_{n}" for n in range(1000)]
    assert len(entry["metadata"]) <= 1000
    assert entry["metadata"]["FLOOD_KEY_1"] == "flood value 1"
    assert len(entry["warnings"]) <= 1001
    capped = entry["warnings"][-1]
    assert capped.startswith("xpcargo report capped: not kept: cfgs 500, "), capped
    assert "lines over 64 KiB 1 " in capped
    report_file = project / "target" / "xpcargo" / "build-scripts" / X86_64 / "debug.json"
    assert report_file.stat().st_size < 1 << 20
    # pytest keeps the temporary directories of the last runs: not a gigabyte each (kept above when a check failed).
    output.unlink()


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
