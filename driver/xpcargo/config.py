"""Configuration: the shipped toolchain table, the image recipes, and a project's own overrides.

Precedence, highest first: the environment (``XPCARGO_TARGET_<TRIPLE>_IMAGE``), the project's ``xpcargo.toml`` (or
``[workspace.metadata.xpcargo]`` in its root ``Cargo.toml``), then ``toolchains.yaml`` and ``images/*.yaml``.
Everything is validated on load; an error names the file, the entry and the field. Unknown keys are errors too,
with a suggestion, because a misspelt key silently ignored is a build that quietly does the wrong thing.
"""

from __future__ import annotations

import difflib
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xpcargo import resources
from xpcargo.errors import ConfigError, UnknownTargetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PROJECT_CONFIG_FILE = "xpcargo.toml"

_EMPTY: Mapping[str, str] = MappingProxyType({})
_TRIPLE = re.compile(r"^[a-z0-9_.]+(-[a-z0-9_.]+){1,3}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _frozen_map(values: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True, kw_only=True)
class RustToolchain:
    version: str
    packages: tuple[str, ...]
    std_package: str
    std_pool: str
    std_sha256: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class ImageRecipe:
    name: str
    source: Path
    suite: str
    mirror: str
    packages: tuple[str, ...]
    rust: RustToolchain
    dpkg_exclude: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """Everything xpcargo needs to know about one target, after every layer of configuration is applied."""

    triple: str
    recipe: str
    debian_arch: str
    packages: tuple[str, ...]
    cc: str
    cxx: str
    ar: str
    linker: str
    runner: tuple[str, ...]
    pkg_config_libdir: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    # What only a project sets:
    image: str | None = None
    extra_packages: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    links_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def emulator(self) -> str | None:
        return self.runner[0] if self.runner else None


@dataclass(frozen=True, kw_only=True)
class Toolchains:
    source: Path
    targets: Mapping[str, TargetSpec]

    def target(self, triple: str) -> TargetSpec:
        try:
            return self.targets[triple]
        except KeyError:
            raise unknown_target(triple, self.targets) from None


def env_key(triple: str) -> str:
    """The form of a triple that Cargo uses in variable names: `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER`."""
    return triple.replace("-", "_").replace(".", "_").upper()


def unknown_target(triple: str, known: Mapping[str, object]) -> UnknownTargetError:
    names = sorted(known)
    close = difflib.get_close_matches(triple, names, n=1, cutoff=0.6)
    suggestion = f"did you mean `{close[0]}`? " if close else ""
    return UnknownTargetError(
        f"unknown target `{triple}`",
        hint=f"{suggestion}known targets: {', '.join(names)} (see `xpcargo targets`)",
    )


class _Table:
    """Reads one table of a configuration file, so that every error can name the file, the entry and the field."""

    def __init__(self, source: Path, where: str, values: object) -> None:
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {where or 'top level'}: expected a table, got {_kind(values)}")
        self.source = source
        self.where = where
        self._values: Mapping[str, object] = values
        self._read: set[str] = set()

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def fail(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self._path(key)}: {problem}")

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
            raise self.fail(key, f"expected a non-empty string, got {_kind(value)}")
        return value

    def optional_string(self, key: str) -> str | None:
        self._read.add(key)
        return self.string(key) if self.has(key) else None

    def strings(self, key: str, *, required: bool = False) -> tuple[str, ...]:
        value = self.value(key, required=required)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
            raise self.fail(key, f"expected a list of non-empty strings, got {_kind(value)}")
        return tuple(value)

    def string_map(self, key: str) -> Mapping[str, str]:
        value = self.value(key, required=False)
        if value is None:
            return _EMPTY
        if not isinstance(value, Mapping):
            raise self.fail(key, f"expected a table of NAME = VALUE, got {_kind(value)}")
        result: dict[str, str] = {}
        for name, item in value.items():
            if not isinstance(name, str) or not _ENV_NAME.match(name):
                raise self.fail(f"{key}.{name}", "is not a valid environment variable name")
            if not isinstance(item, str | int | float | bool):
                raise self.fail(f"{key}.{name}", f"expected a string, got {_kind(item)}")
            result[name] = str(item).lower() if isinstance(item, bool) else str(item)
        return _frozen_map(result)

    def table(self, key: str) -> _Table | None:
        value = self.value(key, required=False)
        if value is None:
            return None
        return _Table(self.source, self._path(key), value)

    def required_table(self, key: str) -> _Table:
        return _Table(self.source, self._path(key), self.value(key, required=True))

    def finish(self) -> None:
        unknown = [key for key in self._values if key not in self._read]
        if unknown:
            key = unknown[0]
            close = difflib.get_close_matches(key, sorted(self._read), n=1)
            suggestion = f" (did you mean `{close[0]}`?)" if close else ""
            raise self.fail(key, f"unknown field{suggestion}")


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, bool | int | float):
        return f"the value {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _load_yaml(path: Path) -> object:
    import yaml  # noqa: PLC0415 - PyYAML costs start-up time that `xpcargo --help` should not pay

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}: not valid YAML{position}: {problem}") from None


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _validate_triple(table: _Table, triple: str) -> None:
    if not _TRIPLE.match(triple):
        raise table.fail(triple, "is not a target triple (expected something like `aarch64-unknown-linux-gnu`)")


