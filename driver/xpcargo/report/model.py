"""The build-script report's values: per package whose build script ran (or whose ``links`` is overridden), what it
gave Cargo, where each library it linked came from, and the final artifacts of the build with their glibc need."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import PurePath

from xpcargo.artifacts import Artifact


class Origin(str, enum.Enum):
    """Where a linked library was found, on the paths the linker searches for it."""

    # Under a build script's OUT_DIR: built or unpacked by the build (bundled, vendored).
    OUT_DIR = "out_dir"
    # In the image: a Debian package's file (``debian_package`` says which), or one no package owns.
    IMAGE = "image"
    # Under a directory the project mounts (`mounts`).
    MOUNT = "mount"
    # Under a search path of a `links` override.
    LINKS_OVERRIDE = "links_override"
    # Elsewhere in the project's own directories (the workspace, a path dependency, CARGO_HOME).
    PROJECT = "project"
    # On none of the paths searched: linked by a flag the report does not follow, or not at all (`check`).
    NOT_FOUND = "not_found"


@dataclass(frozen=True, kw_only=True)
class LinkedLibrary:
    """One entry of ``linked_libs``, and the file the linker finds for it."""

    # The library's name, without kind or modifiers (`z` of `static=z`).
    name: str
    # `static`, `dylib`, or None when the build script named no kind (the linker takes a shared library first).
    kind: str | None
    path: str | None
    origin: Origin
    # The Debian package (or packages, comma-separated, as `dpkg -S` says) that owns ``path``, for the image.
    debian_package: str | None = None


@dataclass(frozen=True, kw_only=True)
class PackageReport:
    """One package's build script (or ``links`` override), as Cargo used it for the target."""

    package: str
    version: str
    links: str | None
    # Absolute; None when an override replaced the build script.
    out_dir: str | None
    linked_libs: tuple[str, ...]
    linked_paths: tuple[str, ...]
    cfgs: tuple[str, ...]
    env: dict[str, str]
    # Normalised KEY -> VALUE, exactly as immediate dependents receive DEP_<LINKS>_<KEY>.
    metadata: dict[str, str]
    warnings: tuple[str, ...]
    overridden: bool
    # The build script ran for the build machine, not the target: a build-dependency's or a proc-macro's.
    host: bool = False
    # Where each of ``linked_libs`` came from, after a successful build (see report.origins).
    libraries: tuple[LinkedLibrary, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """The build scripts of one Cargo command for one target and profile, and the artifacts it made."""

    target: str
    profile: str
    success: bool
    # Sorted by package name, then version.
    packages: tuple[PackageReport, ...]
    # The newest glibc the target's artifacts may need (the image's own, or the project's lower floor).
    glibc_floor: str | None = None
    # Each with its glibc need (no size or sha256: the report does not keep them).
    artifacts: tuple[Artifact, ...] = ()


def target_dir_name(target: str) -> str:
    # Cargo names a target's directory after the triple, or after the file stem of a custom target's JSON file.
    return PurePath(target).stem if target.endswith(".json") else target


def is_text(value: object) -> bool:
    """A str that can be written out: JSON's `\\ud800` escapes give lone surrogates, which no UTF-8 stream takes."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
