"""The binfmt_misc line that makes the kernel run a foreign target's executables under its emulator.

xpcargo's runner (``images/share/binfmt-run``) registers it in a binfmt_misc instance of the container's own user
namespace, never the host's, so that a test that executes the crate's own binary directly runs it under qemu. It
serves the foreign targets that the exec preload (``xpcargo.emulation``) cannot: static programs (musl).
"""

from __future__ import annotations

from typing import Literal

from xpcargo.emulation import MACHINES


def registration(emulator: str | None) -> str | None:
    """binfmt_misc's ``:name:M::magic:mask:interpreter:F`` line for ``emulator``'s executables, or None for an
    emulator xpcargo does not know. It matches what qemu's own binfmt definitions match: the ELF identification
    (any OS ABI) and e_type 2 or 3 (executables and position-independent ones) of that machine. ``F`` opens the
    emulator at registration, so it also runs programs that see another root."""
    if emulator is None or emulator not in MACHINES:
        return None
    bits, big_endian, machine = MACHINES[emulator]
    order: Literal["big", "little"] = "big" if big_endian else "little"
    magic = b"\x7fELF" + bytes([bits, 2 if big_endian else 1, 1]) + bytes(9)
    magic += (2).to_bytes(2, order) + machine.to_bytes(2, order)
    mask = b"\xff" * 7 + b"\x00" + b"\xff" * 8
    mask += (b"\xff\xfe" if big_endian else b"\xfe\xff") + b"\xff\xff"
    return f":xpcargo-{emulator}:M::{_escaped(magic)}:{_escaped(mask)}:/usr/bin/{emulator}:F"


def _escaped(data: bytes) -> str:
    # binfmt_misc decodes \x escapes itself; as text the line has no white space, so Cargo keeps it one word.
    return "".join(f"\\x{byte:02x}" for byte in data)
