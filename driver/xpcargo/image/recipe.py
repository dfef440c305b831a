"""Image recipes (``images/<name>.yaml``): the Debian suite and mirror, the common packages, and the pinned Rust."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xpcargo.config.schema import Table, load_yaml
from xpcargo.errors import ConfigError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^[0-9]+\.[0-9]+$")


@dataclass(frozen=True, kw_only=True)
class RustToolchain:
    version: str
    packages: tuple[str, ...]
    std_package: str
    std_pool: str
    std_sha256: Mapping[str, str]
    # The std's sources (``rust.source``), for a target whose std Debian does not package: built in its layer.
    source: RustSource | None = None
    # Debian's arch-independent std packages of this Rust, by target (``rust.std.arch-independent``: wasm32-wasip1's
    # libstd-rust-dev-wasm32), installed through apt with the target's packages, pinned to ``version``.
    std_arch_independent: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class RustSource:
    """Debian's package of the std's sources for the recipe's rustc (``rust-web-src``): arch-independent, taken
    from the pool like a foreign std and pinned by sha256. Its own version: a rebuild of rustc for one
    architecture (``+b1``) does not rebuild the sources."""

    package: str
    version: str
    sha256: str
    # Debian packages a std build with compiler-rt's C builtins needs that the sources do not vendor: the `cc`
    # crate that compiler-builtins compiles them with (librust-cc-dev).
    build_packages: tuple[str, ...] = ()

    @property
    def filename(self) -> str:
        return f"{self.package}_{self.version}_all.deb"


@dataclass(frozen=True, kw_only=True)
class SourceFile:
    """One file of a Debian source package in the mirror's pool, pinned by sha256."""

    path: str  # pool/main/m/musl/musl_1.2.5.orig.tar.gz
    sha256: str


@dataclass(frozen=True, kw_only=True)
class SourcePackage:
    """A Debian source package a target's layer builds part of its C runtime from (``c-runtime-sources``): its
    upstream tarball and, where Debian patches it, its debian tarball (whose patches the build applies)."""

    orig: SourceFile
    debian: SourceFile | None = None


# The source packages a C runtime is built from, by role: musl's C library and start files; LLVM's libunwind and
# compiler-rt's crtbegin.c/crtend.c (from the same upstream tarball, whose other 160 MB are not unpacked). The std's
# compiler-rt builtins (`std-cc`) come from the same LLVM tarball.
C_RUNTIME_ROLES = ("musl", "llvm")


@dataclass(frozen=True, kw_only=True)
class GlibcFloor:
    """An older glibc that binaries built in the image can be linked against: Debian's .debs of another suite,
    pinned by sha256 per Debian architecture, unpacked on the host into a sysroot (see pipeline.floor)."""

    version: str
    suite: str
    # Debian arch -> ((pool path, sha256), ...)
    debs: Mapping[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True, kw_only=True)
class ImageRecipe:
    name: str
    source: Path
    suite: str
    mirror: str
    packages: tuple[str, ...]
    rust: RustToolchain
    dpkg_exclude: tuple[str, ...]
    # The glibc of the suite: the newest symbol version a binary linked in the image may need. Not part of the
    # image plan (it follows from the suite); it is what `xpcargo targets` tells.
    glibc: str | None = None
    # Lower floors a target may ask for (`glibc = "2.36"`), by version. Not part of the image plan either: the
    # image stays the same, and the older libc is mounted beside it.
    glibc_floors: Mapping[str, GlibcFloor] = field(default_factory=dict)
    # The Debian sources a target's own C runtime is built from (`std-c-runtime`), by role (C_RUNTIME_ROLES).
    c_runtime_sources: Mapping[str, SourcePackage] = field(default_factory=dict)


def load_recipe(name: str, *, directory: Path, referenced_from: str = "", parsed: Path | None = None) -> ImageRecipe:
    """Load and validate ``<directory>/<name>.yaml``. ``name`` is a bare name (configuration checks that), so a
    recipe can only ever come from the recipes directory (``parsed``: see ``load_yaml``)."""
    path = directory / f"{name}.yaml"
    if "/" in name or not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        where = f" (named by {referenced_from})" if referenced_from else ""
        raise ConfigError(
            f"image recipe `{name}`{where} does not exist in {directory}",
            hint=f"known recipes: {', '.join(known) or 'none'}",
        )
    top = Table(path, "", load_yaml(path, parsed=parsed))
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
        source=_rust_source(rust.table("source")),
        std_arch_independent=_arch_independent(std.table("arch-independent")),
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
        glibc=top.string("glibc") if top.has("glibc") else None,
        glibc_floors=_glibc_floors(top.table("glibc-floors")),
        c_runtime_sources=_c_runtime_sources(top.table("c-runtime-sources")),
    )
    top.finish()
    return recipe


_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def _arch_independent(table: Table | None) -> Mapping[str, str]:
    if table is None:
        return {}
    packages = {}
    for triple in table.names():
        package = table.string(triple)
        if not _PACKAGE_NAME.match(package):
            raise table.fail(triple, f"`{package}` is not a Debian package name")
        packages[triple] = package
    table.finish()
    return packages


def _rust_source(table: Table | None) -> RustSource | None:
    if table is None:
        return None
    digest = table.string("sha256")
    if not _SHA256.match(digest):
        raise table.fail("sha256", "expected 64 lowercase hexadecimal digits")
    source = RustSource(
        package=table.string("package"),
        version=table.string("version"),
        sha256=digest,
        build_packages=table.strings("build-packages"),
    )
    table.finish()
    return source


def _glibc_floors(table: Table | None) -> Mapping[str, GlibcFloor]:
    if table is None:
        return {}
    floors = {}
    for version in table.names():
        if not _VERSION.match(version):
            raise table.fail(version, "expected a glibc version such as `2.36`")
        entry = table.required_table(version)
        debs_table = entry.required_table("debs")
        debs: dict[str, tuple[tuple[str, str], ...]] = {}
        for arch in debs_table.names():
            pinned = []
            for line in debs_table.strings(arch, required=True):
                path, _, digest = line.partition(" ")
                digest = digest.strip()
                if not path.startswith("pool/") or not path.endswith(".deb") or not _SHA256.match(digest):
                    raise debs_table.fail(arch, f"`{line}` is not `pool/<path>.deb <sha256>`")
                pinned.append((path, digest))
            debs[arch] = tuple(pinned)
        debs_table.finish()
        floors[version] = GlibcFloor(version=version, suite=entry.string("suite"), debs=debs)
        entry.finish()
    table.finish()
    return floors


def _c_runtime_sources(table: Table | None) -> Mapping[str, SourcePackage]:
    if table is None:
        return {}
    packages = {}
    for role in table.names():
        if role not in C_RUNTIME_ROLES:
            raise table.fail(role, f"expected one of {', '.join(C_RUNTIME_ROLES)}")
        entry = table.required_table(role)
        debian = _source_file(entry, "debian") if entry.has("debian") else None
        packages[role] = SourcePackage(orig=_source_file(entry, "orig"), debian=debian)
        entry.finish()
    table.finish()
    return packages


def _source_file(table: Table, key: str) -> SourceFile:
    line = table.string(key)
    path, _, digest = line.partition(" ")
    digest = digest.strip()
    if not re.fullmatch(r"pool/[A-Za-z0-9_.+~/-]+\.tar\.(gz|xz)", path) or "/../" in path or not _SHA256.match(digest):
        raise table.fail(key, f"`{line}` is not `pool/<path>.tar.<gz|xz> <sha256>`")
    return SourceFile(path=path, sha256=digest)
