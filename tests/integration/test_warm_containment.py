"""Nothing of a command survives it, in a warm container or in one of its own: a build script's daemon (a new
session, a double fork, `nohup` under another name) is gone when `xpcargo build` returns; the image cannot be
changed (a build script run as root cannot replace the linker); a forged busy marker keeps no container up, and no
command keeps one past its lifetime; a file system mounted over the target dir after the container started sends
the next command to a new container, whose artifacts the host sees. And a warm container's idle time counts from
its last command, however short the commands are.

The hostile crate is tests/fixtures/hostile-warm; every test works in a copy of its own, and looks only at the
containers labelled with it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    X86_64,
    Cli,
    command_processes,
    container_gone,
    containers_of,
    copy_fixture,
    docker,
    warm_container_of,
)

pytestmark = pytest.mark.engine

BINARY = Path("target") / X86_64 / "debug" / "hostile-warm"


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_fixture(tmp_path_factory, "hostile-warm")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("keep_warm", ["120", "0"], ids=["warm", "own-container"])
def test_a_build_scripts_daemon_is_gone_when_the_build_returns(xpcargo: Cli, project: Path, keep_warm: str) -> None:
    (project / "attack").write_text("daemon\n", encoding="utf-8")
    built = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_KEEP_WARM": keep_warm})
    assert built.code == 0, built
    binary = _digest(project / BINARY)
    warm = warm_container_of(project, X86_64)
    if keep_warm == "0":
        assert warm is None
        assert not containers_of(project), "a container of the command's own outlived it"
    else:
        assert warm is not None
        assert command_processes(warm) == [], "a process of the build outlived it"
    # The daemons would write 3 s after they started; give them twice that.
    time.sleep(6)
    assert not list(project.glob("canary-*")), "a daemon of the build script ran after the build returned"
    assert _digest(project / BINARY) == binary, "the binary changed after the build returned"
    assert subprocess.run([str(project / BINARY)], capture_output=True, text=True, check=True).stdout == "honest\n"


def test_a_build_script_run_as_root_cannot_replace_the_linker(xpcargo: Cli, project: Path) -> None:
    if os.getuid() != 0:
        pytest.skip("the container's user is the invoking one: this attack needs root (as in CI)")
    (project / "attack").write_text("linker\n", encoding="utf-8")
    built = xpcargo(["build", "--target", X86_64], cwd=project)
    assert built.code == 0, built
    result = (project / "attack-linker").read_text(encoding="utf-8")
    assert "Read-only file system" in result, result
    assert "replaced" not in result, result
    # The next build, in the same warm container, links with the image's own linker.
    (project / "attack").write_text("", encoding="utf-8")
    release = xpcargo(["build", "--target", X86_64, "--release"], cwd=project)
    assert release.code == 0, release
    shipped = project / "target" / X86_64 / "release" / "hostile-warm"
    assert b"TROJANED" not in shipped.read_bytes(), "a later build linked with the build script's linker"


def test_a_forged_busy_marker_keeps_no_warm_container_up(xpcargo: Cli, project: Path) -> None:
    (project / "attack").write_text("forge\n", encoding="utf-8")
    built = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_KEEP_WARM": "3"})
    assert built.code == 0, built
    result = (project / "attack-forge").read_text(encoding="utf-8")
    assert "forged /run/xpcargo" not in result, result
    assert "forged the deadline" not in result, result
    warm = warm_container_of(project, X86_64)
    assert warm is not None
    assert container_gone(warm, within=20), f"{warm[:12]} outlived its idle time: a forged marker kept it up"


def test_no_command_keeps_a_warm_container_past_its_lifetime(xpcargo: Cli, project: Path) -> None:
    env = {"XPCARGO_KEEP_WARM": "600", "XPCARGO_WARM_LIFETIME": "12"}
    built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert built.code == 0, built
    first = warm_container_of(project, X86_64)
    assert first is not None
    started = time.monotonic()
    used = set()
    # A command every two seconds: it is never idle, and still ends at its lifetime.
    while time.monotonic() - started < 24:
        shell = xpcargo(["shell", "--target", X86_64, "--", "cat", "/proc/sys/kernel/hostname"], cwd=project, env=env)
        assert shell.code == 0, shell
        used.add(shell.stdout.strip())
        time.sleep(2)
    assert container_gone(first, within=5), f"{first[:12]} outlived its lifetime"
    assert len(used) >= 2, "every command ran in the first container"
    for container in containers_of(project):
        docker("rm", "--force", container, check=False)


def test_the_idle_time_counts_from_the_last_command(xpcargo: Cli, project: Path) -> None:
    env = {"XPCARGO_KEEP_WARM": "4"}
    built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert built.code == 0, built
    warm = warm_container_of(project, X86_64)
    assert warm is not None
    started = time.monotonic()
    # Short commands, more often than the idle time, for more than twice the idle time.
    while time.monotonic() - started < 10:
        shell = xpcargo(["shell", "--target", X86_64, "--", "true"], cwd=project, env=env)
        assert shell.code == 0, shell
        assert warm_container_of(project, X86_64) == warm, "the container ended while commands kept coming"
        time.sleep(1.5)
    assert container_gone(warm, within=15), f"{warm[:12]} outlived its idle time"


@pytest.fixture
def mounted_over(project: Path, tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A directory of the host's, to be bind-mounted over the project's target dir (root only)."""
    if os.getuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount(8) to mount over the target dir")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = project / "target"
    yield target, elsewhere
    subprocess.run(["umount", str(target)], check=False, capture_output=True)


def test_a_mount_over_the_target_dir_sends_the_next_command_to_a_new_container(
    xpcargo: Cli, project: Path, mounted_over: tuple[Path, Path]
) -> None:
    target, elsewhere = mounted_over
    built = xpcargo(["build", "--target", X86_64], cwd=project)
    assert built.code == 0, built
    first = warm_container_of(project, X86_64)
    assert first is not None
    subprocess.run(["mount", "--bind", str(elsewhere), str(target)], check=True)
    rebuilt = xpcargo(["build", "--target", X86_64], cwd=project)
    assert rebuilt.code == 0, rebuilt
    second = warm_container_of(project, X86_64)
    assert second not in (None, first), "the container that cannot see the new mount was reused"
    assert (elsewhere / X86_64 / "debug" / "hostile-warm").is_file(), "the build's artifacts are not on the host"
    for container in containers_of(project):
        docker("rm", "--force", container, check=False)
