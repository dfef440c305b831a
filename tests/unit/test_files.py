"""The atomic writer against concurrent writers and readers, real faults and interrupts; the TOML writer round-tripped
through tomllib, hostile strings included."""

from __future__ import annotations

import math
import os
import secrets
import stat
import threading
from pathlib import Path

import pytest
import tomllib

from xpcargo import files
from xpcargo.files import replacing_path, toml_key, toml_string, toml_table, toml_value, write_atomically


def _names(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir())


# --- Atomic writes -------------------------------------------------------------------------------------------------


def test_a_file_is_written_whole_and_replaces_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "lock"
    write_atomically(target, "first\n")
    write_atomically(target, b"second\n")
    assert target.read_bytes() == b"second\n"
    assert _names(tmp_path) == ["lock"]


def test_readers_never_see_a_part_and_concurrent_writers_all_succeed(tmp_path: Path) -> None:
    target = tmp_path / "shared"
    contents = [bytes([ord("a") + number]) * (1 << 20) for number in range(8)]
    write_atomically(target, contents[0])
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(target.read_bytes())

    def write(content: bytes) -> None:
        for _ in range(5):
            write_atomically(target, content)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(content,)) for content in contents]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    reader.join()
    assert seen <= set(contents)
    assert target.read_bytes() in contents
    assert _names(tmp_path) == ["shared"]


def test_of_two_writers_at_once_the_last_rename_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first writer is held just before its rename while a second one writes the same path whole."""
    target = tmp_path / "record.json"
    real_replace = os.replace
    held: list[str | Path] = []

    def replace_after_another_writer(source: str | Path, destination: str | Path) -> None:
        if not held:
            held.append(source)
            write_atomically(target, "second")
            assert target.read_text(encoding="utf-8") == "second"
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace_after_another_writer)
    write_atomically(target, "first")
    assert target.read_text(encoding="utf-8") == "first"
    assert _names(tmp_path) == ["record.json"]


def test_a_leftover_temporary_file_is_never_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temporary file of another run (alive or dead) keeps its name and content; the writer takes another name."""
    target = tmp_path / "xpcargo-images.lock"
    leftover = tmp_path / ".xpcargo-images.lock.00000000.tmp"
    leftover.write_text("another run's", encoding="utf-8")
    names = iter(["00000000", "11111111"])
    monkeypatch.setattr(secrets, "token_hex", lambda _: next(names))
    write_atomically(target, "ours")
    assert target.read_text(encoding="utf-8") == "ours"
    assert leftover.read_text(encoding="utf-8") == "another run's"
    assert _names(tmp_path) == [leftover.name, target.name]


def test_a_link_at_the_temporary_name_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched", encoding="utf-8")
    (tmp_path / ".f.00000000.tmp").symlink_to(elsewhere)
    names = iter(["00000000", "11111111"])
    monkeypatch.setattr(secrets, "token_hex", lambda _: next(names))
    write_atomically(tmp_path / "f", "ours")
    assert elsewhere.read_text(encoding="utf-8") == "untouched"
    assert (tmp_path / "f").read_text(encoding="utf-8") == "ours"


def test_the_mode(tmp_path: Path) -> None:
    write_atomically(tmp_path / "secret", "x", mode=0o600)
    write_atomically(tmp_path / "public", "x", mode=0o644)
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644


