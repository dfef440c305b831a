"""The build-script report kept in the target dir: where, written whole, read back (older schemas too), and a corrupt
or hostile file refused with one line."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpcargo.artifacts import GlibcNeed, final_artifacts
from xpcargo.errors import ReportError
from xpcargo.report.model import BuildReport, LinkedLibrary, Origin, PackageReport
from xpcargo.report.render import render_artifacts, render_artifacts_json, render_json, render_table
from xpcargo.report.store import SCHEMA_VERSION, load, report_path, save

from .test_artifacts import AARCH64, artifact_tree
from .test_elf import build_elf
from .test_report_collect import ANY_JSON, TRIPLE

MUSL = "x86_64-unknown-linux-musl"

REPORT = BuildReport(
    target=TRIPLE,
    profile="release",
    success=True,
    packages=(
        PackageReport(
            package="foo-sys",
            version="0.1.0",
            links="foo",
            out_dir="/w/target/aarch64-unknown-linux-gnu/release/build/foo-sys-0123/out",
            linked_libs=("static=foo",),
            linked_paths=("native=/w/target/out/lib",),
            cfgs=("has_foo",),
            env={"FOO_VERSION": "1.2=3"},
            metadata={"ROOT": "/opt/foo", "INCLUDE": "/opt/foo/include"},
            warnings=("foo: deprecated",),
            overridden=False,
        ),
        PackageReport(
            package="zlib-sys",
            version="1.1.0",
            links="z",
            out_dir=None,
            linked_libs=("z",),
            linked_paths=(),
            cfgs=(),
            env={},
            metadata={},
            warnings=(),
            overridden=True,
        ),
    ),
)


def test_report_path_is_under_xpcargo(tmp_path: Path) -> None:
    path = report_path(tmp_path, TRIPLE, "release")
    assert path.is_relative_to(tmp_path / "xpcargo")
    assert report_path(tmp_path, "/specs/my-board.json", "dev").parent.name == "my-board"
    assert path != report_path(tmp_path, TRIPLE, "dev")
    with pytest.raises(ReportError, match="file name"):
        report_path(tmp_path, TRIPLE, "../x")


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = report_path(tmp_path, TRIPLE, "release")
    save(REPORT, path)
    assert load(path) == REPORT
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION
    # Overwriting leaves no temporary file behind.
    save(REPORT, path)
    assert [entry.name for entry in path.parent.iterdir()] == [path.name]


def test_libraries_and_host_round_trip_and_render(tmp_path: Path) -> None:
    libraries = (
        LinkedLibrary(name="foo", kind="static", path="/w/target/out/lib/libfoo.a", origin=Origin.OUT_DIR),
        LinkedLibrary(
            name="z", kind=None, path="/usr/lib/x/libz.so", origin=Origin.IMAGE, debian_package="zlib1g-dev:arm64"
        ),
        LinkedLibrary(name="q", kind="dylib", path=None, origin=Origin.NOT_FOUND),
    )
    first = replace(REPORT.packages[0], host=True, libraries=libraries)
    with_libraries = replace(REPORT, packages=(first, *REPORT.packages[1:]))
    path = report_path(tmp_path, TRIPLE, "release")
    save(with_libraries, path)
    assert load(path) == with_libraries
    assert json.loads(render_json(with_libraries))[0]["libraries"][1] == {
        "name": "z",
        "kind": None,
        "path": "/usr/lib/x/libz.so",
        "origin": "image",
        "debian_package": "zlib1g-dev:arm64",
    }
    table = render_table(with_libraries)
    assert "  runs for:     the build machine (a build-dependency's or a proc-macro's build script)" in table
    assert "  libraries:    static=foo: /w/target/out/lib/libfoo.a (built in OUT_DIR)" in table
    assert "                z: /usr/lib/x/libz.so (image, Debian package zlib1g-dev:arm64)" in table
    assert "                dylib=q: not found on the search paths" in table


def test_a_report_written_before_libraries_and_host_still_loads(tmp_path: Path) -> None:
    path = report_path(tmp_path, TRIPLE, "release")
    save(REPORT, path)
    document = json.loads(path.read_text())
    for package in document["packages"]:
        del package["host"], package["libraries"]
    path.write_text(json.dumps(document), encoding="utf-8")
    assert load(path) == REPORT
    document["packages"][0]["libraries"] = [{"name": "z", "kind": None, "path": None, "origin": "moon"}]
    path.write_text(json.dumps(document), encoding="utf-8")
    with pytest.raises(ReportError, match="corrupt"):
        load(path)


def test_load_missing(tmp_path: Path) -> None:
    with pytest.raises(ReportError) as caught:
        load(report_path(tmp_path, TRIPLE, "dev"))
    assert "no build-script report" in caught.value.message
    assert caught.value.hint == f"run `xpcargo build --target {TRIPLE}` first"


def _document() -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "target": TRIPLE,
        "profile": "dev",
        "success": True,
        "packages": json.loads(render_json(REPORT)),
    }


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


CORRUPT: list[tuple[str, str]] = [
    ("empty file", ""),
    ("not JSON", "{'target': 1"),
    ("a list", "[]"),
    ("deeply nested", "[" * 100_000),
    ("no schema version", json.dumps(_without(_document(), "schema_version"))),
    ("newer schema", json.dumps({**_document(), "schema_version": SCHEMA_VERSION + 1})),
    ("schema version true", json.dumps({**_document(), "schema_version": True})),
    ("missing packages", json.dumps(_without(_document(), "packages"))),
    ("extra field", json.dumps({**_document(), "extra": 1})),
    ("success a string", json.dumps({**_document(), "success": "yes"})),
    ("packages a table", json.dumps({**_document(), "packages": {}})),
    ("package missing a field", json.dumps({**_document(), "packages": [_without(_document()["packages"][0], "env")]})),
    ("libs not strings", json.dumps({**_document(), "packages": [{**_document()["packages"][0], "linked_libs": [1]}]})),
    ("env not a table", json.dumps({**_document(), "packages": [{**_document()["packages"][0], "env": []}]})),
    ("links a number", json.dumps({**_document(), "packages": [{**_document()["packages"][0], "links": 3}]})),
    # JSON can spell lone surrogates, which no UTF-8 terminal or file takes.
    ("lone surrogate", json.dumps({**_document(), "packages": [{**_document()["packages"][0], "package": "\ud800"}]})),
    (
        "lone surrogate key",
        json.dumps({**_document(), "packages": [{**_document()["packages"][0], "env": {"\udc80": ""}}]}),
    ),
    ("lone surrogate target", json.dumps({**_document(), "target": "\udfff"})),
]


@pytest.mark.parametrize("text", [case[1] for case in CORRUPT], ids=[case[0] for case in CORRUPT])
def test_load_corrupt(tmp_path: Path, text: str) -> None:
    path = report_path(tmp_path, TRIPLE, "dev")
    path.parent.mkdir(parents=True)
    path.write_text(text)
    with pytest.raises(ReportError) as caught:
        load(path)
    assert "\n" not in caught.value.message
    assert caught.value.hint == f"run `xpcargo build --target {TRIPLE}` first"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    field=st.sampled_from(["target", "profile", "success", *json.loads(render_json(REPORT))[0]]),
    value=ANY_JSON | st.text(alphabet=st.characters(categories=["Cs", "Cc", "L"])),
)
def test_any_corrupt_field_is_a_report_error_or_a_showable_report(tmp_path: Path, field: str, value: object) -> None:
    document = _document()
    if field in document:
        document[field] = value
    else:
        document["packages"][0][field] = value
    path = tmp_path / "report.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        loaded = load(path)
    except ReportError:
        return
    render_table(loaded).encode()
    render_json(loaded).encode()


def test_load_not_utf8(tmp_path: Path) -> None:
    path = report_path(tmp_path, TRIPLE, "dev")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\xff\xfe")
    with pytest.raises(ReportError):
        load(path)


def test_load_failed_build(tmp_path: Path) -> None:
    path = report_path(tmp_path, TRIPLE, "release")
    save(replace(REPORT, success=False), path)
    with pytest.raises(ReportError, match="last release build for aarch64-unknown-linux-gnu failed") as caught:
        load(path)
    assert caught.value.hint is not None
    assert f"xpcargo build --target {TRIPLE}" in caught.value.hint


def test_the_report_keeps_them_and_shows_them_next_to_the_floor(tmp_path: Path) -> None:
    target_dir, messages = artifact_tree(tmp_path)
    built = BuildReport(
        target=AARCH64,
        profile="release",
        success=True,
        packages=(),
        glibc_floor="2.36",
        artifacts=final_artifacts(messages, target_dir / AARCH64),
    )
    path = report_path(target_dir, AARCH64, "release")
    save(built, path)
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert stored["schema_version"] == 2
    assert stored["glibc_floor"] == "2.36"
    assert stored["artifacts"][2] == {
        "path": str(target_dir / AARCH64 / "release" / "app"),
        "kinds": ["bin"],
        "package_id": "app 0.1.0",
        "machine": "aarch64",
        "glibc": "2.34",
        "static": False,
    }
    loaded = load(path)
    assert loaded == built
    table = render_table(loaded)
    assert "the glibc floor of aarch64-unknown-linux-gnu is 2.36" in table
    assert table.splitlines()[-1].split() == [str(target_dir / AARCH64 / "release" / "app"), "2.34", "(floor", "2.36)"]
    as_json = json.loads(render_artifacts_json(loaded))
    assert [(entry["glibc"], entry["glibc_floor"]) for entry in as_json] == [
        ("2.38", "2.36"),
        (None, "2.36"),
        ("2.34", "2.36"),
    ]
    # The packages' JSON is what it was: one object per package, no artifact in it.
    assert json.loads(render_json(loaded)) == []


def test_a_report_of_the_first_schema_is_still_read(tmp_path: Path) -> None:
    path = tmp_path / "release.json"
    document = {"schema_version": 1, "target": AARCH64, "profile": "release", "success": True, "packages": []}
    path.write_text(json.dumps(document), encoding="utf-8")
    loaded = load(path)
    assert (loaded.glibc_floor, loaded.artifacts) == (None, ())
    assert render_table(loaded) == "no package of this build has a build script or a links override"
    assert "none recorded" in render_artifacts(loaded)


def test_a_static_program_is_stored_and_shown_as_static(tmp_path: Path) -> None:
    """A static-pie (a dynamic section, no interpreter, no needed library) says `static` in the report; a report
    written before the field existed still loads, as not static."""
    tree = tmp_path / "target" / MUSL / "release"
    tree.mkdir(parents=True)
    (tree / "app").write_bytes(
        build_elf(bits=64, big_endian=False, machine=62, needs={"libc.so.6": []}, needed=(), pie=True)
    )
    message = {"reason": "compiler-artifact", "package_id": "app 0.1.0", "target": {"kind": ["bin"]}}
    built = BuildReport(
        target=MUSL,
        profile="release",
        success=True,
        packages=(),
        glibc_floor=None,
        artifacts=final_artifacts([{**message, "executable": str(tree / "app")}], tree.parent),
    )
    path = report_path(tmp_path / "target", MUSL, "release")
    save(built, path)
    assert load(path) == built
    assert render_artifacts(load(path)).splitlines()[1].split() == [str(tree / "app"), "static"]
    assert json.loads(render_artifacts_json(load(path)))[0]["static"] is True
    document = json.loads(path.read_text(encoding="utf-8"))
    del document["artifacts"][0]["static"]
    path.write_text(json.dumps(document), encoding="utf-8")
    assert load(path).artifacts[0].glibc == GlibcNeed(machine="x86_64", glibc=None, static=False)


@pytest.mark.parametrize(
    "artifact",
    [
        {"path": "/a", "kinds": ["bin"], "package_id": "p", "machine": "aarch64"},
        {"path": "/a", "kinds": ["bin"], "package_id": "p", "machine": 7, "glibc": None},
        {"path": "/a", "kinds": "bin", "package_id": "p", "machine": None, "glibc": None},
        {"path": "/a", "kinds": ["bin"], "package_id": "p", "machine": None, "glibc": None, "static": "yes"},
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
        load(path)
