"""Faults produced for real: signals to a running xpcargo (SIGINT, SIGTERM, SIGHUP, SIGKILL), a container killed
under Cargo (`docker kill`, the OOM killer), an engine whose socket is cut or frozen between xpcargo and the engine,
and orphans left by a process that died. Whatever happens: one truthful line, and no container left behind."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .engine_proxy import EngineProxy
from .helpers import (
    HOST_LABEL,
    MANAGED_LABEL,
    SESSION_LABEL,
    X86_64,
    Cli,
    Result,
    Workspace,
    docker,
    managed_containers,
    single_error_line,
    start_cli,
)

pytestmark = pytest.mark.engine

SIGNALS = [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGINT, id="SIGINT"),
    pytest.param(signal.SIGHUP, id="SIGHUP"),
]


class Running:
    """`xpcargo shell -- <command>` running in its own process group, once its container is up."""

    def __init__(self, xpcargo: Cli, project: Path, command: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = [sys.executable, "-m", "xpcargo", "shell", "--target", X86_64, "--", *command]
        self.project = project
        self.process = start_cli(self.argv, cwd=project, env={**xpcargo.env, **(env or {})}, new_session=True)
        self.label = f"{SESSION_LABEL}=shell:{self.process.pid}"
        deadline = time.monotonic() + 120
        while not managed_containers(self.label):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                stdout, stderr = self.process.communicate()
                pytest.fail(f"no container labelled {self.label} appeared:\n{stdout}\n{stderr}")
            time.sleep(0.2)
        (self.container,) = managed_containers(self.label)
        time.sleep(0.5)  # let the command start inside it

    def finish(self, timeout: float = 90) -> tuple[Result, float]:
        """Wait for xpcargo to exit; return its result and how long that took."""
        started = time.monotonic()
        try:
            stdout, stderr = self.process.communicate(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()
        result = Result(
            argv=tuple(self.argv), cwd=self.project, code=self.process.returncode, stdout=stdout, stderr=stderr
        )
        return result, time.monotonic() - started

    def container_gone(self, within: float) -> bool:
        deadline = time.monotonic() + within
        while managed_containers(self.label):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


@pytest.fixture
def project(workspace: Workspace) -> Path:
    return workspace.crate("seed-codegen").project


# --- Signals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_stops_promptly_says_so_and_removes_the_container(
    xpcargo: Cli, project: Path, signum: signal.Signals
) -> None:
    running = Running(xpcargo, project, ["sleep", "600"])
    os.killpg(running.process.pid, signum)
    result, elapsed = running.finish(timeout=60)
    assert result.code == 130, result
    assert elapsed < 10, f"took {elapsed:.1f}s to stop{result}"
    line = single_error_line(result)
    assert line.endswith("nothing was left running"), result
    assert [text for text in result.stderr_lines if text.strip()] == [line], result
    assert not managed_containers(running.label), f"the container labelled {running.label} is still there"


def test_sigkill_leaves_no_container(xpcargo: Cli, project: Path) -> None:
    """xpcargo cannot clean up after SIGKILL: the container ends by itself when xpcargo's tether closes."""
    running = Running(xpcargo, project, ["sleep", "600"])
    os.killpg(running.process.pid, signal.SIGKILL)
    running.finish(timeout=30)
    assert running.container_gone(within=10), f"{running.container[:12]} outlived its SIGKILLed xpcargo"


# --- The container dies under the command -------------------------------------------------------------------------


def test_docker_kill_of_the_container_is_told(xpcargo: Cli, project: Path) -> None:
    running = Running(xpcargo, project, ["sleep", "600"])
    docker("kill", running.container)
    result, _ = running.finish()
    assert result.code == 11, result
    line = single_error_line(result)
    assert "the container running `sleep 600` was killed" in line, result
    assert "docker kill" in line, result
    assert running.container_gone(within=10)


def test_the_oom_killer_is_told(xpcargo: Cli, project: Path) -> None:
    """The kernel's OOM killer, for real: the running container's memory limit is lowered under a command that
    then allocates more than that."""
    allocate = "sleep 2; x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived"
    running = Running(xpcargo, project, ["sh", "-c", allocate])
    docker("update", "--memory", "64m", "--memory-swap", "64m", running.container)
    result, _ = running.finish()
    assert result.code == 11, result
    assert "OOM killer" in single_error_line(result), result
    assert "survived" not in result.stdout, result


