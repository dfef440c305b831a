"""A no-op build replayed (``xpcargo.replay``), on the real engine: the third `xpcargo build` of an unchanged project
runs Cargo in its warm container without importing the CLI, says what the usual way says, and leaves the report as
it was; an edit, or a consent withdrawn, takes the usual way at once; and a build script cannot forge the record a
replay is made from (the replay-hostile fixture).

Which way a command took is read off Python's own import log (`-X importtime`): a replay never imports
``xpcargo.cli``.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest

from xpcargo import installation, replay
from xpcargo.container.host_view import MOUNT_TABLE

from .helpers import X86_64, Cli, Result, copy_fixture, docker, run_argv, single_error_line

pytestmark = pytest.mark.engine

UNTRUSTED = 13


# All that a replay may import of xpcargo's; and what it must not import of the standard library (each costs more
# than the replay's own work: docs/costs.md).
_REPLAY_MODULES = {
    "xpcargo",
    "xpcargo.launch",
    "xpcargo.installation",
    "xpcargo.replay",
    "xpcargo.container",
    "xpcargo.container.docker",
    "xpcargo.container.docker.replay_exec",
    "xpcargo.container.host_view",
}
_NOT_IN_A_REPLAY = {"socket", "json", "re", "typing", "pathlib", "dataclasses", "enum", "hashlib", "selectors"}


def _xpcargo(cli: Cli, project: Path, args: list[str], env: Mapping[str, str | None]) -> tuple[Result, bool]:
    """Run xpcargo as its console script does; the result without the import log, and whether it was replayed
    (checking, when it was, that it imported no more than a replay may)."""
    argv = (sys.executable, "-X", "importtime", "-m", "xpcargo", *args)
    result = run_argv(argv, cwd=project, env={**cli.env, **env})
    lines = result.stderr.splitlines()
    imported = {line.split("|")[-1].strip() for line in lines if line.startswith("import time:")}
    replayed = "xpcargo.cli" not in imported
    if replayed:
        assert {name for name in imported if name.startswith("xpcargo")} <= _REPLAY_MODULES, imported
        assert not imported & _NOT_IN_A_REPLAY, imported & _NOT_IN_A_REPLAY
    said = "".join(f"{line}\n" for line in lines if not line.startswith("import time:"))
    return dataclasses.replace(result, stderr=said), replayed


def _build(cli: Cli, project: Path, env: Mapping[str, str | None]) -> tuple[Result, bool]:
    return _xpcargo(cli, project, ["build", "--target", X86_64], env)


def _built_until_replayed(cli: Cli, project: Path, env: Mapping[str, str | None]) -> None:
    """Three builds: the first builds, the second is the usual way's no-op and records, the third is replayed."""
    for _ in range(3):
        built, replayed = _build(cli, project, env)
        assert built.code == 0, built
    assert replayed, built


def _said(result: Result) -> list[str]:
    """Cargo's lines without their timing."""
    return [line.split(" in ", 1)[0] for line in result.stderr.splitlines()]


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str | None]:
    """A user's home as Podman and desktops leave it: 0700, with a 0700 `~/.cache` that xpcargo's cache goes in."""
    home = tmp_path / "home of a user"
    (home / ".cache").mkdir(parents=True)
    home.chmod(0o700)
    (home / ".cache").chmod(0o700)
    return {
        "HOME": str(home),
        "XDG_CACHE_HOME": None,
        "XPCARGO_CACHE_DIR": None,
        "XDG_CONFIG_HOME": str(home / ".config"),
    }


