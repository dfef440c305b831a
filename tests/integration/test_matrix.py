"""Several targets in one command against the real engine: real ELF files for each (a WebAssembly module for
wasm32-wasip1), run under qemu (Node's WASI for wasm32), a summary whose sha256 values match the files, a failing
target that fails the command while the others finish, and Ctrl-C that leaves no container."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import sys
import time

import pytest

from .helpers import (
    AARCH64,
    ALL_TARGETS,
    C_ARCH,
    RUST_ARCH,
    SESSION_LABEL,
    TARGETS,
    WASM32,
    X86_64,
    Cli,
    assert_elf_for,
    assert_wasm_module,
    command_processes,
    copy_fixture,
    managed_containers,
    start_cli,
)

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

BINARIES = {"seed-c-lib": "hello-world-from-c", "zlib-sys": "zlib-roundtrip"}


@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_every_target_builds_and_runs(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    result = xpcargo(["build", "--target", "all"], cwd=project)
    assert result.code == 0, result
    start = next(index for index, line in enumerate(result.stderr_lines) if "Summary" in line)
    summary = result.stderr_lines[start:]
    for triple in ALL_TARGETS:
        name = BINARIES[fixture] + (".wasm" if triple == WASM32 else "")
        binary = project / "target" / triple / "debug" / name
        if triple == WASM32:
            assert_wasm_module(binary)
        else:
            assert_elf_for(binary, triple)
        digest = hashlib.sha256(binary.read_bytes()).hexdigest()
        row = next((line for line in summary if line.startswith(triple)), "")
        assert f"target/{triple}/debug/{name}" in row, result
        assert digest in row, f"the summary's sha256 for {triple} is not the file's:{result}"
        assert f"{binary.stat().st_size / 2**20:.1f} MiB" in row, result

    ran = xpcargo(["run", "--target", "all"], cwd=project)
    assert ran.code == 0, ran
    for triple in ALL_TARGETS:
        # Every line a program printed carries its target's name.
        printed = [line.split(" | ", 1)[1] for line in ran.stdout_lines if re.match(rf"^{triple} +\| ", line)]
        assert f"arch={RUST_ARCH[triple]}" in printed, ran
        if fixture == "seed-c-lib":
            assert f"c-arch={C_ARCH[triple]}" in printed, ran


def test_one_failing_target_fails_the_command_and_the_others_finish(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    main = project / "src" / "main.rs"
    main.write_text('#[cfg(target_arch = "aarch64")]\ncompile_error!("not on aarch64");\n' + main.read_text())
    result = xpcargo(["build", "--target", "all"], cwd=project)
    assert result.code == 101, result
    assert re.search(rf"^{AARCH64} +\| error: not on aarch64", result.stderr, re.MULTILINE), result
    assert re.search(rf"^{AARCH64} +failed \(101\)", result.stderr, re.MULTILINE), result
    for triple in TARGETS:
        if triple != AARCH64:
            assert_elf_for(project / "target" / triple / "debug" / "hello-generated", triple)


def test_ctrl_c_during_a_multi_target_build_leaves_nothing_running(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """Every target's command is stopped: no fetch container is left, and the build containers, kept warm, run
    nothing."""
    project = copy_fixture(tmp_path_factory, "zlib-sys")
    argv = [sys.executable, "-m", "xpcargo", "build", "--target", "all"]
    process = start_cli(argv, cwd=project, env=xpcargo.env, new_session=True)
    label = f"{SESSION_LABEL}=build:warm-{process.pid}"
    deadline = time.monotonic() + 120
    while len(managed_containers(label)) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert process.poll() is None, "the build ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)
    started = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert time.monotonic() - started < 20, stderr
    assert stderr.splitlines()[-1].startswith("error: interrupted"), stderr
    assert not managed_containers(f"{SESSION_LABEL}=fetch:{process.pid}")
    warm = managed_containers(label)
    assert len(warm) >= 2, stderr
    for container in warm:
        assert not command_processes(container), f"{container[:12]} still runs a command{stderr}"


def test_one_target_output_is_unchanged(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    result = xpcargo(["build", "--target", X86_64], cwd=project)
    assert result.code == 0, result
    assert " | " not in result.stderr, result
    assert "Summary" not in result.stderr, result
