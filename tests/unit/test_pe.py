"""The PE reader: the machine of a Windows program, from the COFF header its DOS header points at; anything else,
hostile bytes included, is a ``PeError`` and never another exception."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from xpcargo import artifacts, pe


def pe_bytes(machine: int, *, lfanew: int = 0x80, tail: bytes = b"\0" * 64) -> bytes:
    """The start of a PE file as linkers write it: the DOS header, a stub, the signature and the COFF header."""
    dos = bytearray(lfanew)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, lfanew)
    return bytes(dos) + b"PE\0\0" + struct.pack("<H", machine) + tail


@pytest.mark.parametrize(
    ("machine", "name"), [(0x8664, "x86_64"), (0x014C, "x86"), (0xAA64, "aarch64"), (0x01C4, "arm")]
)
def test_the_machine_is_read_where_the_dos_header_points(machine: int, name: str) -> None:
    assert pe.machine_of(pe_bytes(machine)) == name


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"", "no MZ header"),
        (b"\x7fELF" + bytes(60), "no MZ header"),
        (pe_bytes(0x8664)[:0x40], "outside the file"),
        # A pointer far beyond the file, or past what any linker writes.
        (b"MZ" + bytes(0x3A) + struct.pack("<I", 0xFFFFFFF0), "outside the file"),
        (b"MZ" + bytes(0x3A) + struct.pack("<I", 0x20000) + bytes(0x30000), "outside the file"),
        (pe_bytes(0x8664).replace(b"PE\0\0", b"NE\0\0"), "no PE signature"),
        (pe_bytes(0x1234), "unknown PE machine 0x1234"),
    ],
)
def test_what_is_no_pe_file_of_a_known_machine_is_refused(data: bytes, said: str) -> None:
    with pytest.raises(pe.PeError, match=said):
        pe.machine_of(data)


def test_a_file_is_read_without_blocking_on_what_is_no_regular_file(tmp_path: Path) -> None:
    program = tmp_path / "app.exe"
    program.write_bytes(pe_bytes(0x8664))
    assert pe.file_machine(program) == "x86_64"
    fifo = tmp_path / "planted.exe"
    os.mkfifo(fifo)
    with pytest.raises(pe.PeError, match="not a regular file"):
        pe.file_machine(fifo)
    with pytest.raises(pe.PeError, match="cannot read it"):
        pe.file_machine(tmp_path / "missing.exe")


def test_the_report_gives_a_windows_program_its_machine_and_no_glibc(tmp_path: Path) -> None:
    program = tmp_path / "app.exe"
    program.write_bytes(pe_bytes(0x8664))
    need = artifacts.glibc_need(program)
    assert (need.machine, need.glibc) == ("x86_64", None)
    assert need.describe(None) == "none"
    other = tmp_path / "notes.txt"
    other.write_bytes(b"MZ but no program")
    assert artifacts.glibc_need(other) == artifacts.NOT_ELF