def _check_runner(table: _Table, key: str, runner: tuple[str, ...]) -> tuple[str, ...]:
    # Cargo splits a runner given through the environment at white space, so no single word may contain any.
    if any(not part.strip() or part.split() != [part] for part in runner):
        raise table.fail(key, "each word must be non-empty and contain no white space")
    return runner


def _read_target(table: _Table, triple: str) -> TargetSpec:
    spec = TargetSpec(
        triple=triple,
        recipe=table.string("recipe"),
        debian_arch=table.string("debian-arch"),
        packages=table.strings("packages"),
        cc=table.string("cc"),
        cxx=table.string("cxx"),
        ar=table.string("ar"),
        linker=table.string("linker"),
        runner=_check_runner(table, "runner", table.strings("runner")),
        pkg_config_libdir=table.strings("pkg-config-libdir"),
        env=table.string_map("env"),
    )
    table.finish()
    return spec


def load_toolchains(path: Path | None = None, *, environ: Mapping[str, str] = os.environ) -> Toolchains:
    """Load and validate toolchains.yaml (``XPCARGO_TOOLCHAINS`` points at another one)."""
    if path is None:
        override = environ.get("XPCARGO_TOOLCHAINS")
        path = Path(override) if override else resources.toolchains_file()
    top = _Table(path, "", _load_yaml(path))
    version = top.value("version", required=True)
    if version != 1:
        raise top.fail("version", f"unsupported version {version!r} (this xpcargo reads version 1)")
    targets_table = top.required_table("targets")
    targets: dict[str, TargetSpec] = {}
    for triple in targets_table.names():
        _validate_triple(targets_table, triple)
        entry = targets_table.required_table(triple)
        targets[triple] = _read_target(entry, triple)
    targets_table.finish()
    top.finish()
    if not targets:
        raise top.fail("targets", "lists no target")
    return Toolchains(source=path, targets=_frozen_map(targets))


def load_recipe(name: str, *, directory: Path | None = None, referenced_from: str = "") -> ImageRecipe:
    """Load and validate ``images/<name>.yaml``."""
    directory = directory or resources.images_dir()
    path = directory / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        where = f" (named by {referenced_from})" if referenced_from else ""
        raise ConfigError(
            f"image recipe `{name}`{where} does not exist in {directory}",
            hint=f"known recipes: {', '.join(known) or 'none'}",
        )
    top = _Table(path, "", _load_yaml(path))
    rust = top.required_table("rust")
    std = rust.required_table("std")
    hashes = std.string_map("sha256")
    for arch, digest in hashes.items():
        if not _SHA256.match(digest):
            raise std.fail(f"sha256.{arch}", "expected 64 lowercase hexadecimal digits")
    toolchain = RustToolchain(
        version=rust.string("version"),
        packages=rust.strings("packages", required=True),
        std_package=std.string("package"),
        std_pool=std.string("pool").strip("/"),
        std_sha256=hashes,
    )
    std.finish()
    rust.finish()
    recipe = ImageRecipe(
        name=name,
        source=path,
        suite=top.string("suite"),
        mirror=top.string("mirror").rstrip("/"),
        packages=top.strings("packages"),
        rust=toolchain,
        dpkg_exclude=top.strings("dpkg-exclude"),
    )
    top.finish()
    return recipe


# --- The project's own configuration -------------------------------------------------------------------------------

_PER_TARGET_OVERRIDES = (
    "recipe",
    "debian-arch",
    "packages",
    "cc",
    "cxx",
    "ar",
    "linker",
    "runner",
    "pkg-config-libdir",
)


@dataclass(frozen=True, kw_only=True)
class ProjectSettings:
    """Settings a project adds for one target, or (under ``[build]``) for all of them."""

    overrides: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    env: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    image: str | None = None
    extra_packages: tuple[str, ...] = ()
    passthrough: tuple[str, ...] = ()
    mounts: tuple[str, ...] = ()
    links_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    source: Path | None
    where: str = ""  # the table inside `source` that holds it: "" for xpcargo.toml
    build: ProjectSettings = field(default_factory=ProjectSettings)
    targets: Mapping[str, ProjectSettings] = field(default_factory=lambda: MappingProxyType({}))


