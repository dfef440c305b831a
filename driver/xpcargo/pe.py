"""The machine of a Windows program or DLL (a PE file): what the report says of a `*-windows-gnu` artifact, which
needs no glibc and so has nothing for ``elf`` to read.

The file is untrusted, as every artifact is: only the DOS header's pointer and the COFF header it points at are read,
both bounded by the file's size, and anything that does not parse is a ``PeError``.
"""

from __future__ import annotations

import struct
from pathlib import Path

from xpcargo.files import NotRegularFileError, reading_regular

_DOS_MAGIC = b"MZ"
_PE_SIGNATURE = b"PE\0\0"
# e_lfanew, the offset of the PE signature, is this far into the DOS header.
_LFANEW_OFFSET = 0x3C
# Real files put the signature within the first few hundred bytes; further is no PE file of a linker's.
_MAX_LFANEW = 1 << 16

# IMAGE_FILE_MACHINE_* values, named as ``elf.MACHINES`` names the same processors.
MACHINES = {
    0x014C: "x86",
    0x8664: "x86_64",
    0x01C4: "arm",
    0xAA64: "aarch64",
}


class PeError(Exception):
    """The file is not a PE file, or not one this reader can make sense of."""


def machine_of(data: bytes) -> str:
    """The machine ``data``, the start of a file (at least up to its COFF header), was built for."""
    if len(data) < _LFANEW_OFFSET + 4 or data[:2] != _DOS_MAGIC:
        raise PeError("not a PE file (no MZ header)")
    (lfanew,) = struct.unpack_from("<I", data, _LFANEW_OFFSET)
    if lfanew > _MAX_LFANEW or lfanew + 6 > len(data):
        raise PeError(f"its PE header offset {lfanew} lies outside the file")
    if data[lfanew : lfanew + 4] != _PE_SIGNATURE:
        raise PeError("not a PE file (no PE signature where the DOS header points)")
    (machine,) = struct.unpack_from("<H", data, lfanew + 4)
    name = MACHINES.get(machine)
    if name is None:
        raise PeError(f"unknown PE machine 0x{machine:04x}")
    return name


def file_machine(path: Path) -> str:
    """The machine of the PE file at ``path``: a regular file, never a FIFO or a device to block on."""
    try:
        with reading_regular(path) as (read, _):
            header = read(0, _MAX_LFANEW + 6)
    except NotRegularFileError:
        raise PeError("not a regular file") from None
    except OSError as error:
        raise PeError(f"cannot read it: {error.strerror or error}") from None
    return machine_of(header)
