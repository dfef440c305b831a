"""The build-script report, checked against what the host's real Cargo does with real crates."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpcargo.cargo.protocol import parse
from xpcargo.config.links import LinksOverrides
from xpcargo.errors import ReportError
from xpcargo.report.collect import CAPPED_MARKER, MAX_ENTRIES, MAX_LINE_BYTES, MAX_PACKAGE_CHARS, collect
from xpcargo.report.model import BuildReport, PackageReport
from xpcargo.report.render import render_json, render_table
from xpcargo.report.store import save

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

CARGO = shutil.which("cargo")
needs_cargo = pytest.mark.skipif(CARGO is None, reason="cargo is not on PATH; these tests run real Cargo builds")

LINKS = "my-native"

# Every kind of instruction, in both forms, plus the lines Cargo trims, skips or ignores.
LINKS_SYS_BUILD_RS = r"""
use std::io::Write;

fn main() {
    let out_dir = std::env::var("OUT_DIR").unwrap();
    let mut stdout = std::io::stdout();
    stdout.write_all(b"cargo:rustc-link-lib=native
cargo::rustc-link-lib=dylib=other
cargo:rustc-link-search=native=/opt/native/lib
cargo::rustc-flags=-lattached -l separate -L/opt/attached -L /opt/separate
cargo:rustc-cfg=has_native
cargo::rustc-cfg=native_version=\"2\"
cargo::rustc-check-cfg=cfg(has_native)
cargo::rustc-check-cfg=cfg(native_version, values(\"2\"))
cargo:rustc-env=NATIVE_GREETING=a=b
cargo::rustc-env=NATIVE_EMPTY=
cargo::metadata=root=/opt/native
cargo::metadata=Some-Key=first
cargo:some_key=second
  cargo:spaced=  padded  \t
cargo:\xc3\x9f=eszett
cargo:metadata=k=v
cargo:error=not-an-error
\x1fcargo:unit_sep=1
cargo:crlf=1\r
cargo:bad=\xff
cargo:warning=old form warning
cargo::warning=new form warning
cargo::rerun-if-changed=build.rs
").unwrap();
    writeln!(stdout, "cargo:include={out_dir}/include").unwrap();
}
"""

# Records the DEP_ variables the script receives, NUL-separated so that any value survives.
DEPENDENT_BUILD_RS = r"""
use std::io::Write;

fn main() {
    let out_dir = std::path::PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let mut file = std::fs::File::create(out_dir.join("dep_env")).unwrap();
    for (key, value) in std::env::vars_os() {
        let key = key.into_encoded_bytes();
        if key.starts_with(b"DEP_") {
            file.write_all(&key).unwrap();
            file.write_all(b"\0").unwrap();
            file.write_all(&value.into_encoded_bytes()).unwrap();
            file.write_all(b"\0").unwrap();
        }
    }
    // Metadata of a package without `links` goes nowhere.
    println!("cargo:not_passed=1");
    println!("cargo::rerun-if-changed=build.rs");
}
"""

OVERRIDE_TOML = """
[target.{host}.my-native]
rustc-link-lib = ["ovr"]
rustc-link-search = ["native=/ovr/lib"]
rustc-flags = "-L /ovr/flags -lflagged"
rustc-cfg = ['ovr="yes"']
rustc-env = {{ OVR_ENV = "1=2" }}
root = "/ovr"
Some-Key = "s1"
some_key = "s2"
rustc-link-arg-bin = "is-metadata-here"
"""


def _write_workspace(root: Path) -> Path:
    files = {
        "Cargo.toml": '[workspace]\nresolver = "2"\nmembers = ["links-sys", "dependent"]\n',
        "links-sys/Cargo.toml": (
            f'[package]\nname = "links-sys"\nversion = "0.3.1"\nedition = "2021"\nlinks = "{LINKS}"\n'
        ),
        "links-sys/build.rs": LINKS_SYS_BUILD_RS,
        "links-sys/src/lib.rs": "",
        "dependent/Cargo.toml": (
            '[package]\nname = "dependent"\nversion = "1.0.0"\nedition = "2021"\n\n'
            '[dependencies]\nlinks-sys = { path = "../links-sys" }\n'
        ),
        "dependent/build.rs": DEPENDENT_BUILD_RS,
        "dependent/src/lib.rs": "",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def _cargo_env() -> dict[str, str]:
    # Settings from the environment running the tests must not change what Cargo builds.
    dropped = {
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
    }
    return {key: value for key, value in os.environ.items() if key not in dropped}


def _cargo(workspace: Path, *args: str) -> bytes:
    assert CARGO is not None
    result = subprocess.run(
        [CARGO, *args], cwd=workspace, capture_output=True, env=_cargo_env(), check=False, timeout=300
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def _host() -> str:
    assert CARGO is not None
    lines = subprocess.run([CARGO, "-vV"], capture_output=True, text=True, check=True).stdout.splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("host:"))


@dataclass(frozen=True, kw_only=True)
class Build:
    workspace: Path
    host: str
    target_dir: Path
    messages: list[dict[str, Any]]
    metadata: dict[str, Any]

    def executed(self, name: str) -> list[dict[str, Any]]:
        (package_id,) = (package["id"] for package in self.metadata["packages"] if package["name"] == name)
        return [
            message
            for message in self.messages
            if message["reason"] == "build-script-executed" and message["package_id"] == package_id
        ]

    def received_dep_env(self) -> dict[str, str]:
        """The DEP_ variables Cargo gave the dependent's build script."""
        (message,) = self.executed("dependent")
        fields = (Path(message["out_dir"]) / "dep_env").read_bytes().split(b"\0")[:-1]
        return {key.decode(): value.decode() for key, value in zip(fields[::2], fields[1::2], strict=True)}


def _build(workspace: Path, host: str, target_dir: Path, *extra: str) -> Build:
    stdout = _cargo(
        workspace,
        "build",
        "--workspace",
        "--offline",
        "--message-format=json",
        "--target",
        host,
        "--target-dir",
        str(target_dir),
        *extra,
    )
    return Build(
        workspace=workspace,
        host=host,
        target_dir=target_dir,
        messages=[json.loads(line) for line in stdout.splitlines() if line.startswith(b"{")],
        metadata=json.loads(_cargo(workspace, "metadata", "--format-version", "1", "--offline")),
    )


def _collect(build: Build, overrides: dict[str, Any] | None = None) -> BuildReport:
    return collect(
        messages=build.messages,
        cargo_metadata=build.metadata,
        links_overrides=LinksOverrides(overrides or {}),
        target=build.host,
        profile="dev",
        success=True,
    )


def _package(report: BuildReport, name: str) -> PackageReport:
    (package,) = (package for package in report.packages if package.package == name)
    return package


def _dep_prefix() -> str:
    return f"DEP_{LINKS.upper().replace('-', '_')}_"


@pytest.fixture(scope="module")
def plain_build(tmp_path_factory: pytest.TempPathFactory) -> Build:
    if CARGO is None:
        pytest.skip("cargo is not on PATH; these tests run real Cargo builds")
    root = tmp_path_factory.mktemp("plain")
    return _build(_write_workspace(root / "ws"), _host(), root / "target")


@needs_cargo
def test_report_agrees_with_cargo_messages(plain_build: Build) -> None:
    report = _collect(plain_build)
    assert [(p.package, p.version) for p in report.packages] == [("dependent", "1.0.0"), ("links-sys", "0.3.1")]
    package = _package(report, "links-sys")
    (message,) = plain_build.executed("links-sys")
    assert package.links == LINKS
    assert package.out_dir == message["out_dir"]
    assert list(package.linked_libs) == message["linked_libs"] == ["native", "dylib=other", "attached", "separate"]
    assert (
        list(package.linked_paths)
        == message["linked_paths"]
        == ["native=/opt/native/lib", "/opt/attached", "/opt/separate"]
    )
    assert list(package.cfgs) == message["cfgs"] == ["has_native", 'native_version="2"']
    assert package.env == dict(message["env"]) == {"NATIVE_GREETING": "a=b", "NATIVE_EMPTY": ""}
    assert package.warnings == ("old form warning", "new form warning")
    assert not package.overridden


@needs_cargo
def test_metadata_is_what_the_dependent_received(plain_build: Build) -> None:
    package = _package(_collect(plain_build), "links-sys")
    received = plain_build.received_dep_env()
    assert {_dep_prefix() + key: value for key, value in package.metadata.items()} == received
    # Spelled out, so that a parser and a Cargo that agree on nothing cannot pass the line above.
    assert package.metadata == {
        "ROOT": "/opt/native",
        "SOME_KEY": "second",
        "SPACED": "  padded",
        "SS": "eszett",
        "METADATA": "k=v",
        "ERROR": "not-an-error",
        "CRLF": "1",
        "INCLUDE": f"{package.out_dir}/include",
    }


@needs_cargo
def test_package_without_links_passes_no_metadata(plain_build: Build) -> None:
    package = _package(_collect(plain_build), "dependent")
    assert package.links is None
    assert package.metadata == {}
    assert (package.linked_libs, package.linked_paths, package.cfgs, package.env) == ((), (), (), {})


@needs_cargo
def test_parser_agrees_with_cargo(plain_build: Build) -> None:
    (message,) = plain_build.executed("links-sys")
    output = parse((Path(message["out_dir"]).parent / "output").read_bytes())
    assert list(output.link_libs) == message["linked_libs"]
    assert list(output.link_search) == message["linked_paths"]
    assert list(output.cfgs) == message["cfgs"]
    assert [list(pair) for pair in output.env] == message["env"]


@needs_cargo
def test_fresh_build_gives_the_same_report(plain_build: Build) -> None:
    again = _build(plain_build.workspace, plain_build.host, plain_build.target_dir)
    assert all(message.get("fresh", True) for message in again.messages if message["reason"] == "compiler-artifact")
    assert _collect(again) == _collect(plain_build)


@needs_cargo
def test_moved_target_dir_rewrites_out_dir_in_metadata(tmp_path: Path) -> None:
    host = _host()
    workspace = _write_workspace(tmp_path / "ws")
    _build(workspace, host, tmp_path / "old-target")
    (tmp_path / "old-target").rename(tmp_path / "new-target")
    # Re-running only the dependent's script makes Cargo re-read the links script's output from the moved directory.
    (workspace / "dependent" / "build.rs").write_text(DEPENDENT_BUILD_RS + "\n")
    build = _build(workspace, host, tmp_path / "new-target")
    package = _package(_collect(build), "links-sys")
    assert package.out_dir is not None
    assert package.out_dir.startswith(str(tmp_path / "new-target"))
    assert package.metadata["INCLUDE"] == f"{package.out_dir}/include"
    assert build.received_dep_env()[_dep_prefix() + "INCLUDE"] == package.metadata["INCLUDE"]


@pytest.fixture(scope="module")
def overridden_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Build, dict[str, Any]]:
    if CARGO is None:
        pytest.skip("cargo is not on PATH; these tests run real Cargo builds")
    host = _host()
    root = tmp_path_factory.mktemp("overridden")
    config = root / "override.toml"
    config.write_text(OVERRIDE_TOML.format(host=host))
    overrides = tomllib.loads(config.read_text())["target"][host]
    build = _build(_write_workspace(root / "ws"), host, root / "target", "--config", str(config))
    return build, overrides


@needs_cargo
def test_cargo_reports_nothing_for_an_overridden_build_script(overridden_build: tuple[Build, Any]) -> None:
    build, _ = overridden_build
    assert build.executed("links-sys") == []


@needs_cargo
def test_override_is_reported(overridden_build: tuple[Build, dict[str, Any]]) -> None:
    build, overrides = overridden_build
    package = _package(_collect(build, overrides), "links-sys")
    assert package.overridden
    assert package.out_dir is None
    assert package.links == LINKS
    assert package.linked_libs == ("flagged", "ovr")
    assert package.linked_paths == ("/ovr/flags", "native=/ovr/lib")
    assert package.cfgs == ('ovr="yes"',)
    assert package.env == {"OVR_ENV": "1=2"}
    assert package.warnings == ()
    assert package.metadata == {"ROOT": "/ovr", "SOME_KEY": "s2", "RUSTC_LINK_ARG_BIN": "is-metadata-here"}
    assert {_dep_prefix() + key: value for key, value in package.metadata.items()} == build.received_dep_env()


@needs_cargo
def test_override_not_in_the_build_is_not_reported(plain_build: Build) -> None:
    report = _collect(plain_build, {"not-linked-here": {"root": "/x"}})
    assert not any(package.overridden for package in report.packages)


# Synthetic runs, for the choices real single-target builds do not exercise.


def _run(root: Path, tree: str, package_id: str, output: bytes) -> dict[str, Any]:
    out_dir = root / tree / "debug" / "build" / f"{package_id.rsplit('#', 1)[1]}-{len(tree)}" / "out"
    out_dir.mkdir(parents=True)
    # Which run the report took shows in its libraries.
    (out_dir.parent / "output").write_bytes(f"cargo:rustc-link-lib={tree}\n".encode() + output)
    return {
        "reason": "build-script-executed",
        "package_id": package_id,
        "linked_libs": [tree],
        "linked_paths": [],
        "cfgs": [],
        "env": [],
        "out_dir": str(out_dir),
    }


SYS_ID = "path+file:///src/sys#sys@1.0.0"
METADATA = {"packages": [{"id": SYS_ID, "name": "sys", "version": "1.0.0", "links": "sys"}]}
TRIPLE = "aarch64-unknown-linux-gnu"


def _artifact(path: Path) -> dict[str, Any]:
    return {"reason": "compiler-artifact", "package_id": SYS_ID, "filenames": [str(path)], "fresh": False}


def test_target_run_beats_host_run(tmp_path: Path) -> None:
    target_run = _run(tmp_path, TRIPLE, SYS_ID, b"cargo:who=target\n")
    host_run = _run(tmp_path, "host", SYS_ID, b"cargo:who=host\n")
    report = collect(
        messages=[target_run, host_run],
        cargo_metadata=METADATA,
        links_overrides=LinksOverrides(),
        target=TRIPLE,
        profile="dev",
        success=True,
    )
    (package,) = report.packages
    assert package.linked_libs == (TRIPLE,)
    assert package.metadata == {"WHO": "target"}
    assert not package.host


def test_target_override_leaves_host_only_use_alone(tmp_path: Path) -> None:
    host_run = _run(tmp_path, "host", SYS_ID, b"cargo:who=host\n")
    other_id = "path+file:///src/app#app@1.0.0"
    app_artifact = {"reason": "compiler-artifact", "package_id": other_id, "filenames": [f"/t/{TRIPLE}/debug/app"]}
    metadata = {"packages": [*METADATA["packages"], {"id": other_id, "name": "app", "version": "1.0.0", "links": None}]}
    report = collect(
        messages=[host_run, _artifact(tmp_path / "host" / "debug" / "deps" / "libsys.rlib"), app_artifact],
        cargo_metadata=metadata,
        links_overrides=LinksOverrides({"sys": {"root": "/ovr"}}),
        target=TRIPLE,
        profile="dev",
        success=True,
    )
    (package,) = report.packages
    assert not package.overridden
    # Its only run was for the build machine (a build-dependency's), and the report says so.
    assert package.host
    assert package.metadata == {"WHO": "host"}


def test_target_override_beats_host_run(tmp_path: Path) -> None:
    host_run = _run(tmp_path, "host", SYS_ID, b"cargo:who=host\n")
    report = collect(
        messages=[host_run, _artifact(tmp_path / TRIPLE / "debug" / "deps" / "libsys.rlib")],
        cargo_metadata=METADATA,
        links_overrides=LinksOverrides({"sys": {"root": "/ovr", "rustc-link-lib": ["sys"]}}),
        target=TRIPLE,
        profile="dev",
        success=True,
    )
    (package,) = report.packages
    assert package.overridden
    assert (package.metadata, package.linked_libs) == ({"ROOT": "/ovr"}, ("sys",))


def test_malformed_override_values_are_skipped(tmp_path: Path) -> None:
    report = collect(
        messages=[_artifact(tmp_path / TRIPLE / "debug" / "deps" / "libsys.rlib")],
        cargo_metadata=METADATA,
        links_overrides=LinksOverrides(
            {"sys": {"num": 5, "rustc-flags": "-O", "rustc-link-lib": "not-a-list", "warning": "w"}}
        ),
        target=TRIPLE,
        profile="dev",
        success=False,
    )
    (package,) = report.packages
    assert (package.metadata, package.linked_libs, package.linked_paths, package.warnings) == ({}, (), (), ())


def test_unknown_package_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="does not list"):
        collect(
            messages=[_run(tmp_path, TRIPLE, "path+file:///elsewhere#x@1.0.0", b"")],
            cargo_metadata=METADATA,
            links_overrides=LinksOverrides(),
            target=TRIPLE,
            profile="dev",
            success=True,
        )


def _collect_one(messages: list[dict[str, Any]]) -> PackageReport:
    report = collect(
        messages=messages,
        cargo_metadata=METADATA,
        links_overrides=LinksOverrides(),
        target=TRIPLE,
        profile="dev",
        success=True,
    )
    (package,) = report.packages
    return package


def test_report_keeps_the_first_entries_and_says_what_it_did_not_keep(tmp_path: Path) -> None:
    lines = [f"cargo:rustc-cfg=c{n}" for n in range(MAX_ENTRIES + 500)]
    lines += [f"cargo:key{n}=v{n}" for n in range(MAX_ENTRIES + 200)]
    lines += ["cargo:key0=later value wins", "cargo:rustc-env=E=1", "cargo:warning=first"]
    lines += ["cargo:warning=" + "w" * MAX_LINE_BYTES, "plain " + "p" * MAX_LINE_BYTES]
    lines += [f"cargo:warning=w{n}" for n in range(MAX_ENTRIES)]
    package = _collect_one([_run(tmp_path, TRIPLE, SYS_ID, "\n".join(lines).encode())])
    assert package.cfgs == tuple(f"c{n}" for n in range(MAX_ENTRIES))
    assert len(package.metadata) == MAX_ENTRIES
    assert package.metadata["KEY0"] == "later value wins"
    assert package.env == {"E": "1"}
    assert package.linked_libs == (TRIPLE,)
    assert package.warnings[:2] == ("first", "w0")
    assert len(package.warnings) == MAX_ENTRIES + 1
    assert package.warnings[-1] == (
        f"{CAPPED_MARKER} not kept: cfgs 500, metadata keys 200, warnings 1, lines over 64 KiB 2 "
        "(xpcargo keeps the first 1000 entries of each list, 256 KiB of text per package, and reads lines up to "
        "64 KiB; Cargo's `output` file beside out_dir has everything)"
    )


def test_report_keeps_a_bounded_amount_of_text_per_package(tmp_path: Path) -> None:
    long_warning = "w" * 1023
    output = "".join(f"cargo:warning={n:04}{long_warning}\n" for n in range(300)).encode()
    package = _collect_one([_run(tmp_path, TRIPLE, SYS_ID, output)])
    kept = package.warnings[:-1]
    assert sum(map(len, kept)) + len(TRIPLE) <= MAX_PACKAGE_CHARS
    assert len(kept) == (MAX_PACKAGE_CHARS - len(TRIPLE)) // 1027
    assert f"not kept: warnings {300 - len(kept)} " in package.warnings[-1]


def test_a_report_of_an_uncapped_script_has_no_marker(tmp_path: Path) -> None:
    package = _collect_one([_run(tmp_path, TRIPLE, SYS_ID, b"cargo:warning=hi\n")])
    assert package.warnings == ("hi",)


def test_collect_reads_a_large_output_in_bounded_memory(tmp_path: Path) -> None:
    block = b"".join(
        b"cargo:warning=flood %d\ncargo:key%d=value\nplain line that Cargo ignores ..............\n" % (n, n)
        for n in range(2000)
    )
    message = _run(tmp_path, TRIPLE, SYS_ID, block * 12)
    output = Path(message["out_dir"]).parent / "output"
    assert output.stat().st_size > 2 << 20
    tracemalloc.start()
    try:
        package = _collect_one([message])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(package.warnings) == MAX_ENTRIES + 1
    # What is kept (some 2000 short entries) and a line at a time, not the file.
    assert peak < 1 << 20


def test_an_output_that_is_a_symbolic_link_is_not_followed(tmp_path: Path) -> None:
    message = _run(tmp_path, TRIPLE, SYS_ID, b"")
    output = Path(message["out_dir"]).parent / "output"
    secret = tmp_path / "secret"
    secret.write_text("cargo:warning=a file of the user's, not the build's\n")
    output.unlink()
    output.symlink_to(secret)
    with pytest.raises(ReportError, match="output is a symbolic link"):
        _collect_one([message])


def test_an_output_that_is_a_fifo_does_not_hang(tmp_path: Path) -> None:
    message = _run(tmp_path, TRIPLE, SYS_ID, b"")
    output = Path(message["out_dir"]).parent / "output"
    output.unlink()
    os.mkfifo(output)
    with pytest.raises(ReportError, match="output is not a regular file"):
        _collect_one([message])


@pytest.mark.parametrize("kind", ["empty", "link to /dev/zero", "fifo", "relative"])
def test_a_root_output_that_is_no_path_is_ignored(tmp_path: Path, kind: str) -> None:
    message = _run(tmp_path, TRIPLE, SYS_ID, b"cargo:include=/old/out/include\n")
    root_output = Path(message["out_dir"]).parent / "root-output"
    if kind == "empty":
        root_output.write_bytes(b"")
    elif kind == "link to /dev/zero":
        root_output.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(root_output)
    else:
        root_output.write_bytes(b"old/out")
    # An empty OUT_DIR to rewrite would put the new one between every two characters.
    assert _collect_one([message]).metadata == {"INCLUDE": "/old/out/include"}


def test_an_output_cargo_would_reject_is_a_report_error_shown_safely(tmp_path: Path) -> None:
    message = _run(tmp_path, TRIPLE, SYS_ID, b"cargo::bad\x1b]0;pwned\x07\n")
    with pytest.raises(ReportError, match="changed after Cargo read it") as caught:
        _collect_one([message])
    assert "\x1b" not in caught.value.message
    assert "\\x1b]0;pwned\\x07" in caught.value.message


BAD_OUT_DIRS = ["relative/out", "/nul\0/out", "/lone\ud800/out", 5, None, ["/a"]]


@pytest.mark.parametrize("out_dir", BAD_OUT_DIRS, ids=map(repr, BAD_OUT_DIRS))
def test_a_build_script_message_without_a_usable_out_dir_is_a_report_error(out_dir: object) -> None:
    message = {"reason": "build-script-executed", "package_id": SYS_ID, "out_dir": out_dir}
    with pytest.raises(ReportError, match="no usable `out_dir`"):
        _collect_one([message])


ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    reason=st.sampled_from(["build-script-executed", "compiler-artifact", "compiler-message"]),
    package_id=st.sampled_from([SYS_ID, "not listed"]) | ANY_JSON,
    fields=st.dictionaries(st.sampled_from(["out_dir", "filenames", "linked_libs", "env"]), ANY_JSON, max_size=4),
)
def test_any_message_shape_gives_a_report_or_a_report_error(
    tmp_path: Path, reason: str, package_id: object, fields: dict[str, Any]
) -> None:
    message = {"reason": reason, "package_id": package_id, **fields}
    try:
        report = collect(
            messages=[message],
            cargo_metadata=METADATA,
            links_overrides=LinksOverrides({"sys": {"root": "/ovr"}}),
            target=TRIPLE,
            profile="dev",
            success=True,
        )
    except ReportError:
        return
    save(report, tmp_path / "report.json")
    render_table(report).encode()
    render_json(report).encode()


def test_packages_sorted_by_name_then_semantic_version(tmp_path: Path) -> None:
    versions = ["0.10.0", "0.9.0", "1.0.0", "1.0.0-rc.1"]
    ids = [f"path+file:///src/v{version}#b@{version}" for version in versions]
    packages = [{"id": i, "name": "b", "version": v, "links": None} for i, v in zip(ids, versions, strict=True)]
    ids.append("path+file:///src/a#a@9.0.0")
    packages.append({"id": ids[-1], "name": "a", "version": "9.0.0", "links": None})
    messages = [_run(tmp_path, f"{TRIPLE}{n}", package_id, b"") for n, package_id in enumerate(ids)]
    report = collect(
        messages=messages,
        cargo_metadata={"packages": packages},
        links_overrides=LinksOverrides(),
        target=TRIPLE,
        profile="dev",
        success=True,
    )
    assert [(p.package, p.version) for p in report.packages] == [
        ("a", "9.0.0"),
        ("b", "0.9.0"),
        ("b", "0.10.0"),
        ("b", "1.0.0-rc.1"),
        ("b", "1.0.0"),
    ]
