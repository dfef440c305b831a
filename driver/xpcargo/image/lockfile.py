"""The project's image lock file, ``xpcargo-images.lock``: the exact Debian packages of each target's image.

`xpcargo image lock` writes it from what an image build installed; the project commits it. While it has an entry
for a target, that target's image is planned from the entry: every package at its locked version (dependencies
included, so apt can pick nothing newer) and ``SOURCE_DATE_EPOCH`` fixed, so that two builds of it give the same
root file system, bit for bit. The entry's content hash is part of the image plan: a locked image never shares a
tag with an unlocked one, nor with one of another lock.

The file is TOML, one entry per target, sorted, and one package a line, so that a refreshed lock reads as a diff of
versions.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from xpcargo.config.schema import Table, describe, frozen_map, parse_toml
from xpcargo.errors import ConfigError
from xpcargo.files import toml_key, toml_string, toml_table, toml_value, write_atomically

LOCK_FILE = "xpcargo-images.lock"
FORMAT_VERSION = 2
REFRESH_HINT = "xpcargo image lock --refresh"

# `name:arch=version`, as dpkg-query names an installed package (Debian policy 5.6.1 and 5.6.12).
_PACKAGE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9+.-]+):(?P<arch>[a-z0-9-]+)=(?P<version>[A-Za-z0-9.+~:-]+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, kw_only=True, order=True)
class Package:
    """One installed Debian package: what ``dpkg-query -W`` says of it."""

    name: str
    arch: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}:{self.arch}={self.version}"

    @classmethod
    def parse(cls, text: str) -> Package:
        match = _PACKAGE.match(text)
        if match is None:
            raise ValueError(f"`{text}` is not NAME:ARCH=VERSION")
        return cls(name=match["name"], arch=match["arch"], version=match["version"])

    def include_spec(self, build_arch: str) -> str:
        """How mmdebstrap's --include (apt) asks for exactly this package."""
        native = self.arch in (build_arch, "all")
        return f"{self.name}{'' if native else f':{self.arch}'}={self.version}"


# The format `dpkg-query -W -f` prints one package per line in, which `parse_dpkg_query` reads.
DPKG_QUERY_FORMAT = "${Package}:${Architecture}=${Version}\\n"


def parse_dpkg_query(text: str) -> tuple[Package, ...]:
    return tuple(sorted(Package.parse(line.strip()) for line in text.splitlines() if line.strip()))


@dataclass(frozen=True, kw_only=True)
class LockedImage:
    """One target's entry: the unlocked plan it was taken from, and what that image held."""

    # The digest of the unlocked image plan the packages were recorded from: a lock for another plan (the
    # recipe, the target's packages or the project's extra-packages changed since) is stale.
    plan: str
    build_arch: str
    suite: str
    mirror: str
    # Every file in the root file system gets at most this modification time (and mmdebstrap is reproducible).
    source_date_epoch: int
    # Every package of the image, and those of them that its base (shared by every target) holds.
    packages: tuple[Package, ...]
    base_packages: tuple[Package, ...]
    # A foreign target's Rust std, unpacked from one pool .deb rather than installed by dpkg.
    std_deb: str | None = None
    std_sha256: str | None = None

    @property
    def digest(self) -> str:
        """The content hash that goes into the locked image's plan."""
        entry = {
            **asdict(self),
            "packages": [str(package) for package in self.packages],
            "base_packages": [str(package) for package in self.base_packages],
        }
        return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()

    def base_specs(self) -> tuple[str, ...]:
        """How the base's build asks apt for exactly its recorded packages."""
        return tuple(package.include_spec(self.build_arch) for package in self.base_packages)

    def layer_specs(self) -> tuple[str, ...]:
        """How the layer on the base asks apt for exactly the rest."""
        base = set(self.base_packages)
        return tuple(package.include_spec(self.build_arch) for package in self.packages if package not in base)


@dataclass(frozen=True, kw_only=True)
class ImageLocks:
    """The lock file: the entries by target, and where it is (or is to be written)."""

    path: Path
    targets: Mapping[str, LockedImage]

    def with_entry(self, triple: str, entry: LockedImage) -> ImageLocks:
        return ImageLocks(path=self.path, targets=frozen_map({**self.targets, triple: entry}))


def lock_path(workspace_root: Path) -> Path:
    return workspace_root / LOCK_FILE


