"""What an ELF file needs from glibc: the newest ``GLIBC_x.y`` symbol version among its version needs
(``.gnu.version_r``, the dynamic section's ``DT_VERNEED``), for 32- and 64-bit files of either byte order; and
whether it is linked statically (no interpreter and no ``DT_NEEDED`` library: a static-pie has a dynamic section
for its own relocations, and still needs nothing).

The file is untrusted: a build script can leave anything where an artifact should be. Every read is bounded by the
file's size and by caps on what is read, every chain has an end, and anything that does not parse is an
``ElfError`` with what was wrong, never another exception.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from xpcargo.files import NotRegularFileError, reading_regular

_MAGIC = b"\x7fELF"
_SHT_GNU_VERNEED = 0x6FFFFFFE
_PT_LOAD = 1
_PT_DYNAMIC = 2
_PT_INTERP = 3
_DT_NULL = 0
_DT_NEEDED = 1
_DT_STRTAB = 5
_DT_FLAGS_1 = 0x6FFFFFFB
_DF_1_PIE = 0x08000000
_ET_EXEC = 2
_ET_DYN = 3
_DT_VERNEED = 0x6FFFFFFE
_DT_VERNEEDNUM = 0x6FFFFFFF
# What a real file has by the thousands at most; more is a hostile file looping the reader.
_MAX_ENTRIES = 65536
_MAX_TABLE_BYTES = 16 << 20
_MAX_NAME_BYTES = 4096
_GLIBC_VERSION = re.compile(r"^GLIBC_([0-9]+(?:\.[0-9]+)+)$")
# Version needs that name no x.y but exist only from a glibc release on (relative relocations, glibc 2.36).
_GLIBC_ABI_SINCE = {"GLIBC_ABI_DT_RELR": "2.36"}

MACHINES = {
    3: "x86",
    8: "mips",
    20: "powerpc",
    21: "powerpc64",
    22: "s390x",
    40: "arm",
    62: "x86_64",
    183: "aarch64",
    243: "riscv",
    258: "loongarch",
}


class ElfError(Exception):
    """The file is not an ELF file, or not one this reader can make sense of."""


@dataclass(frozen=True, kw_only=True)
class ElfInfo:
    machine: str
    bits: int
    big_endian: bool
    # Whether the file has a dynamic section or asks for an interpreter (a static-pie has the first, for itself).
    dynamic: bool
    # Every version the file needs from a library: (library, version), in file order, each once.
    needs: tuple[tuple[str, str], ...]
    # Whether it asks for a program interpreter (PT_INTERP: the dynamic loader), and the libraries it needs
    # (DT_NEEDED), in file order.
    interpreter: bool = False
    needed: tuple[str, ...] = ()
    # Whether it is a program: ET_EXEC, or ET_DYN with an interpreter or the linker's DF_1_PIE mark (a PIE; a shared
    # library has neither).
    executable: bool = False

    @property
    def static(self) -> bool:
        """A statically linked program: nothing to load at run time, neither a loader nor a library (a static-pie
        too: its dynamic section is for its own relocations). A shared library that needs nothing is not one."""
        return self.executable and not self.interpreter and not self.needed

    @property
    def glibc(self) -> str | None:
        """The newest glibc the file needs (``2.34`` for ``GLIBC_2.34``), None when it needs no glibc version."""
        versions = [_glibc_version(name) for _, name in self.needs]
        known = [version for version in versions if version is not None]
        return max(known, key=version_key) if known else None


def version_key(version: str) -> tuple[int, ...]:
    """``2.9`` before ``2.17``."""
    return tuple(int(part) for part in version.split("."))


def _glibc_version(name: str) -> str | None:
    match = _GLIBC_VERSION.match(name)
    return match.group(1) if match else _GLIBC_ABI_SINCE.get(name)


Read = Callable[[int, int], bytes]


def inspect_bytes(data: bytes) -> ElfInfo:
    """``data`` as an ELF file."""

    def read(offset: int, size: int) -> bytes:
        return data[offset : offset + size]

    return _inspect(read, len(data))


def inspect_file(path: Path) -> ElfInfo:
    """The ELF file at ``path``: a regular file, never a FIFO or a device to block on; a symbolic link is followed."""
    try:
        with reading_regular(path) as (read, size):
            return _inspect(read, size)
    except NotRegularFileError:
        raise ElfError("not a regular file") from None
    except OSError as error:
        raise ElfError(f"cannot read it: {error.strerror or error}") from None


def glibc_needed(path: Path) -> str | None:
    """The newest glibc ``path`` needs, or None for a static, non-glibc, unreadable or non-ELF file."""
    try:
        return inspect_file(path).glibc
    except ElfError:
        return None


class _Reader:
    def __init__(self, read: Read, size: int, *, big_endian: bool, bits: int) -> None:
        self._read = read
        self.size = size
        self._order = ">" if big_endian else "<"
        self.bits = bits

    def bytes(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > self.size:
            raise ElfError(f"{what} lies outside the file ({offset}+{size} of {self.size} bytes)")
        data = self._read(offset, size)
        if len(data) != size:
            raise ElfError(f"{what} could not be read whole (the file changed under the reader?)")
        return data

    def unpack(self, layout: str, offset: int, what: str) -> tuple[int, ...]:
        fmt = self._order + layout
        return struct.unpack(fmt, self.bytes(offset, struct.calcsize(fmt), what))

    def string(self, table_offset: int, table_size: int, index: int) -> str:
        if not 0 <= index < table_size:
            raise ElfError(f"a name at {index} lies outside its string table of {table_size} bytes")
        start = table_offset + index
        length = min(table_size - index, _MAX_NAME_BYTES, self.size - start)
        data = self.bytes(start, max(length, 0), "a name")
        end = data.find(b"\0")
        if end < 0:
            raise ElfError("a name has no terminating NUL")
        return data[:end].decode("utf-8", "replace")


def _inspect(read: Read, size: int) -> ElfInfo:
    ident = read(0, 16)
    if len(ident) < 16 or ident[:4] != _MAGIC:
        raise ElfError("not an ELF file")
    bits = {1: 32, 2: 64}.get(ident[4])
    if bits is None:
        raise ElfError(f"unknown ELF class {ident[4]}")
    if ident[5] not in (1, 2):
        raise ElfError(f"unknown ELF data encoding {ident[5]}")
    reader = _Reader(read, size, big_endian=ident[5] == 2, bits=bits)
    if bits == 64:
        file_type, machine, phoff, shoff, phentsize, phnum, shentsize, shnum = _fields(
            reader.unpack("HHIQQQIHHHHHH", 16, "the ELF header"), (0, 1, 4, 5, 8, 9, 10, 11)
        )
    else:
        file_type, machine, phoff, shoff, phentsize, phnum, shentsize, shnum = _fields(
            reader.unpack("HHIIIIIHHHHHH", 16, "the ELF header"), (0, 1, 4, 5, 8, 9, 10, 11)
        )
    segments = _segments(reader, phoff, phentsize, phnum)
    dynamic = any(kind in (_PT_DYNAMIC, _PT_INTERP) for kind, *_ in segments)
    tags = _dynamic_tags(reader, segments)
    needs = _needs_from_sections(reader, shoff, shentsize, shnum)
    if needs is None:
        # No section headers (stripped with sstrip, say): the dynamic segment says the same.
        needs = _needs_from_dynamic(reader, segments, tags)
    interpreter = any(kind == _PT_INTERP for kind, *_ in segments)
    pie = any(tag == _DT_FLAGS_1 and value & _DF_1_PIE for tag, value in tags)
    return ElfInfo(
        machine=MACHINES.get(machine, f"machine {machine}"),
        bits=bits,
        big_endian=ident[5] == 2,
        dynamic=dynamic,
        needs=tuple(dict.fromkeys(needs)),
        interpreter=interpreter,
        needed=_needed(reader, segments, tags),
        executable=file_type == _ET_EXEC or (file_type == _ET_DYN and (interpreter or pie)),
    )


def _fields(values: tuple[int, ...], indexes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(values[index] for index in indexes)


# (p_type, p_offset, p_vaddr, p_filesz)
Segment = tuple[int, int, int, int]


def _segments(reader: _Reader, offset: int, entsize: int, count: int) -> list[Segment]:
    if offset == 0 or count == 0:
        return []
    wanted = 56 if reader.bits == 64 else 32
    if entsize < wanted:
        raise ElfError(f"program header entries of {entsize} bytes are too small")
    segments = []
    for index in range(min(count, _MAX_ENTRIES)):
        where = offset + index * entsize
        if reader.bits == 64:
            kind, _, p_offset, vaddr, _, filesz, *_ = reader.unpack("IIQQQQQQ", where, "a program header")
        else:
            kind, p_offset, vaddr, _, filesz, *_ = reader.unpack("IIIIIIII", where, "a program header")
        segments.append((kind, p_offset, vaddr, filesz))
    return segments


def _section(reader: _Reader, offset: int, entsize: int, index: int) -> tuple[int, int, int, int, int]:
    """(sh_type, sh_offset, sh_size, sh_link, sh_info) of section ``index``."""
    where = offset + index * entsize
    if reader.bits == 64:
        _, kind, _, _, s_offset, s_size, link, info, *_ = reader.unpack("IIQQQQIIQQ", where, "a section header")
    else:
        _, kind, _, _, s_offset, s_size, link, info, *_ = reader.unpack("IIIIIIIIII", where, "a section header")
    return kind, s_offset, s_size, link, info


def _needs_from_sections(reader: _Reader, offset: int, entsize: int, count: int) -> list[tuple[str, str]] | None:
    if offset == 0 or count == 0:
        return None
    if entsize < (64 if reader.bits == 64 else 40):
        raise ElfError(f"section header entries of {entsize} bytes are too small")
    found: list[tuple[str, str]] | None = None
    for index in range(min(count, _MAX_ENTRIES)):
        kind, s_offset, s_size, link, info = _section(reader, offset, entsize, index)
        if kind != _SHT_GNU_VERNEED:
            continue
        if link >= count:
            raise ElfError(f"the version needs name string table {link}, which does not exist")
        _, str_offset, str_size, _, _ = _section(reader, offset, entsize, link)
        reader.bytes(str_offset, min(str_size, 1), "the version needs' string table")
        found = (found or []) + _walk_verneed(reader, s_offset, info, (str_offset, str_size), s_size)
    return found


def _dynamic_tags(reader: _Reader, segments: list[Segment]) -> list[tuple[int, int]]:
    """The dynamic segment's (tag, value) entries up to DT_NULL, in file order; none without a dynamic segment."""
    dynamic = next((segment for segment in segments if segment[0] == _PT_DYNAMIC), None)
    if dynamic is None:
        return []
    _, offset, _, size = dynamic
    entry = 16 if reader.bits == 64 else 8
    tags: list[tuple[int, int]] = []
    for index in range(min(size // entry, _MAX_ENTRIES)):
        tag, value = reader.unpack("qQ" if reader.bits == 64 else "iI", offset + index * entry, "a dynamic entry")
        if tag == _DT_NULL:
            break
        tags.append((tag, value))
    return tags


def _strings_at(reader: _Reader, segments: list[Segment], tags: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The dynamic string table (DT_STRTAB) as (file offset, size), if the dynamic section names one."""
    address = next((value for tag, value in tags if tag == _DT_STRTAB), None)
    if address is None:
        return None
    strtab = _file_offset([segment for segment in segments if segment[0] == _PT_LOAD], address)
    # The table's size is not in the dynamic section's reach here (DT_STRSZ may lie); bound it by the file.
    return strtab, min(reader.size - strtab, _MAX_TABLE_BYTES)


def _needed(reader: _Reader, segments: list[Segment], tags: list[tuple[int, int]]) -> tuple[str, ...]:
    """The libraries the file needs (DT_NEEDED), each once."""
    indexes = [value for tag, value in tags if tag == _DT_NEEDED]
    if not indexes:
        return ()
    strings = _strings_at(reader, segments, tags)
    if strings is None:
        raise ElfError("the dynamic section names libraries but no string table")
    return tuple(dict.fromkeys(reader.string(*strings, index) for index in indexes))


def _needs_from_dynamic(reader: _Reader, segments: list[Segment], tags: list[tuple[int, int]]) -> list[tuple[str, str]]:
    first = dict(reversed(tags))
    strings = _strings_at(reader, segments, tags)
    if _DT_VERNEED not in first or strings is None:
        return []
    loads = [segment for segment in segments if segment[0] == _PT_LOAD]
    verneed = _file_offset(loads, first[_DT_VERNEED])
    return _walk_verneed(reader, verneed, first.get(_DT_VERNEEDNUM, 0), strings, reader.size - verneed)


def _file_offset(loads: list[Segment], address: int) -> int:
    for _, offset, vaddr, filesz in loads:
        if vaddr <= address < vaddr + filesz:
            return offset + (address - vaddr)
    raise ElfError(f"address {address:#x} is in no loaded segment")


def _walk_verneed(
    reader: _Reader, offset: int, count: int, strings: tuple[int, int], limit: int
) -> list[tuple[str, str]]:
    """The Elf_Verneed chain (the same 16-byte layout in both classes) and each entry's Elf_Vernaux chain."""
    str_offset, str_size = strings
    needs: list[tuple[str, str]] = []
    seen: set[int] = set()
    where, remaining = offset, min(count, _MAX_ENTRIES) if count else _MAX_ENTRIES
    while remaining > 0:
        if where in seen or where - offset >= max(limit, 16):
            raise ElfError("the version needs chain loops or runs past its section")
        seen.add(where)
        _, aux_count, file_index, aux, following = reader.unpack("HHIII", where, "a version need")
        library = reader.string(str_offset, str_size, file_index)
        aux_where, aux_seen = where + aux, set()
        for _ in range(min(aux_count, _MAX_ENTRIES)):
            if aux_where in aux_seen:
                raise ElfError("a version need's chain loops")
            # One budget for every entry of every chain: entries may all point at one long chain.
            if len(needs) >= _MAX_ENTRIES:
                raise ElfError("the version needs list more entries than any real file")
            aux_seen.add(aux_where)
            _, _, _, name_index, aux_next = reader.unpack("IHHII", aux_where, "a version need's entry")
            needs.append((library, reader.string(str_offset, str_size, name_index)))
            if aux_next == 0:
                break
            aux_where += aux_next
        remaining -= 1
        if following == 0:
            break
        where += following
    return needs
