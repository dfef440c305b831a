"""Real crates.io -sys crates for aarch64 with no xpcargo configuration beyond what the README says is required:
OpenSSL vendored (its build runs perl and make) and from the system (`extra-packages = ["libssl-dev:arm64"]`),
a build script using bindgen (libclang), one using the cmake crate (xpcargo's CMake toolchain file), and
integration tests that run the crate's own binary (`CARGO_BIN_EXE_<name>` under cross's `CROSS_RUNNER`)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from .helpers import AARCH64, Cli, assert_elf_for, copy_fixture

pytestmark = pytest.mark.engine


def _sha256_line() -> str:
    """What the program prints when OpenSSL's sha256 agrees with Python's."""
    return f"sha256(xpcargo)={hashlib.sha256(b'xpcargo').hexdigest()}"


def test_openssl_vendored_builds_with_the_images_perl(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "openssl-app")
    result = xpcargo(["run", "-q", "--target", AARCH64, "--features", "vendored"], cwd=project, timeout=1800)
    assert result.code == 0, result
    assert result.stdout_lines == [_sha256_line(), "openssl=3", "arch=aarch64"], result
    assert_elf_for(project / "target" / AARCH64 / "debug" / "openssl-app", AARCH64)


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


def test_integration_tests_run_the_crates_own_binary(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "bin-exe")
    result = xpcargo(["test", "--target", AARCH64], cwd=project)
    assert result.code == 0, result
    assert "test greets_through_the_cross_runner ... ok" in result.stdout, result
    assert "1 ignored" in result.stdout, result


def test_running_the_binary_directly_needs_qemu_in_the_hosts_binfmt_misc(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """What the README says of a test that executes CARGO_BIN_EXE_<name> itself: it runs where the host kernel has
    qemu registered for aarch64 (fix-binary), and elsewhere the child exits with 127 and prints nothing (the exec
    fails with ENOEXEC inside qemu's emulated posix_spawn, which reports it only as that status). xpcargo never
    registers it."""
    project = copy_fixture(tmp_path_factory, "bin-exe")
    result = xpcargo(["test", "--target", AARCH64, "--test", "cli", "--", "--ignored"], cwd=project)
    registered = Path("/proc/sys/fs/binfmt_misc/qemu-aarch64")
    if registered.is_file() and "enabled" in registered.read_text(encoding="utf-8"):
        assert result.code == 0, result
        assert "test greets_when_run_directly ... ok" in result.stdout, result
    else:
        assert result.code == 101, result
        assert 'Output { status: ExitStatus(unix_wait_status(32512)), stdout: "", stderr: "" }' in result.stdout, result