def test_without_a_mode_the_file_is_as_any_new_file(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        write_atomically(tmp_path / "f", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_a_mode_is_exact_whatever_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        write_atomically(tmp_path / "f", "x", mode=0o644)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only directory")
def test_a_read_only_directory_is_an_os_error_and_leaves_nothing(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    (directory / "f").write_text("old", encoding="utf-8")
    directory.chmod(0o500)
    try:
        with pytest.raises(PermissionError):
            write_atomically(directory / "f", "new")
        assert _names(directory) == ["f"]
        assert (directory / "f").read_text(encoding="utf-8") == "old"
    finally:
        directory.chmod(0o700)


def test_a_failed_rename_removes_the_temporary_file(tmp_path: Path) -> None:
    """A real fault that root meets too: the path is a directory that is not empty."""
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "inside").write_text("", encoding="utf-8")
    with pytest.raises(OSError, match="f"):
        write_atomically(tmp_path / "f", "new")
    assert _names(tmp_path) == ["f"]


def test_a_write_that_raises_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old", encoding="utf-8")
    with pytest.raises(UnicodeEncodeError):
        # A lone surrogate has no UTF-8.
        write_atomically(target, "new \udc80")

    def write_half() -> None:
        with files.replacing(target) as stream:
            stream.write(b"half of it")
            raise ValueError("halfway")

    with pytest.raises(ValueError, match="halfway"):
        write_half()
    assert target.read_text(encoding="utf-8") == "old"
    assert _names(tmp_path) == ["f"]


def test_an_interrupt_removes_the_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(_: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_atomically(tmp_path / "f", "x")
    assert _names(tmp_path) == []


def test_a_missing_directory_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        write_atomically(tmp_path / "missing" / "f", "x")
    assert _names(tmp_path) == []


# --- TOML ----------------------------------------------------------------------------------------------------------

HOSTILE = [
    "",
    'a "quoted" word',
    "back\\slash \\u0041 \\n",
    "new\nline\r\n",
    "tab\there",
    "".join(chr(code) for code in range(0x20)) + "\x7f",
    "\u00e9t\u00e9 \u2028 \U0001f600",
    "'single' ''' \"\"\"",
    "[table]\nkey = 1",
    "# not a comment",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_a_hostile_string_reads_back_as_it_was_as_a_value_and_as_a_key(text: str) -> None:
    document = "\n".join(
        [
            f"value = {toml_string(text)}",
            f"array = {toml_value([text, text], multiline=True)}",
            toml_table(toml_key("t"), toml_key(text)),
            f"{toml_key(text)} = {toml_value(text)}",
        ]
    )
    assert tomllib.loads(document) == {"value": text, "array": [text, text], "t": {text: {text: text}}}


def test_a_key_is_bare_only_where_toml_allows_it() -> None:
    assert toml_key("rustc-link-lib") == "rustc-link-lib"
    assert toml_key("x86_64-unknown-linux-gnu") == "x86_64-unknown-linux-gnu"
    assert toml_key("rustc-link-lib", quoted=True) == '"rustc-link-lib"'
    for name in ["", "a.b", "a b", "caf\u00e9", "cfg(unix)", 'q"']:
        assert toml_key(name).startswith('"')
        assert tomllib.loads(f"{toml_key(name)} = 1") == {name: 1}


def test_every_value_shape_reads_back() -> None:
    value = {
        "string": 's\n"',
        "integer": -12,
        "float": 1.5,
        "exponent": 1e16,
        "true": True,
        "false": False,
        "array": ["a", 1, [True, "b"], []],
        "inline table": {"a.b": "c", "n": {"m": 1}},
    }
    lines = [f"{toml_key(name)} = {toml_value(item)}" for name, item in value.items()]
    quoted = 'y"'
    lines.append(f"multi = {toml_value(['x', quoted], multiline=True)}")
    lines.append(f"empty = {toml_value([], multiline=True)}")
    assert tomllib.loads("\n".join(lines)) == {**value, "multi": ["x", 'y"'], "empty": []}
    special = tomllib.loads(f"values = {toml_value([math.inf, -math.inf, math.nan])}")["values"]
    assert special[:2] == [math.inf, -math.inf]
    assert math.isnan(special[2])


def test_tables_dotted_keys_and_arrays_of_tables_read_back() -> None:
    triple = 'weird.triple "x"'
    document = "\n".join(
        [
            toml_table(toml_key("target"), toml_key(triple), toml_key("openssl")),
            f"{toml_key('rustc-link-lib', quoted=True)} = {toml_value(['ssl'])}",
            toml_table(toml_key("bin"), array=True),
            'name = "a"',
            toml_table(toml_key("bin"), array=True),
            'name = "b"',
            f"{toml_key('a')}.{toml_key('b c')} = 1",
        ]
    )
    assert tomllib.loads(document) == {
        "target": {triple: {"openssl": {"rustc-link-lib": ["ssl"]}}},
        "bin": [{"name": "a"}, {"name": "b", "a": {"b c": 1}}],
    }


def test_a_value_toml_cannot_say_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="None"):
        toml_value(None)
    with pytest.raises(TypeError, match="object"):
        toml_value([object()])


def test_a_writer_that_takes_a_path_replaces_the_file_only_when_it_succeeds(tmp_path: Path) -> None:
    target = tmp_path / "image.tar"
    target.write_bytes(b"old")
    with replacing_path(target) as first, replacing_path(target) as second:
        # Each writer has a temporary file of its own, beside the target; the last rename (the outer block's) wins.
        assert first != second
        assert first.parent == second.parent == tmp_path
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first"

    def save_half(partial: Path) -> None:
        partial.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"), replacing_path(target) as partial:
        save_half(partial)
    assert target.read_bytes() == b"first"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["image.tar"]


def test_reading_regular_reads_at_offsets_and_refuses_a_fifo_without_blocking(tmp_path: Path) -> None:
    artifact = tmp_path / "artifact"
    artifact.write_bytes(b"0123456789")
    with files.reading_regular(artifact) as (read, size):
        assert (read(3, 4), size) == (b"3456", 10)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(files.NotRegularFileError, match="not a regular file"), files.reading_regular(fifo):
        pass
    with pytest.raises(OSError, match="No such file"), files.reading_regular(tmp_path / "missing"):
        pass
