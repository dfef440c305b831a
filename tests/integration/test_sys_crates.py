"""Real crates.io -sys crates for aarch64 with no xpcargo configuration beyond what the docs say is required:
OpenSSL vendored (its build runs perl and make) and from the system (`extra-packages = ["libssl-dev:arm64"]`),
a build script using bindgen (libclang), one using the cmake crate (xpcargo's CMake toolchain file), and integration
tests that run the crate's own binary (`CARGO_BIN_EXE_<name>` under cross's `CROSS_RUNNER`, and directly)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.pipeline import binfmt
from xpcargo.pipeline.environment import BINFMT_RUNNER, SHARE_DIR

from .helpers import AARCH64, ARMV7, RUST_ARCH, Cli, assert_elf_for, copy_fixture, docker

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

SYSROOT = "aarch64-linux-gnu"


def _sha256_line() -> str:
    """What the program prints when OpenSSL's sha256 agrees with Python's."""
    return f"sha256(xpcargo)={hashlib.sha256(b'xpcargo').hexdigest()}"


def test_openssl_vendored_builds_with_the_images_perl(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "openssl-app")
    result = xpcargo(["run", "-q", "--target", AARCH64, "--features", "vendored"], cwd=project, timeout=1800)
    assert result.code == 0, result
    assert result.stdout_lines == [_sha256_line(), "openssl=3", "arch=aarch64"], result
    assert_elf_for(project / "target" / AARCH64 / "debug" / "openssl-app", AARCH64)
    # The feature's own packages (openssl-src) are known to the report: it is saved, and says openssl was built in
    # the package's OUT_DIR.
    assert "report not saved" not in result.stderr, result
    shown = xpcargo(["report", "--target", AARCH64, "--json"], cwd=project)
    assert shown.code == 0, shown
    (openssl_sys,) = [entry for entry in json.loads(shown.stdout) if entry["package"] == "openssl-sys"]
    assert {library["origin"] for library in openssl_sys["libraries"]} == {"out_dir"}, openssl_sys


def test_openssl_from_the_system_needs_only_its_dev_package(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "openssl-app")
    (project / "xpcargo.toml").write_text(
        f'[target.{AARCH64}]\nextra-packages = ["libssl-dev:arm64"]\n', encoding="utf-8"
    )
    result = xpcargo(["run", "-q", "--target", AARCH64], cwd=project, timeout=1800)
    assert result.code == 0, result
    assert result.stdout_lines == [_sha256_line(), "openssl=3", "arch=aarch64"], result
    # Linked against Debian's libssl for arm64 (pkg-config found it in the multiarch directory, not the host's).
    report = xpcargo(["report", "--target", AARCH64, "--json"], cwd=project)
    assert report.code == 0, report
    sys_crate = next(entry for entry in json.loads(report.stdout) if entry["package"] == "openssl-sys")
    assert sys_crate["linked_libs"] == ["ssl", "crypto"], sys_crate
    assert sys_crate["linked_paths"] == ["native=/usr/lib/aarch64-linux-gnu"], sys_crate


def test_a_bindgen_build_script_parses_for_the_target(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "bindgen-build")
    result = xpcargo(["run", "-q", "--target", AARCH64], cwd=project)
    assert result.code == 0, result
    # The macro and the struct's layout come from aarch64's headers; on the host, bindgen would say x86_64.
    assert result.stdout_lines == ["bindgen-arch=aarch64", "sizeof(struct probe)=24", "arch=aarch64"], result


def test_a_cmake_build_script_cross_compiles(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "cmake-build")
    result = xpcargo(["run", "-q", "--target", AARCH64], cwd=project)
    assert result.code == 0, result
    assert result.stdout_lines == [
        "cmake-processor=aarch64",
        # Set by xpcargo's toolchain file alone (the cmake crate, without one, sets only the system and processor).
        "cmake-emulator=qemu-aarch64 -L /usr/aarch64-linux-gnu",
        "cmake-crosscompiling=1",
        "c-arch=aarch64",
        "arch=aarch64",
    ], result


@pytest.mark.parametrize("triple", [AARCH64, ARMV7])
def test_integration_tests_run_the_crates_own_binary(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, triple: str
) -> None:
    """Through cross's CROSS_RUNNER, and directly (env!("CARGO_BIN_EXE_greet") given to Command::new) under Docker's
    default seccomp profile and no capability: the image's exec preload runs the child under the emulator. The child
    says it is the target's binary (its std::env::consts::ARCH), that it was started with the preload (qemu mapped
    it: nothing else puts it there) under its own argv[0], and that neither it nor the test sees LD_PRELOAD."""
    copied = copy_fixture(tmp_path_factory, "bin-exe")
    project = copied.rename(copied.parent / "a project dir")
    result = xpcargo(["test", "--target", triple, "--test", "cli", "--", "--nocapture"], cwd=project)
    assert result.code == 0, result
    arch = RUST_ARCH[triple]
    for name in (
        "greets_through_the_cross_runner",
        "greets_when_run_directly",
        "greets_when_run_directly_with_an_empty_environment",
        "says_how_it_was_started",
    ):
        assert f"test {name} ... ok" in result.stdout, result
    assert "4 passed; 0 failed; 0 ignored" in result.stdout, result
    greet = project / "target" / triple / "debug" / "greet"
    for line in (
        "exec-preload mapped: true",
        f"argv0: {greet}",
        "LD_PRELOAD: None",
        f"by name: hello, tests, from {arch}",
        "test process LD_PRELOAD: None",
    ):
        assert line in result.stdout_lines, result
    # What Cargo prints for the runner: the emulator and the program, as cross's does.
    run = xpcargo(["run", "--target", triple, "--", "you"], cwd=project)
    assert run.code == 0, run
    runner = {AARCH64: "qemu-aarch64 -L /usr/aarch64-linux-gnu", ARMV7: "qemu-arm -L /usr/arm-linux-gnueabihf"}[triple]
    assert f"Running `{runner} target/{triple}/debug/greet you`" in run.stderr, run
    assert run.stdout_lines == [f"hello, you, from {arch}"], run


def test_a_static_test_binary_ignores_the_preload(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    """What docs/targets.md says of a static program (musl's, or glibc's with +crt-static): it has no dynamic loader
    to load the preload, so where the host kernel has no qemu registered for aarch64 and the engine refuses a user
    namespace (Docker's default), the child it starts directly exits with 127 and prints nothing (the exec fails with
    ENOEXEC inside qemu's emulated posix_spawn, which reports it only as that status)."""
    project = copy_fixture(tmp_path_factory, "bin-exe")
    result = xpcargo(
        ["test", "--target", AARCH64, "--test", "cli", "--", "--exact", "greets_when_run_directly"],
        cwd=project,
        env={"RUSTFLAGS": "-C target-feature=+crt-static"},
    )
    registered = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if registered.is_file() and "enabled" in registered.read_text(encoding="utf-8"):
        assert result.code == 0, result
    else:
        assert result.code == 101, result
        assert 'Output { status: ExitStatus(unix_wait_status(32512)), stdout: "", stderr: "" }' in result.stdout, result


def test_xpcargos_runner_registers_qemu_where_the_engine_allows_a_user_namespace(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """The same test binary, run by xpcargo's runner in a container like xpcargo's (no capabilities,
    no-new-privileges, a non-root uid) but with a seccomp profile that lets it make a user namespace, as Podman's
    default does: qemu is registered in the namespace's own binfmt_misc, and running the binary directly works."""
    project = copy_fixture(tmp_path_factory, "bin-exe")
    built = xpcargo(["test", "--target", AARCH64, "--test", "cli", "--no-run", "--message-format=json"], cwd=project)
    assert built.code == 0, built
    messages = [json.loads(line) for line in built.stdout_lines]
    (test_binary,) = [
        m["executable"]
        for m in messages
        if m.get("reason") == "compiler-artifact" and m["executable"] and m["target"]["kind"] == ["test"]
    ]
    greet = project / "target" / AARCH64 / "debug" / "greet"
    assert greet.is_file()
    listing = xpcargo(["targets", "--json", "--target", AARCH64], cwd=project)
    assert listing.code == 0, listing
    image = json.loads(listing.stdout)[0]["image"]
    line = binfmt.registration("qemu-aarch64")
    assert line is not None
    output = docker(
        "run", "--rm", "--network", "none", "--user", "1000:1000",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--security-opt", "seccomp=unconfined",
        "-e", f"QEMU_LD_PREFIX=/usr/{SYSROOT}",
        "-v", f"{resources.share_dir()}:{SHARE_DIR}:ro",
        # Each file at its own path (CARGO_BIN_EXE_greet is baked into the test binary), readable by uid 1000.
        "-v", f"{test_binary}:{test_binary}:ro", "-v", f"{greet}:{greet}:ro",
        image, "sh", BINFMT_RUNNER, line, "qemu-aarch64", "-L", f"/usr/{SYSROOT}",
        test_binary, "--include-ignored", "--exact", "greets_when_run_directly",
    )  # fmt: skip
    assert "test greets_when_run_directly ... ok" in output, output
    assert "1 passed" in output, output
