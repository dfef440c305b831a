"""Faults produced for real: signals to a running xpcargo (SIGINT, SIGTERM, SIGHUP, SIGKILL), a container killed
under Cargo (`docker kill`, the OOM killer), an engine whose socket is cut or frozen between xpcargo and the engine,
and orphans left by a process that died. Whatever happens: one truthful line, and nothing left running: with a
container of the command's own, no container; in a warm container, no process of the command, and the container
ready for the next one."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .engine_proxy import EngineProxy, ProxyProcess
from .helpers import (
    HOST_LABEL,
    MANAGED_LABEL,
    SESSION_LABEL,
    X86_64,
    Cli,
    Result,
    Workspace,
    command_processes,
    docker,
    managed_containers,
    single_error_line,
    start_cli,
    warm_container_of,
)

pytestmark = pytest.mark.engine

SIGNALS = [
    pytest.param(signal.SIGTERM, id="SIGTERM"),
    pytest.param(signal.SIGINT, id="SIGINT"),
    pytest.param(signal.SIGHUP, id="SIGHUP"),
]
# Each fault in a container of the command's own (XPCARGO_KEEP_WARM=0), and in the project's warm container.
MODES = [pytest.param(False, id="own-container"), pytest.param(True, id="warm-container")]


class Running:
    """`xpcargo shell -- <command>` running in its own process group, once the command runs in its container: one
    of its own (``warm`` false), or the project's warm container."""

    def __init__(
        self, xpcargo: Cli, project: Path, command: list[str], *, warm: bool, env: dict[str, str] | None = None
    ) -> None:
        self.argv = [sys.executable, "-m", "xpcargo", "shell", "--target", X86_64, "--", *command]
        self.project = project
        self.warm = warm
        self.command = " ".join(command)
        self.container = ""
        overrides: dict[str, str | None] = {**xpcargo.env, **(env or {})}
        if not warm:
            overrides["XPCARGO_KEEP_WARM"] = "0"
        self.process = start_cli(self.argv, cwd=project, env=overrides, new_session=True)
        self.label = f"{SESSION_LABEL}=shell:{self.process.pid}"
        deadline = time.monotonic() + 120
        while not self._started():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                stdout, stderr = self.process.communicate()
                pytest.fail(f"the command did not start in a container:\n{stdout}\n{stderr}")
            time.sleep(0.2)
        time.sleep(0.5)  # let the command start inside it

    def _started(self) -> bool:
        if not self.warm:
            found = managed_containers(self.label)
            if not found:
                return False
            (self.container,) = found
        else:
            warm = warm_container_of(self.project, X86_64)
            if warm is None:
                return False
            self.container = warm
        # The command itself, not the container's start or one of xpcargo's own short commands that come before it
        # (on a busy machine, a fault injected during those hits another step than the one under test). Asked of the
        # engine from outside: a `docker exec` is a process in the container, root's while it starts, which the
        # wrapper of a command starting then takes for another command and refuses to run beside.
        return self.command in docker("top", self.container, "-o", "pid,args", check=False)

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
        while managed_containers(self.label) or (self.warm and _running(self.container)):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def nothing_left_running(self, within: float) -> bool:
        """No container of the command's own; in a warm one, no process of the command, and the container still
        there for the next."""
        if not self.warm:
            return self.container_gone(within)
        deadline = time.monotonic() + within
        while command_processes(self.container):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return _running(self.container)


def _running(container: str) -> bool:
    return docker("inspect", "--format", "{{.State.Running}}", container, check=False).strip() == "true"


@pytest.fixture
def project(workspace: Workspace) -> Path:
    return workspace.crate("seed-codegen").project


# --- Signals ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("warm", MODES)
@pytest.mark.parametrize("signum", SIGNALS)
def test_a_signal_stops_promptly_says_so_and_leaves_nothing_running(
    xpcargo: Cli, project: Path, signum: signal.Signals, warm: bool
) -> None:
    # Two processes, one in the background: the whole process group must go, not only the command's first process.
    running = Running(xpcargo, project, ["sh", "-c", "sleep 600 & sleep 600"], warm=warm)
    os.killpg(running.process.pid, signum)
    result, elapsed = running.finish(timeout=60)
    assert result.code == 130, result
    assert elapsed < 10, f"took {elapsed:.1f}s to stop{result}"
    line = single_error_line(result)
    assert line.endswith("nothing was left running"), result
    assert [text for text in result.stderr_lines if text.strip()] == [line], result
    assert running.nothing_left_running(within=0), f"{running.container[:12]} still runs the command, or is gone"
    if warm:
        # Still usable: the next command runs in the same container.
        again = xpcargo(["shell", "--target", X86_64, "--", "true"], cwd=project)
        assert again.code == 0, again
        assert warm_container_of(project, X86_64) == running.container


