"""Image-build scratch directories, and the directory of its own that a build that is not root gives mmdebstrap in a
shared temporary directory: it goes with the scratch directory, mmdebstrap's root filesystem in it through
mmdebstrap's own user namespace, and nothing else is touched."""

from __future__ import annotations

import io
import os
import shutil
import stat
from pathlib import Path

import pytest

from xpcargo.image import scratch
from xpcargo.ui import Reporter

# A subordinate uid, as the root of a user's mmdebstrap namespace is, and another user's. (As root, mmdebstrap's
# helper could delete anyone's files; but a build as root never has a directory outside its scratch.)
SUBORDINATE = 100000
OTHER_USER = 4242

pytestmark = pytest.mark.skipif(
    shutil.which("mmdebstrap") is None or os.geteuid() != 0,
    reason="needs mmdebstrap (scripts/install installs it), and root to give files to other uids",
)


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    """A sticky temporary directory writable by all, like /var/tmp."""
    directory = tmp_path / "var-tmp"
    directory.mkdir()
    directory.chmod(0o1777)
    return directory


def _leave_killed_build(made: Path) -> None:
    """What a killed mmdebstrap leaves: its temporary root (its namespace's root's files) and its gpg home."""
    root = made / "mmdebstrap.Ab3_x9QzLk"
    (root / "usr" / "bin").mkdir(parents=True)
    (root / "usr" / "bin" / "dpkg").write_bytes(b"\x7fELF")
    (root / "etc").mkdir(mode=0o700)
    for path in [root, *root.rglob("*")]:
        os.chown(path, SUBORDINATE, SUBORDINATE)
    (made / "mmdebstrap.gpghome.k2Jd8sLq0wXa").mkdir(mode=0o700)
    (made / "mmdebstrap.gpghome.k2Jd8sLq0wXa" / "trustdb.gpg").write_bytes(b"")


def test_the_outside_directory_is_sticky_unlistable_and_goes_with_the_build(tmp_path: Path, shared: Path) -> None:
    said = io.StringIO()
    with scratch.owned(tmp_path / "scratch", Reporter(stream=said)) as directory:
        made = scratch.outside(directory, shared)
        assert made.parent == shared
        assert stat.S_IMODE(made.stat().st_mode) == 0o1733
        _leave_killed_build(made)
    assert not directory.exists()
    assert list(shared.iterdir()) == []
    assert said.getvalue() == ""


def test_a_build_stopped_before_its_directory_was_made_leaves_nothing(tmp_path: Path, shared: Path) -> None:
    """The directory is recorded before it is made: a build stopped in between leaves a record naming nothing, which
    its removal passes over (a directory made but not recorded was left in /var/tmp by a Ctrl-C in test_podman)."""
    directory = tmp_path / "scratch" / "image-stopped"
    directory.mkdir(parents=True)
    made = scratch.outside(directory, shared)
    assert (directory / "outside").read_text(encoding="utf-8") == f"{made}\n"
    made.rmdir()
    assert scratch.remove(directory) is None
    assert not directory.exists()
    assert list(shared.iterdir()) == []


def test_the_sweep_removes_it_for_a_build_that_is_gone(tmp_path: Path, shared: Path) -> None:
    reporter = Reporter(stream=io.StringIO())
    # A build killed with SIGKILL: its directory and the one outside stay, its lock is free.
    directory = tmp_path / "scratch" / "image-gone"
    directory.mkdir(parents=True)
    (directory / "owner.lock").write_text("1\n")
    _leave_killed_build(scratch.outside(directory, shared))
    scratch.sweep(tmp_path / "scratch", reporter)
    assert not directory.exists()
    assert list(shared.iterdir()) == []


def test_a_record_naming_anything_else_touches_nothing(tmp_path: Path, shared: Path) -> None:
    reporter = Reporter(stream=io.StringIO())
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "file").write_text("keep")
    theirs = shared / "xpcargo-image-Th31rs00"
    theirs.mkdir()
    os.chown(theirs, OTHER_USER, OTHER_USER)
    named = [
        shared / "xpcargo-image-L1nk0000",  # a link to elsewhere, under the name
        shared / "not-xpcargo",  # a directory of another name
        precious / "xpcargo-image-N0tSt1ck",  # the name is not enough: it must be directly in a sticky directory
        theirs,  # nor is the place: it must be the user's
    ]
    named[0].symlink_to(precious)
    named[1].mkdir()
    named[2].mkdir()
    for path in named:
        with scratch.owned(tmp_path / "scratch", reporter) as directory:
            (directory / "outside").write_text(f"{path}\n")
        assert not directory.exists()
    assert named[0].is_symlink()
    assert named[1].is_dir()
    assert named[2].is_dir()
    assert theirs.is_dir()
    assert (precious / "file").read_text() == "keep"
