"""Reproducible mode: what a build must not depend on, fixed before Cargo runs.

Two builds of the same sources with the same image give the same bytes when nothing else reaches the compilers:
not the clock (``SOURCE_DATE_EPOCH``, from the last commit), not where the checkout, the target dir and
``CARGO_HOME`` are (each mapped to a fixed name in debuginfo, panics and ``file!()``, for rustc and for the C and C++
compilers), not the locale, the time zone, the umask or the user's name (fixed in the container). ``--locked``,
``CARGO_INCREMENTAL=0`` and a build with no network complete it.

The flags are added to the user's own, never put in their place: Cargo reads the first of
``CARGO_ENCODED_RUSTFLAGS``, ``RUSTFLAGS``, ``target.<triple>.rustflags`` (joined with matching
``target.<cfg>.rustflags``) and ``build.rustflags``, and the cc crate the first of ``CFLAGS_<target>``,
``CFLAGS_<target_with_underscores>``, ``TARGET_CFLAGS`` and ``CFLAGS``. Everything here is pure apart from reading
the Cargo config files and reading the last commit's time from git.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcargo.config.schema import read_toml
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.files import toml_key, toml_table, toml_value
from xpcargo.pipeline import git_checkout

# The names the host paths are given in what the compilers write.
SOURCE_NAME = "/xpcargo/source"
TARGET_NAME = "/xpcargo/target"
CARGO_HOME_NAME = "/xpcargo/cargo-home"
OUTSIDE_NAME = "/xpcargo/outside"
# Cargo's separator in CARGO_ENCODED_RUSTFLAGS.
_UNIT_SEPARATOR = "\x1f"


@dataclass(frozen=True, kw_only=True)
class Variation:
    """What the container looks like beyond the build's own inputs: the things a rebuild elsewhere would differ in
    (the checkout's path aside, which is remapped, not fixed)."""

    user: str
    locale: str
    timezone: str
    umask: str
    home: str

    def environment(self) -> dict[str, str]:
        return {
            "USER": self.user,
            "LOGNAME": self.user,
            "LANG": self.locale,
            "LC_ALL": self.locale,
            "TZ": self.timezone,
            "HOME": self.home,
        }


# What a reproducible build fixes them to.
FIXED = Variation(user="xpcargo", locale="C.UTF-8", timezone="UTC", umask="0022", home="/tmp")  # noqa: S108
# What `xpcargo verify` changes for its second build: a POSIX TZ string (no tzdata needed) 14 hours and a half
# away, a locale that is not C (the image may lack its data; libc then falls back, but the variables still differ),
# a group-writable umask, another user name and home.
VARIED = Variation(user="rebuilder", locale="fr_FR.UTF-8", timezone="XPC-14:30", umask="0002", home="/var/tmp")  # noqa: S108 - in the container


@dataclass(frozen=True, kw_only=True)
class Reproducibility:
    """The settings of one reproducible build."""

    source_date_epoch: int
    # Where the epoch came from, for the provenance and messages: "environment" or "git".
    epoch_source: str
    variation: Variation = FIXED

    def with_variation(self, variation: Variation) -> Reproducibility:
        return Reproducibility(
            source_date_epoch=self.source_date_epoch, epoch_source=self.epoch_source, variation=variation
        )


def source_date_epoch(environ: Mapping[str, str], workspace_root: Path) -> tuple[int, str]:
    """``SOURCE_DATE_EPOCH`` from the environment, else the time of the workspace's last git commit."""
    configured = environ.get("SOURCE_DATE_EPOCH", "").strip()
    if configured:
        if not configured.isdigit():
            raise ConfigError(
                f"SOURCE_DATE_EPOCH={configured!r} is not a number of seconds since 1970",
                hint="set it to a Unix timestamp, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)",
            )
        return int(configured), "environment"
    hint = "set SOURCE_DATE_EPOCH to a Unix timestamp, e.g. the release's commit time: `git log -1 --format=%ct`"
    if shutil.which("git") is None:
        raise ProjectError(
            "a reproducible build needs SOURCE_DATE_EPOCH, and git is not installed to read it", hint=hint
        )
    # Read without the checkout's git config, which a build script may have written (git_checkout says how).
    stamp = git_checkout.read(workspace_root, environ).commit_time
    if stamp is None:
        raise ProjectError(
            f"a reproducible build needs SOURCE_DATE_EPOCH, and {workspace_root} is not in a git repository with a "
            "commit to take it from",
            hint=hint,
        )
    return stamp, "git"


def remapping(
    *, workspace_root: Path, target_dir: Path, cargo_home: Path, outside: Sequence[Path] = ()
) -> tuple[tuple[Path, str], ...]:
    """Each host path a compiler may record, with the fixed name it is given, the least specific first: rustc and
    gcc both let the last matching mapping win, so a target dir inside the workspace keeps its own name."""
    pairs = [
        (workspace_root, SOURCE_NAME),
        (target_dir, TARGET_NAME),
        (cargo_home, CARGO_HOME_NAME),
        *((path, f"{OUTSIDE_NAME}/{index}") for index, path in enumerate(outside)),
    ]
    return tuple(sorted(pairs, key=lambda pair: len(pair[0].parts)))


def rustc_remap_flags(remaps: Sequence[tuple[Path, str]]) -> list[str]:
    return [f"--remap-path-prefix={path}={name}" for path, name in remaps]


def c_remap_flags(remaps: Sequence[tuple[Path, str]]) -> list[str]:
    # -ffile-prefix-map covers debug info, __FILE__ and the profile data paths alike.
    return [f"-ffile-prefix-map={path}={name}" for path, name in remaps]


@dataclass(frozen=True, kw_only=True)
class RustFlags:
    """How the remapping reaches rustc: in the environment, or as a Cargo config value passed with ``--config``."""

    env: Mapping[str, str]
    # A TOML document for `--config`, or None.
    config: str | None
    # Environment variables the user set that the env above replaces (RUSTFLAGS, when it became the encoded form).
    removed: tuple[str, ...] = ()


def merge_rustflags(
    ours: Sequence[str], *, environ: Mapping[str, str], config_files: Sequence[Path], triple: str
) -> RustFlags:
    """Add ``ours`` to whichever rustflags Cargo would use for the target, in the form that keeps the user's."""
    encoded = environ.get("CARGO_ENCODED_RUSTFLAGS")
    if encoded is not None:
        theirs = encoded.split(_UNIT_SEPARATOR) if encoded else []
        return RustFlags(env={"CARGO_ENCODED_RUSTFLAGS": _UNIT_SEPARATOR.join([*theirs, *ours])}, config=None)
    plain = environ.get("RUSTFLAGS")
    if plain is not None:
        # Cargo splits RUSTFLAGS on white space; the encoded form carries paths with spaces in them too.
        return RustFlags(
            env={"CARGO_ENCODED_RUSTFLAGS": _UNIT_SEPARATOR.join([*plain.split(), *ours])},
            config=None,
            removed=("RUSTFLAGS",),
        )
    # From the Cargo config: target.<triple>.rustflags (or any target.<cfg>.rustflags, joined with it) wins over
    # build.rustflags, so ours join the table Cargo will use. A list given with --config is appended to the files'
    # lists; a string would be refused in a merge with a list, and replaces a string, so then the user's string
    # is given again with ours after it.
    tables = [_read_config(path) for path in config_files]
    key = ("target", triple) if any(_has_target_rustflags(table, triple) for table in tables) else ("build",)
    value = next((found for table in tables if (found := _rustflags_at(table, key)) is not None), None)
    if isinstance(value, str):
        merged: str | list[str] = " ".join([value, *ours])
        if any(" " in flag for flag in ours):
            raise ConfigError(
                f"the Cargo config's {'.'.join(key)}.rustflags is a string, and a path to remap has a space in it",
                hint="write rustflags as a list in the Cargo config, or set RUSTFLAGS",
            )
    else:
        merged = list(ours)
    header = toml_table(*(toml_key(part) for part in key))
    return RustFlags(env={}, config=f"{header}\nrustflags = {toml_value(merged)}\n")


def _read_config(path: Path) -> dict[str, Any]:
    try:
        return read_toml(path)
    except ConfigError:
        return {}


def _has_target_rustflags(table: Mapping[str, Any], triple: str) -> bool:
    targets = table.get("target")
    if not isinstance(targets, dict):
        return False
    return any(
        isinstance(entry, dict) and "rustflags" in entry and (name == triple or name.startswith("cfg("))
        for name, entry in targets.items()
    )


def _rustflags_at(table: Mapping[str, Any], key: tuple[str, ...]) -> object:
    current: object = table
    for part in key:
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current.get("rustflags") if isinstance(current, dict) else None


def merge_c_flags(ours: Sequence[str], *, environ: Mapping[str, str], triple: str) -> dict[str, str]:
    """``CFLAGS_<target>`` and ``CXXFLAGS_<target>`` with ``ours`` after the flags the cc crate would have used:
    it reads only the first of its candidates, so the user's choice is carried into the one set here."""
    lower = triple.replace("-", "_")
    env = {}
    for variable in ("CFLAGS", "CXXFLAGS"):
        candidates = (f"{variable}_{triple}", f"{variable}_{lower}", f"TARGET_{variable}", variable)
        theirs = next((environ[name] for name in candidates if name in environ), "")
        env[f"{variable}_{lower}"] = " ".join(part for part in (theirs, " ".join(ours)) if part)
    return env


def environment(settings: Reproducibility) -> dict[str, str]:
    """The variables of a reproducible run, apart from the flags."""
    return {
        **settings.variation.environment(),
        "SOURCE_DATE_EPOCH": str(settings.source_date_epoch),
        "CARGO_INCREMENTAL": "0",
    }


def umask_argv(argv: Sequence[str], umask: str) -> list[str]:
    """``argv`` run under ``umask``: an exec has no umask of its own to set, so a shell sets it and steps aside."""
    return ["sh", "-c", 'umask "$0" && exec "$@"', umask, *argv]
