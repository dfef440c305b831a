"""The entry point: the help cache (typer's own help, printed again from the cache only while what it was made from is
unchanged), and what a warm build and `image list` import on their way to the engine."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from xpcargo import cli, installation, launch
from xpcargo.errors import EngineUnavailableError


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
    monkeypatch.setattr(installation, "PACKAGE_DIR", str(package))
    monkeypatch.setattr(sys, "path", ["", str(site)])
    before = installation.source_fingerprint()
    assert installation.source_fingerprint() == before

    os.utime(source, ns=(0, source.stat().st_mtime_ns + 1))
    edited = installation.source_fingerprint()
    assert edited != before

    os.utime(site, ns=(0, site.stat().st_mtime_ns + 1))  # pip installed, upgraded or removed a package
    assert installation.source_fingerprint() != edited


def test_entries_of_an_older_fingerprint_are_dropped(cache: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache.mkdir(parents=True)
    (cache / "00000000-78-xpcargo.txt").write_text("stale help\n", encoding="utf-8")
    _, out, _ = _run(capsys, launch.main, "--help")
    assert out.startswith("Usage: xpcargo")
    assert [entry.name.split("-")[0] for entry in cache.iterdir()] == [installation.source_fingerprint()]


def test_a_cache_that_cannot_be_written_still_prints_the_help(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("XPCARGO_CACHE_DIR", str(blocker))
    code, out, _ = _run(capsys, launch.main, "--help")
    assert code == 0
    assert out.startswith("Usage: xpcargo")


# What a warm no-op build and `image list` import, up to the engine: xpcargo's own modules counted (a number that
# does not move with the machine's load, as their import time does by 3x on the two shared cores), and modules that
# have no business there refused. A change that adds a module to these paths raises the budget here, on purpose.
# Both with xpcargo.emulation: the exec preload, which a foreign glibc target's runner sets and its layer's plan
# (its digest) holds. Both with xpcargo.container.docker.socket_api, the engine's API on its socket.
# Both with xpcargo.installation (the cache dir and the source's fingerprint, moved out of xpcargo.launch) and
# xpcargo.container.host_view (the warm key's view of the mounts' sources, out of xpcargo.container.warm), and with
# xpcargo.replay, which is tried first. A build with xpcargo.pipeline.replay_record and xpcargo.replay_listing, which
# keep a no-op's record; `image list` with xpcargo.replay_listing once the engine answered (what a replay imports is
# tests/integration/test_replay.py's).
_BUILD_BUDGET = 82
_IMAGE_LIST_BUDGET = 53
# The Docker SDK, and requests and urllib3 under it: an engine on a unix socket is asked through ``socket_api`` on
# these paths (the SDK's import alone costs more than a whole `docker exec`). paramiko (and invoke, cryptography,
# asyncio and unittest under it) came with the SDK whenever the ssh extra was installed. The rest is a remote
# engine's, or an image build's.
# PyYAML: the toolchain table and the recipes are read back from the parses an earlier command kept. logging: only
# paramiko's is set up (xpcargo.container.docker.ssh, for ssh:// engines).
_NEVER = (
    "docker",
    "requests",
    "urllib3",
    "paramiko",
    "invoke",
    "cryptography",
    "asyncio",
    "unittest",
    "yaml",
    "logging",
)
_NOT_ON_A_LOCAL_BUILD = (
    "xpcargo.pipeline.remote",
    "xpcargo.pipeline.sync",
    "xpcargo.image.send",
    "xpcargo.container.volumes",
    "xpcargo.container.docker.ssh",
    "xpcargo.image.debian",
    "xpcargo.release",
)


def _imported(cwd: Path, scratch: Path, *argv: str) -> set[str]:
    """The modules `xpcargo ARGV...` has imported when it exits, run through the real entry point with an engine
    that is not there: the command fails where it first asks the engine, having imported all it needs up to there.
    (What a warm build imports past that point, with a real engine, is test_warm's.)"""
    listing = scratch / "modules.json"
    environ = {
        **os.environ,
        "DOCKER_HOST": f"unix://{scratch}/no-engine.sock",
        "XPCARGO_CACHE_DIR": str(scratch / "cache"),
        "XPCARGO_REMOTE": "0",
    }
    environ.pop("DOCKER_CONTEXT", None)
    # Written at exit: xpcargo ends by SystemExit.
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(listing)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from xpcargo.launch import main\n"
        "main()\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", code, *argv], cwd=cwd, env=environ, capture_output=True, text=True, check=False
    )
    assert finished.returncode == EngineUnavailableError.exit_code, finished.stderr
    assert finished.stderr.startswith("error: cannot reach a container engine"), finished.stderr
    return set(json.loads(listing.read_text(encoding="utf-8")))


def _check(imported: set[str], *, budget: int, refused: tuple[str, ...]) -> None:
    own = sorted(name for name in imported if name.split(".")[0] == "xpcargo")
    assert not [name for name in sorted(imported) if name.split(".")[0] in _NEVER or name.startswith(refused)]
    assert len(own) <= budget, f"{len(own)} of xpcargo's modules imported, the budget is {budget}: {own}"


def test_a_build_imports_within_its_budget(tmp_path: Path) -> None:
    project = tmp_path / "a project"
    shutil.copytree(Path(__file__).resolve().parents[1] / "fixtures" / "seed-c-lib", project)
    # The first build parses the YAML files and keeps their parses (``schema.load_yaml``); the next is the one
    # counted.
    assert "yaml" in _imported(project, tmp_path, "build", "--target", "x86_64-unknown-linux-gnu")
    imported = _imported(project, tmp_path, "build", "--target", "x86_64-unknown-linux-gnu")
    # The planning ran (the project's target settings) and the engine was asked: the path up to the engine.
    assert {"xpcargo.pipeline.plan", "xpcargo.config.targets", "xpcargo.container.docker.socket_api"} <= imported
    _check(imported, budget=_BUILD_BUDGET, refused=_NOT_ON_A_LOCAL_BUILD)


def test_image_list_imports_within_its_budget(tmp_path: Path) -> None:
    _imported(tmp_path, tmp_path, "image", "list")
    imported = _imported(tmp_path, tmp_path, "image", "list")
    assert "xpcargo.container.docker.socket_api" in imported
    _check(imported, budget=_IMAGE_LIST_BUDGET, refused=(*_NOT_ON_A_LOCAL_BUILD, "xpcargo.pipeline"))
