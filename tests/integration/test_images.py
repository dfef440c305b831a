"""`xpcargo image list` and `xpcargo image prune` against the engine's real images (prune only ever against images
the test made and recorded in a cache of its own)."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import MANAGED_LABEL, TARGETS, X86_64, Cli, docker

pytestmark = pytest.mark.engine


def _table(stdout: str) -> list[list[str]]:
    """Rows of one of xpcargo's tables, split at white space, without the heading."""
    lines = stdout.splitlines()
    assert lines, "no table"
    return [line.split() for line in lines[1:]]


@pytest.fixture
def outside_any_project(tmp_path: Path) -> Path:
    """A working directory with no Cargo project above it: the shipped configuration applies."""
    directory = tmp_path / "nowhere"
    directory.mkdir()
    return directory


@pytest.fixture
def current_images(xpcargo: Cli, outside_any_project: Path) -> dict[str, str]:
    """target -> the image reference today's recipes build, as `xpcargo targets` names it."""
    result = xpcargo(["targets", "--json"], cwd=outside_any_project)
    assert result.code == 0, result
    images = {str(entry["target"]): str(entry["image"]) for entry in json.loads(result.stdout)}
    assert set(images) >= set(TARGETS), result
    return {triple: images[triple] for triple in TARGETS}


def _image_exists(reference: str) -> bool:
    completed = subprocess.run(["docker", "image", "inspect", reference], capture_output=True, check=False)
    return completed.returncode == 0


def test_list_shows_the_current_images(xpcargo: Cli, outside_any_project: Path, current_images: dict[str, str]) -> None:
    result = xpcargo(["image", "list"], cwd=outside_any_project)
    assert result.code == 0, result
    assert result.stdout_lines[0].split() == ["IMAGE", "TARGET", "SIZE", "STATUS"], result
    rows = {row[0]: row for row in _table(result.stdout)}
    for triple, reference in current_images.items():
        assert reference in rows, result
        row = rows[reference]
        assert row[1] == triple, row
        assert row[-1] == "current", row
        assert row[-2] == "GB", row
        assert float(row[-3]) > 0.1, row


@dataclass
class PruneScene:
    """Tiny images of the test's own under a repository name of its own, some recorded as built in the test's own
    cache (the shared toolchain images have no record there, so prune can never remove them)."""

    cache: Path
    old: str
    recent: str
    in_use: str
    derived: str
    foreign: str
    container: str


def _record(cache: Path, reference: str, *, digest: str, used_days_ago: float) -> None:
    """What xpcargo writes when it has built an image: `<cache>/images/<plan digest>.json`, touched on each use."""
    image_id = docker("image", "inspect", "--format", "{{.Id}}", reference).strip()
    images = cache / "images"
    images.mkdir(parents=True, exist_ok=True)
    record = images / f"{digest}.json"
    built = time.time() - used_days_ago * 86400
    record.write_text(
        json.dumps({"reference": reference, "image_id": image_id, "target": X86_64, "built": built}),
        encoding="utf-8",
    )
    os.utime(record, (built, built))


@pytest.fixture
def prune_scene(tmp_path: Path) -> Iterator[PruneScene]:
    content = tmp_path / "rootfs"
    content.mkdir()
    tarball = tmp_path / "rootfs.tar"
    repository = f"xpcargo-test-{uuid.uuid4().hex[:12]}"
    scene = PruneScene(
        cache=tmp_path / "cache",
        old=f"{repository}/old:1",
        recent=f"{repository}/recent:1",
        in_use=f"{repository}/in-use:1",
        derived=f"{repository}/derived:1",
        foreign=f"{repository}/foreign:1",
        container="",
    )
    made = [scene.old, scene.recent, scene.in_use, scene.foreign]
    labels = ["--change", f"LABEL {MANAGED_LABEL}=true", "--change", f"LABEL org.xpcargo.target={X86_64}"]
    try:
        for reference in made:
            # Each image its own content, hence its own id.
            (content / "name.txt").write_text(reference, encoding="utf-8")
            with tarfile.open(tarball, "w") as archive:
                archive.add(content / "name.txt", arcname="name.txt")
            docker("import", *([] if reference == scene.foreign else labels), str(tarball), reference)
        _record(scene.cache, scene.old, digest="1" * 64, used_days_ago=30)
        _record(scene.cache, scene.recent, digest="2" * 64, used_days_ago=0)
        _record(scene.cache, scene.in_use, digest="3" * 64, used_days_ago=30)
        scene.container = docker("create", "--label", f"{repository}=1", scene.in_use, "/none").strip()
        # Committed from a container of an image xpcargo built: it inherits every label, and is not xpcargo's.
        docker("commit", scene.container, scene.derived)
        made.append(scene.derived)
        yield scene
    finally:
        if scene.container:
            docker("rm", "--force", scene.container, check=False)
        for reference in reversed(made):
            if _image_exists(reference):
                docker("rmi", "--force", reference)


def test_prune_removes_only_what_xpcargo_recorded_building(
    xpcargo: Cli, outside_any_project: Path, current_images: dict[str, str], prune_scene: PruneScene
) -> None:
    scene = prune_scene
    env = {"XPCARGO_CACHE_DIR": str(scene.cache)}
    pruned = xpcargo(["image", "prune", "--older-than", "7d"], cwd=outside_any_project, env=env)
    assert pruned.code == 0, pruned
    lines = pruned.stderr_lines
    assert f"     Removed {scene.old}" in lines, pruned
    recent = next(line for line in lines if line.startswith(f"        Kept {scene.recent}: used "))
    assert recent.endswith("s ago"), pruned
    assert f"        Kept {scene.in_use}: used by stopped container {scene.container[:12]}" in lines, pruned
    unrecorded = f"not built by xpcargo with this cache (no record in {scene.cache}/images)"
    assert f"        Kept {scene.derived}: {unrecorded}" in lines, pruned
    for reference in current_images.values():
        assert f"        Kept {reference}: {unrecorded}" in lines, pruned
    assert not [line for line in lines if scene.foreign in line], pruned
    assert not _image_exists(scene.old), pruned
    for reference in (scene.recent, scene.in_use, scene.derived, scene.foreign, *current_images.values()):
        assert _image_exists(reference), f"prune removed {reference}{pruned}"

    # Once the container is gone and with no limit on age, the rest of what xpcargo built goes too; the image
    # committed from that container keeps its own name (and so its parent's layers).
    docker("rm", scene.container)
    again = xpcargo(["image", "prune"], cwd=outside_any_project, env=env)
    assert again.code == 0, again
    assert {line.split()[1] for line in again.stderr_lines if line.split()[0] == "Removed"} == {
        scene.recent,
        scene.in_use,
    }, again
    assert _image_exists(scene.derived), again
    assert _image_exists(scene.foreign), again
    for reference in current_images.values():
        assert _image_exists(reference), f"prune removed the current image {reference}{again}"


def test_a_bad_duration_is_one_line(cli: Cli, outside_any_project: Path) -> None:
    result = cli(["image", "prune", "--older-than", "a week"], cwd=outside_any_project)
    assert result.code == 2, result
    assert result.stderr_lines == [
        "error: --older-than 'a week' is not a duration (hint: write a whole number and a unit: 30m, 12h, 7d or 2w)"
    ], result
