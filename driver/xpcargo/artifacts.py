"""The final artifacts of a build, as Cargo named them in its ``compiler-artifact`` messages, and what is read of
each file (read on the host: the target dir is the host's): what it needs from glibc, its size and its sha256.

One type for every user: the build-script report (kinds, package, glibc need), the multi-target summary, ``verify``
and ``dist`` (size and sha256 too), and remote mode, which brings the files Cargo named back to the host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from xpcargo.elf import ElfError, inspect_file, version_key
from xpcargo.hashing import file_sha256
from xpcargo.pe import PeError, file_machine

# Final artifacts worth a line: what a release ships, not the intermediate libraries.
SHIPPED_KINDS = frozenset({"bin", "cdylib", "dylib", "staticlib"})


# The C library of a target's programs, by the part of Rust's triple that says it (its `target_env`, and the OS
# where that says all): the first that matches.
_LIBCS = (("-linux-gnu", "glibc"), ("-linux-musl", "musl"), ("-windows-gnu", "mingw"), ("-wasi", "wasi"))


def libc_of(triple: str) -> str:
    """The C library a triple's programs use, as Rust's triple says it: `glibc`, `musl`, `mingw`, `wasi`, or
    `unknown`."""
    return next((libc for part, libc in _LIBCS if part in triple), "unknown")


def links_glibc(triple: str) -> bool:
    """Whether a target's programs link against glibc: Rust's `*-linux-gnu*` targets. A wasm32-wasip1 module
    carries wasi-libc inside it and needs no glibc at all, so it has no floor."""
    return libc_of(triple) == "glibc"


@dataclass(frozen=True, kw_only=True)
class GlibcNeed:
    """What one file needs from glibc: ``machine`` None when it is no ELF file (a static library's archive);
    ``glibc`` None when it needs no glibc version (linked statically, or not against glibc); ``static`` when it is
    linked statically (no interpreter, no needed library: it runs on any kernel of its machine, whatever libc)."""

    machine: str | None
    glibc: str | None
    static: bool = False

    def describe(self, floor: str | None) -> str:
        """``2.34 (floor 2.36)`` for people; a need above the floor says so; ``static`` for a static program."""
        if self.machine is None:
            return "-"
        if self.static:
            return "static"
        need = self.glibc or "none"
        if floor is None:
            return need
        if self.glibc is not None and version_key(self.glibc) > version_key(floor):
            return f"{need} (ABOVE the floor {floor})"
        return f"{need} (floor {floor})"


NOT_ELF = GlibcNeed(machine=None, glibc=None)


def glibc_need(path: Path) -> GlibcNeed:
    try:
        info = inspect_file(path)
    except ElfError:
        # A Windows program (PE) has a machine and needs no glibc; it loads Windows' DLLs, so it is not static.
        try:
            return GlibcNeed(machine=file_machine(path), glibc=None)
        except PeError:
            return NOT_ELF
    return GlibcNeed(machine=info.machine, glibc=info.glibc, static=info.static)


@dataclass(frozen=True, kw_only=True)
class Artifact:
    """A final artifact: a binary, a shared or static library or a test executable Cargo named, and the facts read
    of its file (None when not read: a report keeps no size or sha256, a summary every fact)."""

    path: Path
    # The kinds of the Cargo target that made it (`bin`, `cdylib`, ...), and its package (Cargo's package id).
    kinds: frozenset[str] = frozenset()
    package_id: str = ""
    glibc: GlibcNeed | None = None
    size: int | None = None
    sha256: str | None = None

    def describe_need(self, floor: str | None) -> str:
        """Its glibc need for people, next to the target's ``floor``: ``-`` for no ELF file (or not read)."""
        return (self.glibc or NOT_ELF).describe(floor)


def named(message: Mapping[str, Any]) -> list[Artifact]:
    """The final artifacts one of Cargo's messages names: a ``compiler-artifact``'s executable, and for a target
    of a shipped kind its files but Rust's intermediate ones (``.rlib``, ``.rmeta``, ``.d``); none for any other
    message. Nothing is read from the files, which may not be on this machine yet (remote mode)."""
    if message.get("reason") != "compiler-artifact":
        return []
    kinds = frozenset((message.get("target") or {}).get("kind") or ())
    executable = message.get("executable")
    names = [executable] if isinstance(executable, str) else []
    if kinds & SHIPPED_KINDS:
        names += [
            name
            for name in message.get("filenames") or ()
            if isinstance(name, str) and not name.endswith((".rlib", ".rmeta", ".d"))
        ]
    package_id = str(message.get("package_id") or "")
    return [Artifact(path=Path(name), kinds=kinds, package_id=package_id) for name in names]


def final_artifacts(
    messages: Iterable[Mapping[str, Any]], tree: Path, *, digests: bool = False
) -> tuple[Artifact, ...]:
    """The final artifacts Cargo named under ``tree`` (the target's own directory, ``<target-dir>/<triple>``),
    each once, in the order Cargo built them, with the glibc each needs read from the file now; with ``digests``,
    their sizes and sha256 too."""
    found: dict[Path, Artifact] = {}
    for message in messages:
        for artifact in named(message):
            if artifact.path.is_relative_to(tree) and artifact.path.is_file():
                found[artifact.path] = artifact
    return tuple(_examined(artifact, digests=digests) for artifact in found.values())


def _examined(artifact: Artifact, *, digests: bool) -> Artifact:
    path = artifact.path
    if not digests:
        return replace(artifact, glibc=glibc_need(path))
    return replace(artifact, size=path.stat().st_size, sha256=file_sha256(path), glibc=glibc_need(path))
