"""Files between this machine and a remote engine's volumes, as tar streams: the way in by content, the way back by
what the container lists.

The way in: each volume has a manifest in xpcargo's cache (`<cache>/volumes/<volume>.json`: per path its type, size,
mtime, mode and sha256) of what was last sent into it, valid while the volume is the one the engine made then (its
creation time is kept too). A file whose size, mtime and mode are unchanged is not read; one whose stat changed is
hashed, and sent only when its content or mode did change. Paths gone from the host are removed from the volume.
Symbolic links travel as links, never followed (a project's `evil -> ~/.ssh/id_rsa` stays a dangling link);
sockets, devices and FIFOs never travel.

The way back: the container lists the files asked for (size and mtime), and only those that differ from the host's
copy come back, each checked to be a regular file under a directory the build may write to, and written without
following any symbolic link on the host.

Pure apart from the file system: the engine is reached through the callers' sessions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tarfile
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Literal

from xpcargo.hashing import file_sha256

Kind = Literal["f", "d", "l"]


@dataclass(frozen=True)
class Entry:
    """One path as it was sent: a file (with its sha256), a directory, or a symbolic link (with its target)."""

    kind: Kind
    size: int
    mtime_ns: int
    mode: int
    # A file's sha256, a link's target, "" for a directory.
    content: str = ""

    def as_json(self) -> list[object]:
        return [self.kind, self.size, self.mtime_ns, self.mode, self.content]

    @classmethod
    def from_json(cls, value: object) -> Entry | None:
        if not isinstance(value, list) or len(value) != 5:
            return None
        kind, size, mtime, mode, content = value
        if kind not in ("f", "d", "l") or not all(isinstance(n, int) for n in (size, mtime, mode)):
            return None
        return cls(kind=kind, size=size, mtime_ns=mtime, mode=mode, content=str(content))


@dataclass(frozen=True, kw_only=True)
class Selection:
    """What of a host directory a volume mirrors: all of it but ``exclude`` (absolute paths), or only the files
    ``only`` names (relative paths)."""

    root: Path
    exclude: tuple[Path, ...] = ()
    only: tuple[str, ...] | None = None


def walk(selection: Selection) -> dict[str, os.stat_result]:
    """Every directory, regular file and symbolic link of the selection, by path relative to its root (no `.`)."""
    found: dict[str, os.stat_result] = {}
    if selection.only is not None:
        for name in selection.only:
            path = selection.root / name
            with contextlib.suppress(OSError):
                status = path.lstat()
                if stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode):
                    for parent in reversed(Path(name).parents[:-1]):
                        found[str(parent)] = (selection.root / parent).lstat()
                    found[name] = status
        return found
    excluded = {str(path) for path in selection.exclude}
    pending = [selection.root]
    while pending:
        directory = pending.pop()
        try:
            children = list(os.scandir(directory))
        except OSError:
            continue
        for child in children:
            if child.path in excluded:
                continue
            try:
                status = child.stat(follow_symlinks=False)
            except OSError:
                continue
            if not (stat.S_ISDIR(status.st_mode) or stat.S_ISREG(status.st_mode) or stat.S_ISLNK(status.st_mode)):
                continue
            found[os.path.relpath(child.path, selection.root)] = status
            if stat.S_ISDIR(status.st_mode):
                pending.append(Path(child.path))
    return found


def _kind(status: os.stat_result) -> Kind:
    if stat.S_ISDIR(status.st_mode):
        return "d"
    return "l" if stat.S_ISLNK(status.st_mode) else "f"


@dataclass(frozen=True, kw_only=True)
class Changes:
    """What a volume lacks of its selection: paths to send (parents first), paths to remove first, and the
    manifest it has once both are done."""

    send: tuple[str, ...]
    remove: tuple[str, ...]
    manifest: Mapping[str, Entry]


def diff(selection: Selection, previous: Mapping[str, Entry]) -> Changes:
    """Compare the host's selection with what the volume was last sent."""
    current = walk(selection)
    send: list[str] = []
    remove: list[str] = []
    manifest: dict[str, Entry] = {}
    for name in sorted(current):
        status = current[name]
        kind = _kind(status)
        mode = stat.S_IMODE(status.st_mode) & 0o777
        old = previous.get(name)
        entry = Entry(kind=kind, size=status.st_size if kind == "f" else 0, mtime_ns=status.st_mtime_ns, mode=mode)
        if kind == "d":
            unchanged = old is not None and old.kind == "d" and old.mode == mode
        elif kind == "l":
            try:
                entry = Entry(
                    kind="l",
                    size=0,
                    mtime_ns=status.st_mtime_ns,
                    mode=0o777,
                    content=str((selection.root / name).readlink()),
                )
            except OSError:
                continue
            unchanged = old is not None and old.kind == "l" and old.content == entry.content
        elif (
            old is not None
            and old.kind == "f"
            and (old.size, old.mtime_ns, old.mode) == (entry.size, entry.mtime_ns, mode)
        ):
            entry, unchanged = old, True
        else:
            try:
                entry = Entry(
                    kind="f",
                    size=status.st_size,
                    mtime_ns=status.st_mtime_ns,
                    mode=mode,
                    content=file_sha256(selection.root / name),
                )
            except OSError:
                continue
            unchanged = old is not None and old.kind == "f" and (old.content, old.mode) == (entry.content, mode)
        if old is not None and old.kind != kind:
            remove.append(name)
        if not unchanged:
            send.append(name)
        manifest[name] = entry
    gone = sorted(name for name in previous if name not in manifest)
    # A removed directory takes its contents with it: only the topmost of each removed tree is named.
    for name in gone:
        if not any(name.startswith(f"{top}/") for top in remove):
            remove.append(name)
    return Changes(send=tuple(send), remove=tuple(remove), manifest=manifest)


