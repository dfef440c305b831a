"""The ELF reader: the newest GLIBC_ version a file needs, on real files built here (the host gcc), on files
of every class and byte order built byte by byte below (and checked against binutils' readelf), and on bad bytes."""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from xpcargo.elf import ElfError, glibc_needed, inspect_bytes, inspect_file

_PROGRAM = r"""
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/random.h>
int main(int argc, char **argv) {
    char buffer[4];
    /* getrandom is GLIBC_2.25; the C23 strtol that glibc 2.38's headers pick with _GNU_SOURCE is GLIBC_2.38. */
    if (getrandom(buffer, sizeof buffer, 0) < 0) return 1;
    return (int)strtol(argc > 1 ? argv[1] : "0", 0, 10);
}
"""


def _readelf_glibc(path: Path) -> str | None:
    """What binutils says: the newest GLIBC_x.y among the version *needs* (.gnu.version_r) only."""
    output = subprocess.run(["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    needs = output.partition("Version needs section")[2]
    versions = re.findall(r"Name: GLIBC_([0-9.]+)", needs)
    return max(versions, key=lambda v: tuple(map(int, v.split("."))), default=None)


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("readelf") is None, reason="no gcc")
needs_readelf = pytest.mark.skipif(shutil.which("readelf") is None, reason="no readelf")


@needs_gcc
@pytest.mark.parametrize("flags", [[], ["-static"], ["-shared", "-fPIC"], ["-s"]])
def test_a_real_x86_64_file_built_here(tmp_path: Path, flags: list[str]) -> None:
    source = tmp_path / "program.c"
    source.write_text(_PROGRAM, encoding="utf-8")
    output = tmp_path / "program"
    built = subprocess.run(["gcc", "-O1", *flags, str(source), "-o", str(output)], capture_output=True, check=False)
    if built.returncode != 0:
        pytest.skip(f"the host gcc cannot link {flags}: {built.stderr.decode()[-200:]}")
    info = inspect_file(output)
    assert (info.machine, info.bits, info.big_endian) == ("x86_64", 64, False)
    assert info.glibc == _readelf_glibc(output)
    assert info.executable is ("-shared" not in flags)
    if "-static" in flags:
        assert (info.dynamic, info.glibc, info.static, info.needed) == (False, None, True, ())
    else:
        assert not info.static
        assert "libc.so.6" in info.needed
        # getrandom alone needs 2.25: a dynamic file here needs at least that.
        assert info.dynamic
        assert info.glibc is not None
        assert tuple(map(int, info.glibc.split("."))) >= (2, 25)
        assert ("libc.so.6", f"GLIBC_{info.glibc}") in info.needs


@needs_gcc
def test_the_dynamic_segment_answers_when_the_section_headers_are_gone(tmp_path: Path) -> None:
    source = tmp_path / "program.c"
    source.write_text(_PROGRAM, encoding="utf-8")
    output = tmp_path / "program"
    subprocess.run(["gcc", str(source), "-o", str(output)], check=True)
    data = bytearray(output.read_bytes())
    expected = inspect_bytes(bytes(data)).glibc
    # e_shoff, e_shnum and e_shstrndx to zero: what sstrip leaves.
    data[0x28:0x30] = bytes(8)
    data[0x3C:0x40] = bytes(4)
    assert inspect_bytes(bytes(data)).glibc == expected


# --- Files of every class and byte order, built byte by byte --------------------------------------------------------


def build_elf(
    *,
    bits: int,
    big_endian: bool,
    machine: int,
    needs: dict[str, list[str]],
    needed: tuple[str, ...] | None = None,
    pie: bool = False,
) -> bytes:
    """A minimal shared object: an ELF header, a PT_LOAD over the whole file (so addresses are offsets), a
    PT_DYNAMIC with a DT_NEEDED for each of ``needed`` (by default, the libraries of ``needs``), DT_STRTAB,
    DT_VERNEED and DT_VERNEEDNUM (and with ``pie``, DT_FLAGS_1 with DF_1_PIE: the linker's mark of a PIE), the .dynstr
    and .gnu.version_r they point at, and
    section headers for null, .dynstr, .gnu.version_r (its sh_link naming .dynstr, sh_info the entry count),
    .dynamic and .shstrtab (binutils' readelf wants the last two to name what it prints).

    The layouts follow the System V gABI and the LSB's Elf_Verneed/Elf_Vernaux (16 bytes each in both classes).
    """
    order = ">" if big_endian else "<"
    wide = bits == 64
    header_size, ph_size, sh_size = (64, 56, 64) if wide else (52, 32, 40)
    strings = bytearray(b"\0")

    def name(text: str) -> int:
        strings.extend(text.encode() + b"\0")
        return len(strings) - len(text) - 1

    entries = [(name(library), [name(version) for version in versions]) for library, versions in needs.items()]
    libraries = [(1, name(library)) for library in (tuple(needs) if needed is None else needed)]
    libraries += [(0x6FFFFFFB, 0x08000000)] if pie else []
    verneed = bytearray()
    for index, (library, versions) in enumerate(entries):
        size = 16 + 16 * len(versions)
        following = size if index < len(entries) - 1 else 0
        verneed += struct.pack(order + "HHIII", 1, len(versions), library, 16, following)
        for aux, version in enumerate(versions):
            aux_next = 16 if aux < len(versions) - 1 else 0
            verneed += struct.pack(order + "IHHII", 0, 0, 0, version, aux_next)
    phoff = header_size
    dynstr_off = phoff + 2 * ph_size
    verneed_off = dynstr_off + len(strings)
    dynamic_off = verneed_off + len(verneed)
    entry = "qQ" if wide else "iI"
    dynamic = b"".join(
        struct.pack(order + entry, tag, value)
        for tag, value in (*libraries, (5, dynstr_off), (0x6FFFFFFE, verneed_off), (0x6FFFFFFF, len(entries)), (0, 0))
    )
    section_names = b"\0.dynstr\0.gnu.version_r\0.dynamic\0.shstrtab\0"
    shstrtab_off = dynamic_off + len(dynamic)
    shoff = shstrtab_off + len(section_names)
    total = shoff + 5 * sh_size
    # (name, type, offset, size, link, info, entry size) of .dynstr, .gnu.version_r, .dynamic and .shstrtab.
    table = [
        (1, 3, dynstr_off, len(strings), 0, 0, 0),
        (9, 0x6FFFFFFE, verneed_off, len(verneed), 1, len(entries), 0),
        (25, 6, dynamic_off, len(dynamic), 1, 0, 16 if wide else 8),
        (34, 3, shstrtab_off, len(section_names), 0, 0, 0),
    ]
    sections = bytes(sh_size)
    if wide:
        ident_header = struct.pack(
            order + "HHIQQQIHHHHHH", 3, machine, 1, 0, phoff, shoff, 0, header_size, ph_size, 2, sh_size, 5, 4
        )
        programs = struct.pack(order + "IIQQQQQQ", 1, 5, 0, 0, 0, total, total, 0x1000)
        programs += struct.pack(order + "IIQQQQQQ", 2, 6, dynamic_off, dynamic_off, 0, len(dynamic), len(dynamic), 8)
        for name_at, kind, offset, size, link, info, entsize in table:
            sections += struct.pack(
                order + "IIQQQQIIQQ", name_at, kind, 2, offset, offset, size, link, info, 8, entsize
            )
    else:
        ident_header = struct.pack(
            order + "HHIIIIIHHHHHH", 3, machine, 1, 0, phoff, shoff, 0, header_size, ph_size, 2, sh_size, 5, 4
        )
        programs = struct.pack(order + "IIIIIIII", 1, 0, 0, 0, total, total, 5, 0x1000)
        programs += struct.pack(order + "IIIIIIII", 2, dynamic_off, dynamic_off, 0, len(dynamic), len(dynamic), 6, 4)
        for name_at, kind, offset, size, link, info, entsize in table:
            sections += struct.pack(
                order + "IIIIIIIIII", name_at, kind, 2, offset, offset, size, link, info, 4, entsize
            )
    ident = b"\x7fELF" + bytes([1 if bits == 32 else 2, 2 if big_endian else 1, 1]) + bytes(9)
    data = ident + ident_header + programs + bytes(strings) + bytes(verneed) + dynamic + section_names + sections
    assert len(data) == total
    return data


_NEEDS = {
    "libc.so.6": ["GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.34", "GLIBC_PRIVATE", "GLIBC_2.9"],
    "libm.so.6": ["GLIBC_2.29"],
    "libgcc_s.so.1": ["GCC_3.0", "GCC_4.2.0"],
}
_SHAPES = [(32, False, 3, "x86"), (32, True, 20, "powerpc"), (64, False, 183, "aarch64"), (64, True, 22, "s390x")]


@pytest.mark.parametrize(("bits", "big_endian", "machine", "name"), _SHAPES)
def test_every_class_and_byte_order(bits: int, big_endian: bool, machine: int, name: str) -> None:
    data = build_elf(bits=bits, big_endian=big_endian, machine=machine, needs=_NEEDS)
    info = inspect_bytes(data)
    assert (info.machine, info.bits, info.big_endian, info.dynamic) == (name, bits, big_endian, True)
    # 2.34 beats 2.29 and 2.9 (numbers, not text) and GLIBC_PRIVATE is no version; GCC_ is not glibc's.
    assert info.glibc == "2.34"
    assert ("libgcc_s.so.1", "GCC_4.2.0") in info.needs
    assert len(info.needs) == 8


@needs_readelf
@pytest.mark.parametrize(("bits", "big_endian", "machine", "name"), _SHAPES)
def test_the_built_files_are_what_binutils_reads_too(
    tmp_path: Path, bits: int, big_endian: bool, machine: int, name: str
) -> None:
    path = tmp_path / name
    path.write_bytes(build_elf(bits=bits, big_endian=big_endian, machine=machine, needs=_NEEDS))
    assert _readelf_glibc(path) == "2.34"
    assert inspect_file(path).glibc == "2.34"


@pytest.mark.parametrize(("bits", "big_endian", "machine", "name"), _SHAPES)
def test_without_section_headers_the_dynamic_segment_is_read(
    bits: int, big_endian: bool, machine: int, name: str
) -> None:
    data = bytearray(build_elf(bits=bits, big_endian=big_endian, machine=machine, needs=_NEEDS))
    shnum_at = 0x3C if bits == 64 else 0x30
    data[shnum_at : shnum_at + 2] = bytes(2)
    assert inspect_bytes(bytes(data)).glibc == "2.34"


@needs_gcc
def test_a_static_pie_is_static_though_it_has_a_dynamic_section(tmp_path: Path) -> None:
    """What Rust's musl targets link by default: a PT_DYNAMIC for the program's own relocations, no PT_INTERP,
    no DT_NEEDED."""
    source = tmp_path / "program.c"
    source.write_text(_PROGRAM, encoding="utf-8")
    output = tmp_path / "program"
    built = subprocess.run(["gcc", "-static-pie", str(source), "-o", str(output)], capture_output=True, check=False)
    if built.returncode != 0:
        pytest.skip(f"the host gcc cannot link -static-pie: {built.stderr.decode()[-200:]}")
    info = inspect_file(output)
    headers = subprocess.run(["readelf", "-l", "-d", "-W", str(output)], capture_output=True, text=True, check=True)
    assert "INTERP" not in headers.stdout
    assert "(NEEDED)" not in headers.stdout
    assert "DYNAMIC" in headers.stdout
    assert (info.dynamic, info.interpreter, info.needed, info.executable, info.static) == (True, False, (), True, True)


@needs_gcc
def test_a_program_that_needs_only_a_loader_is_not_static(tmp_path: Path) -> None:
    """-nostdlib with an interpreter and no library: PT_INTERP alone makes it dynamic."""
    source = tmp_path / "start.c"
    source.write_text("void _start(void) { for (;;) {} }\n", encoding="utf-8")
    output = tmp_path / "start"
    subprocess.run(["gcc", "-nostdlib", "-pie", "-Wl,--no-as-needed", str(source), "-o", str(output)], check=True)
    info = inspect_file(output)
    assert (info.interpreter, info.needed, info.static) == (True, (), False)


def _readelf_needed(path: Path) -> list[str]:
    output = subprocess.run(["readelf", "-d", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", output)


@pytest.mark.parametrize(("bits", "big_endian", "machine", "name"), _SHAPES)
def test_the_needed_libraries_of_every_class_and_byte_order(
    tmp_path: Path, bits: int, big_endian: bool, machine: int, name: str
) -> None:
    needed = ("libz.so.1", "libc.so.6", "libz.so.1")
    data = build_elf(bits=bits, big_endian=big_endian, machine=machine, needs=_NEEDS, needed=needed)
    info = inspect_bytes(data)
    assert info.needed == ("libz.so.1", "libc.so.6")
    assert (info.interpreter, info.static, info.glibc) == (False, False, "2.34")
    if shutil.which("readelf"):
        path = tmp_path / name
        path.write_bytes(data)
        assert _readelf_needed(path) == list(needed)
    # No library and no interpreter, a dynamic section all the same: a static-pie's shape, marked as a PIE...
    bare = inspect_bytes(
        build_elf(bits=bits, big_endian=big_endian, machine=machine, needs=_NEEDS, needed=(), pie=True)
    )
    assert (bare.dynamic, bare.needed, bare.executable, bare.static) == (True, (), True, True)
    # ...and without the mark, a shared library that needs nothing: no program, static or not.
    library = inspect_bytes(build_elf(bits=bits, big_endian=big_endian, machine=machine, needs=_NEEDS, needed=()))
    assert (library.needed, library.executable, library.static) == ((), False, False)


def test_a_needed_library_named_outside_the_string_table_is_an_error() -> None:
    built = build_elf(bits=64, big_endian=False, machine=62, needs=_NEEDS, needed=("libc.so.6",))
    # The dynamic section starts with the DT_NEEDED entry, then DT_STRTAB (pointing just past the headers).
    strtab_at = built.index(struct.pack("<qQ", 5, 64 + 2 * 56))
    needed_at = strtab_at - 16
    data = bytearray(built)
    data[needed_at + 8 : needed_at + 16] = struct.pack("<Q", 1 << 40)
    with pytest.raises(ElfError, match="outside"):
        inspect_bytes(bytes(data))
    # DT_STRTAB made a tag nobody knows: libraries without a table to name them.
    data = bytearray(built)
    data[strtab_at : strtab_at + 8] = struct.pack("<q", 0x7000_0000)
    with pytest.raises(ElfError, match="no string table"):
        inspect_bytes(bytes(data))


def test_the_abi_marker_for_relative_relocations_counts_as_2_36() -> None:
    data = build_elf(bits=64, big_endian=False, machine=62, needs={"libc.so.6": ["GLIBC_2.34", "GLIBC_ABI_DT_RELR"]})
    assert inspect_bytes(data).glibc == "2.36"


def test_a_file_needing_nothing_from_glibc() -> None:
    data = build_elf(bits=64, big_endian=False, machine=62, needs={"libfoo.so": ["FOO_1.0"]})
    assert inspect_bytes(data).glibc is None


# --- Bad bytes ----------------------------------------------------------------------------------------------------


def test_not_an_elf_file(tmp_path: Path) -> None:
    text = tmp_path / "text"
    text.write_text("#!/bin/sh\necho hi\n", encoding="utf-8")
    with pytest.raises(ElfError, match="not an ELF file"):
        inspect_file(text)
    assert glibc_needed(text) is None
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert glibc_needed(empty) is None
    with pytest.raises(ElfError, match="cannot read"):
        inspect_file(tmp_path / "missing")


def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ElfError, match="not a regular file"):
        inspect_file(fifo)


def test_every_truncation_of_a_real_file_is_an_error_or_an_answer() -> None:
    data = build_elf(bits=64, big_endian=True, machine=22, needs=_NEEDS)
    for length in range(len(data)):
        with contextlib.suppress(ElfError):
            inspect_bytes(data[:length])


@needs_gcc
def test_truncated_real_binaries(tmp_path: Path) -> None:
    source = tmp_path / "program.c"
    source.write_text(_PROGRAM, encoding="utf-8")
    output = tmp_path / "program"
    subprocess.run(["gcc", str(source), "-o", str(output)], check=True)
    data = output.read_bytes()
    errors = 0
    for length in (*range(200), *range(200, len(data), 97)):
        try:
            inspect_bytes(data[:length])
        except ElfError:
            errors += 1
    # The headers are at the start and the section headers at the end: a cut file is an error, not a guess.
    assert errors > 200


def test_random_and_mutated_bytes_never_raise_anything_but_elf_error() -> None:
    generator = random.Random(11)  # noqa: S311 - reproducible noise, not secrets
    base = build_elf(bits=64, big_endian=False, machine=62, needs=_NEEDS)
    samples = [bytes(generator.randrange(256) for _ in range(generator.randrange(600))) for _ in range(300)]
    for _ in range(3000):
        mutated = bytearray(base)
        for _ in range(generator.randrange(1, 6)):
            mutated[generator.randrange(len(mutated))] = generator.randrange(256)
        samples.append(bytes(mutated))
    answered = 0
    for sample in samples:
        try:
            inspect_bytes(sample)
            answered += 1
        except ElfError:
            pass
    assert answered > 0


def test_a_version_chain_that_runs_on_ends_in_an_error() -> None:
    data = bytearray(build_elf(bits=64, big_endian=False, machine=62, needs={"libc.so.6": ["GLIBC_2.17"]}))
    verneed_at = data.index(struct.pack("<HHIII", 1, 1, 1, 16, 0))
    # vn_next of the last entry pointing on, far, and a count that never runs out: the chain leaves its section.
    data[verneed_at + 12 : verneed_at + 16] = struct.pack("<I", 4096)
    shinfo_at = len(data) - 3 * 64 + 44  # sh_info of section 2 of 5
    data[shinfo_at : shinfo_at + 4] = struct.pack("<I", 0xFFFFFFFF)
    with pytest.raises(ElfError, match="runs past"):
        inspect_bytes(bytes(data))