def _read_settings(table: _Table, *, per_target: bool) -> ProjectSettings:
    overrides: dict[str, Any] = {}
    if per_target:
        for key in _PER_TARGET_OVERRIDES:
            if not table.has(key):
                continue
            if key in ("packages", "pkg-config-libdir"):
                overrides[key] = table.strings(key)
            elif key == "runner":
                overrides[key] = _check_runner(table, key, table.strings(key))
            else:
                overrides[key] = table.string(key)
    mounts = table.strings("mounts")
    for mount in mounts:
        if not Path(mount).is_absolute():
            raise table.fail("mounts", f"`{mount}` is not an absolute path")
    passthrough = table.strings("passthrough")
    for name in passthrough:
        if not _ENV_NAME.match(name):
            raise table.fail("passthrough", f"`{name}` is not a valid environment variable name")
    links: dict[str, Mapping[str, Any]] = {}
    links_table = table.table("links") if per_target else None
    if links_table is not None:
        for name in links_table.names():
            entry = links_table.required_table(name)
            # Cargo validates the override's keys itself; here it only has to be a table.
            links[name] = _frozen_map({key: entry.value(key, required=True) for key in entry.names()})
        links_table.finish()
    settings = ProjectSettings(
        overrides=_frozen_map(overrides),
        env=table.string_map("env"),
        image=table.optional_string("image") if per_target else None,
        extra_packages=table.strings("extra-packages"),
        passthrough=passthrough,
        mounts=mounts,
        links_overrides=_frozen_map(links),
    )
    table.finish()
    return settings


def load_project_config(workspace_root: Path) -> ProjectConfig:
    """Read ``xpcargo.toml`` from the workspace root, else ``[workspace.metadata.xpcargo]`` of its Cargo.toml."""
    own_file = workspace_root / PROJECT_CONFIG_FILE
    if own_file.is_file():
        return _read_project(own_file, "", read_toml(own_file))
    manifest = workspace_root / "Cargo.toml"
    if manifest.is_file():
        data = read_toml(manifest)
        for section in ("workspace", "package"):
            section_data = data.get(section)
            metadata = section_data.get("metadata") if isinstance(section_data, dict) else None
            if isinstance(metadata, dict) and "xpcargo" in metadata:
                return _read_project(manifest, f"{section}.metadata.xpcargo", metadata["xpcargo"])
    return ProjectConfig(source=None)


def _read_project(source: Path, where: str, data: object) -> ProjectConfig:
    top = _Table(source, where, data)
    build_table = top.table("build")
    build = _read_settings(build_table, per_target=False) if build_table else ProjectSettings()
    targets: dict[str, ProjectSettings] = {}
    targets_table = top.table("target")
    if targets_table is not None:
        for triple in targets_table.names():
            _validate_triple(targets_table, triple)
            entry = targets_table.required_table(triple)
            targets[triple] = _read_settings(entry, per_target=True)
        targets_table.finish()
    top.finish()
    return ProjectConfig(source=source, where=where, build=build, targets=_frozen_map(targets))


def resolve_target(
    triple: str,
    toolchains: Toolchains,
    project: ProjectConfig,
    *,
    environ: Mapping[str, str] = os.environ,
) -> TargetSpec:
    """Apply the project's settings, then the environment, to the shipped entry for ``triple``."""
    own = project.targets.get(triple)
    if triple in toolchains.targets:
        spec = toolchains.targets[triple]
    elif own is not None:
        spec = _new_target(triple, own, project)
    else:
        raise unknown_target(triple, {**toolchains.targets, **project.targets})
    spec = _apply(spec, project.build)
    if own is not None:
        spec = _apply(spec, own)
    image_from_env = environ.get(f"XPCARGO_TARGET_{env_key(triple)}_IMAGE")
    if image_from_env:
        spec = replace(spec, image=image_from_env)
    return spec


def _new_target(triple: str, settings: ProjectSettings, project: ProjectConfig) -> TargetSpec:
    required = ("recipe", "debian-arch", "cc", "cxx", "ar", "linker")
    missing = [key for key in required if key not in settings.overrides]
    if missing:
        raise ConfigError(
            f"{project.source}: {project.where + '.' if project.where else ''}target.{triple}.{missing[0]}: is missing "
            f"(a target that toolchains.yaml does not know needs {', '.join(required)})"
        )
    values = settings.overrides
    return TargetSpec(
        triple=triple,
        recipe=values["recipe"],
        debian_arch=values["debian-arch"],
        packages=values.get("packages", ()),
        cc=values["cc"],
        cxx=values["cxx"],
        ar=values["ar"],
        linker=values["linker"],
        runner=values.get("runner", ()),
        pkg_config_libdir=values.get("pkg-config-libdir", ()),
    )


def _apply(spec: TargetSpec, settings: ProjectSettings) -> TargetSpec:
    fields = {key.replace("-", "_"): value for key, value in settings.overrides.items()}
    return replace(
        spec,
        **fields,
        env=_frozen_map({**spec.env, **settings.env}),
        image=settings.image or spec.image,
        extra_packages=spec.extra_packages + settings.extra_packages,
        passthrough=spec.passthrough + settings.passthrough,
        mounts=spec.mounts + settings.mounts,
        links_overrides=_frozen_map({**spec.links_overrides, **settings.links_overrides}),
    )
