"""The replay's record and its checks (``xpcargo.replay``): what a record is found by, what a damaged one is, what
counts as a change. The replay itself, on the real engine, is tests/integration/test_replay.py's."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from xpcargo import replay, replay_listing
from xpcargo.container.docker import replay_exec
from xpcargo.context import Settings
from xpcargo.errors import ConfigError


def _record(**changes: object) -> dict[str, object]:
    return {"format": replay.FORMAT, "argv": ["build"], "files": [], "contents": [], "views": [], **changes}


def test_a_record_is_found_by_the_same_words_however_they_were_made(tmp_path: Path) -> None:
    # marshal's bytes differ for an interned string and an equal one that is not: the key must not.
    made = "".join(["--tar", "get"])
    interned = sys.intern("--target")
    assert made is not interned
    assert replay.record_path(str(tmp_path), ["build", made], "/w") == replay.record_path(
        str(tmp_path), ["build", interned], "/w"
    )
    assert replay.record_path(str(tmp_path), ["build"], "/w") != replay.record_path(str(tmp_path), ["check"], "/w")
    assert replay.record_path(str(tmp_path), ["build"], "/w") != replay.record_path(str(tmp_path), ["build"], "/v")
    # Words are not run together: ["a b"] and ["a", "b"] are two commands.
    assert replay.record_path(str(tmp_path), ["a b"], "/w") != replay.record_path(str(tmp_path), ["a", "b"], "/w")


def test_a_damaged_record_is_no_record(tmp_path: Path) -> None:
    path = tmp_path / "record"
    data = replay.encode(_record())
    path.write_bytes(data)
    assert replay.load(str(path)) == _record()
    for damaged in (data[:-1], data[:40], b"", data[:-1] + bytes([data[-1] ^ 1]), b"\0" * 32 + data[32:]):
        path.write_bytes(damaged)
        assert replay.load(str(path)) is None, damaged
    # A record of another layout, or not a record at all, with a good digest.
    for other in (replay.encode(_record(format=replay.FORMAT + 1)), replay.encode({"argv": []})):
        path.write_bytes(other)
        assert replay.load(str(path)) is None
    assert replay.load(str(tmp_path / "missing")) is None


def test_a_change_to_a_named_file_ends_the_replays(tmp_path: Path) -> None:
    named, missing = tmp_path / "Cargo.toml", tmp_path / ".cargo" / "config.toml"
    named.write_text("[package]\n", encoding="utf-8")
    record = _record(files=[(str(named), replay.signature(str(named))), (str(missing), None)])
    assert replay.unchanged(record)
    # The same size and modification time, written again: the change time tells.
    stat = named.stat()
    named.write_text("[packagf]\n", encoding="utf-8")
    os.utime(named, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not replay.unchanged(record)
    record = _record(files=[(str(named), replay.signature(str(named))), (str(missing), None)])
    missing.parent.mkdir()
    missing.write_text("", encoding="utf-8")
    assert not replay.unchanged(record)


def test_contents_are_compared_by_digest(tmp_path: Path) -> None:
    state = tmp_path / "report.json"
    state.write_text("{}", encoding="utf-8")
    record = _record(contents=[(str(state), replay.content_digest(str(state)))])
    # Written again with the same bytes (as a build that wrote its report anew does): unchanged.
    state.unlink()
    state.write_text("{}", encoding="utf-8")
    assert replay.unchanged(record)
    state.write_text("{} ", encoding="utf-8")
    assert not replay.unchanged(record)


def test_the_walk_leaves_out_what_it_is_told_and_gives_up_on_a_large_tree(tmp_path: Path) -> None:
    for name in ("src/main.rs", "target/debug/app", ".git/HEAD", ".cargo/config.toml"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name, encoding="utf-8")
    walked = replay.walk([str(tmp_path)], skip=[str(tmp_path / "target")], limit=100)
    assert walked is not None
    assert sorted(Path(path).relative_to(tmp_path).as_posix() for path, _ in walked) == [
        ".cargo",
        ".cargo/config.toml",
        "src",
        "src/main.rs",
    ]
    assert replay.walk([str(tmp_path)], skip=(), limit=3) is None


def test_the_environment_digest_ignores_only_what_a_shell_changes_between_commands() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/u"}
    digest = replay.environment_digest(base)
    assert replay.environment_digest({**base, "_": "/usr/bin/xpcargo", "OLDPWD": "/tmp"}) == digest
    for changed in ({**base, "RUSTFLAGS": "-Cdebuginfo=0"}, {**base, "PATH": "/bin"}, {"PATH": "/usr/bin"}):
        assert replay.environment_digest(changed) != digest


def test_replays_are_a_setting_of_its_own() -> None:
    assert Settings.from_environment({}).replay
    assert not Settings.from_environment({replay.SETTING: "0"}).replay
    with pytest.raises(ConfigError, match="XPCARGO_REPLAY='yes' is neither 1 nor 0"):
        Settings.from_environment({replay.SETTING: "yes"})


def test_the_engines_json_is_read_without_the_json_module() -> None:
    assert replay_exec.parse_json(b' {"Id": "ab", "ExitCode": 0, "Running": false, "Env": null} ') == {
        "Id": "ab",
        "ExitCode": 0,
        "Running": False,
        "Env": None,
    }
    for garbled in (b"", b"{", b'{"a": 1} {"b": 2}', b"NaN", b"\xff"):
        with pytest.raises(ValueError):  # noqa: PT011 - each is a ValueError of its own words
            replay_exec.parse_json(garbled)


def test_records_not_written_for_a_month_are_dropped_when_another_is_written(tmp_path: Path) -> None:
    records = tmp_path / "replay"
    records.mkdir()
    old, recent = records / "old", records / "recent"
    for path in (old, recent):
        path.write_bytes(b"a record")
    month_ago = time.time() - replay_listing.FORGOTTEN_AFTER - 60
    os.utime(old, (month_ago, month_ago))
    replay_listing.write(str(records / "new"), _record())
    assert sorted(path.name for path in records.iterdir()) == ["new", "recent"]
    assert replay.load(str(records / "new")) == _record()


def test_a_replay_compares_cargos_lines_as_they_come_and_holds_no_long_one() -> None:
    lines = [(replay.digest(b'{"reason":"a"}\n'), b""), (replay.digest(b'{"reason":"b"}'), b"")]
    same = replay._Lines(lines)
    for piece in (b'{"reason"', b':"a"}\n{"rea', b'son":"b"}'):
        same.feed(piece)
    assert same.matched()
    other = replay._Lines(lines)
    other.feed(b'{"reason":"a"}\n{"reason":"c"}')
    assert not other.matched()
    fewer = replay._Lines(lines)
    fewer.feed(b'{"reason":"a"}\n')
    assert not fewer.matched()
    flood = replay._Lines(lines)
    for _ in range(80):
        flood.feed(b"x" * (64 << 10))
    assert not flood.matched()
    assert flood._pending == b""