@dataclass(frozen=True)
class Manifest:
    """What a volume was last sent, kept on this machine."""

    path: Path

    def load(self, volume_created: str) -> dict[str, Entry]:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return {}
        if not volume_created or not isinstance(document, dict) or document.get("created") != volume_created:
            # Another volume of the same name (removed and made again): it holds nothing of what was sent.
            return {}
        entries = document.get("entries")
        loaded = {}
        for name, value in entries.items() if isinstance(entries, dict) else ():
            entry = Entry.from_json(value)
            if entry is not None and isinstance(name, str):
                loaded[name] = entry
        return loaded

    def save(self, volume_created: str, entries: Mapping[str, Entry]) -> None:
        """Atomically; a manifest that cannot be written only costs sending everything again next time."""
        document = {"created": volume_created, "entries": {name: e.as_json() for name, e in sorted(entries.items())}}
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            temporary.write_text(json.dumps(document), encoding="utf-8")
            temporary.replace(self.path)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def write_tar(
    destination: IO[bytes], *, selection: Selection, top: str, names: Iterable[str], owner: tuple[int, int]
) -> None:
    """The paths ``names`` of the selection as a tar under the directory ``top`` (the volume's own directory, whose
    entry comes first: unpacked over the mount point, it gives the volume's root to ``owner``)."""
    uid, gid = owner
    with tarfile.open(fileobj=destination, mode="w", format=tarfile.PAX_FORMAT) as archive:
        root = tarfile.TarInfo(top)
        root.type, root.mode, root.uid, root.gid = tarfile.DIRTYPE, 0o755, uid, gid
        with contextlib.suppress(OSError):
            root.mode = stat.S_IMODE(selection.root.stat().st_mode) & 0o777
        archive.addfile(root)
        for name in names:
            path = selection.root / name
            try:
                status = path.lstat()
            except OSError:
                continue
            info = tarfile.TarInfo(f"{top}/{name}")
            info.uid, info.gid = uid, gid
            info.mode = stat.S_IMODE(status.st_mode) & 0o777
            info.mtime = status.st_mtime
            if stat.S_ISDIR(status.st_mode):
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            elif stat.S_ISLNK(status.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, str(path.readlink())
                archive.addfile(info)
            elif stat.S_ISREG(status.st_mode):
                with path.open("rb") as stream:
                    # The size read now: a file that grows meanwhile is sent as it was when stat'ed.
                    info.size = status.st_size
                    archive.addfile(info, _Exactly(stream, status.st_size))


class _Exactly(io.RawIOBase):
    """``size`` bytes of a stream: a file that shrank since it was stat'ed is padded, one that grew is cut."""

    def __init__(self, stream: IO[bytes], size: int) -> None:
        self._stream, self._left = stream, size

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        chunk = self._stream.read(want)
        chunk += b"\0" * (want - len(chunk))
        self._left -= len(chunk)
        return chunk


# --- the way back -------------------------------------------------------------------------------------------------

# argv: the paths. Prints `size mtime path\0` for each regular file at or under them, symbolic links not followed.
LIST_SCRIPT = r"""find "$@" -type f -printf '%s %T@ %p\0' 2>/dev/null; exit 0"""


@dataclass(frozen=True, kw_only=True)
class Listed:
    path: Path
    size: int
    mtime_ns: int


def read_listing(output: bytes) -> list[Listed]:
    listed = []
    for record in output.split(b"\0"):
        size, _, rest = record.partition(b" ")
        mtime, _, path = rest.partition(b" ")
        try:
            seconds = Decimal(mtime.decode("ascii"))
            listed.append(Listed(path=Path(os.fsdecode(path)), size=int(size), mtime_ns=int(seconds * 1_000_000_000)))
        except (ValueError, InvalidOperation, UnicodeDecodeError):
            continue
    return listed


def _allowed(path: Path, roots: Sequence[Path]) -> Path | None:
    """The root ``path`` is under, if it is a plain absolute path under one (no `..`, no `.`)."""
    if not path.is_absolute() or any(part in ("..", ".") for part in path.parts) or str(path) != os.path.normpath(path):
        return None
    return next((root for root in roots if path.is_relative_to(root) and path != root), None)


def stale(listed: Iterable[Listed], roots: Sequence[Path], asked: Sequence[Path]) -> list[Listed]:
    """The listed files, at or under a path ``asked`` and under ``roots``, whose host copy is missing or differs in
    size or mtime."""
    wanted = []
    for item in listed:
        if _allowed(item.path, roots) is None or not any(item.path.is_relative_to(path) for path in asked):
            continue
        try:
            status = item.path.lstat()
        except OSError:
            wanted.append(item)
            continue
        if not stat.S_ISREG(status.st_mode) or (status.st_size, status.st_mtime_ns) != (item.size, item.mtime_ns):
            wanted.append(item)
    return wanted


@dataclass
class Received:
    files: int = 0
    bytes: int = 0
    refused: list[str] = field(default_factory=list)


def _directory_under(root: Path, directory: Path) -> bool:
    """Make ``directory`` (under ``root``) as real directories, refusing any symbolic link or file on the way."""
    current = root
    for part in directory.relative_to(root).parts:
        current = current / part
        try:
            status = current.lstat()
        except FileNotFoundError:
            try:
                current.mkdir()
            except FileExistsError:
                status = current.lstat()
            else:
                continue
        if not stat.S_ISDIR(status.st_mode):
            return False
    return True


def unpack(archive: IO[bytes], expected: Mapping[Path, Listed], roots: Sequence[Path]) -> Received:
    """The regular files of ``archive`` (a tar of absolute names) that ``expected`` lists, each written under its
    root through real directories only, and given the mtime the container listed."""
    received = Received()
    with tarfile.open(fileobj=archive, mode="r|") as stream:
        for member in stream:
            path = Path("/" + member.name.lstrip("/"))
            item = expected.get(path)
            root = _allowed(path, roots)
            if not member.isreg() or item is None or root is None:
                received.refused.append(member.name)
                continue
            try:
                root.mkdir(parents=True, exist_ok=True)
                placed = _directory_under(root, path.parent) and not path.is_dir()
            except OSError:
                placed = False
            source = stream.extractfile(member) if placed else None
            if source is None:
                # Not a place a file may go (a directory where the engine has a file, a path through a link, one
                # that cannot be made): that file does not come back, and the rest still does.
                received.refused.append(member.name)
                continue
            try:
                descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".xpcargo")
            except OSError:
                received.refused.append(member.name)
                continue
            try:
                with os.fdopen(descriptor, "wb") as out:
                    while chunk := source.read(1 << 20):
                        out.write(chunk)
                    os.fchmod(out.fileno(), member.mode & 0o755)
                os.utime(temporary, ns=(item.mtime_ns, item.mtime_ns))
                # A rename replaces whatever is at the path (a symbolic link too) without following it.
                Path(temporary).replace(path)
            except BaseException:
                Path(temporary).unlink(missing_ok=True)
                raise
            received.files += 1
            received.bytes += member.size
    return received
