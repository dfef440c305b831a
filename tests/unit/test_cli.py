"""The command line, run in-process: help, version, errors as one line with an exit code, and no engine needed for
what does not build."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

import xpcargo
from xpcargo import cli  # imported by conftest.py first, with click's deprecation warnings silenced
from xpcargo.commands import engine
from xpcargo.errors import ConfigError, UnknownTargetError

from .fake_runtime import Exec, FakeRuntime, Reply, default_script

TRIPLES = (
    "x86_64-unknown-linux-gnu",
    "i686-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "riscv64gc-unknown-linux-gnu",
    "powerpc64le-unknown-linux-gnu",
    "s390x-unknown-linux-gnu",
    "armv5te-unknown-linux-gnueabi",
    "wasm32-wasip1",
    "x86_64-unknown-linux-musl",
    "aarch64-unknown-linux-musl",
    "i686-unknown-linux-musl",
    "armv7-unknown-linux-musleabihf",
    "x86_64-pc-windows-gnu",
    "arm-unknown-linux-musleabihf",
    "riscv64gc-unknown-linux-musl",
)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No developer setting changes what the CLI does, and nothing may reach a Docker engine."""
    for name in ("XPCARGO_TOOLCHAINS", "CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET_DIR", "XPCARGO_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("XPCARGO_TARGET_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NO_COLOR", "1")

    def no_engine(*_: Any) -> Any:
        raise AssertionError("the test reached the Docker engine")

    monkeypatch.setattr(engine, "connect", no_engine)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        cli.main(list(argv))
    captured = capsys.readouterr()
    code = caught.value.code
    assert isinstance(code, int)
    return code, captured.out, captured.err


def _one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("error: ")
    return lines[0]


def _cargo_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    (root / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    monkeypatch.chdir(root)
    return root


def test_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--help")
    assert code == 0
    assert err == ""
    assert out.startswith("Usage: xpcargo")
    for command in ("build", "check", "test", "run", "shell", "targets", "report", "image"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE), f"`{command}` missing from --help"


def test_subcommand_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "build", "--help")
    assert code == 0
    assert "--target" in out
    code, out, _ = _run(capsys, "image", "--help")
    assert code == 0
    for command in ("build", "list", "prune"):
        assert re.search(rf"^\s+{command}\s", out, re.MULTILINE)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "--version")
    assert code == 0
    assert out == f"xpcargo {xpcargo.__version__}\n"
    assert err == ""


@pytest.mark.parametrize("command", ["build", "check", "test", "run", "doc", "clippy", "bench", "shell", "report"])
def test_command_without_target(capsys: pytest.CaptureFixture[str], command: str) -> None:
    code, out, err = _run(capsys, command, "--release")
    assert code == UnknownTargetError.exit_code
    assert code != 0
    line = _one_error_line(err)
    assert "--target" in line
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        pytest.param(["frobnicate"], "frobnicate", id="unknown-command"),
        pytest.param(["image", "frob"], "frob", id="unknown-image-command"),
        pytest.param(["build", "--target"], "--target", id="target-without-value"),
        pytest.param(["--bogus"], "--bogus", id="unknown-option"),
        pytest.param(["image", "prune", "--older-than", "soon"], "'soon' is not a duration", id="bad-duration"),
        pytest.param(["image", "prune", "--older-than"], "--older-than", id="duration-without-value"),
    ],
)
def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str], argv: list[str], fragment: str) -> None:
    code, out, err = _run(capsys, *argv)
    assert code == 2
    assert fragment in _one_error_line(err)
    assert out == ""


@pytest.mark.parametrize("argv", [[], ["image"]], ids=["xpcargo", "xpcargo-image"])
def test_no_arguments_prints_readable_help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    _, out, err = _run(capsys, *argv)
    text = out + err
    assert not text.startswith("error: Usage:")
    assert re.search(r"^\s+build\s", text, re.MULTILINE)


def test_targets_lists_the_shipped_triples(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, "targets")
    assert code == 0
    assert err == ""
    lines = out.splitlines()
    assert lines[0].split() == [
        "TARGET",
        "LIBC",
        "LINKING",
        "RUNS",
        "WITH",
        "RUST",
        "DEBIAN",
        "ARCH",
        "IMAGE",
        "ENGINE",
    ]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert set(rows) == set(TRIPLES)
    assert rows["aarch64-unknown-linux-gnu"][1:7] == ["glibc", "2.41", "dynamic", "qemu-aarch64", "1.96.0", "arm64"]
    assert rows["x86_64-unknown-linux-gnu"][1:7] == ["glibc", "2.41", "dynamic", "native", "1.96.0", "amd64"]
    assert rows["i686-unknown-linux-gnu"][7].startswith("xpcargo/i686-unknown-linux-gnu:")
    # A target that links no glibc names its C library instead, and the table stays one row per target.
    assert rows["wasm32-wasip1"][1:6] == ["wasi", "n/a", "node", "1.96.0", "all"]
    assert rows["x86_64-pc-windows-gnu"][1:6] == ["mingw", "dynamic", "wine", "1.96.0", "amd64"]
    assert rows["x86_64-unknown-linux-musl"][1:6] == ["musl", "static", "native", "1.96.0", "amd64"]


def test_targets_with_a_broken_toolchain_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "toolchains.yaml"
    broken.write_text("version: 1\ntargets: [\n", encoding="utf-8")
    monkeypatch.setenv("XPCARGO_TOOLCHAINS", str(broken))
    code, out, err = _run(capsys, "targets")
    assert code == ConfigError.exit_code
    line = _one_error_line(err)
    assert str(broken) in line
    assert "line " in line
    assert out == ""


