"""`xpcargo image list` and `xpcargo image prune` against the engine's real images."""

from __future__ import annotations

import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import MANAGED_LABEL, TARGETS, X86_64, Cli, docker

pytestmark = pytest.mark.engine

STALE = f"xpcargo/{X86_64}:stale0000"
FOREIGN = "not-xpcargo/keep:1"


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
    result = xpcargo(["targets"], cwd=outside_any_project)
    assert result.code == 0, result
    images = {row[0]: row[-1] for row in _table(result.stdout)}
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


@pytest.fixture
def stale_and_foreign_images(tmp_path: Path) -> Iterator[None]:
    """A tiny stale image labelled as xpcargo's and a tiny foreign one without the label, removed afterwards."""
    content = tmp_path / "rootfs"
    content.mkdir()
    (content / "hello.txt").write_text("not a toolchain\n", encoding="utf-8")
    tarball = tmp_path / "rootfs.tar"
    with tarfile.open(tarball, "w") as archive:
        archive.add(content / "hello.txt", arcname="hello.txt")
    for reference in (STALE, FOREIGN):
        assert not _image_exists(reference), f"{reference} is in the engine already"
    docker(
        "import",
        "--change",
        f"LABEL {MANAGED_LABEL}=true",
        "--change",
        f"LABEL org.xpcargo.target={X86_64}",
        str(tarball),
        STALE,
    )
    docker("import", str(tarball), FOREIGN)
    try:
        yield
    finally:
        for reference in (STALE, FOREIGN):
            if _image_exists(reference):
                docker("rmi", "--force", reference)


@pytest.mark.usefixtures("stale_and_foreign_images")
def test_prune_removes_only_stale_xpcargo_images(
    xpcargo: Cli, outside_any_project: Path, current_images: dict[str, str]
) -> None:
    listed = xpcargo(["image", "list"], cwd=outside_any_project)
    assert listed.code == 0, listed
    rows = {row[0]: row for row in _table(listed.stdout)}
    assert rows[STALE][1] == X86_64, listed
    assert rows[STALE][-1] == "stale", listed
    assert FOREIGN not in rows, listed

    pruned = xpcargo(["image", "prune"], cwd=outside_any_project)
    assert pruned.code == 0, pruned
    assert f"Removed {STALE}" in pruned.stderr, pruned

    assert not _image_exists(STALE), pruned
    assert _image_exists(FOREIGN), f"prune removed {FOREIGN}, which is not xpcargo's{pruned}"
    for reference in current_images.values():
        assert _image_exists(reference), f"prune removed the current image {reference}{pruned}"
