"""Scratch space for image builds: one directory per build under ``<cache>/scratch``, owned by the building process
through a lock inside it, and swept by a later build once its owner is gone.

A build as root runs mmdebstrap with ``TMPDIR`` pointing into the build's directory, so whatever a killed build
leaves (a partial root filesystem of a GB or more, mmdebstrap's gpg home, a half-written tarball) is in a directory
that a later build can prove nobody owns. (Another user's mmdebstrap makes its root filesystem in a shared temporary
directory instead, which its subordinate uids can reach (``debian.tmpdir_for``): a directory of the build's own
there, ``outside``, named in the build's directory, so that whoever removes the one removes the other, the root
filesystem in it as those uids, since the user cannot delete their files.) Nothing is deleted while something is
mounted under it, and deletion stays on the directory's own file system, as `rm -rf --one-file-system` does.
"""

from __future__ import annotations

import fcntl
import os
import re
import secrets
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from xpcargo.ui import Reporter

_OWNER = "owner.lock"
# Names the build's directory outside its scratch directory (``outside``), for a build that is not root.
_OUTSIDE = "outside"
_OUTSIDE_PREFIX = "xpcargo-image-"
_NAME_ATTEMPTS = 100
_OUTSIDE_NAME = re.compile(r"xpcargo-image-[A-Za-z0-9_]{8}")
# mmdebstrap's name for its temporary root (File::Temp's `mmdebstrap.XXXXXXXXXX`).
_MMDEBSTRAP_ROOT = re.compile(r"mmdebstrap\.[A-Za-z0-9_]{10}")
# A directory without a lock file is a build's only once nothing in it has changed for this long: it may be one that
# is starting this very moment, or the build of an older xpcargo sharing the cache, which made no lock file.
_GRACE_SECONDS = 3600
_ESCAPE = re.compile(r"\\([0-7]{3})")


@contextmanager
def owned(root: Path, reporter: Reporter) -> Iterator[Path]:
    """A new scratch directory, locked as this process's until the block ends, then removed."""
    root.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="image-", dir=root))
    # As root, apt downloads as its own user, `_apt`, into mmdebstrap's temporary root below this directory.
    directory.chmod(0o755)
    # Locked before it gets its name, so that a sweep never finds the lock file free while this process lives.
    fd = os.open(directory / ".owner.new", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"{os.getpid()}\n".encode())
        (directory / ".owner.new").rename(directory / _OWNER)
        yield directory
    finally:
        try:
            problem = remove(directory)
            if problem:
                reporter.warn(problem)
        finally:
            os.close(fd)


def sweep(root: Path, reporter: Reporter) -> None:
    """Remove the scratch directories of builds whose process is gone (killed, or on a machine that rebooted)."""
    if not root.is_dir():
        return
    for directory in sorted(root.glob("image-*")):
        if directory.is_symlink() or not directory.is_dir():
            continue
        try:
            fd: int | None = os.open(directory / _OWNER, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if time.time() - _last_change(directory) < _GRACE_SECONDS:
                continue
            fd = None
        try:
            if fd is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live build's
            problem = remove(directory)
            if problem:
                reporter.warn(problem)
            else:
                reporter.status("Removed", f"{directory}, left by an image build that was killed")
        finally:
            if fd is not None:
                os.close(fd)


def _last_change(directory: Path) -> float:
    with os.scandir(directory) as entries:
        return max([directory.lstat().st_mtime, *(entry.stat(follow_symlinks=False).st_mtime for entry in entries)])


def mounts_under(directory: Path) -> list[str]:
    """What is mounted at or below ``directory`` in this process's mount namespace."""
    top = os.path.realpath(directory)
    found = []
    with Path("/proc/self/mountinfo").open(encoding="utf-8", errors="replace") as mountinfo:
        for line in mountinfo:
            fields = line.split(" ")
            if len(fields) < 5:
                continue
            point = _ESCAPE.sub(lambda match: chr(int(match[1], 8)), fields[4])
            if point == top or point.startswith(f"{top}/"):
                found.append(point)
    return found


def outside(directory: Path, shared: Path) -> Path:
    """A new directory for the build of ``directory`` in ``shared`` (a sticky temporary directory like /var/tmp),
    named in ``directory`` so that it goes with it.

    It is the TMPDIR of a mmdebstrap that is not root: its namespace's root, a subordinate uid, makes its root
    filesystem there and removes it at the end, so it may write there, as any user may in /var/tmp. Sticky as /var/tmp
    is, so that only an entry's owner removes it, and not listable by others: everything else mmdebstrap makes there
    has an unguessable name of its own, made without following links.
    """
    record = directory / _OUTSIDE
    for _ in range(_NAME_ATTEMPTS):
        made = shared / f"{_OUTSIDE_PREFIX}{_random_name()}"
        # Recorded before it exists: an interrupt (a Ctrl-C right after the first lines of the build) at any point
        # leaves nothing that the removal of ``directory`` would not find.
        record.write_text(f"{made}\n", encoding="utf-8")
        try:
            made.mkdir(mode=0o700)
        except FileExistsError:
            continue
        made.chmod(0o1733)
        return made
    raise FileExistsError(f"no free name for a directory of the build's in {shared}")


def _random_name() -> str:
    """What mkdtemp would add to the prefix: eight characters of its alphabet."""
    return "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789_") for _ in range(8))