@pytest.mark.parametrize("warm", MODES)
def test_sigkill_leaves_nothing_running(xpcargo: Cli, project: Path, warm: bool) -> None:
    """xpcargo cannot clean up after SIGKILL: the container (in a warm one, the command) ends by itself when
    xpcargo's tether closes."""
    running = Running(xpcargo, project, ["sleep", "600"], warm=warm)
    os.killpg(running.process.pid, signal.SIGKILL)
    running.finish(timeout=30)
    assert running.nothing_left_running(within=10), f"{running.container[:12]}: the command outlived xpcargo"


# --- The container dies under the command -------------------------------------------------------------------------


@pytest.mark.parametrize("warm", MODES)
def test_docker_kill_of_the_container_is_told(xpcargo: Cli, project: Path, warm: bool) -> None:
    running = Running(xpcargo, project, ["sleep", "600"], warm=warm)
    docker("kill", running.container)
    result, _ = running.finish()
    assert result.code == 11, result
    line = single_error_line(result)
    assert "the container running `sleep 600` was killed" in line, result
    assert "docker kill" in line, result
    assert running.container_gone(within=10)


@pytest.mark.parametrize("warm", MODES)
def test_the_oom_killer_is_told(xpcargo: Cli, project: Path, warm: bool) -> None:
    """The kernel's OOM killer, for real: the running container's memory limit is lowered under a command that
    then allocates more than that."""
    allocate = "sleep 2; x=$(head -c 400000000 /dev/zero | tr '\\0' a); echo survived"
    running = Running(xpcargo, project, ["sh", "-c", allocate], warm=warm)
    docker("update", "--memory", "64m", "--memory-swap", "64m", running.container)
    try:
        result, _ = running.finish()
        assert result.code == 11, result
        assert "OOM killer" in single_error_line(result), result
        assert "survived" not in result.stdout, result
    finally:
        # A warm container left with 64 MB would starve the next test's build.
        docker("rm", "--force", running.container, check=False)


# --- The engine goes away, or stops answering ---------------------------------------------------------------------


@pytest.fixture
def engine_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProxy]:
    # A short path: a unix socket's name has a length limit that pytest's tmp dirs can exceed.
    directory = Path(tmp_path_factory.mktemp("px"))
    with EngineProxy(str(directory / "e.sock")) as proxy:
        yield proxy


@pytest.mark.parametrize("warm", MODES)
def test_a_cut_engine_connection_names_the_lost_stream(
    xpcargo: Cli, project: Path, engine_proxy: EngineProxy, warm: bool
) -> None:
    running = Running(xpcargo, project, ["sleep", "600"], warm=warm, env={"DOCKER_HOST": engine_proxy.url})
    engine_proxy.cut()
    result, elapsed = running.finish()
    engine_proxy.restore()
    assert result.code == 6, result
    line = single_error_line(result)
    assert line.startswith(f"error: lost the connection to the Docker engine at {engine_proxy.url} while `sleep 600`")
    assert elapsed < 15, f"took {elapsed:.1f}s{result}"
    # The cut closed xpcargo's end of the tether too: the engine ended the container (or the command) by itself.
    assert running.nothing_left_running(within=10)


@dataclass(frozen=True)
class HungEngine:
    url: str
    hang: Callable[[], None]
    resume: Callable[[], None]


