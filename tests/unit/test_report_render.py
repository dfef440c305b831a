"""The build-script report shown: a block per package for people, escaped for the terminal, and JSON for scripts,
every value exact."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from xpcargo.artifacts import final_artifacts
from xpcargo.report.model import BuildReport
from xpcargo.report.render import render_artifacts, render_json, render_table

from .test_report_store import REPORT

AARCH64 = "aarch64-unknown-linux-gnu"


def test_render_json() -> None:
    rendered = json.loads(render_json(REPORT))
    assert [list(entry) for entry in rendered] == [
        [
            "package",
            "version",
            "links",
            "out_dir",
            "linked_libs",
            "linked_paths",
            "cfgs",
            "env",
            "metadata",
            "warnings",
            "overridden",
            # Added since: after every field of the first version, which stay as they were.
            "host",
            "libraries",
        ]
    ] * 2
    assert rendered[0]["env"] == {"FOO_VERSION": "1.2=3"}
    assert rendered[1] == {
        "package": "zlib-sys",
        "version": "1.1.0",
        "links": "z",
        "out_dir": None,
        "linked_libs": ["z"],
        "linked_paths": [],
        "cfgs": [],
        "env": {},
        "metadata": {},
        "warnings": [],
        "overridden": True,
        "host": False,
        "libraries": [],
    }


def test_render_table() -> None:
    assert render_table(REPORT) == (
        "foo-sys@0.1.0\n"
        "  links:        foo\n"
        "  out dir:      /w/target/aarch64-unknown-linux-gnu/release/build/foo-sys-0123/out\n"
        "  linked libs:  static=foo\n"
        "  linked paths: native=/w/target/out/lib\n"
        "  cfgs:         has_foo\n"
        "  env:          FOO_VERSION=1.2=3\n"
        "  metadata:     DEP_FOO_ROOT=/opt/foo\n"
        "                DEP_FOO_INCLUDE=/opt/foo/include\n"
        "  warnings:     foo: deprecated\n"
        "\n"
        "zlib-sys@1.1.0\n"
        "  links:        z\n"
        "  out dir:      none: build script overridden by [target.aarch64-unknown-linux-gnu.z]\n"
        "  linked libs:  z"
    )


# What would act on a terminal: C0 but the newline between lines, DEL, C1, separators, bidi controls, surrogates.
_TERMINAL_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def test_render_table_escapes_control_characters() -> None:
    hostile = "retitled \x1b]0;pwned\x07 cleared \x1b[2J\rforged\nline \x9b31m \x00\t\x7f \u202e \u2028 \ud800"
    escaped = r"retitled \x1b]0;pwned\x07 cleared \x1b[2J\rforged\nline \x9b31m \x00\t\x7f \u202e \u2028 \ud800"
    package = replace(
        REPORT.packages[0],
        package="foo\x1b[8m",
        warnings=(hostile,),
        env={"E\x1b": hostile},
        metadata={"K": hostile},
        cfgs=(hostile,),
    )
    rendered = render_table(replace(REPORT, packages=(package,)))
    assert not _TERMINAL_CONTROLS.findall(rendered)
    rendered.encode()
    lines = rendered.splitlines()
    assert lines[0] == r"foo\x1b[8m@0.1.0"
    assert f"  cfgs:         {escaped}" in lines
    assert f"  env:          E\\x1b={escaped}" in lines
    assert f"  metadata:     DEP_FOO_K={escaped}" in lines
    assert f"  warnings:     {escaped}" in lines


def test_render_json_keeps_control_characters_exactly() -> None:
    hostile = "retitled \x1b]0;pwned\x07 \r\n \x9b \x00"
    package = replace(REPORT.packages[0], warnings=(hostile,))
    rendered = render_json(replace(REPORT, packages=(package,)))
    assert not _TERMINAL_CONTROLS.findall(rendered.replace("\n", ""))
    assert json.loads(rendered)[0]["warnings"] == [hostile]


def test_render_table_empty() -> None:
    assert "no package" in render_table(replace(REPORT, packages=()))


def test_a_wasm_target_has_no_floor(tmp_path: Path) -> None:
    # The first bytes of every WebAssembly module: the magic and version 1.
    module = tmp_path / "app.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0" + bytes(64))
    built = BuildReport(
        target="wasm32-wasip1",
        profile="debug",
        success=True,
        packages=(),
        artifacts=final_artifacts(
            [
                {
                    "reason": "compiler-artifact",
                    "package_id": "app 0.1.0",
                    "target": {"kind": ["bin"]},
                    "filenames": [str(module)],
                    "executable": str(module),
                }
            ],
            tmp_path,
        ),
    )
    lines = render_artifacts(built).splitlines()
    assert lines == ["artifacts (wasm32-wasip1 links no glibc: it has no glibc floor):", f"  {module}  -"]
    # A glibc target whose floor is unknown still says so.
    assert "floor of aarch64-unknown-linux-gnu is unknown" in render_artifacts(
        BuildReport(target=AARCH64, profile="debug", success=True, packages=())
    )
