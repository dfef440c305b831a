#!/usr/bin/env python3
"""Release-pipeline coverage: which of the triples popular Rust CLIs ship in their releases xpcargo builds.

Reads docs/release-coverage.toml (per project, the triples its release workflows build, and where they were read)
and the `targets` of a toolchains.yaml (the repository's by default; `--toolchains PATH` for another, such as one
with targets a branch adds), and prints two Markdown tables: per triple, how many of the projects ship it and whether
xpcargo builds it; per project, how many of its Linux triples xpcargo builds. Then the totals: the Linux slots (a
project shipping a triple is one slot) that xpcargo builds, of all Linux slots; the same for Windows, for Linux and
Windows together, and for every platform. `--with TRIPLE` counts a triple as built without a toolchains.yaml entry
(what a planned target would add). docs/release-coverage.md describes the method.

    .venv/bin/python scripts/release_coverage.py [--toolchains PATH] [--data PATH] [--with TRIPLE]...
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "docs" / "release-coverage.toml"
TOOLCHAINS = ROOT / "toolchains.yaml"

# arch-vendor-os[-env] (x86_64-unknown-linux-musl, x86_64-pc-windows-msvc), or arch-os-env without a vendor
# (aarch64-linux-android): lower-case letters, digits and `_`, three or four parts.
TRIPLE = re.compile(r"[a-z0-9_]+(?:-[a-z0-9_]+){2,3}")
COMMIT = re.compile(r"[0-9a-f]{40}")
REPO = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+")

# The order platforms are listed in; any other is listed after them, by name.
PLATFORMS = ("linux", "windows", "macos", "android")


class DataError(Exception):
    """The data file or the toolchain table is not of the expected form."""


@dataclass(frozen=True)
class Project:
    """One project's release: its repository, the commit and files its triples were read from, the triples."""

    name: str
    repo: str
    commit: str
    sources: tuple[str, ...]
    targets: tuple[str, ...]


@dataclass(frozen=True)
class Row:
    """One triple: its platform, how many projects ship it, and whether xpcargo builds it."""

    triple: str
    platform: str
    shipped_by: int
    built: bool


@dataclass(frozen=True)
class Total:
    """Slots (one per project and triple) of some platforms, and how many of them xpcargo builds."""

    label: str
    covered: int
    slots: int

    @property
    def percent(self) -> int:
        """The share covered, rounded to a whole percent (0 when there are no slots)."""
        return round(100 * self.covered / self.slots) if self.slots else 0


def platform(triple: str) -> str:
    """The platform a triple's binaries run on: linux (GNU or musl), windows, macos, android, or its OS part."""
    parts = triple.split("-")
    if "android" in triple:
        return "android"
    if "linux" in parts:
        return "linux"
    if "windows" in parts:
        return "windows"
    if "darwin" in parts:
        return "macos"
    return parts[2] if len(parts) > 2 else parts[-1]