# --- The engine goes away, or stops answering ---------------------------------------------------------------------


@pytest.fixture
def engine_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProxy]:
    # A short path: a unix socket's name has a length limit that pytest's tmp dirs can exceed.
    directory = Path(tmp_path_factory.mktemp("px"))
    with EngineProxy(str(directory / "e.sock")) as proxy:
        yield proxy


def test_a_cut_engine_connection_names_the_lost_stream(xpcargo: Cli, project: Path, engine_proxy: EngineProxy) -> None:
    running = Running(xpcargo, project, ["sleep", "600"], env={"DOCKER_HOST": engine_proxy.url})
    engine_proxy.cut()
    result, elapsed = running.finish()
    engine_proxy.restore()
    assert result.code == 6, result
    line = single_error_line(result)
    assert line.startswith(f"error: lost the connection to the Docker engine at {engine_proxy.url} while `sleep 600`")
    assert elapsed < 15, f"took {elapsed:.1f}s{result}"
    # The cut closed xpcargo's end of the tether too: the engine ended the container by itself.
    assert running.container_gone(within=10)


def test_a_frozen_engine_is_noticed(xpcargo: Cli, project: Path, engine_proxy: EngineProxy) -> None:
    env = {"DOCKER_HOST": engine_proxy.url, "XPCARGO_ENGINE_TIMEOUT": "5"}
    running = Running(xpcargo, project, ["sleep", "600"], env=env)
    engine_proxy.freeze()
    result, elapsed = running.finish()
    assert result.code == 6, result
    line = single_error_line(result)
    assert "stopped answering while `sleep 600` ran" in line, result
    # Truthful about what it could not confirm, with the command that removes it.
    assert f"docker rm -f {running.container[:12]}" in line, result
    assert elapsed < 5 + 10, f"took {elapsed:.1f}s{result}"
    engine_proxy.thaw()
    assert running.container_gone(within=10)


def test_ctrl_c_with_a_frozen_engine_returns_within_seconds(
    xpcargo: Cli, project: Path, engine_proxy: EngineProxy
) -> None:
    running = Running(xpcargo, project, ["sleep", "600"], env={"DOCKER_HOST": engine_proxy.url})
    engine_proxy.freeze()
    time.sleep(1)
    os.killpg(running.process.pid, signal.SIGINT)
    result, elapsed = running.finish(timeout=60)
    assert result.code == 130, result
    assert elapsed < 8, f"took {elapsed:.1f}s to return after Ctrl-C{result}"
    line = single_error_line(result)
    assert line.startswith("error: interrupted; the engine did not confirm the removal of container"), result
    engine_proxy.thaw()
    assert running.container_gone(within=10)


# --- Orphans ------------------------------------------------------------------------------------------------------


def _boot_host() -> str:
    import socket  # noqa: PLC0415

    return f"{socket.gethostname()}/{Path('/proc/sys/kernel/random/boot_id').read_text(encoding='ascii').strip()}"


def test_an_orphan_of_a_dead_process_is_reaped_by_the_next_command(xpcargo: Cli, project: Path) -> None:
    """A process killed between creating its container and tying it leaves a created container behind: the next
    xpcargo on this machine removes it, and leaves other machines' containers alone."""
    image = next(
        line.split()[-1]
        for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        if line.startswith(f"xpcargo/{X86_64}:")
    )
    dead_pid = 2**22 + os.getpid() % 1000  # above the kernel's largest pid: no such process

    def created_by_the_dead_process(host: str) -> str:
        labels = [f"{MANAGED_LABEL}=true", f"{SESSION_LABEL}=build:{dead_pid}", f"{HOST_LABEL}={host}"]
        return docker("create", *(f"--label={label}" for label in labels), image, "true").strip()

    orphan = created_by_the_dead_process(_boot_host())
    foreign = created_by_the_dead_process("another-machine/boot")
    try:
        result = xpcargo(["shell", "--target", X86_64, "--", "true"], cwd=project)
        assert result.code == 0, result
        remaining = set(
            docker("ps", "-a", "-q", "--no-trunc", "--filter", f"label={SESSION_LABEL}=build:{dead_pid}").split()
        )
        assert orphan not in remaining
        assert foreign in remaining
    finally:
        docker("rm", "-f", orphan, foreign, check=False)
