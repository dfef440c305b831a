"""Locked images against the real engine and mirror: two builds from one lock give the same layers (the base's and
the target's), and a locked version that the mirror does not serve is one error line naming it.

Each test locks the shared x86_64 image in a project of its own (reading its packages in a container: its cache has
no record of them), so every locked image is the test's own: its tag holds the lock's date, which is the test's.
The shared images are only read. A lock, a locked build and its verification (a second build) take about 3 minutes
on the 2-core CI machine.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import X86_64, Cli, docker

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

LOCK_FILE = "xpcargo-images.lock"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "locked"
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "locked"\nversion = "0.1.0"\nedition = "2021"\n')
    (root / "src" / "main.rs").write_text("fn main() {}\n")
    return root


@pytest.fixture(scope="session")
def deb_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The .debs downloaded by this session's builds, shared by their caches (which are otherwise apart)."""
    return tmp_path_factory.mktemp("debs")


def _cache(tmp_path: Path, name: str, debs: Path) -> dict[str, str]:
    cache = tmp_path / name
    cache.mkdir()
    (cache / "debs").symlink_to(debs)
    return {"XPCARGO_CACHE_DIR": str(cache)}


def _image(cli: Cli, project: Path, env: dict[str, str]) -> str:
    result = cli(["targets", "--json", "--target", X86_64], cwd=project, env=env)
    assert result.code == 0, result
    return str(json.loads(result.stdout)[0]["image"])


def _layers(reference: str) -> list[str]:
    return list(json.loads(docker("image", "inspect", "--format", "{{json .RootFS.Layers}}", reference)))


@pytest.fixture
def locked_images() -> Iterator[list[str]]:
    """The locked images a test built, removed at its end: those labelled with its lock's hash, which holds the
    test's own date (the base and the target's layer)."""
    made: list[str] = []
    yield made
    for reference in made:
        lock = docker("image", "inspect", "--format", '{{index .Config.Labels "org.xpcargo.lock-hash"}}', reference)
        ours = docker(
            "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"label=org.xpcargo.lock-hash={lock}"
        )
        for image in {reference, *ours.split()} if lock.strip() else {reference}:
            docker("rmi", "--force", image, check=False)


def test_two_builds_of_a_locked_image_have_the_same_layers(
    xpcargo: Cli, project: Path, tmp_path: Path, deb_cache: Path, locked_images: list[str]
) -> None:
    first = _cache(tmp_path, "first", deb_cache)
    unlocked = _image(xpcargo, project, first)

    locked = xpcargo(["image", "lock", X86_64], cwd=project, env=first)
    assert locked.code == 0, locked
    text = (project / LOCK_FILE).read_text()
    assert f'[targets."{X86_64}"]' in text, text
    assert re.search(r'"rustc-web:amd64=1\.96\.0\+dfsg1-1~deb13u1\+b1",', text), text
    assert re.search(r'"libc6:amd64=[^"]+",', text), text

    reference = _image(xpcargo, project, first)
    assert reference != unlocked, "a locked image must not share the unlocked image's tag"
    locked_images.append(reference)
    built = xpcargo(["image", "build", X86_64], cwd=project, env=first, timeout=900)
    assert built.code == 0, built
    assert "locked at xpcargo-images.lock's versions" in built.stderr, built
    base, layer = _layers(reference)

    # The second build: another cache (nothing shared but downloaded .debs), compared by `image verify`.
    verified = xpcargo(["image", "verify", X86_64], cwd=project, env=_cache(tmp_path, "second", deb_cache), timeout=900)
    assert verified.code == 0, verified
    lines = [line.strip() for line in verified.stderr_lines]
    assert f"Layers {base} {layer} of {reference}" in lines, verified
    assert f"Layers {base} {layer} of the rebuild" in lines, verified
    assert f"Verified {reference}: the rebuild has the same layers" in lines, verified
    # The rebuild was compared, never loaded: only the locked image carries its plan's label.
    plan = docker("image", "inspect", "--format", '{{index .Config.Labels "org.xpcargo.plan-hash"}}', reference)
    assert docker("images", "--quiet", "--filter", f"label=org.xpcargo.plan-hash={plan.strip()}").split() == [
        docker("image", "inspect", "--format", "{{.Id}}", reference).strip().removeprefix("sha256:")[:12]
    ], verified


def test_a_locked_version_the_mirror_lacks_is_one_line(xpcargo: Cli, project: Path, tmp_path: Path) -> None:
    env = _cache(tmp_path, "cache", tmp_path / "no-debs")
    (tmp_path / "no-debs").mkdir()
    locked = xpcargo(["image", "lock", X86_64], cwd=project, env=env)
    assert locked.code == 0, locked
    lock_file = project / LOCK_FILE
    text, count = re.subn(r'"make:amd64=[^"]+"', '"make:amd64=9.9-gone"', lock_file.read_text())
    assert count == 1, text
    lock_file.write_text(text)

    built = xpcargo(["image", "build", X86_64], cwd=project, env=env)
    assert built.code == 8, built
    assert built.stderr_lines[-1] == (
        f"error: {LOCK_FILE} locks make at 9.9-gone for {X86_64}, and the mirror http://deb.debian.org/debian no "
        f"longer serves that version (hint: `xpcargo image lock --refresh {X86_64}` rewrites the lock from today's "
        "mirror; commit it)"
    ), built
    assert [line for line in built.stderr_lines if line.startswith("error:")] == built.stderr_lines[-1:], built
