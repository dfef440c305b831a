"""Byte-reproducible `.tar.gz` archives: the same files give the same bytes, whoever packs them, wherever, whenever.

What a tar and a gzip stream would otherwise take from the machine is fixed: names in sorted order, every mtime
SOURCE_DATE_EPOCH, owner and group 0 with empty names, modes 0755 for directories and executables and 0644 for
other files, the ustar format (no PAX headers with access times), and a gzip header with no file name and mtime 0.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xpcargo import files

_EXECUTABLE = 0o755
_REGULAR = 0o644


@dataclass(frozen=True, kw_only=True)
class Member:
    """A file to pack: its name inside the archive's top directory, where it is now, and whether it runs."""

    name: str
    source: Path
    # The content, when the caller has read it already (from a descriptor it checked): then ``source`` is only its
    # name in messages.
    data: bytes | None = None
    executable: bool = False


def tar_gz_bytes(top: str, members: Sequence[Member], *, mtime: int) -> bytes:
    """The archive: one directory ``top`` holding ``members``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        directories = {top}
        for member in members:
            parts = Path(member.name).parts
            directories.update("/".join([top, *parts[:index]]) for index in range(1, len(parts)))
        entries: list[tuple[str, Member | None]] = [(name, None) for name in directories]
        entries += [(f"{top}/{member.name}", member) for member in members]
        for name, file in sorted(entries, key=lambda entry: entry[0]):
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if file is None:
                info.type = tarfile.DIRTYPE
                info.mode = _EXECUTABLE
                tar.addfile(info)
                continue
            data = file.data if file.data is not None else file.source.read_bytes()
            info.size = len(data)
            info.mode = _EXECUTABLE if file.executable else _REGULAR
            tar.addfile(info, io.BytesIO(data))
    packed = io.BytesIO()
    # No name and mtime 0 in the gzip header; level 9 fixes the header's XFL byte too.
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, compresslevel=9, mtime=0) as stream:
        stream.write(raw.getvalue())
    return packed.getvalue()


def write_atomically(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` as a release file (its directory made, mode 0644; readers see the old file or the
    new one, never half of one: ``files.write_atomically``); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomically(path, data, mode=_REGULAR)
    return hashlib.sha256(data).hexdigest()


def sha256_sums(digests: dict[str, str]) -> str:
    """GNU `sha256sum` format, sorted by name: `<hex>  <name>` (two spaces: text mode)."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
