"""The integration tests' fixtures: the real CLI against the real engine, once the toolchain images exist.

The first run on a machine with an empty engine builds every target's toolchain image (the two shared bases, then a
layer per target: about six minutes, shown as it goes);
later runs find them and start at once. Tests that never reach the engine (bad input, configuration errors) take
the ``cli`` fixture, which does not wait for the images.
"""

from __future__ import annotations

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
