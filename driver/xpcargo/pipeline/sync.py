"""Files between this machine and a remote engine's volumes, as tar streams: the way in by content, the way back by
what the container lists.

The way in: each volume has a manifest in xpcargo's cache (`<cache>/volumes/<volume>.json`: per path its type, size,
mtime, mode and sha256) of what was last sent into it, valid while the volume is the one the engine made then (its
creation time is kept too). A file whose size, mtime and mode are unchanged is not read; one whose stat changed is
hashed, and sent only when its content or mode did change. Paths gone from the host are removed from the volume.
Symbolic links travel as links, never followed (a project's `evil -> ~/.ssh/id_rsa` stays a dangling link);
sockets, devices and FIFOs never travel.

The volume's own tree: a command may change a volume it mounts writable (a build script writing into the workspace).
Right after each sync the volume's tree is listed (kind, size, mtime, ctime, inode, mode, link target: a build can
set a file's size and mtime back, not its ctime) and kept in the manifest; before each step a listing through the
step's own container is compared with it, and a volume that differs is synced again: what the host does not have is
removed, what changed is sent again (a changed directory with all it holds), so the next step sees the host's files.

The way back: the container lists the files asked for (size and mtime), and only those that differ from the host's
copy come back, each checked to be a regular file under a directory the build may write to, and written through
directory descriptors opened one by one from a directory the user chose (the workspace), never through a symbolic
link on the host: into a temporary file beside it, renamed over the old one.

Pure apart from the file system: the engine is reached through the callers' sessions.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import secrets
import shlex
import stat
import tarfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Literal

from xpcargo.files import write_atomically
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
    manifest it has once both are done. ``reset`` names what of those the volume itself changed (not the host)."""

    send: tuple[str, ...]
    remove: tuple[str, ...]
    manifest: Mapping[str, Entry]
    reset: tuple[str, ...] = ()


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


# --- the volume's own tree ------------------------------------------------------------------------------------------

# What a listing says of one path in a volume: its kind (find's %y) and what changes whenever anything rewrites it.
# A file's ctime and inode are in it because a build can set size and mtime back (`touch -r`), not those; a
# directory's size and times change with its entries, which are listed themselves.
Signature = tuple[str, ...]

_TREE_FIELDS = 8


def _tree_format(path: str) -> str:
    return rf"%y\0%s\0%T@\0%C@\0%i\0%m\0{path}\0%l\0"


def _signature(record: Sequence[str]) -> Signature:
    """A listed record's signature: ``record`` is find's kind, size, mtime, ctime, inode, mode, name and link."""
    kind, size, mtime, ctime, inode, mode, _, link = record
    if kind == "d":
        return ("d", mode, inode)
    if kind == "f":
        return ("f", size, mtime, ctime, inode, mode)
    if kind == "l":
        return ("l", link)
    # A socket, FIFO or device a build made: never sent, so never expected.
    return (kind, inode)


@dataclass(frozen=True, kw_only=True)
class Tree:
    """One volume's tree as a container that mounts it at ``root`` lists it: all of it but ``skipped`` (relative
    paths where another volume is mounted or that the selection leaves out, listed neither themselves nor below),
    or only the paths ``only`` names (with their parent directories)."""

    root: Path
    only: tuple[str, ...] | None = None
    skipped: tuple[str, ...] = ()

    def names(self) -> tuple[str, ...]:
        """The paths an ``only`` tree lists."""
        named: set[str] = set()
        for name in self.only or ():
            named.add(name)
            named.update(str(parent) for parent in Path(name).parents[:-1])
        return tuple(sorted(named))


