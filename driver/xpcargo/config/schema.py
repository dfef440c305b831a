"""The validating reader of xpcargo's configuration files: TOML and YAML files read into tables whose every error
names the file, the entry and the field, with a suggestion for a misspelt key.

Unknown keys are errors: a misspelt key silently ignored is a build that quietly does the wrong thing.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xpcargo.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

EMPTY: Mapping[str, str] = MappingProxyType({})
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def frozen_map(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


def describe(value: object) -> str:
    """What a wrongly typed value is, in the words an error message needs."""
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool | int | float):
        return f"the value {value!r}"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _read_text(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start} is {exc.object[exc.start : exc.start + 1]!r})",
            hint="save the file as UTF-8",
        ) from None


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; an unreadable, non-UTF-8 or malformed file is one error that names the file."""
    return parse_toml(_read_text(path), path)


def parse_toml(text: str, path: Path, *, hint: str | None = None) -> dict[str, Any]:
    """``text``, read from ``path``, as a dict; malformed or nested too deeply for the parser, one error."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}", hint=hint) from None
    except RecursionError:
        # tomllib parses nested arrays and inline tables recursively: a few thousand levels exhaust Python's stack.
        raise ConfigError(
            f"{path}: nested too deeply to read (arrays or inline tables inside each other, hundreds of levels down)",
            hint=hint or "flatten the nesting: no configuration needs more than a few levels",
        ) from None


def load_yaml(path: Path, *, parsed: Path | None = None) -> object:
    """``path``'s YAML. With ``parsed`` (a directory of this machine's cache), what an earlier command parsed from the
    same text is read back from there as JSON instead: importing PyYAML costs a warm no-op build about a tenth of its
    time, and xpcargo's own YAML files (the toolchain table, the recipes) change only with xpcargo."""
    text = _read_text(path)
    entry = None
    if parsed is not None:
        import hashlib  # noqa: PLC0415

        # Named by the text itself: an entry can only ever be the parse of these very bytes.
        entry = parsed / f"{hashlib.sha256(text.encode()).hexdigest()}.json"
        known = _read_parsed(entry)
        if known is not None:
            return known[0]
    values = _parse_yaml(text, path)
    if entry is not None:
        _keep_parsed(entry, values)
    return values


def _parse_yaml(text: str, path: Path) -> object:
    import yaml  # noqa: PLC0415 - PyYAML costs start-up time that `xpcargo --help` should not pay

    try:
        # libyaml's parser where PyYAML has it, with the same safe constructors: a tenth of the pure-Python parser's
        # time (toolchains.yaml 2 ms instead of 22, a recipe 0.5 instead of 6), and every command reads several.
        if yaml.__with_libyaml__:
            return yaml.load(text, Loader=yaml.CSafeLoader)
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{position}: {problem}") from None


def _read_parsed(entry: Path) -> tuple[object] | None:
    """The values kept in ``entry`` (in a tuple, since None is a value), or None when there is no usable entry."""
    import json  # noqa: PLC0415

    try:
        return (json.loads(entry.read_bytes()),)
    except (OSError, ValueError, RecursionError):
        # Missing, unreadable or damaged: parsed again, and written again.
        return None


def _keep_parsed(entry: Path, values: object) -> None:
    """Keep ``values`` in ``entry`` when JSON holds them exactly (YAML also has dates, sets and keys that are not
    strings, which JSON would change); a cache that cannot be written is no error."""
    import json  # noqa: PLC0415

    from xpcargo.files import write_atomically  # noqa: PLC0415

    try:
        text = json.dumps(values, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return
    if json.loads(text) != values:
        return
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(entry, text)
    except OSError:
        pass


class Table:
    """One table of a configuration file, read key by key; ``finish`` rejects the keys nobody asked for."""

    def __init__(self, source: Path, where: str, values: object) -> None:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {where or 'top level'}: expected a table, got {describe(values)}")
        self.source = source
        self.where = where
        self._values: Mapping[str, object] = values
        self._read: set[str] = set()

    def path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str, *, hint: str | None = None) -> ConfigError:
        return ConfigError(f"{self.source}: {self.path(key)}: {problem}", hint=hint)

    def has(self, key: str) -> bool:
        return key in self._values

    def names(self) -> list[str]:
        return [str(key) for key in self._values]

    def value(self, key: str, *, required: bool) -> object:
        self._read.add(key)
        if key not in self._values:
            if not required:
                return None
            # A required field that is missing is most often one that is misspelt: name what was written.
            unread = [name for name in self._values if name not in self._read]
            close = difflib.get_close_matches(key, unread, n=1)
            if close:
                raise self.fail(close[0], f"unknown field (did you mean `{key}`?)")
            raise self.fail(key, "is missing")
        return self._values[key]

    def string(self, key: str) -> str:
        value = self.value(key, required=True)
        if not isinstance(value, str) or not value:
            raise self.fail(key, f"expected a non-empty string, got {describe(value)}")
        return value

    def strings(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.value(key, required=required)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise self.fail(key, f"expected a list of non-empty strings, got {describe(value)}")
        return tuple(value)

    def string_map(self, key: str) -> Mapping[str, str]:
        value = self.value(key, required=False)
        if value is None:
            return EMPTY
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table of NAME = VALUE, got {describe(value)}")
        result: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not ENV_NAME.match(name):
                raise self.fail(f"{key}.{name}", "is not a valid environment variable name")
            if not isinstance(item, str | int | float | bool):
                raise self.fail(f"{key}.{name}", f"expected a string, got {describe(item)}")
            result[name] = str(item).lower() if isinstance(item, bool) else str(item)
        return frozen_map(result)

    def table(self, key: str) -> Table | None:
        value = self.value(key, required=False)
        if value is None:
            return None
        return Table(self.source, self.path(key), value)

    def required_table(self, key: str) -> Table:
        return Table(self.source, self.path(key), self.value(key, required=True))

    def finish(self) -> None:
        unknown = [key for key in self._values if key not in self._read]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(self._read), n=1)
            suggestion = f" (did you mean `{close[0]}`?)" if close else ""
            raise self.fail(key, f"unknown field{suggestion}")
