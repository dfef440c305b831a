"""Image recipes (``images/<name>.yaml``): the Debian suite and mirror, the common packages, and the pinned Rust."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from xpcargo.config.schema import Table, load_yaml
from xpcargo.errors import ConfigError

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


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
    # The glibc of the suite: the newest symbol version a binary linked in the image may need. Not part of the
    # image plan (it follows from the suite); it is what `xpcargo targets` tells.
    glibc: str | None = None


def load_recipe(name: str, *, directory: Path, referenced_from: str = "") -> ImageRecipe:
    """Load and validate ``<directory>/<name>.yaml``. ``name`` is a bare name (configuration checks that), so a
    recipe can only ever come from the recipes directory."""
    path = directory / f"{name}.yaml"
    if "/" in name or not path.is_file():
        known = sorted(p.stem for p in directory.glob("*.yaml"))
        where = f" (named by {referenced_from})" if referenced_from else ""
        raise ConfigError(
            f"image recipe `{name}`{where} does not exist in {directory}",
            hint=f"known recipes: {', '.join(known) or 'none'}",
        )
    top = Table(path, "", load_yaml(path))
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
        glibc=top.string("glibc") if top.has("glibc") else None,
    )
    top.finish()
    return recipe
