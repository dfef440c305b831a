"""What the report and the multi-target summary say about each artifact's glibc need: read from the files Cargo
named (ELF files built byte by byte, see test_elf.py), kept in the report file, shown next to the target's floor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpcargo import report
from xpcargo.errors import ReportError
from xpcargo.pipeline.artifacts import final_artifacts, glibc_need
from xpcargo.pipeline.matrix import Artifact, Summary, TargetResult

from .test_elf import build_elf

AARCH64 = "aarch64-unknown-linux-gnu"


def _tree(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    """A target dir with a binary needing GLIBC_2.34, a cdylib needing 2.38, a static library (no ELF file) and
    an rlib (no final artifact), with the messages Cargo prints for them."""
    tree = tmp_path / "target" / AARCH64 / "release"
    tree.mkdir(parents=True)
    (tree / "app").write_bytes(build_elf(bits=64, big_endian=False, machine=183, needs={"libc.so.6": ["GLIBC_2.34"]}))
    (tree / "libplug.so").write_bytes(
        build_elf(bits=64, big_endian=False, machine=183, needs={"libc.so.6": ["GLIBC_2.17", "GLIBC_2.38"]})
    )
    (tree / "libplug.a").write_bytes(b"!<arch>\n")
    (tree / "libdep.rlib").write_bytes(b"!<arch>\n")
    messages: list[dict[str, object]] = [
        {
            "reason": "compiler-artifact",
            "package_id": "dep 0.1.0",
            "target": {"kind": ["lib"]},
            "filenames": [str(tree / "libdep.rlib")],
        },
        {
            "reason": "compiler-artifact",
            "package_id": "plug 0.1.0",
            "target": {"kind": ["cdylib", "staticlib"]},
            "filenames": [str(tree / "libplug.so"), str(tree / "libplug.a")],
        },
        {
            "reason": "compiler-artifact",
            "package_id": "app 0.1.0",
            "target": {"kind": ["bin"]},
            "filenames": [str(tree / "app")],
            "executable": str(tree / "app"),
        },
    ]
    return tmp_path / "target", messages


def test_the_final_artifacts_and_their_needs(tmp_path: Path) -> None:
    target_dir, messages = _tree(tmp_path)
    found = final_artifacts(messages, target_dir / AARCH64)
    assert [item.path.name for item in found] == ["libplug.so", "libplug.a", "app"]
    needs = [glibc_need(item.path) for item in found]
    assert [(need.machine, need.glibc) for need in needs] == [("aarch64", "2.38"), (None, None), ("aarch64", "2.34")]
    assert [need.describe("2.36") for need in needs] == ["2.38 (ABOVE the floor 2.36)", "-", "2.34 (floor 2.36)"]


def test_the_report_keeps_them_and_shows_them_next_to_the_floor(tmp_path: Path) -> None:
    target_dir, messages = _tree(tmp_path)
    built = report.BuildReport(
        target=AARCH64,
        profile="release",
        success=True,
        packages=(),
        glibc_floor="2.36",
        artifacts=report.artifact_reports(final_artifacts(messages, target_dir / AARCH64)),
    )
    path = report.report_path(target_dir, AARCH64, "release")
    report.save(built, path)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["schema_version"] == 2
    assert stored["glibc_floor"] == "2.36"
    assert stored["artifacts"][2] == {
        "path": str(target_dir / AARCH64 / "release" / "app"),
        "kinds": ["bin"],
        "package_id": "app 0.1.0",
        "machine": "aarch64",
        "glibc": "2.34",
    }
    loaded = report.load(path)
    assert loaded == built
    table = report.render_table(loaded)
    assert "the glibc floor of aarch64-unknown-linux-gnu is 2.36" in table
    assert table.splitlines()[-1].split() == [str(target_dir / AARCH64 / "release" / "app"), "2.34", "(floor", "2.36)"]
    as_json = json.loads(report.render_artifacts_json(loaded))
    assert [(entry["glibc"], entry["glibc_floor"]) for entry in as_json] == [
        ("2.38", "2.36"),
        (None, "2.36"),
        ("2.34", "2.36"),
    ]
    # The packages' JSON is what it was: one object per package, no artifact in it.
    assert json.loads(report.render_json(loaded)) == []


def test_a_report_of_the_first_schema_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    document = {"schema_version": 1, "target": AARCH64, "profile": "release", "success": True, "packages": []}
    path.write_text(json.dumps(document), encoding="utf-8")
    loaded = report.load(path)
    assert (loaded.glibc_floor, loaded.artifacts) == (None, ())
    assert report.render_table(loaded) == "no package of this build has a build script or a links override"
    assert "none recorded" in report.render_artifacts(loaded)


@pytest.mark.parametrize(
    "artifact",
    [
        {"path": "/a", "kinds": ["bin"], "package_id": "p", "machine": "aarch64"},
        {"path": "/a", "kinds": ["bin"], "package_id": "p", "machine": 7, "glibc": None},
        {"path": "/a", "kinds": "bin", "package_id": "p", "machine": None, "glibc": None},
    ],
)
def test_a_corrupt_artifact_entry_is_a_report_error(tmp_path: Path, artifact: dict[str, object]) -> None:
    path = tmp_path / "release.json"
    document = {
        "schema_version": 2,
        "target": AARCH64,
        "profile": "release",
        "success": True,
        "packages": [],
        "glibc_floor": "2.36",
        "artifacts": [artifact],
    }
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ReportError, match="is corrupt"):
        report.load(path)


def test_the_summary_has_a_glibc_column(tmp_path: Path) -> None:
    target_dir, messages = _tree(tmp_path)
    artifacts = tuple(
        Artifact(path=item.path, size=10, sha256="0" * 64, kinds=item.kinds, glibc=glibc_need(item.path))
        for item in final_artifacts(messages, target_dir / AARCH64)
    )
    summary = Summary(
        command="build",
        results=(TargetResult(triple=AARCH64, code=0, seconds=1.0, artifacts=artifacts, glibc_floor="2.41"),),
        seconds=1.0,
    )
    rows = summary.rows(relative_to=tmp_path)
    assert rows[0] == ("TARGET", "RESULT", "TIME", "ARTIFACT", "SIZE", "GLIBC", "SHA256")
    assert [(row[3], row[5]) for row in rows[1:]] == [
        (f"target/{AARCH64}/release/libplug.so", "2.38 (floor 2.41)"),
        (f"target/{AARCH64}/release/libplug.a", "-"),
        (f"target/{AARCH64}/release/app", "2.34 (floor 2.41)"),
    ]
    assert "| `target/aarch64-unknown-linux-gnu/release/app` | 10 B | 2.34 (floor 2.41) |" in summary.markdown(
        relative_to=tmp_path
    )


def test_a_wasm_module_needs_no_glibc_and_its_target_has_no_floor(tmp_path: Path) -> None:
    # The first bytes of every WebAssembly module: the magic and version 1. The ELF reader must take it for what it
    # is (no ELF file), not fail.
    module = tmp_path / "app.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0" + bytes(64))
    need = glibc_need(module)
    assert (need.machine, need.glibc) == (None, None)
    assert need.describe(None) == "-"
    built = report.BuildReport(
        target="wasm32-wasip1",
        profile="debug",
        success=True,
        packages=(),
        artifacts=report.artifact_reports(
            final_artifacts(
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
            )
        ),
    )
    lines = report.render_artifacts(built).splitlines()
    assert lines == ["artifacts (wasm32-wasip1 links no glibc: it has no glibc floor):", f"  {module}  -"]
    # A glibc target whose floor is unknown still says so.
    assert "floor of aarch64-unknown-linux-gnu is unknown" in report.render_artifacts(
        report.BuildReport(target=AARCH64, profile="debug", success=True, packages=())
    )
