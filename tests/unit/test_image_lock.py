"""The build lock and the scratch space of image builds, within one process: a second open of a lock file is a
second owner, as another process would be. (tests/integration/test_image_interrupts.py does it with real processes
and real signals.)"""

from __future__ import annotations

import io
import os
import threading
import time
from pathlib import Path

import pytest

from xpcargo.errors import UsageError
from xpcargo.image import lock, scratch
from xpcargo.ui import Reporter, ago, parse_duration

REFERENCE = "xpcargo/x:0123"
DIGEST = "d" * 64


def _reporter() -> tuple[Reporter, io.StringIO]:
    stream = io.StringIO()
    return Reporter(stream=stream), stream


def test_a_waiter_names_the_holder_and_shows_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lock, "POLL_SECONDS", 0.01)
    holder_reporter, _ = _reporter()
    waiter, seen = _reporter()
    holding = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with lock.held(tmp_path, DIGEST, reference=REFERENCE, reporter=holder_reporter) as progress:
            building = Reporter(stream=io.StringIO(), copy=progress)
            building.status("Building", f"image {REFERENCE}")
            holding.set()
            release.wait(5)
            building.detail("[2/4] half way")
            building.status("Built", f"image {REFERENCE}")

    thread = threading.Thread(target=hold)
    thread.start()
    assert holding.wait(5)

    def let_go() -> None:
        time.sleep(0.2)
        release.set()

    threading.Thread(target=let_go).start()
    with lock.held(tmp_path, DIGEST, reference=REFERENCE, reporter=waiter):
        pass
    thread.join(5)
    assert seen.getvalue().splitlines() == [
        f"     Waiting for process {os.getpid()} to finish building image {REFERENCE}",
        f"    Building image {REFERENCE}",
        f"{'':12} [2/4] half way",
        f"       Built image {REFERENCE}",
    ]


def test_a_free_lock_is_taken_at_once_and_leaves_no_pid_behind(tmp_path: Path) -> None:
    reporter, seen = _reporter()
    with lock.held(tmp_path, DIGEST, reference=REFERENCE, reporter=reporter):
        assert lock.lock_path(tmp_path, DIGEST).read_text() == f"{os.getpid()}\n"
        with lock.try_held(tmp_path, DIGEST) as free:
            assert not free
    assert lock.lock_path(tmp_path, DIGEST).read_text() == ""
    assert not lock.lock_path(tmp_path, DIGEST).with_suffix(".progress").exists()
    assert seen.getvalue() == ""


def test_a_scratch_dir_is_owned_then_removed(tmp_path: Path) -> None:
    reporter, seen = _reporter()
    root = tmp_path / "scratch"
    with scratch.owned(root, reporter) as directory:
        (directory / "rootfs" / "usr").mkdir(parents=True)
        (directory / "rootfs" / "usr" / "file").write_text("x")
        # A live build's directory is never swept.
        scratch.sweep(root, reporter)
        assert directory.is_dir()
    assert list(root.iterdir()) == []
    assert seen.getvalue() == ""


def test_a_killed_builds_scratch_is_swept(tmp_path: Path) -> None:
    reporter, seen = _reporter()
    root = tmp_path / "scratch"
    stale = root / "image-stale"
    (stale / "mmdebstrap.x" / "proc").mkdir(parents=True)
    (stale / "owner.lock").write_text("999999\n")
    (stale / "mmdebstrap.x" / "etc").symlink_to("/etc")
    fresh_without_lock = root / "image-starting"
    fresh_without_lock.mkdir()
    (fresh_without_lock / "rootfs.tar").write_bytes(b"")
    scratch.sweep(root, reporter)
    assert not stale.exists()
    assert Path("/etc/passwd").exists()
    assert fresh_without_lock.is_dir(), "a directory of a build that is just starting was removed"
    assert seen.getvalue() == f"     Removed {stale}, left by an image build that was killed\n"
    old = time.time() - 3600
    os.utime(fresh_without_lock / "rootfs.tar", (old, old))
    scratch.sweep(root, reporter)
    assert fresh_without_lock.is_dir(), "a directory was removed while something in it was recent"
    os.utime(fresh_without_lock, (old, old))
    scratch.sweep(root, reporter)
    assert not fresh_without_lock.exists()


def test_nothing_mounted_is_ever_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reporter, seen = _reporter()
    stale = tmp_path / "scratch" / "image-stale"
    (stale / "root" / "proc").mkdir(parents=True)
    (stale / "owner.lock").write_text("999999\n")
    monkeypatch.setattr(scratch, "mounts_under", lambda directory: [f"{directory}/root/proc"])
    scratch.sweep(tmp_path / "scratch", reporter)
    assert (stale / "root" / "proc").is_dir()
    assert seen.getvalue().startswith(f"warning: kept {stale}: {stale}/root/proc is mounted there (hint: `umount")


def test_the_mount_table_is_read_with_its_escapes(tmp_path: Path) -> None:
    assert scratch.mounts_under(Path("/")) != []
    assert scratch.mounts_under(tmp_path) == []
    assert "/proc" in scratch.mounts_under(Path("/proc"))


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600)])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text, option="--older-than") == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "1.5h", "-1d", "7days", "7 d x"])
def test_bad_durations_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_duration(text, option="--older-than")
    assert caught.value.summary() == (
        f"error: --older-than {text!r} is not a duration (hint: write a whole number and a unit: 30m, 12h, 7d or 2w)"
    )


def test_ago() -> None:
    assert [ago(s) for s in (5, 90, 7200, 3 * 86400)] == ["5s", "1m", "2h", "3d"]
