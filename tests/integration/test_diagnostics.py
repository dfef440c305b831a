"""What xpcargo adds when a build fails or succeeds: the hint after a build script that found something missing
from the image, and where each linked library came from."""

from __future__ import annotations

import pytest

from .helpers import AARCH64, Cli, copy_fixture

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
