"""Byte-reproducible `.tar.gz` and `.zip` archives: the same files give the same bytes, whoever packs them, wherever,
whenever.

What a tar and a gzip stream would otherwise take from the machine is fixed: names in sorted order, every mtime
SOURCE_DATE_EPOCH, owner and group 0 with empty names, modes 0755 for directories and executables and 0644 for
other files, the ustar format (no PAX headers with access times), and a gzip header with no file name and mtime 0.
A zip (a Windows target's) is written here byte by byte rather than by ``zipfile``, which takes a member's time and
mode from the file and may add extra fields: members in sorted order, each deflated at level 9, its DOS time
SOURCE_DATE_EPOCH's (in UTC, no earlier than 1980, which DOS time cannot say), Unix modes as for the tar, no extra
fields, no comments, no data descriptors.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import re
import struct
import tarfile
import zlib
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


# Version 2.0 of the format (deflate); "made by" Unix (3), so that unzip applies the modes in the external attributes.
_ZIP_VERSION = 20
_ZIP_MADE_BY = (3 << 8) | _ZIP_VERSION
_DEFLATED = 8
# General purpose flag bit 11: the name is UTF-8.
_UTF8_NAME = 0x0800
_S_IFREG = 0o100000
# What a zip without ZIP64 records can hold.
_ZIP_LIMIT = 0xFFFFFFFF
# A member name that extracts where it says on every system: relative, `/`-separated, no `..`, no drive or stream
# (`:`), no backslash (a separator on Windows: `..\x.exe`), no control characters.
_BAD_ZIP_NAME = re.compile(r"^/|\\|:|[\x00-\x1f\x7f]|(^|/)\.\.?(/|$)|//|/$")


def zip_bytes(members: Sequence[Member], *, mtime: int) -> bytes:
    """The archive: ``members`` at its top (a Windows release's `.zip` has no directory of its own)."""
    time, date = _dos_time(mtime)
    out = io.BytesIO()
    central = io.BytesIO()
    ordered = sorted(members, key=lambda member: member.name)
    names = [member.name for member in ordered]
    if len(set(names)) != len(names):
        raise ProjectError(f"two files would be packed as one name in a zip: {names}", hint="name them apart")
    for member in ordered:
        name = _zip_name(member)
        data = member.data if member.data is not None else member.source.read_bytes()
        compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
        packed = compressor.compress(data) + compressor.flush()
        crc = zlib.crc32(data)
        offset = out.tell()
        if max(len(data), len(packed), offset) > _ZIP_LIMIT:
            raise ProjectError(f"{member.source} is too big for a zip without ZIP64", hint="pack it as a .tar.gz")
        flags = 0 if name.isascii() else _UTF8_NAME
        encoded = name.encode()
        sizes = (crc, len(packed), len(data), len(encoded))
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, _ZIP_VERSION, flags, _DEFLATED, time, date, *sizes, 0))
        out.write(encoded)
        out.write(packed)
        mode = _S_IFREG | (_EXECUTABLE if member.executable else _REGULAR)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                _ZIP_MADE_BY,
                _ZIP_VERSION,
                flags,
                _DEFLATED,
                time,
                date,
                *sizes,
                0,  # extra field length
                0,  # comment length
                0,  # disk number
                0,  # internal attributes
                mode << 16,
                offset,
            )
        )
        central.write(encoded)
    start = out.tell()
    directory = central.getvalue()
    if start + len(directory) > _ZIP_LIMIT:
        raise ProjectError("the zip would be too big without ZIP64", hint="pack it as a .tar.gz")
    out.write(directory)
    count = len(ordered)
    out.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, count, count, len(directory), start, 0))
    return out.getvalue()


def _zip_name(member: Member) -> str:
    if not member.name or _BAD_ZIP_NAME.search(member.name):
        raise ProjectError(
            f"refusing to pack {member.source} as {member.name!r}: unzip would not put it where the name says",
            hint="a member of a zip is a relative name without `..`, `\\`, `:` or control characters",
        )
    return member.name


def _dos_time(epoch: int) -> tuple[int, int]:
    """SOURCE_DATE_EPOCH as a zip's DOS time and date (UTC, two-second steps, 1980 to 2107)."""
    moment = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc)
    moment = min(max(moment, datetime.datetime(1980, 1, 1, tzinfo=datetime.timezone.utc)), _DOS_LAST)
    time = (moment.hour << 11) | (moment.minute << 5) | (moment.second // 2)
    date = ((moment.year - 1980) << 9) | (moment.month << 5) | moment.day
    return time, date


_DOS_LAST = datetime.datetime(2107, 12, 31, 23, 59, 58, tzinfo=datetime.timezone.utc)


def write_atomically(path: Path, data: bytes) -> str:
    """Write ``data`` to ``path`` as a release file (its directory made, mode 0644; readers see the old file or the
    new one, never half of one: ``files.write_atomically``); return its sha256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_atomically(path, data, mode=_REGULAR)
    return hashlib.sha256(data).hexdigest()


def sha256_sums(digests: dict[str, str]) -> str:
    """GNU `sha256sum` format, sorted by name: `<hex>  <name>` (two spaces: text mode)."""
    return "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
