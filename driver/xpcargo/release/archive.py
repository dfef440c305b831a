"""Byte-reproducible `.tar.gz` and `.zip` archives: the same files give the same bytes, whoever packs them, wherever,
whenever.

What a tar and a gzip stream would otherwise take from the machine is fixed: names in sorted order, every mtime
SOURCE_DATE_EPOCH, owner and group 0 with empty names, modes 0755 for directories and executables and 0644 for
other files, the ustar format (no PAX headers with access times), and a gzip header with no file name and mtime 0.
A zip (a Windows target's) is the same: members in sorted order, each deflated at level 9, its DOS time
SOURCE_DATE_EPOCH's (in UTC, no earlier than 1980, which DOS time cannot say), Unix modes as for the tar, no extra
fields, no comments, no data descriptors.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xpcargo import files
from xpcargo.errors import ProjectError

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


# A member name that extracts where it says on every system: relative, `/`-separated, no `..`, no drive or stream
# (`:`), no backslash (a separator on Windows: `..\\x.exe`), no control characters.
_BAD_ZIP_NAME = re.compile(r"^/|\\|:|[\x00-\x1f\x7f]|(^|/)\.\.?(/|$)|//|/$")
# "Made by" Unix, so that unzip applies the modes in the external attributes.
_UNIX = 3
_S_IFREG = 0o100000
_DOS_FIRST = datetime.datetime(1980, 1, 1, tzinfo=datetime.timezone.utc)
_DOS_LAST = datetime.datetime(2107, 12, 31, 23, 59, 58, tzinfo=datetime.timezone.utc)


def zip_bytes(members: Sequence[Member], *, mtime: int) -> bytes:
    """The archive: ``members`` at its top (a Windows release's `.zip` has no directory of its own).

    ``zipfile`` writes each member from a ZipInfo made here, never from the file's own time or mode: sorted names,
    deflate at level 9, the DOS time of SOURCE_DATE_EPOCH (UTC, clamped to what DOS time can say), Unix modes as
    for the tar. Written to memory, it adds no data descriptors and, below 4 GiB, no extra fields."""
    ordered = sorted(members, key=lambda member: member.name)
    names = [member.name for member in ordered]
    if len(set(names)) != len(names):
        raise ProjectError(f"two files would be packed as one name in a zip: {names}", hint="name them apart")
    moment = min(max(datetime.datetime.fromtimestamp(mtime, datetime.timezone.utc), _DOS_FIRST), _DOS_LAST)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", allowZip64=False) as archive:
        for member in ordered:
            info = zipfile.ZipInfo(_zip_name(member), date_time=moment.timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = _UNIX
            info.external_attr = (_S_IFREG | (_EXECUTABLE if member.executable else _REGULAR)) << 16
            data = member.data if member.data is not None else member.source.read_bytes()
            try:
                archive.writestr(info, data, compresslevel=9)
            except zipfile.LargeZipFile:
                raise ProjectError(f"{member.source} is too big for a zip", hint="pack it as a .tar.gz") from None
    return packed.getvalue()


def _zip_name(member: Member) -> str:
    if not member.name or _BAD_ZIP_NAME.search(member.name):
        raise ProjectError(
            f"refusing to pack {member.source} as {member.name!r}: unzip would not put it where the name says",
            hint="a member of a zip is a relative name without `..`, `\\`, `:` or control characters",
        )
    return member.name


def write_atomically(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` as a release file (its directory made, mode 0644; readers see the old file or the
    new one, never half of one: ``files.write_atomically``); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomically(path, data, mode=_REGULAR)
    return hashlib.sha256(data).hexdigest()


def sha256_sums(digests: dict[str, str]) -> str:
    """GNU `sha256sum` format, sorted by name: `<hex>  <name>` (two spaces: text mode)."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
