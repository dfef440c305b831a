"""The help cache: typer's own help, printed again from the cache only while what it was made from is unchanged."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from xpcargo import cli, launch


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XPCARGO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "100")
    return tmp_path / "cache" / "help"


def _run(capsys: pytest.CaptureFixture[str], main: object, *argv: str) -> tuple[object, str, str]:
    assert callable(main)
    with pytest.raises(SystemExit) as caught:
        main(list(argv))
    captured = capsys.readouterr()
    return caught.value.code, captured.out, captured.err


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        (["--help"], "xpcargo"),
        (["image", "--help"], "xpcargo+image"),
        (["image", "list", "--help"], "xpcargo+image+list"),
        (["image-list", "--help"], "xpcargo+image-list"),
        (["build", "--help"], "xpcargo+build"),
        ([], None),
        (["build"], None),
        (["build", "--target", "x", "--help"], None),
        (["--version", "--help"], None),
        (["a", "b", "c", "--help"], None),
        (["../up", "--help"], None),
        (["", "--help"], None),
    ],
)
def test_only_a_plain_help_request_has_an_entry(argv: list[str], name: str | None) -> None:
    assert launch._entry_name(argv) == name


@pytest.mark.parametrize("argv", [["--help"], ["image", "--help"], ["build", "--help"]])
def test_the_cached_help_is_typers_help(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    expected = _run(capsys, cli.main, *argv)
    assert _run(capsys, launch.main, *argv) == expected
    assert len(list(cache.iterdir())) == 1

    def no_typer(args: list[str], entry: str) -> None:
        raise AssertionError("the second help ran the CLI")

    monkeypatch.setattr(launch, "_help_and_keep", no_typer)
    assert _run(capsys, launch.main, *argv) == expected


def test_an_error_is_not_kept(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(capsys, launch.main, "frobnicate", "--help")
    assert code == 2
    assert out == ""
    assert "frobnicate" in err
    assert not cache.exists() or not list(cache.iterdir())


def test_another_width_is_another_entry(
    cache: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _run(capsys, launch.main, "--help")
    monkeypatch.setenv("COLUMNS", "60")
    _, narrow, _ = _run(capsys, launch.main, "--help")
    assert max(len(line) for line in narrow.splitlines()) <= 58
    assert len(list(cache.iterdir())) == 2


def test_the_fingerprint_follows_the_source_and_the_installed_packages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package, site = tmp_path / "xpcargo", tmp_path / "site-packages"
    package.mkdir()
    site.mkdir()
    source = package / "cli.py"
    source.write_text("help = 'one'\n", encoding="utf-8")
    monkeypatch.setattr(launch, "_PACKAGE_DIR", str(package))
    monkeypatch.setattr(sys, "path", ["", str(site)])
    before = launch._fingerprint()
    assert launch._fingerprint() == before

    os.utime(source, ns=(0, source.stat().st_mtime_ns + 1))
    edited = launch._fingerprint()
    assert edited != before

    os.utime(site, ns=(0, site.stat().st_mtime_ns + 1))  # pip installed, upgraded or removed a package
    assert launch._fingerprint() != edited


def test_entries_of_an_older_fingerprint_are_dropped(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache.mkdir(parents=True)
    (cache / "00000000-78-xpcargo.txt").write_text("stale help\n", encoding="utf-8")
    _, out, _ = _run(capsys, launch.main, "--help")
    assert out.startswith("Usage: xpcargo")
    assert [entry.name.split("-")[0] for entry in cache.iterdir()] == [launch._fingerprint()]


def test_a_cache_that_cannot_be_written_still_prints_the_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("XPCARGO_CACHE_DIR", str(blocker))
    code, out, _ = _run(capsys, launch.main, "--help")
    assert code == 0
    assert out.startswith("Usage: xpcargo")
