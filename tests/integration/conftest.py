"""The integration tests' fixtures: the real CLI against the real engine, once the toolchain images exist.

The first run on a machine with an empty engine builds every target's toolchain image (the two shared bases, then a
layer per target, armv5te's and wasm32's with their std built from source: about eleven minutes, shown as it goes);
later runs find them and start at once. The seven other images whose layer builds a Rust std from source take
minutes each and only some tests need them (marked ``std_images``, with the targets they need): they are built in the
background from the session's start, the glibc layers' apt work beside their compiling, and each of their tests
first waits for its own targets' images. Tests that never reach the engine (bad input, configuration errors) take
the ``cli`` fixture, which does not wait for the images. With two test processes (pytest-xdist, which deals whole
files, those with the most tests first), each builds what is missing, the second in the other order, so that they
build different images side by side.

Every test here carries the ``engine`` marker (``pytest -m "not engine"`` leaves them out). With no engine, they are
skipped with one line that says why, except under CI, where that stops the run: CI must never pass with them unrun.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    ALL_TARGETS,
    MANAGED_LABEL,
    STD_BUILD_ORDER,
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
# The std-from-source targets whose images this process has seen built.
_STD_IMAGES_READY = pytest.StashKey[set[str]]()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory needs the engine: marked here, so that a new file cannot forget it. Before the
    mark plugin's own hook (tryfirst), which deselects by marker for `-m "not engine"`."""
    for item in items:
        if item.path.is_relative_to(ENGINE_TESTS):
            item.add_marker(pytest.mark.engine)
    # For a run in one process (-n 0): last, those whose images are built first (sorted is stable), so that their
    # images build meanwhile. pytest-xdist deals whole files in its own order.
    items[:] = sorted(items, key=_std_images_position)


def std_targets(item: pytest.Item) -> tuple[str, ...]:
    """The std-from-source targets whose images ``item`` needs: its ``std_images`` mark's arguments, or all of them
    for a mark without any."""
    mark = item.get_closest_marker("std_images")
    if mark is None:
        return ()
    return tuple(mark.args) or STD_BUILD_ORDER


def _std_images_position(item: pytest.Item) -> int:
    """-1 for a test that needs no std-from-source image; else how far into the background build its last image is."""
    needed = std_targets(item)
    return max((STD_BUILD_ORDER.index(target) for target in needed), default=-1)


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
    env = base_environment()
    if any(std_targets(item) for item in request.session.items):
        _start_std_image_build(request, env)
    # armv5te's and wasm32's std is built from source too (minutes each), yet they are built here, not in the
    # background: tests without the std_images mark (test_images, test_matrix) need every one of ALL_TARGETS.
    _build_images(request, _this_workers_order(request, ALL_TARGETS), env)
    return ALL_TARGETS


def _build_images(request: pytest.FixtureRequest, targets: tuple[str, ...], env: dict[str, str]) -> None:
    """`xpcargo image build` of ``targets``, its progress shown as it goes (at once done when the engine has them);
    the test fails with its output if it fails."""
    command = [sys.executable, "-m", "xpcargo", "image", "build", *targets]
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


def _this_workers_order(request: pytest.FixtureRequest, targets: tuple[str, ...]) -> tuple[str, ...]:
    """``targets`` in the order this test process builds their images: the second worker of two (pytest-xdist's
    gw1) from the other end, so that the two build different images side by side; each waits for an image the other
    builds (xpcargo's lock per image) only once they meet."""
    worker = getattr(request.config, "workerinput", {}).get("workerid", "gw0")
    return targets[::-1] if worker == "gw1" else targets


def _start_std_image_build(request: pytest.FixtureRequest, env: dict[str, str]) -> None:
    """Start building the std-from-source images in the background, at the session's start: their compiling is
    mostly CPU, the glibc layers' (built meanwhile) mostly apt and disk. A session that ends first (interrupted, or
    stopped at a failure) interrupts the build as Ctrl-C would."""
    # Its output and its failure are not looked at here: the test that needs an image builds it again in its setup,
    # where the output is shown, and fails with it.
    process = subprocess.Popen(
        [sys.executable, "-m", "xpcargo", "image", "build", *_this_workers_order(request, STD_BUILD_ORDER)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Not one of STARTED_PIDS: its layer containers live through other tests, whose check for containers left
    # behind (no_container_left) must not count them; the build removes them itself, also when interrupted.

    def stop() -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=120)

    request.addfinalizer(stop)


@pytest.fixture(autouse=True)
def std_images_ready(request: pytest.FixtureRequest) -> None:
    """A test marked ``std_images`` starts once its own targets' images are there, however long their build takes,
    instead of building one within its command's timeout. It builds them itself: an image the background build is
    making is waited for (xpcargo's lock per image), one it has not reached yet is built beside it."""
    needed = std_targets(request.node)
    if not needed:
        return
    request.getfixturevalue("toolchain_images")
    ready = request.config.stash.setdefault(_STD_IMAGES_READY, set())
    missing = tuple(target for target in needed if target not in ready)
    if missing:
        _build_images(request, missing, base_environment())
        ready.update(missing)


@pytest.fixture(scope="session")
def cargo_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CARGO_HOME of the session's own, so crates are downloaded (and checked for) in a known place."""
    return tmp_path_factory.mktemp("cargo-home")


@pytest.fixture(scope="session")
def cli_env(cargo_home: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The session's CARGO_HOME, and one compile cache for every test's builds (XPCARGO_CACHE, as a CI job that
    shares one between its builds sets it): the same crates.io dependencies, built by many tests' projects, come from
    it, and nothing is left in the user's cache dir. test_compile_cache.py tests the default, a cache per workspace."""
    return {
        "CARGO_HOME": str(cargo_home),
        "XPCARGO_KEEP_WARM": TEST_KEEP_WARM,
        "XPCARGO_CACHE": str(tmp_path_factory.mktemp("compile-cache")),
    }


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