def remove(directory: Path) -> str | None:
    """Delete ``directory`` and the directory it names outside itself, unless something is mounted under either;
    return what stopped it, or None."""
    if not directory.exists():
        return None
    problem = _remove_outside(directory / _OUTSIDE)
    if problem:
        return problem
    mounted = mounts_under(directory)
    if mounted:
        return (
            f"kept {directory}: {mounted[-1]} is mounted there (hint: `umount --lazy` what is mounted under it, "
            "deepest first, then delete it)"
        )
    try:
        skipped = _remove_tree(directory, directory.lstat().st_dev)
    except OSError as exc:
        return (
            f"could not remove {directory}: {exc.strerror}: {exc.filename} (hint: a build that was not root leaves "
            "files owned by its subordinate ids; remove the directory as root)"
        )
    if skipped:
        return f"kept {directory}: {skipped[0]} is on another file system"
    return None


def _remove_tree(directory: Path, device: int) -> list[str]:
    """Delete what is on ``device`` below ``directory``, never crossing into another file system; return what was
    left for that reason."""
    skipped: list[str] = []
    with os.scandir(directory) as entries:
        for entry in entries:
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISDIR(info.st_mode):
                Path(entry.path).unlink()
            elif info.st_dev != device:
                skipped.append(entry.path)
            else:
                skipped += _remove_tree(Path(entry.path), device)
    if not skipped:
        directory.rmdir()
    return skipped


def _remove_outside(record: Path) -> str | None:
    """Delete the directory that ``record`` names (``outside``), with what mmdebstrap left in it if it was killed.

    Its temporary root belongs to the user's subordinate uids, so it is deleted as them, in a user namespace of
    mmdebstrap's (`--unshare-helper`), which can delete nothing but theirs; the rest is the user's own. An entry of
    another user's is left, and the directory with it.
    """
    made = _recorded(record)
    if made is None:
        return None
    mounted = mounts_under(made)
    if mounted:
        return f"kept {made}: {mounted[-1]} is mounted there (hint: `umount --lazy` it, then delete {made} as root)"
    for entry in sorted(made.iterdir()):
        info = entry.lstat()
        if info.st_uid == os.geteuid():
            if stat.S_ISDIR(info.st_mode):
                _remove_tree(entry, info.st_dev)
            else:
                entry.unlink()
        elif _MMDEBSTRAP_ROOT.fullmatch(entry.name) and stat.S_ISDIR(info.st_mode):
            problem = _remove_as_subordinate(entry)
            if problem:
                return problem
    try:
        made.rmdir()
    except OSError as exc:
        return f"could not remove {made}: {exc.strerror} (hint: what is left there is not yours; remove it as root)"
    return None


def _recorded(record: Path) -> Path | None:
    """The directory ``record`` names, if it is there and is one that ``outside`` made. The record is in the user's
    own directory, but what is deleted is checked all the same: a real directory of the user's, of that name,
    directly in a sticky directory. Anything else is left alone."""
    try:
        made = Path(record.read_text(encoding="utf-8").strip())
        info = made.lstat()
        sticky = made.parent.stat().st_mode & stat.S_ISVTX
    except FileNotFoundError:
        return None
    if (
        made.is_absolute()
        and _OUTSIDE_NAME.fullmatch(made.name)
        and stat.S_ISDIR(info.st_mode)
        and info.st_uid == os.geteuid()
        and sticky
    ):
        return made
    return None


def _remove_as_subordinate(root: Path) -> str | None:
    """Delete mmdebstrap's temporary root ``root`` as the root of its user namespace, whose files they are."""
    try:
        removal = subprocess.run(
            ["mmdebstrap", "--unshare-helper", "rm", "--recursive", "--force", "--one-file-system", "--", str(root)],
            capture_output=True,
            text=True,
            errors="replace",
            check=False,
        )
        said = (removal.stderr.strip().splitlines() or [f"exit {removal.returncode}"])[-1]
    except OSError as exc:
        said = f"mmdebstrap: {exc.strerror}"
    if root.exists():
        return (
            f"could not remove {root}, the temporary root of an image build that was stopped: {said} (hint: its "
            "files belong to your subordinate uids; remove it as root)"
        )
    return None
