"""Every runnable fixture, for every target: a real build in the target's container, the artifact's ELF header, and
the program's own output when xpcargo runs it (natively or under qemu)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import (
    AARCH64,
    CORE_TARGETS,
    FIXTURES,
    I686,
    RUNNABLE,
    X86_64,
    Cli,
    Workspace,
    assert_elf_for,
    copy_fixture,
)

pytestmark = pytest.mark.engine

CASES = [
    pytest.param(name, triple, id=f"{name}-{triple.split('-')[0]}") for triple in CORE_TARGETS for name in RUNNABLE
]

ECHO_ARGS_MANIFEST = """\
[package]
name = "echo-args"
version = "0.1.0"
edition = "2021"
publish = false

[workspace]
"""
ECHO_ARGS_MAIN = """\
fn main() {
    for (index, arg) in std::env::args().skip(1).enumerate() {
        println!("arg{index}=[{arg}]");
    }
    println!("arch={}", std::env::consts::ARCH);
}
"""


@pytest.mark.parametrize(("name", "triple"), CASES)
def test_build_produces_an_elf_for_the_target(workspace: Workspace, name: str, triple: str) -> None:
    crate = workspace.built(name, triple)
    assert_elf_for(crate.artifact(triple), triple)
    # Nothing was built for the host by mistake: the only binary is under target/<triple>/.
    assert not (crate.target_dir / "debug" / crate.crate.binary).exists()
    # The fetch step and the build used the lock file as it is (the fixtures' lock files are pinned on purpose).
    lock = Path(crate.crate.project) / "Cargo.lock"
    assert (crate.root / lock).read_bytes() == (FIXTURES / crate.crate.copy / lock).read_bytes()


@pytest.mark.parametrize(("name", "triple"), CASES)
def test_run_prints_the_expected_lines(workspace: Workspace, xpcargo: Cli, name: str, triple: str) -> None:
    crate = workspace.built(name, triple)
    result = xpcargo(["run", "-q", "--target", triple, *crate.crate.cargo_args], cwd=crate.project)
    assert result.code == 0, result
    assert result.stdout_lines == crate.crate.expected_lines(triple), result


@pytest.mark.parametrize("triple", CORE_TARGETS)
def test_dependency_metadata_reaches_the_consumer_build_script(workspace: Workspace, triple: str) -> None:
    crate = workspace.built("dep-metadata", triple)
    found = sorted((crate.target_dir / triple / "debug" / "build").glob("consumer-*/out/dep-env.txt"))
    assert len(found) == 1, found
    lines = found[0].read_text(encoding="utf-8").splitlines()
    assert "DEP_PROVIDER_ANSWER=42" in lines
    assert "DEP_PROVIDER_GREETING=hello-from-provider" in lines
    include = [line.split("=", 1)[1] for line in lines if line.startswith("DEP_PROVIDER_INCLUDE=")]
    assert len(include) == 1, lines
    # The container mounts the target dir at its own path, so the path the build script saw exists on the host.
    assert (Path(include[0]) / "provider.h").is_file(), include


def test_unit_tests_run_under_qemu(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.crate("seed-c-lib")
    result = xpcargo(["test", "--target", AARCH64], cwd=crate.project)
    assert result.code == 0, result
    assert "test result: ok. 2 passed" in result.stdout, result
    assert f"target/{AARCH64}/debug/deps/hello_world_from_c-" in result.stderr, result


def test_release_profile_lands_in_release(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.crate("seed-codegen")
    result = xpcargo(["build", "--release", "--target", AARCH64], cwd=crate.project)
    assert result.code == 0, result
    assert_elf_for(crate.artifact(AARCH64, "release"), AARCH64)
    run = xpcargo(["run", "-q", "--release", "--target", AARCH64], cwd=crate.project)
    assert run.code == 0, run
    assert run.stdout_lines == crate.crate.expected_lines(AARCH64), run


def test_shell_passes_arguments_unchanged(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.crate("seed-codegen")
    result = xpcargo(
        ["shell", "--target", X86_64, "--", "sh", "-c", 'echo "$@"', "sh", "a", "--b", "--target"], cwd=crate.project
    )
    assert result.code == 0, result
    assert result.stdout == "a --b --target\n", result


@pytest.mark.parametrize("triple", [X86_64, I686])
def test_run_passes_program_arguments(tmp_path: Path, xpcargo: Cli, triple: str) -> None:
    project = tmp_path / "echo-args"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(ECHO_ARGS_MANIFEST, encoding="utf-8")
    (project / "src" / "main.rs").write_text(ECHO_ARGS_MAIN, encoding="utf-8")
    # Arguments that xpcargo, Cargo or the emulator would each take for their own if they leaked.
    result = xpcargo(["run", "-q", "--target", triple, "--", "--version", "--target", "a b", "-L", "--"], cwd=project)
    assert result.code == 0, result
    arch = "x86_64" if triple == X86_64 else "x86"
    assert result.stdout_lines == [
        "arg0=[--version]",
        "arg1=[--target]",
        "arg2=[a b]",
        "arg3=[-L]",
        "arg4=[--]",
        f"arch={arch}",
    ], result


def test_cargo_exit_code_and_message_pass_through(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "bad-directive")
    result = xpcargo(["build", "--target", X86_64], cwd=project)
    assert result.code == 101, result
    assert "invalid output in build script" in result.stderr, result
    assert "Unknown key" in result.stderr, result
    assert "Traceback" not in result.stderr, result
    assert result.stdout == "", result


def test_message_format_json(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.built("seed-codegen", X86_64)
    result = xpcargo(["build", "--target", X86_64, "--message-format=json"], cwd=crate.project)
    assert result.code == 0, result
    messages = []
    for line in result.stdout_lines:
        message = json.loads(line)
        assert isinstance(message, dict), line
        assert "reason" in message, line
        messages.append(message)
    reasons = [message["reason"] for message in messages]
    assert reasons[-1] == "build-finished", reasons
    assert messages[-1]["success"] is True
    scripts = [message for message in messages if message["reason"] == "build-script-executed"]
    assert scripts, reasons
    for message in scripts:
        out_dir = Path(message["out_dir"])
        assert out_dir.is_dir(), message
        assert out_dir.is_relative_to(crate.target_dir / X86_64), message
    artifacts = [message for message in messages if message["reason"] == "compiler-artifact" and message["executable"]]
    assert [Path(message["executable"]) for message in artifacts] == [crate.artifact(X86_64)], artifacts
