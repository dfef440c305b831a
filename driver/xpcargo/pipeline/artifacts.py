"""The final artifacts of a build, as Cargo named them in its ``compiler-artifact`` messages, and what each needs
from glibc (read on the host: the target dir is the host's)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcargo.elf import ElfError, inspect_file, version_key

# Final artifacts worth a line: what a release ships, not the intermediate libraries.
SHIPPED_KINDS = frozenset({"bin", "cdylib", "dylib", "staticlib"})


@dataclass(frozen=True, kw_only=True)
class FinalArtifact:
    path: Path
    # The kinds of the Cargo target that made it (`bin`, `cdylib`, ...), and its package (Cargo's package id).
    kinds: frozenset[str]
    package_id: str


def final_artifacts(messages: Iterable[Mapping[str, Any]], tree: Path) -> list[FinalArtifact]:
    """The binaries, shared and static libraries and test executables Cargo reported under ``tree`` (the
    target's own directory, ``<target-dir>/<triple>``), each once, in the order Cargo built them."""
    found: dict[Path, tuple[frozenset[str], str]] = {}
    for message in messages:
        if message.get("reason") != "compiler-artifact":
            continue
        kinds = set((message.get("target") or {}).get("kind") or ())
        executable = message.get("executable")
        paths = [executable] if isinstance(executable, str) else []
        if kinds & SHIPPED_KINDS:
            paths += [
                name
                for name in message.get("filenames") or ()
                if isinstance(name, str) and not name.endswith((".rlib", ".rmeta", ".d"))
            ]
        for name in paths:
            path = Path(name)
            if path.is_relative_to(tree) and path.is_file():
                found[path] = (frozenset(kinds), str(message.get("package_id") or ""))
    return [FinalArtifact(path=path, kinds=kinds, package_id=package) for path, (kinds, package) in found.items()]


@dataclass(frozen=True, kw_only=True)
class GlibcNeed:
    """What one file needs from glibc: ``machine`` None when it is no ELF file (a static library's archive);
    ``glibc`` None when it needs no glibc version (linked statically, or not against glibc)."""

    machine: str | None
    glibc: str | None

    def describe(self, floor: str | None) -> str:
        """``2.34 (floor 2.36)`` for people; a need above the floor says so."""
        if self.machine is None:
            return "-"
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
        return NOT_ELF
    return GlibcNeed(machine=info.machine, glibc=info.glibc)
