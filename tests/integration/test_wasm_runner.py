"""wasm32-wasip1's runner (images/share/wasi-run.mjs) against the real engine: tests whose module grew past 32 MiB
pass (Node 20's WASI crashed on exit after them most of the time, SIGSEGV, exit 139, until the runner turned off V8's
fast API calls), while a real failure keeps its own exit code: a failing test, a trap, an exit code of the program's
own. A hostile test binary that fails and then tries to be reported a success (a forged summary, forged runner lines,
an exit code whose low byte is 0) fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import WASM32, Cli, copy_fixture

pytestmark = pytest.mark.engine

PASSED = "test result: ok."


def _big_memory(factory: pytest.TempPathFactory) -> Path:
    return copy_fixture(factory, "wasm-big-memory")


def test_tests_past_32_mib_pass(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = _big_memory(tmp_path_factory)
    result = xpcargo(["test", "--target", WASM32], cwd=project)
    assert result.code == 0, result
    # The unit tests, the program's (none), five integration tests and the doc test: eight runs under Node, each of
    # which crashed on exit 60 to 80 % of the time before.
    assert result.stdout.count(PASSED) == 8, result
    assert "SIGSEGV" not in result.stderr, result
    assert "Doc-tests wasm_big_memory" in result.stderr, result


def test_a_failing_test_past_32_mib_still_fails_with_its_own_code(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = _big_memory(tmp_path_factory)
    result = xpcargo(
        # The harness keeps a test's output until it ends, and an abort ends the harness: print it as it comes.
        ["test", "--target", WASM32, "--lib", "--", "--nocapture"],
        cwd=project,
        env={"XPCARGO_BUILD_PASSTHROUGH": "GROW_FAIL", "GROW_FAIL": "1"},
    )
    # wasm32-wasip1 aborts on panic: the failing test's panic is a trap, which the runner exits with as an aborted
    # program does (134), and Cargo exits with the test binary's code.
    assert result.code == 134, result
    assert "asked to fail after growing 67108864 bytes" in result.stderr, result
    assert "(exit status: 134)" in result.stderr, result
    assert PASSED not in result.stdout, result


@pytest.mark.parametrize(
    ("args", "code", "said"),
    [
        (["panic"], 134, "asked to panic after growing"),
        (["exit", "7"], 7, None),
        (["exit", "0"], 0, None),
        # A code the exit status cannot hold (its low byte is 0) is a failure, not a success.
        (["exit", "512"], 1, "exited with 512, outside an exit status's 0 to 255: exiting with 1"),
    ],
    ids=["panic", "exit-7", "exit-0", "exit-512"],
)
def test_a_program_past_32_mib_exits_with_its_own_code(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, args: list[str], code: int, said: str | None
) -> None:
    project = _big_memory(tmp_path_factory)
    result = xpcargo(["run", "-q", "--target", WASM32, "--bin", "grow", "--", "64", *args], cwd=project)
    assert result.code == code, result
    assert result.stdout_lines == ["grown=67108864"], result
    if said is not None:
        assert said in result.stderr, result


# --- The attack ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("forged_code", ["256", "65536", "-256"])
def test_a_failing_test_binary_cannot_forge_a_success(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, forged_code: str
) -> None:
    project = copy_fixture(tmp_path_factory, "wasm-runner-hostile")
    result = xpcargo(
        ["test", "--target", WASM32],
        cwd=project,
        env={"XPCARGO_BUILD_PASSTHROUGH": "FORGE_CODE", "FORGE_CODE": forged_code},
    )
    # Node (like the kernel) keeps an exit code's low byte: 0 for each of these, a pass before the runner refused it.
    assert result.code == 1, result
    assert "error: test failed, to rerun pass `--test forge`" in result.stderr, result
    # The forged lines were printed, and changed nothing.
    assert "test result: ok. 1 passed" in result.stdout, result
    assert "wasi-run: forged: exited with 0" in result.stderr, result
    assert "outside an exit status's 0 to 255: exiting with 1" in result.stderr, result


# --- Doc tests -------------------------------------------------------------------------------------------------------


def test_doc_tests_run_on_1_96_and_1_85_says_it_skips_them(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = _big_memory(tmp_path_factory)
    old = xpcargo(["test", "--target", WASM32], cwd=project, env={"XPCARGO_TOOLCHAIN": "1.85"})
    assert old.code == 0, old
    # Cargo 1.85 runs no doc test for a cross target and says nothing: seven runs, not eight, and xpcargo's line.
    assert old.stdout.count(PASSED) == 7, old
    assert "Doc-tests" not in old.stderr, old
    assert [line for line in old.stderr_lines if "doc tests" in line] == [
        f"warning: doc tests are not run: Cargo 1.85.1 skips them for {WASM32} (not this machine's target); Rust "
        "1.89 and later run them under the target's runner (XPCARGO_TOOLCHAIN=default: the target's own Rust)"
    ], old
    new = xpcargo(["test", "--target", WASM32, "--doc"], cwd=project)
    assert new.code == 0, new
    # The doc test ran as a wasm32 module under the runner: it checks its own architecture.
    assert "test src/lib.rs - grown (line 5) ... ok" in new.stdout, new
    assert "doc tests" not in new.stderr, new
