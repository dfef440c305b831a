"""``links`` overrides: the ``[target.<triple>.<links>]`` tables that replace a build script with fixed results.

They come from two places, merged as Cargo merges config layers: the project's Cargo config files, and xpcargo's own
configuration, which xpcargo hands to Cargo as a ``--config`` file (``cargo/links.py`` reads the one and writes the
other). The host paths they name must be mounted, so that the libraries and headers they point at exist in the
container too.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

_LINK_SEARCH_KINDS = ("native=", "dependency=", "crate=", "framework=", "all=")

# Rust's `char::is_whitespace` (the Unicode White_Space property). Python's `str.strip()` also removes U+001C..U+001F,
# which Rust keeps, so a line starting with one of those is not an instruction for Cargo.
RUST_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_RUST_WHITESPACE_RUN = re.compile(f"[{RUST_WHITESPACE}]+")


def _frozen(tables: Mapping[str, Mapping[str, object]]) -> Mapping[str, Mapping[str, object]]:
    return MappingProxyType({name: MappingProxyType(dict(table)) for name, table in tables.items()})


@dataclass(frozen=True)
class LinksOverrides:
    """``links`` name -> its override table (keys as Cargo reads them: ``rustc-link-lib``, metadata keys, ...)."""

    tables: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", _frozen(self.tables))

    def __bool__(self) -> bool:
        return bool(self.tables)

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def get(self, links: str) -> Mapping[str, object] | None:
        return self.tables.get(links)

    def over(self, base: LinksOverrides) -> LinksOverrides:
        """These overrides layered over ``base`` as Cargo merges config layers: a single value here wins, and
        arrays are joined, this layer's items last."""
        merged = {name: dict(table) for name, table in base.tables.items()}
        for name, table in self.tables.items():
            into = merged.setdefault(name, {})
            for key, value in table.items():
                earlier = into.get(key)
                into[key] = [*earlier, *value] if isinstance(earlier, list) and isinstance(value, list) else value
        return LinksOverrides(merged)

    def host_paths(self) -> tuple[Path, ...]:
        """Host paths the overrides name: link search paths (also as ``-L`` in ``rustc-flags``), and metadata values
        that are absolute paths (an include directory, say)."""
        found: list[str] = []
        for table in self.tables.values():
            for key, value in table.items():
                for item in value if isinstance(value, list | tuple) else [value]:
                    if not isinstance(item, str):
                        continue
                    if key == "rustc-link-search":
                        found.append(_without_kind(item))
                    elif key == "rustc-flags":
                        # Malformed flags are Cargo's to report; they name no path to mount.
                        with suppress(RustcFlagsError):
                            found += [_without_kind(path) for path in split_rustc_flags(item)[0]]
                    else:
                        found.append(item)
        return tuple(Path(os.path.normpath(path)) for path in found if Path(path).is_absolute())


def _without_kind(path: str) -> str:
    """`native=/opt/lib` → `/opt/lib`: a link search path may name its kind."""
    return next((path[len(kind) :] for kind in _LINK_SEARCH_KINDS if path.startswith(kind)), path)


class RustcFlagsError(ValueError):
    """``rustc-flags`` holds something other than ``-l``/``-L`` flags."""


def split_rustc_flags(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a ``rustc-flags`` value into (search paths, libraries) the way Cargo does.

    Shared with the build-script protocol (``cargo/protocol.py``): Cargo reads a build script's ``rustc-flags`` and an
    override's with the same function.
    """
    words = iter(word for word in _RUST_WHITESPACE_RUN.split(value) if word)
    paths: list[str] = []
    libs: list[str] = []
    for word in words:
        flag, attached = word[:2], word[2:]
        if flag not in ("-l", "-L"):
            raise RustcFlagsError(f"only `-l` and `-L` flags are allowed in rustc-flags, found `{word}`")
        # pkg-config style output attaches the value (`-lfoo`); hand-written flags often separate it (`-l foo`).
        argument = attached or next(words, None)
        if argument is None:
            raise RustcFlagsError(f"flag `{flag}` in rustc-flags has no value")
        (libs if flag == "-l" else paths).append(argument)
    return tuple(paths), tuple(libs)