def _strings(value: object, what: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DataError(f"{what} is not a list of strings")
    return tuple(str(item) for item in value)


def _string(entry: dict[str, object], key: str, what: str, pattern: re.Pattern[str] | None = None) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value or (pattern is not None and not pattern.fullmatch(value)):
        raise DataError(f"{what}: `{key}` is missing or malformed: {value!r}")
    return value


def load_projects(path: Path = DATA) -> list[Project]:
    """The projects of the data file, each checked: a repository, a full commit, sources, well-formed triples."""
    with path.open("rb") as file:
        document = tomllib.load(file)
    entries = document.get("project")
    if not isinstance(entries, list) or not entries:
        raise DataError(f"{path}: no [[project]] entries")
    projects: list[Project] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise DataError(f"{path}: a [[project]] entry is not a table")
        name = _string(entry, "name", str(path))
        what = f"{path}: project {name}"
        targets = _strings(entry.get("targets"), f"{what}: `targets`")
        for triple in targets:
            if not TRIPLE.fullmatch(triple):
                raise DataError(f"{what}: {triple!r} is not a target triple")
        if len(set(targets)) != len(targets):
            raise DataError(f"{what}: a triple is listed twice")
        sources = _strings(entry.get("sources"), f"{what}: `sources`")
        if not sources:
            raise DataError(f"{what}: no `sources`")
        projects.append(
            Project(
                name=name,
                repo=_string(entry, "repo", what, REPO),
                commit=_string(entry, "commit", what, COMMIT),
                sources=sources,
                targets=targets,
            )
        )
    if len({project.name for project in projects}) != len(projects):
        raise DataError(f"{path}: a project is listed twice")
    return projects


def load_xpcargo_targets(path: Path = TOOLCHAINS) -> frozenset[str]:
    """The triples a toolchains.yaml names under `targets`."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    targets = document.get("targets") if isinstance(document, dict) else None
    if not isinstance(targets, dict) or not targets:
        raise DataError(f"{path}: no `targets` table")
    return frozenset(str(name) for name in targets)


def _platform_order(name: str) -> tuple[int, str]:
    return (PLATFORMS.index(name) if name in PLATFORMS else len(PLATFORMS), name)


def rows(projects: Sequence[Project], built: Iterable[str]) -> list[Row]:
    """Every triple some project ships: by platform, then the most shipped first, then by name."""
    built = frozenset(built)
    counts: dict[str, int] = {}
    for project in projects:
        for triple in project.targets:
            counts[triple] = counts.get(triple, 0) + 1
    table = [Row(triple, platform(triple), count, triple in built) for triple, count in counts.items()]
    return sorted(table, key=lambda row: (_platform_order(row.platform), -row.shipped_by, row.triple))


def total(table: Sequence[Row], label: str, platforms: Iterable[str] | None = None) -> Total:
    """The slots of the rows of some platforms (all when None), and how many of them xpcargo builds."""
    chosen = None if platforms is None else frozenset(platforms)
    picked = [row for row in table if chosen is None or row.platform in chosen]
    return Total(label, sum(row.shipped_by for row in picked if row.built), sum(row.shipped_by for row in picked))


def totals(table: Sequence[Row]) -> list[Total]:
    """Linux, Windows, the two together, and every platform."""
    return [
        total(table, "Linux", ["linux"]),
        total(table, "Windows", ["windows"]),
        total(table, "Linux + Windows", ["linux", "windows"]),
        total(table, "all platforms"),
    ]


def render(projects: Sequence[Project], built: Iterable[str]) -> str:
    """The two tables and the totals, as Markdown."""
    built = frozenset(built)
    table = rows(projects, built)
    lines = [
        f"Triples shipped by the release workflows of {len(projects)} projects; xpcargo's targets: {len(built)}.",
        "",
        "| triple | platform | shipped by | xpcargo builds it |",
        "| --- | --- | ---: | --- |",
    ]
    lines += [
        f"| `{row.triple}` | {row.platform} | {row.shipped_by} | {'yes' if row.built else 'no'} |" for row in table
    ]
    lines += ["", "| project | Linux triples | xpcargo builds | Linux triples xpcargo does not build |"]
    lines += ["| --- | ---: | ---: | --- |"]
    for project in projects:
        linux = [triple for triple in project.targets if platform(triple) == "linux"]
        missing = sorted(triple for triple in linux if triple not in built)
        shown = ", ".join(f"`{triple}`" for triple in missing) or "-"
        lines.append(f"| {project.name} | {len(linux)} | {len(linux) - len(missing)} | {shown} |")
    lines += [""]
    lines += [
        f"{entry.label}: {entry.covered} of {entry.slots} slots covered ({entry.percent} %)" for entry in totals(table)
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--toolchains", type=Path, default=TOOLCHAINS, help="the toolchains.yaml whose targets count")
    parser.add_argument("--data", type=Path, default=DATA, help="the projects' triples (docs/release-coverage.toml)")
    parser.add_argument(
        "--with",
        dest="extra",
        action="append",
        default=[],
        metavar="TRIPLE",
        help="count TRIPLE as built too (repeatable)",
    )
    arguments = parser.parse_args(argv)
    try:
        projects = load_projects(arguments.data)
        built = load_xpcargo_targets(arguments.toolchains)
    except (OSError, DataError, tomllib.TOMLDecodeError, yaml.YAMLError) as error:
        print(f"release_coverage: {error}", file=sys.stderr)
        return 1
    for triple in arguments.extra:
        if not TRIPLE.fullmatch(triple):
            print(f"release_coverage: {triple!r} is not a target triple", file=sys.stderr)
            return 2
    print(render(projects, built | frozenset(arguments.extra)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
