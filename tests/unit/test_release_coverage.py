"""scripts/release_coverage.py on the real data (docs/release-coverage.toml) and the repository's toolchains.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest

import release_coverage
from release_coverage import DATA, TRIPLE, DataError, load_projects, load_xpcargo_targets, platform, rows, totals

PROJECTS = {
    "ripgrep",
    "fd",
    "bat",
    "hyperfine",
    "delta",
    "zoxide",
    "starship",
    "uv",
    "just",
    "jj",
    "typst",
    "atuin",
    "nushell",
    "helix",
    "yazi",
}

# xpcargo's targets when issue 20 measured 37 of 95 Linux slots: the glibc targets that release workflows ship.
GLIBC_TARGETS = {
    "x86_64-unknown-linux-gnu",
    "i686-unknown-linux-gnu",
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "riscv64gc-unknown-linux-gnu",
    "powerpc64le-unknown-linux-gnu",
    "s390x-unknown-linux-gnu",
}


def test_the_data_names_the_fifteen_projects_each_at_a_commit() -> None:
    projects = load_projects()
    assert {project.name for project in projects} == PROJECTS
    assert len({project.repo for project in projects}) == len(PROJECTS)
    for project in projects:
        assert len(project.commit) == 40
        assert project.sources
        assert project.targets


def test_every_triple_is_well_formed_and_of_a_known_platform() -> None:
    for project in load_projects():
        for triple in project.targets:
            assert TRIPLE.fullmatch(triple), (project.name, triple)
            assert platform(triple) in {"linux", "windows", "macos", "android", "freebsd"}, triple


@pytest.mark.parametrize(
    ("triple", "expected"),
    [
        ("x86_64-unknown-linux-musl", "linux"),
        ("arm-unknown-linux-gnueabihf", "linux"),
        ("x86_64-pc-windows-gnu", "windows"),
        ("aarch64-apple-darwin", "macos"),
        ("armv7-linux-androideabi", "android"),
        ("x86_64-unknown-freebsd", "freebsd"),
    ],
)
def test_platform_of_a_triple(triple: str, expected: str) -> None:
    assert platform(triple) == expected


def test_the_totals_add_up() -> None:
    projects = load_projects()
    built = load_xpcargo_targets()
    table = rows(projects, built)
    linux, windows, both, everything = totals(table)
    assert linux.slots == sum(platform(t) == "linux" for p in projects for t in p.targets)
    assert windows.slots == sum(platform(t) == "windows" for p in projects for t in p.targets)
    assert everything.slots == sum(len(p.targets) for p in projects)
    assert (both.slots, both.covered) == (linux.slots + windows.slots, linux.covered + windows.covered)
    assert everything.covered == sum(row.shipped_by for row in table if row.built)
    assert all(0 <= entry.covered <= entry.slots for entry in (linux, windows, both, everything))
    assert len({row.triple for row in table}) == len(table)
    assert all(1 <= row.shipped_by <= len(projects) for row in table)
    assert {row.triple for row in table if row.built} <= built


def test_the_issue_measurement_is_reproduced() -> None:
    """95 Linux slots; xpcargo's glibc targets of then covered 37; nothing built covers nothing."""
    projects = load_projects()
    linux = totals(rows(projects, GLIBC_TARGETS))[0]
    assert (linux.covered, linux.slots, linux.percent) == (37, 95, 39)
    assert totals(rows(projects, ()))[0].covered == 0


def test_main_reads_the_toolchains_it_is_given(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toolchains = tmp_path / "toolchains.yaml"
    toolchains.write_text("version: 1\ntargets:\n  x86_64-unknown-linux-musl: {}\n", encoding="utf-8")
    assert release_coverage.main(["--toolchains", str(toolchains), "--with", "x86_64-pc-windows-gnu"]) == 0
    out = capsys.readouterr().out
    assert "| `x86_64-unknown-linux-musl` | linux | 14 | yes |" in out
    assert "Linux: 14 of 95 slots covered (15 %)" in out
    assert "Windows: 2 of 35 slots covered (6 %)" in out


def test_main_says_what_is_wrong_with_a_bad_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "coverage.toml"
    data.write_text(
        DATA.read_text(encoding="utf-8").replace('"x86_64-apple-darwin"', '"x86_64 apple darwin"', 1),
        encoding="utf-8",
    )
    with pytest.raises(DataError, match="is not a target triple"):
        load_projects(data)
    assert release_coverage.main(["--data", str(data)]) == 1
    assert "'x86_64 apple darwin' is not a target triple" in capsys.readouterr().err
    assert release_coverage.main(["--toolchains", str(tmp_path / "missing.yaml")]) == 1