def test_unknown_target_fails_before_docker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cargo_project(tmp_path, monkeypatch)
    code, out, err = _run(capsys, "build", "--target", "bogus-triple")
    assert code == UnknownTargetError.exit_code
    line = _one_error_line(err)
    assert line.startswith("error: unknown target `bogus-triple`")
    for triple in TRIPLES:
        assert triple in line
    assert out == ""


def test_unknown_target_suggests_the_closest(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cargo_project(tmp_path, monkeypatch)
    code, _, err = _run(capsys, "check", "--target=aarch64-unknown-linux-gnux")
    assert code == UnknownTargetError.exit_code
    assert "did you mean `aarch64-unknown-linux-gnu`?" in _one_error_line(err)


def test_legacy_build_command_fails_before_docker(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[1] / "fixtures" / "legacy-build-command")
    code, _, err = _run(capsys, "build", "--target", "aarch64-unknown-linux-gnu")
    assert code == 5
    assert "build script" in _one_error_line(err)


def test_arguments_reach_cargo_unchanged_and_its_exit_code_comes_back(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cargo_project(tmp_path, monkeypatch)
    monkeypatch.setenv("XPCARGO_CACHE_DIR", str(tmp_path / "cache"))

    def script(call: Exec) -> Reply:
        return Reply(code=101) if call.command == "run" else default_script(call)

    runtime = FakeRuntime(script=script, every_image=True)
    monkeypatch.setattr(engine, "connect", lambda *_: runtime)

    argv = ["--release", "-p", "app", "-j4", "--features=a b", "--", "--release", "--target", "x", "--"]
    code, _, _ = _run(capsys, "run", "--target", "aarch64-unknown-linux-gnu", *argv)
    assert code == 101
    call = runtime.execs[-1]
    assert call.argv[:5] == ("cargo", "run", "--target", "aarch64-unknown-linux-gnu", "--message-format=json")
    assert list(call.argv[5:]) == argv
    assert not runtime.cold_running


def test_report_takes_one_target(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cargo_project(tmp_path, monkeypatch)
    argv = ["report", "--target", "aarch64-unknown-linux-gnu", "--target", "i686-unknown-linux-gnu"]
    code, _, err = _run(capsys, *argv)
    assert code == UnknownTargetError.exit_code
    assert "takes one --target" in _one_error_line(err)


def test_several_targets_build_side_by_side(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _cargo_project(tmp_path, monkeypatch)
    monkeypatch.setenv("XPCARGO_CACHE_DIR", str(tmp_path / "cache"))
    runtime = FakeRuntime(every_image=True)
    monkeypatch.setattr(engine, "connect", lambda *_: runtime)
    code, _, err = _run(capsys, "build", "--target", "all", "--target-jobs", "2", "-j", "1")
    assert code == 0
    builds = [call.argv for call in runtime.execs if call.command == "build"]
    assert sorted(argv[3] for argv in builds) == sorted(TRIPLES)
    # Cargo's own -j reaches Cargo; --target-jobs is xpcargo's.
    assert all(argv[-2:] == ("-j", "1") for argv in builds)
    assert f"{len(TRIPLES)} ok" in err


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["report", "--target", "x;id"], UnknownTargetError.exit_code),
        (["report", "--target", "aarch64/../x"], UnknownTargetError.exit_code),
        (["report", "--target", "aarch64-unknown-linux-gnu", "--profile", "a/b"], 9),
    ],
)
def test_report_names_that_are_no_file_names_are_one_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], code: int
) -> None:
    _cargo_project(tmp_path, monkeypatch)
    got, _, err = _run(capsys, *argv)
    assert got == code
    assert "internal error" not in _one_error_line(err)


@pytest.mark.parametrize("name", ["Cargo.toml", "xpcargo.toml", ".cargo/config.toml", "rust-toolchain.toml"])
def test_files_that_are_not_utf8_are_one_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    root = _cargo_project(tmp_path, monkeypatch)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'[package]\nname = "\xff\xfe"\n')
    monkeypatch.setattr(engine, "connect", lambda *_: FakeRuntime(every_image=True))
    code, _, err = _run(capsys, "build", "--target", "aarch64-unknown-linux-gnu")
    assert code == ConfigError.exit_code
    line = _one_error_line(err)
    assert "not UTF-8" in line
    assert name.rsplit("/", 1)[-1] in line


@pytest.mark.parametrize("manifest", ['target = "x"', "patch = 5", '[workspace]\nmembers = "x"', "replace = []"])
def test_manifests_of_the_wrong_shape_are_not_internal_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, manifest: str
) -> None:
    root = _cargo_project(tmp_path, monkeypatch)
    (root / "Cargo.toml").write_text(f'{manifest}\n[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    monkeypatch.setattr(engine, "connect", lambda *_: FakeRuntime(every_image=True))
    _, _, err = _run(capsys, "build", "--target", "aarch64-unknown-linux-gnu")
    assert "internal error" not in err
    assert "Traceback" not in err


def test_prune_takes_a_duration(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XPCARGO_CACHE_DIR", str(tmp_path / "cache"))
    runtime = FakeRuntime()
    monkeypatch.setattr(engine, "connect", lambda *_: runtime)
    code, _, err = _run(capsys, "image", "prune", "--older-than", "7d")
    assert code == 0
    assert err.splitlines() == ["      Pruned 0 image(s), 0.00 GB; kept 0"]