def load(workspace_root: Path) -> ImageLocks:
    """The lock file at ``workspace_root``; no file is no entry."""
    path = lock_path(workspace_root)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ImageLocks(path=path, targets=frozen_map({}))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    data = parse_toml(text, path, hint=f"rewrite it with `{REFRESH_HINT}`")
    top = Table(path, "", data)
    version = top.value("version", required=True)
    if version != FORMAT_VERSION:
        raise top.fail(
            "version", f"is {describe(version)}; this xpcargo reads version {FORMAT_VERSION}", hint=REFRESH_HINT
        )
    targets: dict[str, LockedImage] = {}
    table = top.table("targets")
    if table is not None:
        for triple in table.names():
            targets[triple] = _read_entry(table.required_table(triple))
        table.finish()
    top.finish()
    return ImageLocks(path=path, targets=frozen_map(targets))


def entry(workspace_root: Path | None, triple: str) -> LockedImage | None:
    """The entry for ``triple`` in the lock file of the project at ``workspace_root`` (None outside a project)."""
    return load(workspace_root).targets.get(triple) if workspace_root is not None else None


def _read_entry(table: Table) -> LockedImage:
    epoch = table.value("source-date-epoch", required=True)
    if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
        raise table.fail("source-date-epoch", f"expected seconds since 1970, got {describe(epoch)}")
    # The file lists the base's packages once and, under `packages`, what the target's layers add to them.
    base_packages = _read_packages(table, "base-packages")
    packages = tuple(sorted({*base_packages, *_read_packages(table, "packages")}))
    std_sha256 = table.string("std-sha256") if table.has("std-sha256") else None
    if std_sha256 is not None and not _SHA256.match(std_sha256):
        raise table.fail("std-sha256", "expected 64 lowercase hexadecimal digits")
    entry = LockedImage(
        plan=table.string("plan"),
        build_arch=table.string("build-arch"),
        suite=table.string("suite"),
        mirror=table.string("mirror"),
        source_date_epoch=epoch,
        packages=packages,
        base_packages=base_packages,
        std_deb=table.string("std-deb") if table.has("std-deb") else None,
        std_sha256=std_sha256,
    )
    table.finish()
    return entry


def _read_packages(table: Table, key: str) -> tuple[Package, ...]:
    packages = []
    for text in table.strings(key, required=True):
        try:
            packages.append(Package.parse(text))
        except ValueError as exc:
            raise table.fail(key, str(exc), hint=f"rewrite the lock with `{REFRESH_HINT}`") from None
    return tuple(sorted(packages))


def render(targets: Mapping[str, LockedImage]) -> str:
    lines = [
        "# Written by `xpcargo image lock`: the exact Debian packages of each target's image. Commit this file.",
        "# While a target has an entry here, its image is built from exactly these versions, reproducibly.",
        f"# When the mirror stops serving one of them, `{REFRESH_HINT}` rewrites the entries from today's mirror.",
        f"version = {FORMAT_VERSION}",
    ]
    for triple in sorted(targets):
        entry = targets[triple]
        lines += [
            "",
            toml_table(toml_key("targets"), toml_key(triple, quoted=True)),
            f"plan = {toml_string(entry.plan)}",
            f"build-arch = {toml_string(entry.build_arch)}",
            f"suite = {toml_string(entry.suite)}",
            f"mirror = {toml_string(entry.mirror)}",
            f"source-date-epoch = {toml_value(entry.source_date_epoch)}",
        ]
        if entry.std_deb is not None and entry.std_sha256 is not None:
            lines += [f"std-deb = {toml_string(entry.std_deb)}", f"std-sha256 = {toml_string(entry.std_sha256)}"]
        base = set(entry.base_packages)
        added = [package for package in entry.packages if package not in base]
        for key, packages in (("base-packages", entry.base_packages), ("packages", added)):
            lines.append(f"{key} = {toml_value([str(package) for package in packages], multiline=True)}")
    return "\n".join(lines) + "\n"


def save(locks: ImageLocks) -> None:
    """Write the lock file whole, or not at all."""
    try:
        write_atomically(locks.path, render(locks.targets))
    except OSError as exc:
        raise ConfigError(
            f"cannot write {locks.path}: {exc.strerror}", hint="run the command where the project is writable"
        ) from None


def differences(old: Iterable[Package], new: Iterable[Package]) -> list[str]:
    """What changed between two package lists, one `name:arch old -> new` (or `+`/`-`) per package."""
    before = {(p.name, p.arch): p.version for p in old}
    after = {(p.name, p.arch): p.version for p in new}
    changes = []
    for key in sorted(before.keys() | after.keys()):
        name = f"{key[0]}:{key[1]}"
        if key not in after:
            changes.append(f"-{name} {before[key]}")
        elif key not in before:
            changes.append(f"+{name} {after[key]}")
        elif before[key] != after[key]:
            changes.append(f"{name} {before[key]} -> {after[key]}")
    return changes