def _glob_quoted(path: str) -> str:
    """``path`` as find's -path matches it literally (a name may hold `*`, `?`, `[` or a backslash)."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in path)


def tree_script(trees: Sequence[Tree]) -> str:
    """One shell command that lists each tree in turn, after a `@<index>` field, symbolic links not followed."""
    parts = []
    for index, tree in enumerate(trees):
        parts.append(f"printf '@{index}\\0'")
        root = shlex.quote(str(tree.root))
        if tree.only is None:
            pruned = " -o ".join(f"-path {shlex.quote(_glob_quoted(str(tree.root / n)))}" for n in tree.skipped)
            prune = f"\\( {pruned} \\) -prune -o " if pruned else ""
            parts.append(f"find -P {root} -mindepth 1 {prune}-printf {shlex.quote(_tree_format('%P'))} 2>/dev/null")
        elif tree.names():
            names = " ".join(shlex.quote(f"./{name}") for name in tree.names())
            listing = f"find -P {names} -maxdepth 0 -printf {shlex.quote(_tree_format('%p'))} 2>/dev/null"
            parts.append(f"(cd {root} && {listing})")
    return "; ".join([*parts, "exit 0"])


def read_tree(output: bytes) -> dict[int, dict[str, Signature]]:
    """What ``tree_script`` printed: each tree's paths (relative to its root) with their signatures."""
    fields = output.split(b"\0")
    trees: dict[int, dict[str, Signature]] = {}
    current: dict[str, Signature] | None = None
    position = 0
    while position < len(fields):
        head = fields[position]
        if head.startswith(b"@"):
            try:
                current = trees.setdefault(int(head[1:]), {})
            except ValueError:
                return trees
            position += 1
            continue
        record = [os.fsdecode(part) for part in fields[position : position + _TREE_FIELDS]]
        position += _TREE_FIELDS
        if len(record) < _TREE_FIELDS or current is None:
            break
        name = record[6].removeprefix("./")
        if name and name != ".":
            current[name] = _signature(record)
    return trees


def _topmost(names: Iterable[str]) -> list[str]:
    """The names that are not under another of them."""
    kept: list[str] = []
    for name in sorted(names):
        if not any(name.startswith(f"{top}/") for top in kept):
            kept.append(name)
    return kept


def reconcile(changes: Changes, tree: Mapping[str, Signature] | None, listed: Mapping[str, Signature]) -> Changes:
    """``changes`` (what the host changed since the volume was sent) widened by what the volume itself changed since
    it was last listed (``tree``; None: nothing in it is trusted) as it is listed now (``listed``): what the host
    does not have is removed; a file or link that changed is sent again; a directory that changed (or whose kind
    did) is removed and sent again with all it holds, since a changed directory may hide what is in it."""
    wanted = changes.manifest
    send = set(changes.send)
    remove = {name for name in listed if name not in wanted}
    for name, entry in wanted.items():
        now = listed.get(name)
        if tree is not None and now == tree.get(name):
            continue
        send.add(name)
        if now is not None and (now[0] != entry.kind or entry.kind == "d"):
            remove.add(name)
    removed_trees = _topmost(remove)
    for name in wanted:
        if any(name == top or name.startswith(f"{top}/") for top in removed_trees):
            send.add(name)
    reset = sorted((send - set(changes.send)) | (set(removed_trees) - set(changes.remove)))
    return Changes(
        send=tuple(sorted(send)),
        remove=tuple(_topmost([*changes.remove, *removed_trees])),
        manifest=wanted,
        reset=tuple(reset),
    )


@dataclass(frozen=True, kw_only=True)
class Known:
    """What this machine knows of a volume: what it was last sent (``entries``) and how the volume's own tree
    looked right after (``tree``, None when never listed: then nothing in it is trusted)."""

    entries: Mapping[str, Entry] = field(default_factory=dict)
    tree: Mapping[str, Signature] | None = None


@dataclass(frozen=True)
class Manifest:
    """What a volume was last sent, kept on this machine."""

    path: Path

    def load(self, volume_created: str | None) -> Known:
        """What is known of the volume made at ``volume_created`` (None: of whichever volume the manifest was kept
        for, which only a comparison of listings may use: another volume's tree never lists the same)."""
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return Known()
        if not isinstance(document, dict) or (
            volume_created is not None and (not volume_created or document.get("created") != volume_created)
        ):
            # Another volume of the same name (removed and made again): it holds nothing of what was sent.
            return Known()
        entries = document.get("entries")
        loaded = {}
        for name, value in entries.items() if isinstance(entries, dict) else ():
            entry = Entry.from_json(value)
            if entry is not None and isinstance(name, str):
                loaded[name] = entry
        tree = document.get("tree")
        if not isinstance(tree, dict) or not all(
            isinstance(v, list) and all(isinstance(part, str) for part in v) for v in tree.values()
        ):
            return Known(entries=loaded)
        return Known(entries=loaded, tree={str(name): tuple(value) for name, value in tree.items()})

    def save(self, volume_created: str, entries: Mapping[str, Entry], tree: Mapping[str, Signature]) -> None:
        """Atomically; a manifest that cannot be written only costs sending everything again next time."""
        document = {
            "created": volume_created,
            "entries": {name: e.as_json() for name, e in sorted(entries.items())},
            "tree": {name: list(signature) for name, signature in sorted(tree.items())},
        }
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(document))

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