def test_a_no_op_build_run_again_is_replayed_as_the_usual_way_would_run_it(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, home: dict[str, str | None]
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    first, replayed = _build(xpcargo, project, home)
    assert first.code == 0, first
    assert not replayed, first
    usual, replayed = _build(xpcargo, project, home)
    assert usual.code == 0, usual
    assert not replayed, usual
    report = xpcargo(["report", "--target", X86_64, "--json"], cwd=project, env=home)
    for _ in range(2):
        again, replayed = _build(xpcargo, project, home)
        assert again.code == 0, again
        assert replayed, again
        assert _said(again) == _said(usual), again
        assert again.stdout == usual.stdout == "", again
    assert xpcargo(["report", "--target", X86_64, "--json"], cwd=project, env=home).stdout == report.stdout
    records = list((Path(str(home["HOME"])) / ".cache" / "xpcargo" / "replay").iterdir())
    assert len(records) == 1, records
    assert records[0].stat().st_mode & 0o077 == 0, records
    # Turned off, and in another environment: the usual way, which leaves the record of the first as it is.
    off, replayed = _build(xpcargo, project, {**home, "XPCARGO_REPLAY": "0"})
    assert off.code == 0, off
    assert not replayed, off
    assert _build(xpcargo, project, home)[1]


def test_an_edit_takes_the_usual_way_at_once_and_prints_once(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, home: dict[str, str | None]
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    _built_until_replayed(xpcargo, project, home)
    main = next((project / "src").glob("*.rs"))
    main.write_text(main.read_text(encoding="utf-8") + "\n// edited\n", encoding="utf-8")
    edited, replayed = _build(xpcargo, project, home)
    assert edited.code == 0, edited
    assert not replayed, edited
    assert sum("Compiling" in line for line in edited.stderr.splitlines()) == 1, edited
    assert sum("Finished" in line for line in edited.stderr.splitlines()) == 1, edited
    # A build that fails is never replayed: it fails again, the usual way, with Cargo's words and exit code.
    main.write_text(main.read_text(encoding="utf-8") + "\nfn broken( {}\n", encoding="utf-8")
    for _ in range(2):
        broken, replayed = _build(xpcargo, project, home)
        assert broken.code == 101, broken
        assert not replayed, broken
        assert "error" in broken.stderr, broken


def test_a_withdrawn_consent_is_not_replayed(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, home: dict[str, str | None]
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    (project / "xpcargo.toml").write_text(f'[build]\nmounts = ["{sdk}"]\n', encoding="utf-8")
    assert xpcargo(["trust"], cwd=project, env=home).code == 0
    _built_until_replayed(xpcargo, project, home)
    assert xpcargo(["trust", "--revoke"], cwd=project, env=home).code == 0
    refused, replayed = _build(xpcargo, project, home)
    assert refused.code == UNTRUSTED, refused
    assert not replayed, refused
    assert "`mounts` of [build] in " in single_error_line(refused), refused


def test_a_build_script_cannot_forge_the_record_of_a_replay(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, home: dict[str, str | None]
) -> None:
    project = copy_fixture(tmp_path_factory, "replay-hostile")
    records = Path(str(home["HOME"])) / ".cache" / "xpcargo" / "replay"
    # A record the build script would overwrite, were the directory within its reach.
    records.mkdir(parents=True, mode=0o700)
    decoy = records / ("0" * 32)
    decoy.write_bytes(b"a record of another command")
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(f'[env]\nREPLAY = "{records}"\n', encoding="utf-8")
    for _ in range(2):
        built, replayed = _build(xpcargo, project, home)
        assert built.code == 0, built
        assert not replayed, built
    (record,) = (path for path in records.iterdir() if path != decoy)
    kept = record.read_bytes()
    again, replayed = _build(xpcargo, project, home)
    assert again.code == 0, again
    assert replayed, again
    said = (project / "target" / "hostile.log").read_text(encoding="utf-8")
    # The build script ran once (the first build), and found no such directory: what it planted went to the
    # container's own files.
    assert said.count("ran\n") == 1, said
    assert f"RUSTC_WRAPPER list {records}: NotFound" in said, said
    assert sorted(records.iterdir()) == sorted([decoy, record])
    assert decoy.read_bytes() == b"a record of another command"
    assert record.read_bytes() == kept
    binary = project / "target" / X86_64 / "debug" / "replay-hostile"
    ran = subprocess.run([binary], capture_output=True, text=True, check=True)
    assert ran.stdout == "replay-hostile 1\n"


# Logs every file the command opens to read, as Python's audit hook sees it, to the file named first.
_WATCHED = """
import atexit, json, os, sys
opened = []
def watch(event, args):
    if event == "open" and isinstance(args[0], str):
        mode, flags = args[1], args[2]
        if (mode is not None and "r" in mode and "+" not in mode) or (mode is None and flags & os.O_ACCMODE == 0):
            opened.append(os.path.abspath(args[0]))
log = sys.argv.pop(1)
atexit.register(lambda: open(log, "w").write(json.dumps(opened)))
sys.addaudithook(watch)
from xpcargo.launch import main
main()
"""


@pytest.mark.parametrize("command", [["build", "--target", X86_64], ["image", "list"]], ids=["build", "image-list"])
def test_the_record_names_everything_the_usual_way_read(
    xpcargo: Cli,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
    home: dict[str, str | None],
    command: list[str],
) -> None:
    """A file the usual way reads that the record does not name could change what a command does without ending its
    replays: every file a no-op build, or `image list`, opened is named (or derived from what is, or Python's
    own)."""
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    first, _ = _xpcargo(xpcargo, project, command, home)
    assert first.code == 0, first
    cache = Path(str(home["HOME"])) / ".cache" / "xpcargo"
    # The watched command takes the usual way (and records): `image list` was recorded by the first.
    for record_file in (cache / "replay").glob("*"):
        record_file.unlink()
    log = tmp_path / "opened.json"
    argv = (sys.executable, "-c", _WATCHED, str(log), *command)
    watched = run_argv(argv, cwd=project, env={**xpcargo.env, **home})
    assert watched.code == 0, watched
    (record_file,) = (cache / "replay").iterdir()
    record = replay.load(str(record_file))
    assert record is not None
    named = {path for path, _ in record["files"]} | {path for path, _ in record["contents"]} | {MOUNT_TABLE}
    named |= set(record.get("absent_after", []))
    # Python and its packages; xpcargo's own source (the record's fingerprint); what is derived from named files
    # (the parses of the YAML files) or is the replay's own (its records, the slots' locks).
    derived = (sys.base_prefix, sys.prefix, installation.PACKAGE_DIR, str(cache / "parsed"), str(cache / "replay"))
    opened = json.loads(log.read_text(encoding="utf-8"))
    unnamed = sorted(
        {
            path
            for path in opened
            if path not in named
            and not path.startswith(tuple(f"{place}/" for place in derived))
            and not path.startswith("/dev/")
            and not (path.startswith(str(cache / "warm") + "/") and path.endswith(".lock"))
        }
    )
    assert unnamed == [], unnamed
    # And the check can fail: a file the record does not name is found.
    assert "/etc/hostname" not in named


def _list(cli: Cli, cwd: Path, env: Mapping[str, str | None]) -> tuple[Result, bool]:
    return _xpcargo(cli, cwd, ["image", "list"], env)


def test_image_list_run_again_is_replayed_until_the_configuration_or_the_engine_changes(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, home: dict[str, str | None]
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    # Other tests' image builds change the engine's answer meanwhile, which ends a replay as it should: a replay is
    # looked for in a few tries, each against the listing just before it.
    for _ in range(5):
        usual, replayed = _list(xpcargo, project, home)
        assert usual.code == 0, usual
        again, replayed = _list(xpcargo, project, home)
        assert again.code == 0, again
        if replayed:
            assert again.stdout == usual.stdout, again
            assert again.stderr == "", again
            break
    else:
        pytest.fail("`xpcargo image list` was never replayed")
    # Another configuration: the project names a target of its own, and the listing is made again.
    (project / "xpcargo.toml").write_text(
        '[target.x86_64-unknown-linux-gnu]\nimage = "example/own:1"\n', encoding="utf-8"
    )
    changed, replayed = _list(xpcargo, project, home)
    assert changed.code == 0, changed
    assert not replayed, changed
    # Another answer from the engine: a name of the test's own on an image of xpcargo's.
    image = usual.stdout.splitlines()[1].split()[0]
    name = f"xpcargo-test-replay/{project.parent.name}:listed"
    docker("tag", image, name)
    try:
        for _ in range(5):
            tagged, replayed = _list(xpcargo, project, home)
            assert tagged.code == 0, tagged
            assert not replayed or name in tagged.stdout, tagged
            if name in tagged.stdout:
                break
        else:
            pytest.fail(f"{name} never listed")
    finally:
        docker("rmi", name)


def test_a_warning_cargo_shows_again_is_shown_again_by_a_replay(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, home: dict[str, str | None]
) -> None:
    # Cargo prints a fresh unit's warnings again on every build, from its cache: the usual way renders them from
    # Cargo's messages, and a replay prints the same text at the same place of the output.
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    main = next((project / "src").glob("*.rs"))
    main.write_text(main.read_text(encoding="utf-8") + "\nfn never_called() {}\n", encoding="utf-8")
    for _ in range(2):
        usual, replayed = _build(xpcargo, project, home)
        assert usual.code == 0, usual
        assert not replayed, usual
    assert "never_called" in usual.stderr, usual
    again, replayed = _build(xpcargo, project, home)
    assert again.code == 0, again
    assert replayed, again
    # The same lines; in an order of the engine's, which reads Cargo's stdout and stderr through two pipes and can
    # pass on the `Finished` line before the warning that came from a message (the usual way does too, now and then).
    assert sorted(_said(again)) == sorted(_said(usual)), again
