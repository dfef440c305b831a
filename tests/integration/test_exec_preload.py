"""The exec preload of a foreign glibc target (xpcargo.emulation) on the real engine, with Docker's default seccomp
profile and no capability: a real crates.io CLI's own test suite, which runs its binary through
`Command::new(env!("CARGO_BIN_EXE_fselect"))`, passes on two architectures; and a hostile project cannot make the
preload load code of the build machine into the emulator, nor change the preload."""

from __future__ import annotations

import pytest

from .helpers import AARCH64, ARMV7, RUST_ARCH, Cli, Release, copy_fixture, crates_io_release

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

# A small file-finding CLI whose integration tests start its binary directly, with std::process::Command.
FSELECT = Release("fselect", "0.10.4", "e1e39b7f9cb1931250c3a9685ec064d636048de11a248eaac5174041a16067eb")
# One of its test files: 8 tests, each starting the binary (some with arguments that must fail).
FSELECT_TESTS = "cli_flags"


@pytest.mark.parametrize("triple", [AARCH64, ARMV7])
def test_a_real_clis_direct_exec_tests_pass(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, triple: str
) -> None:
    project = crates_io_release(FSELECT, tmp_path_factory)
    # Without git2 (libgit2), the update check (a TLS client) and the interactive mode: none of them is what its
    # tests of the command line exercise, and each would only lengthen the build.
    result = xpcargo(
        ["test", "--target", triple, "--no-default-features", "--test", FSELECT_TESTS], cwd=project, timeout=3600
    )
    assert result.code == 0, result
    assert "test result: ok. 8 passed; 0 failed" in result.stdout, result


@pytest.mark.parametrize("triple", [AARCH64, ARMV7])
def test_a_hostile_project_gets_nothing_from_the_preload(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, triple: str
) -> None:
    project = copy_fixture(tmp_path_factory, "preload-hostile")
    result = xpcargo(
        ["test", "--target", triple, "--test", "attack", "--", "--nocapture", "--test-threads=1"], cwd=project
    )
    assert result.code == 0, result
    # Each test's first line follows its `test <name> ... ` on the same line.
    out = result.stdout
    # The child's LD_PRELOAD (a library of the build machine, whose constructor leaves a marker) reached only the
    # child's own loader, which refuses a library of another machine; qemu, a program of the build machine, never
    # loaded it. Natively, the same test leaves the marker.
    assert "child status: Some(0)" in out, result
    assert f"child stdout: victim ran, from {RUST_ARCH[triple]}" in out, result
    assert f"child stderr: ERROR: ld.so: object '{project}/target/{triple}/debug/build/" in out, result
    assert "/out/libevil.so' from LD_PRELOAD cannot be preloaded" in out, result
    assert "marker after child: false" in out, result
    # The preload is a file of the image, whose file system is read-only: what it does is xpcargo's.
    assert "write to the preload: Err(ReadOnlyFilesystem)" in out, result
    assert f"after: victim ran, from {RUST_ARCH[triple]}" in out, result
