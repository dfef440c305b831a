"""The machines xpcargo's images run on: a machine name as the kernel and the engine report it, and what Debian and
Rust call the same architecture.

An image is a root file system of the engine's own architecture, so this is what decides which Rust std comes with
the compiler, which needs a .deb of its own, and which triple build scripts and proc-macros are built for.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Platform:
    machine: str
    debian_arch: str
    rust_triple: str


_KNOWN = (
    Platform(machine="x86_64", debian_arch="amd64", rust_triple="x86_64-unknown-linux-gnu"),
    Platform(machine="aarch64", debian_arch="arm64", rust_triple="aarch64-unknown-linux-gnu"),
)
# Docker reports `x86_64`; some engines (and Go's runtime) say `amd64`/`arm64`.
_ALIASES = {"amd64": "x86_64", "arm64": "aarch64"}


def for_machine(machine: str) -> Platform | None:
    name = _ALIASES.get(machine, machine)
    return next((platform for platform in _KNOWN if platform.machine == name), None)


def this_machine() -> Platform | None:
    """The platform of the machine xpcargo runs on (and, for a local engine, of the engine's images)."""
    return for_machine(os.uname().machine)