@pytest.fixture(params=["frozen-proxy", "SIGSTOP-proxy"])
def hung_engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HungEngine]:
    """An engine that stops answering, for the connections open and for new ones: the proxy in this process frozen,
    or the proxy's own process stopped by SIGSTOP."""
    path = str(Path(tmp_path_factory.mktemp("px")) / "e.sock")
    if request.param == "frozen-proxy":
        with EngineProxy(path) as proxy:
            yield HungEngine(proxy.url, proxy.freeze, proxy.thaw)
        return
    with ProxyProcess(path) as stoppable:
        pid = stoppable.pid
        try:
            yield HungEngine(stoppable.url, lambda: os.kill(pid, signal.SIGSTOP), lambda: os.kill(pid, signal.SIGCONT))
        finally:
            os.kill(pid, signal.SIGCONT)


@pytest.mark.parametrize("warm", MODES)
def test_a_frozen_engine_is_noticed_and_what_may_still_run_is_named(
    xpcargo: Cli, project: Path, hung_engine: HungEngine, warm: bool
) -> None:
    env = {"DOCKER_HOST": hung_engine.url, "XPCARGO_ENGINE_TIMEOUT": "5"}
    running = Running(xpcargo, project, ["sleep", "600"], warm=warm, env=env)
    hung_engine.hang()
    try:
        result, elapsed = running.finish()
        # xpcargo is gone, and the engine has not heard of it (the proxy holds both ends): the command runs on, so
        # the line must say so. Seen past the proxy.
        assert _running(running.container), f"{running.container[:12]} is gone: nothing was left to name"
        assert not warm or command_processes(running.container), "nothing of `sleep 600` was left to name"
    finally:
        hung_engine.resume()
    assert result.code == 6, result
    line = single_error_line(result)
    assert "stopped answering while `sleep 600` ran" in line, result
    # Truthful about what it could not confirm, with the command that stops it.
    if warm:
        assert f"`sleep 600` ended in warm container {running.container[:12]}, where it may still be running" in line
    else:
        assert f"did not confirm the removal of container {running.container[:12]}" in line, result
    assert f"docker rm -f {running.container[:12]}" in line, result
    assert elapsed < 5 + 10, f"took {elapsed:.1f}s{result}"
    # Once the engine hears that xpcargo is gone, the tether ends what was left.
    assert running.nothing_left_running(within=10)


@pytest.mark.parametrize("warm", MODES)
def test_ctrl_c_with_a_frozen_engine_returns_within_seconds(
    xpcargo: Cli, project: Path, engine_proxy: EngineProxy, warm: bool
) -> None:
    running = Running(xpcargo, project, ["sleep", "600"], warm=warm, env={"DOCKER_HOST": engine_proxy.url})
    engine_proxy.freeze()
    time.sleep(1)
    os.killpg(running.process.pid, signal.SIGINT)
    result, elapsed = running.finish(timeout=60)
    assert result.code == 130, result
    assert elapsed < 8, f"took {elapsed:.1f}s to return after Ctrl-C{result}"
    line = single_error_line(result)
    if warm:
        assert line.startswith(
            f"error: interrupted; the engine did not confirm that `sleep 600` ended in warm container "
            f"{running.container[:12]}"
        ), result
    else:
        assert line.startswith(
            f"error: interrupted; the engine did not confirm the removal of container {running.container[:12]}"
        ), result
    engine_proxy.thaw()
    assert running.nothing_left_running(within=10)


# --- Orphans ------------------------------------------------------------------------------------------------------


def _boot_host() -> str:
    import socket  # noqa: PLC0415

    return f"{socket.gethostname()}/{Path('/proc/sys/kernel/random/boot_id').read_text(encoding='ascii').strip()}"


def test_an_orphan_of_a_dead_process_is_reaped_by_the_next_command(xpcargo: Cli, project: Path) -> None:
    """A process killed between creating its container and tying it leaves a created container behind: the next
    xpcargo on this machine that starts a container removes it, and leaves other machines' containers alone."""
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
        # A command that starts a container (a warm one already up would not): that is when orphans are reaped.
        result = xpcargo(["shell", "--target", X86_64, "--", "true"], cwd=project, env={"XPCARGO_KEEP_WARM": "0"})
        assert result.code == 0, result
        remaining = set(
            docker("ps", "-a", "-q", "--no-trunc", "--filter", f"label={SESSION_LABEL}=build:{dead_pid}").split()
        )
        assert orphan not in remaining
        assert foreign in remaining
    finally:
        docker("rm", "-f", orphan, foreign, check=False)
