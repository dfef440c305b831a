"""``links`` overrides: the ``[target.<triple>.<links>]`` tables that replace a build script with fixed results.

They come from two places, merged as Cargo merges config layers: the project's Cargo config files, and xpcargo's own
configuration, which xpcargo hands to Cargo as a ``--config`` file. The host paths they name must be mounted, so
that the libraries and headers they point at exist in the container too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from xpcargo.cargo.protocol import TARGET_SETTING_KEYS, RustcFlagsError, split_rustc_flags
from xpcargo.errors import ConfigError

_LINK_SEARCH_KINDS = ("native=", "dependency=", "crate=", "framework=", "all=")


def _frozen(tables: Mapping[str, Mapping[str, object]]) -> Mapping[str, Mapping[str, object]]:
    return MappingProxyType({name: MappingProxyType(dict(table)) for name, table in tables.items()})


@dataclass(frozen=True)
class LinksOverrides:
    """``links`` name -> its override table (keys as Cargo reads them: ``rustc-link-lib``, metadata keys, ...)."""

    tables: Mapping[str, Mapping[str, object]] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "tables", _frozen(self.tables))

    @classmethod
    def from_cargo_config(cls, data: Mapping[str, object], triple: str) -> LinksOverrides:
        """The overrides in one parsed Cargo config file: the tables of ``[target.<triple>]`` that are no setting."""
        target = data.get("target")
        table = target.get(triple) if isinstance(target, dict) else None
        if not isinstance(table, dict):
            return cls()
        return cls(
            {
                str(links): override
                for links, override in table.items()
                if links not in TARGET_SETTING_KEYS and isinstance(override, dict)
            }
        )

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

    def as_cargo_config(self, triple: str) -> str:
        """The overrides as a Cargo config file, for ``cargo --config <file>``."""
        lines = []
        for links, table in self.tables.items():
            lines.append(f"[target.{json.dumps(triple)}.{json.dumps(links)}]")
            lines += [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in table.items()]
            lines.append("")
        return "\n".join(lines)


def _without_kind(path: str) -> str:
    """`native=/opt/lib` → `/opt/lib`: a link search path may name its kind."""
    return next((path[len(kind) :] for kind in _LINK_SEARCH_KINDS if path.startswith(kind)), path)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"a links override holds a value TOML cannot say: {value!r}")