@dataclass(frozen=True, kw_only=True)
class Destination:
    """A directory files may come back to (``path``), reached from ``anchor`` (a directory the user chose: the
    workspace, or a target dir outside it, opened as it is) without following any link below that."""

    path: Path
    anchor: Path


_DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_directory(name: str, parent: int) -> int | None:
    """``name`` in the directory ``parent`` as a real directory (made when missing), never through a link."""
    try:
        return os.open(name, _DIRECTORY_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError:
        # A link (ELOOP), a file (ENOTDIR), or not readable.
        return None
    try:
        os.mkdir(name, 0o755, dir_fd=parent)
    except FileExistsError:
        pass
    except OSError:
        return None
    try:
        return os.open(name, _DIRECTORY_FLAGS, dir_fd=parent)
    except OSError:
        return None


class _Directories:
    """Descriptors of the directories files come back to, each opened from its parent's: a link anywhere below a
    destination's anchor, on the host, ends the walk instead of leading it elsewhere."""

    def __init__(self) -> None:
        self._opened: dict[Path, int | None] = {}

    def get(self, directory: Path, destination: Destination) -> int | None:
        if directory in self._opened:
            return self._opened[directory]
        if directory == destination.anchor:
            try:
                destination.anchor.mkdir(parents=True, exist_ok=True)
                opened: int | None = os.open(destination.anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except OSError:
                opened = None
        elif not directory.is_relative_to(destination.anchor):
            opened = None
        else:
            parent = self.get(directory.parent, destination)
            opened = None if parent is None else _open_directory(directory.name, parent)
        self._opened[directory] = opened
        return opened

    def close(self) -> None:
        for descriptor in self._opened.values():
            if descriptor is not None:
                os.close(descriptor)
        self._opened.clear()


def _place(source: IO[bytes], directory: int, name: str, *, mode: int, mtime_ns: int) -> bool:
    """Write ``source`` as the file ``name`` in ``directory``: a temporary file beside it (made, never opened
    through a link), renamed over whatever is there (a link too, which the rename replaces, not follows). False
    when it cannot go there (a directory has the name)."""
    temporary = f".{name}.{secrets.token_hex(6)}.xpcargo"
    try:
        descriptor = os.open(
            temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=directory
        )
    except OSError:
        return False
    try:
        with os.fdopen(descriptor, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
            os.fchmod(out.fileno(), mode & 0o755)
            out.flush()
            os.utime(out.fileno(), ns=(mtime_ns, mtime_ns))
        os.rename(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        return False
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary, dir_fd=directory)
        raise
    return True


def unpack(archive: IO[bytes], expected: Mapping[Path, Listed], destinations: Sequence[Destination]) -> Received:
    """The regular files of ``archive`` (a tar of absolute names) that ``expected`` lists, each written under its
    destination through real directories only (opened one by one, never through a link), and given the mtime the
    container listed."""
    received = Received()
    roots = [destination.path for destination in destinations]
    directories = _Directories()
    try:
        with tarfile.open(fileobj=archive, mode="r|") as stream:
            for member in stream:
                path = Path("/" + member.name.lstrip("/"))
                item = expected.get(path)
                root = _allowed(path, roots)
                destination = next((d for d in destinations if d.path == root), None)
                directory = (
                    directories.get(path.parent, destination)
                    if member.isreg() and item is not None and destination is not None
                    else None
                )
                source = stream.extractfile(member) if directory is not None else None
                if (
                    directory is None
                    or source is None
                    or item is None
                    or not _place(source, directory, path.name, mode=member.mode, mtime_ns=item.mtime_ns)
                ):
                    # Not a place a file may go (a directory where the engine has a file, a path through a link,
                    # one that cannot be made): that file does not come back, and the rest still does.
                    received.refused.append(member.name)
                    continue
                received.files += 1
                received.bytes += member.size
    finally:
        directories.close()
    return received
