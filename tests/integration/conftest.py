"""The integration tests' fixtures: the real CLI against the real engine, once the toolchain images exist.

The first run on a machine with an empty engine builds every target's toolchain image (the two shared bases, then a
layer per target: about six minutes, shown as it goes);
later runs find them and start at once. Tests that never reach the engine (bad input, configuration errors) take
the ``cli`` fixture, which does not wait for the images.

Every test here carries the ``engine`` marker (``pytest -m "not engine"`` leaves them out). With no engine, they are
skipped with one line that says why, except under CI, where that stops the run: CI must never pass with them unrun.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    ALL_TARGETS,
    MANAGED_LABEL,
    TEST_KEEP_WARM,
    Cli,
    Workspace,
    base_environment,
    docker,
    image_build_output,
    leaked_containers,
    managed_containers,
    warm_containers,
)

# --- The engine marker, and the skip without an engine ------------------------------------------------------------

ENGINE_TESTS = Path(__file__).resolve().parent
# Long enough for a busy engine to answer, short enough that a newcomer without one does not wait.
ENGINE_ANSWER_SECONDS = 10
# Why no engine answers, once asked (once per session); empty when one does.
_ENGINE_ABSENCE = pytest.StashKey[str]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory needs the engine: marked here, so that a new file cannot forget it. Before the
    mark plugin's own hook (tryfirst), which deselects by marker for `-m "not engine"`."""
    for item in items:
        if item.path.is_relative_to(ENGINE_TESTS):
            item.add_marker(pytest.mark.engine)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """An engine test without an engine is skipped, before its fixtures ask the engine anything. The skip is raised
    here, at one place, so that `-ra` sums every such test up in one line."""
    if item.get_closest_marker("engine") is None:
        return
    if _ENGINE_ABSENCE not in item.config.stash:
        item.config.stash[_ENGINE_ABSENCE] = _engine_absence()
    absence = item.config.stash[_ENGINE_ABSENCE]
    if not absence:
        return
    if os.environ.get("CI"):
        pytest.exit(f"{absence}, and CI is set: the engine tests must run, not be skipped", returncode=1)
    pytest.skip(f"{absence}: the engine tests are skipped (start Docker, or run `pytest tests/unit`)")


def _engine_absence() -> str:
    """Why the docker CLI, which these tests drive the engine with as well as xpcargo, gets no answer; empty when it
    does. `docker version` asks the engine for its version, so it fails when no engine answers."""
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        completed = subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=ENGINE_ANSWER_SECONDS,
            check=False,
        )
    except FileNotFoundError:
        return "no docker CLI on PATH, so no container engine answers"
    except subprocess.TimeoutExpired:
        return f"no container engine answered at {where} within {ENGINE_ANSWER_SECONDS} s"
    return "" if completed.returncode == 0 else f"no container engine answers at {where}"


# --- Fixtures -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def toolchain_images(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Every target's toolchain image, built first if the engine lacks it (progress shown, not captured)."""
    command = [sys.executable, "-m", "xpcargo", "image", "build", *ALL_TARGETS]
    env = base_environment()
    capture = request.config.pluginmanager.getplugin("capturemanager")
    started = time.monotonic()
    if capture is not None:
        with capture.global_and_fixture_disabled():
            sys.stderr.write(f"\n[integration] ensuring toolchain images: {' '.join(command[1:])}\n")
            code, output = image_build_output(command, env)
    else:
        code, output = image_build_output(command, env)
    if code != 0:
        pytest.fail(
            f"`xpcargo image build` failed with exit code {code} after {time.monotonic() - started:.0f}s:\n{output}"
        )
    return ALL_TARGETS


@pytest.fixture(scope="session")
def cargo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CARGO_HOME of the session's own, so crates are downloaded (and checked for) in a known place."""
    return tmp_path_factory.mktemp("cargo-home")


@pytest.fixture(scope="session")
def cli_env(cargo_home: Path) -> dict[str, str]:
    return {"CARGO_HOME": str(cargo_home), "XPCARGO_KEEP_WARM": TEST_KEEP_WARM}


@pytest.fixture(scope="session", autouse=True)
def warm_containers_stopped_at_the_end() -> Iterator[None]:
    """The warm containers the session's commands left waiting: stopped when the tests end, rather than left to
    their idle timeout (the engine's other containers are not this session's to touch)."""
    yield
    left = warm_containers()
    if left:
        docker("rm", "--force", *left, check=False)


@pytest.fixture(scope="session")
def cli(cli_env: dict[str, str]) -> Cli:
    """The CLI, run as a subprocess, for what fails before any image is needed: it does not wait for the images."""
    return Cli(cli_env)


@pytest.fixture(scope="session")
def xpcargo(toolchain_images: tuple[str, ...], cli_env: dict[str, str]) -> Cli:
    """The CLI, run as a subprocess against the real engine, once the images exist."""
    return Cli(cli_env)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> Workspace:
    return Workspace(tmp_path_factory, xpcargo)


@pytest.fixture(autouse=True)
def no_container_left() -> Iterator[None]:
    """No container labelled org.xpcargo.managed=true may outlive the xpcargo command that started it."""
    before = managed_containers()
    yield
    left = leaked_containers(ignore=before)
    # Removal is synchronous before xpcargo exits; the grace period only covers a container of a process that was
    # just starting when the test ended.
    deadline = time.monotonic() + 5
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = leaked_containers(ignore=before)
    if left:
        pytest.fail(f"containers labelled {MANAGED_LABEL}=true were left behind:\n" + "\n".join(left.values()))
