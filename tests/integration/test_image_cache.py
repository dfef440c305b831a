"""Images as files for a CI cache, with the real engine: save, remove, load, and a file refused because it does not
hold what its name says. The images are the test's own (made FROM a shared toolchain image with the labels of a
plan of the test's), so the shared images are never removed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import PLAN_LABEL, X86_64, Cli, docker, single_error_line

pytestmark = pytest.mark.engine


def _info(xpcargo: Cli, env: dict[str, str], cwd: Path) -> dict[str, str]:
    result = xpcargo(["targets", "--json", "--target", X86_64], cwd=cwd, env=env)
    assert result.code == 0, result
    (info,) = json.loads(result.stdout)
    return {"image": info["image"], "plan": info["plan"]}


def _fabricate(base: str, reference: str, plan: str, scratch: Path) -> None:
    """An image of the test's own that carries the labels of ``plan`` (as if xpcargo had built that plan)."""
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "Dockerfile").write_text(
        f"FROM {base}\nLABEL {PLAN_LABEL}={plan} org.xpcargo.target={X86_64}\n", encoding="utf-8"
    )
    subprocess.run(
        ["docker", "build", "-q", "-t", reference, str(scratch)],
        check=True,
        capture_output=True,
        env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin:/usr/local/bin"},
    )


@pytest.fixture
def own_plans(tmp_path: Path, xpcargo: Cli) -> Iterator[tuple[dict[str, str], dict[str, str], dict[str, str]]]:
    """Two plans of the test's own (extra packages no one else uses), the first with an image in the engine."""
    base = _info(xpcargo, {}, tmp_path)["image"]
    # Package names no one else plans with (Debian's grammar: lowercase, digits, `-`); never installed.
    unique = f"xpcargo-test-{os.getpid()}-{time.monotonic_ns()}"
    first_env = {"XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES": f"{unique}-a"}
    second_env = {"XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES": f"{unique}-b"}
    first, second = _info(xpcargo, first_env, tmp_path), _info(xpcargo, second_env, tmp_path)
    _fabricate(base, first["image"], first["plan"], tmp_path / "build")
    try:
        yield first_env, first, second
    finally:
        docker("rmi", "-f", first["image"], second["image"], check=False)


def test_save_remove_load(tmp_path: Path, xpcargo: Cli, own_plans: tuple[dict[str, str], ...]) -> None:
    env, first, _ = own_plans
    env = {**env, "XPCARGO_CACHE_DIR": str(tmp_path / "xpcargo-cache")}
    saved = xpcargo(["image", "save", X86_64, "-o", str(tmp_path / "ci-cache")], cwd=tmp_path, env=env)
    assert saved.code == 0, saved
    archive = tmp_path / "ci-cache" / f"{first['plan']}.tar"
    assert archive.is_file()

    docker("rmi", first["image"])
    loaded = xpcargo(["image", "load", str(tmp_path / "ci-cache")], cwd=tmp_path, env=env)
    assert loaded.code == 0, loaded
    assert f"Loaded {first['image']}" in loaded.stderr, loaded
    labels = json.loads(docker("image", "inspect", "--format", "{{json .Config.Labels}}", first["image"]))
    assert labels[PLAN_LABEL] == first["plan"]

    # A key for that plan, as a CI cache would use it.
    key = xpcargo(["image", "key", X86_64], cwd=tmp_path, env=env)
    assert key.code == 0, key
    assert key.stdout.strip().startswith("xpcargo-images-")


def test_a_file_that_lies_about_its_plan_is_refused(
    tmp_path: Path, xpcargo: Cli, own_plans: tuple[dict[str, str], ...]
) -> None:
    first_env, first, second = own_plans
    cache = tmp_path / "ci-cache"
    saved = xpcargo(["image", "save", X86_64, "-o", str(cache)], cwd=tmp_path, env=first_env)
    assert saved.code == 0, saved
    # The first plan's image, under the second plan's name.
    shutil.move(cache / f"{first['plan']}.tar", cache / f"{second['plan']}.tar")
    docker("rmi", first["image"])
    second_env = {
        "XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES": first_env[
            "XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES"
        ].removesuffix("-a")
        + "-b"
    }
    refused = xpcargo(["image", "load", str(cache)], cwd=tmp_path, env=second_env)
    assert refused.code == 8, refused
    assert "refusing" in single_error_line(refused), refused
    listing = docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    assert first["image"] not in listing.split()
    assert second["image"] not in listing.split()
