"""What the host shows at a bind mount's source: part of a warm container's key (``warm.key``), and checked again by
a replayed build (``xpcargo.replay``), which imports nothing else of xpcargo's. On ``os`` alone, for that reason."""

from __future__ import annotations

import os

MOUNT_TABLE = "/proc/self/mountinfo"


def read_mount_table() -> str | None:
    try:
        with open(MOUNT_TABLE, encoding="utf-8", errors="surrogateescape") as table:  # noqa: PTH123 - no pathlib here
            return table.read()
    except OSError:
        return None


def host_view(source: str, mount_table: str | None) -> list[object]:
    """What the host shows at a bind mount's source now: the identity of the directory, where it really is, and
    every mount of the host's at, under or above it. A bind mount pins what was there when the container started;
    a directory deleted and made again, a link put in a path's place, or a file system mounted over the target dir
    inside the workspace changes this, and the container no longer shows what the host does. The host's other
    mounts (another container's, started meanwhile) do not."""
    try:
        status = os.stat(source)  # noqa: PTH116
        real = os.path.realpath(source)
    except OSError:
        return []
    identity: list[object] = [status.st_dev, status.st_ino, real]
    if mount_table is None:
        return identity
    covering = []
    for line in mount_table.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = os.path.normpath(_unescape(fields[4]))
        if _within(point, real) or _within(real, point):
            # Mount id, device and the root of the mount within it: a new mount at the same place differs.
            covering.append(" ".join((fields[0], fields[2], _unescape(fields[3]), point)))
    return [*identity, sorted(covering)]


def _within(path: str, directory: str) -> bool:
    """``Path(path).is_relative_to(directory)`` for normalized absolute paths."""
    return directory in (path, "/") or path.startswith(directory + "/")


def _unescape(field: str) -> str:
    """A path as /proc/self/mountinfo writes it: space, tab, newline and backslash as octal escapes."""
    for escaped, plain in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(escaped, plain)
    return field
