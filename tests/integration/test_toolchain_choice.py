"""The Rust a project asks for, against the real engine: a project pinned to 1.85 by its rust-toolchain.toml builds
with Debian's rustc 1.85.1 (its build script asks the RUSTC Cargo gives it, and the program prints the answer,
under qemu for aarch64), and with the override, with the image's own 1.96; one pinned to a Rust no image has, or a
hostile toolchain file, is one error line before the engine is touched. And the report says `static` for a static
musl program, never for a GNU one."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from .helpers import AARCH64, X86_64, Cli, copy_fixture, single_error_line
from .test_musl import MUSL, MUSL_TARGETS, static_elf_problems

pytestmark = [pytest.mark.engine, pytest.mark.std_images(MUSL)]

# An address no engine listens on: a command that reached for the engine would fail with another exit code (6).
NO_ENGINE = {"DOCKER_HOST": "unix:///nonexistent/xpcargo-no-engine.sock"}


@pytest.mark.parametrize("target", [X86_64, AARCH64])
def test_a_project_pinned_to_1_85_builds_with_debians_1_85(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, "toolchain-pinned")
    ran = xpcargo(["run", "--target", target], cwd=project)
    assert ran.code == 0, ran
    built_with = [line for line in ran.stdout_lines if line.startswith("built-with=")]
    assert len(built_with) == 1, ran
    assert built_with[0].startswith("built-with=rustc 1.85.1 "), ran
    # The file's components are said not to be installed, not silently dropped.
    assert "components not applied: the image has what it has (Rust 1.85.1" in ran.stderr, ran
    listed = xpcargo(["targets", "--target", target, "--json"], cwd=project)
    assert listed.code == 0, listed
    assert [(item["rust"], item["recipe"]) for item in json.loads(listed.stdout)] == [("1.85.1", "trixie-rust-1.85")]


def test_the_override_builds_with_each_targets_own_rust(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "toolchain-pinned")
    ran = xpcargo(["run", "--target", X86_64], cwd=project, env={"XPCARGO_TOOLCHAIN": "default"})
    assert ran.code == 0, ran
    assert [line for line in ran.stdout_lines if line.startswith("built-with=rustc 1.96.0 ")], ran


def test_a_rust_no_image_has_is_one_line(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "toolchain-pinned")
    (project / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "1.70"\n', encoding="utf-8")
    result = cli(["build", "--target", X86_64], cwd=project, env=NO_ENGINE)
    assert result.code == 3, result
    assert single_error_line(result) == (
        f"error: {project / 'rust-toolchain.toml'} asks for Rust 1.70, which no xpcargo image provides "
        "(hint: xpcargo provides 1.85 and 1.96 (stable); change the channel, or override it with "
        "XPCARGO_TOOLCHAIN=<version> (XPCARGO_TOOLCHAIN=default: each target's own Rust))"
    ), result
    assert "Building image" not in result.stderr, result


def _secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A file of the user's outside the checkout, one line like a token: a legacy toolchain file's shape."""
    path = tmp_path_factory.mktemp("home") / "registry-token"
    path.write_text("cio-SECRET-token-0123456789\n", encoding="utf-8")
    return path


def _attack(project: Path, attack: str, secret: Path) -> str:
    """Plant ``attack`` in the checkout; return what the one error line must say."""
    toml = project / "rust-toolchain.toml"
    if attack == "path":
        return "names a toolchain by path (`../../host-toolchain`), which no xpcargo image has"
    toml.unlink()
    if attack == "custom-name":
        # rustup would run a toolchain of that name linked on the host (`rustup toolchain link`).
        (project / "rust-toolchain").write_text("host-toolchain\n", encoding="utf-8")
        return "asks for Rust host-toolchain, which no xpcargo image provides"
    if attack == "link-out":
        (project / "rust-toolchain").symlink_to(secret)
        return "is a link to outside"
    if attack == "huge":
        with toml.open("wb") as sparse:
            sparse.truncate(100 << 20)
        return "is larger than 64 KiB, which no toolchain file is"
    os.mkfifo(toml)
    return "is not a regular file"


@pytest.mark.parametrize("attack", ["path", "custom-name", "link-out", "huge", "fifo"])
def test_a_hostile_toolchain_file_fails_cleanly(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, attack: str
) -> None:
    project = copy_fixture(tmp_path_factory, "toolchain-hostile")
    secret = _secret(tmp_path_factory)
    said = _attack(project, attack, secret)
    for command in (["build", "--target", X86_64], ["targets", "--target", X86_64]):
        result = cli(command, cwd=project, env=NO_ENGINE, timeout=60)
        assert result.code == 3, result
        line = single_error_line(result)
        assert said in line, result
        assert "SECRET" not in result.stdout + result.stderr, result
        assert not (project / "target").exists(), result


def test_the_report_says_static_for_a_static_musl_program_only(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    built = xpcargo(["build", "--target", MUSL, "--target", X86_64], cwd=project)
    assert built.code == 0, built
    # The summary: one row per target's binary, its GLIBC column `static` for musl's, a glibc need for GNU's.
    rows = {line.split()[0]: line.split() for line in built.stderr_lines if line.startswith((MUSL, X86_64))}
    assert any(cell.endswith("x86_64-unknown-linux-musl/debug/hello-world-from-c") for cell in rows[MUSL]), built
    assert "static" in rows[MUSL], built
    assert "static" not in rows[X86_64], built
    assert "(floor" in " ".join(rows[X86_64]), built
    binary = {triple: project / "target" / triple / "debug" / "hello-world-from-c" for triple in (MUSL, X86_64)}
    # What the report says agrees with an independent reading of the bytes.
    assert static_elf_problems(binary[MUSL], MUSL_TARGETS[MUSL]) == []
    assert static_elf_problems(binary[X86_64], MUSL_TARGETS[MUSL]) != []
    for triple, static in ((MUSL, True), (X86_64, False)):
        shown = xpcargo(["report", "--target", triple, "--artifacts"], cwd=project)
        assert shown.code == 0, shown
        line = next(line for line in shown.stdout_lines if line.strip().startswith(str(binary[triple])))
        assert (line.split()[-1] == "static") is static, shown
        as_json = xpcargo(["report", "--target", triple, "--artifacts", "--json"], cwd=project)
        entry = next(item for item in json.loads(as_json.stdout) if item["path"] == str(binary[triple]))
        assert entry["static"] is static, as_json
