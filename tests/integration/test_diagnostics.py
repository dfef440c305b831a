"""What xpcargo adds when a build fails or succeeds: the hint after a build script that found something missing
from the image, and where each linked library came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from .helpers import AARCH64, Cli, Workspace, assert_elf_for, copy_fixture

pytestmark = pytest.mark.engine


def _hint_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("hint:")]


def test_pkg_config_not_finding_a_library_names_the_dev_package_for_the_targets_arch(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "missing-pkg-config")
    result = xpcargo(["build", "--target", AARCH64], cwd=project)
    # Cargo's exit code and Cargo's message, as Cargo gives them; then one line of xpcargo's, the last.
    assert result.code == 101, result
    assert "Package sqlite3 was not found in the pkg-config search path" in result.stderr, result
    assert _hint_lines(result.stderr) == [
        "hint: the build script of missing-pkg-config v0.1.0 found no `sqlite3.pc` for aarch64-unknown-linux-gnu: "
        'add `extra-packages = ["libsqlite3-dev:arm64"]` under [target.aarch64-unknown-linux-gnu] in xpcargo.toml'
    ], result
    assert result.stderr_lines[-1].startswith("hint:"), result


def test_a_missing_perl_module_names_its_debian_package(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "missing-perl-module")
    result = xpcargo(["build", "--target", AARCH64, "--message-format=json"], cwd=project)
    assert result.code == 101, result
    assert "Can't locate FindBin/Nonexistent.pm in @INC" in result.stderr, result
    (line,) = _hint_lines(result.stderr)
    assert 'Perl module `FindBin::Nonexistent`: add `extra-packages = ["libfindbin-nonexistent-perl"]`' in line
    # With --message-format=json, stdout holds Cargo's messages alone.
    assert "hint" not in result.stdout


def _libraries(xpcargo: Cli, project: Path) -> dict[str, dict[str, Any]]:
    result = xpcargo(["report", "--target", AARCH64, "--json"], cwd=project)
    assert result.code == 0, result
    return {entry["package"]: entry for entry in json.loads(result.stdout)}


def test_the_report_says_which_library_came_from_out_dir_and_which_from_a_debian_package(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "library-origins")
    ran = xpcargo(["run", "--target", AARCH64], cwd=project)
    assert ran.code == 0, ran
    # Both libraries were linked for real: the C code calls the target's libm under qemu.
    assert ran.stdout_lines == ["half of cos(0) = 0.5", "arch=aarch64"], ran
    assert_elf_for(project / "target" / AARCH64 / "debug" / "library-origins", AARCH64)
    packages = _libraries(xpcargo, project)

    crate = packages["library-origins"]
    assert crate["host"] is False
    half, libm = crate["libraries"]
    assert half == {
        "name": "half",
        "kind": "static",
        "path": f"{crate['out_dir']}/libhalf.a",
        "origin": "out_dir",
        "debian_package": None,
    }
    assert Path(half["path"]).is_file()
    # The cross toolchain's sysroot, from Debian's libc6-dev for arm64 (as a cross package or multiarch).
    assert libm["origin"] == "image", libm
    assert libm["path"].endswith("/libm.so"), libm
    assert "aarch64" in libm["path"], libm
    assert libm["debian_package"].startswith("libc6-dev"), libm

    # The build-dependency's build script ran for the build machine, and its libm is the build machine's.
    helper = packages["helper"]
    assert helper["host"] is True
    assert "/target/debug/build/" in helper["out_dir"]
    (host_libm,) = helper["libraries"]
    assert host_libm["path"] == "/usr/lib/x86_64-linux-gnu/libm.so", host_libm
    assert host_libm["debian_package"] == "libc6-dev:amd64", host_libm

    # Built again, with what the first build's probe found kept in the target dir: the same answer.
    again = xpcargo(["build", "--target", AARCH64], cwd=project)
    assert again.code == 0, again
    assert _libraries(xpcargo, project) == packages
    kept = json.loads((project / "target" / "xpcargo" / AARCH64 / "library-probe.json").read_text())
    assert kept["owners"][libm["path"]] == libm["debian_package"]

    text = xpcargo(["report", "--target", AARCH64], cwd=project)
    assert text.code == 0, text
    assert f"static=half: {half['path']} (built in OUT_DIR)" in text.stdout
    assert f"m: {libm['path']} (image, Debian package {libm['debian_package']})" in text.stdout
    assert "runs for:     the build machine" in text.stdout


def test_a_bundled_sys_crate_from_crates_io_is_reported_as_built_in_its_out_dir(
    workspace: Workspace, xpcargo: Cli
) -> None:
    crate = workspace.built("zlib-sys", AARCH64)
    libz = _libraries(xpcargo, crate.project)["libz-sys"]
    assert libz["host"] is False
    (library,) = libz["libraries"]
    assert library["name"] == "z"
    assert library["origin"] == "out_dir", library
    assert library["path"].startswith(libz["out_dir"]), library
    assert Path(library["path"]).is_file()
