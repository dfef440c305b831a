"""Reading Cargo's stdout: JSON messages first, then the output of the program that Cargo runs."""

from __future__ import annotations

import itertools
import json
import sys
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpcargo.cargo.messages import MAX_KEPT_MESSAGES, MAX_MESSAGE_BYTES, MessageReader

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


# --- MessageReader --------------------------------------------------------------------------------------------------


def _message(reason: str, **fields: Any) -> bytes:
    # Cargo writes compact JSON with `reason` first.
    return json.dumps({"reason": reason, **fields}, separators=(",", ":")).encode() + b"\n"


ARTIFACT = _message("compiler-artifact", package_id="app 0.1.0", filenames=["/t/libapp.rlib"], fresh=False)
WARNING = _message(
    "compiler-message",
    package_id="app 0.1.0",
    message={"rendered": "warning: unused variable: `x`\n  --> src/main.rs:2:9\n", "level": "warning"},
)
NO_RENDERED = _message("compiler-message", package_id="app 0.1.0", message={"rendered": None, "level": "note"})
BUILD_SCRIPT = _message(
    "build-script-executed",
    package_id="zlib 0.1.0",
    linked_libs=["static=z"],
    linked_paths=["native=/t/out"],
    cfgs=[],
    env=[],
    out_dir="/t/out",
)
NOT_A_MESSAGE = b"a line on Cargo's stdout that is no JSON message\n"
FINISHED = _message("build-finished", success=True)
FAILED = _message("build-finished", success=False)
# What the program run by `cargo run` prints, some of it looking exactly like Cargo's messages.
PROGRAM = (
    b"hello from aarch64\n"
    + _message("compiler-message", message={"rendered": "the program printed this\n"})
    + _message("build-finished", success=False)
    + b"\xff\xfe binary \x00 bytes\r\n"
    + b"last line without newline"
)
STREAM = ARTIFACT + WARNING + NO_RENDERED + NOT_A_MESSAGE + BUILD_SCRIPT + FINISHED + PROGRAM
# What is kept for the report: the messages about a package, reduced to what the report reads, each once (the two
# compiler-messages about `app` reduce to the same record).
KEPT = [
    {"reason": "compiler-artifact", "package_id": "app 0.1.0", "filenames": ["/t/libapp.rlib"]},
    {"reason": "compiler-message", "package_id": "app 0.1.0"},
    {"reason": "build-script-executed", "package_id": "zlib 0.1.0", "out_dir": "/t/out"},
]


def _read(chunks: list[bytes], *, echo: bool) -> tuple[bytes, bytes, list[dict[str, Any]], bool | None]:
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    reader = MessageReader(echo_messages=echo, write_stdout=stdout.append, write_stderr=stderr.append)
    for chunk in chunks:
        reader.feed(chunk)
    reader.close()
    return b"".join(stdout), b"".join(stderr), reader.messages, reader.finished


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(points)]


def test_injected_format_prints_diagnostics_and_program_output() -> None:
    stdout, stderr, messages, finished = _read([STREAM], echo=False)
    assert stderr == b"warning: unused variable: `x`\n  --> src/main.rs:2:9\n"
    assert stdout == NOT_A_MESSAGE + PROGRAM
    assert messages == KEPT
    assert finished is True


def test_echo_mode_passes_every_line_unchanged() -> None:
    stdout, stderr, messages, finished = _read([STREAM], echo=True)
    assert stdout == STREAM
    assert stderr == b""
    assert messages == KEPT
    assert finished is True


def test_output_after_build_finished_is_not_parsed() -> None:
    _, stderr, messages, _ = _read([STREAM], echo=False)
    assert b"the program printed this" not in stderr
    assert messages == KEPT


def test_failed_build_is_recorded_and_following_output_passed() -> None:
    stdout, _, messages, finished = _read([ARTIFACT + FAILED + b"tail\n"], echo=False)
    assert finished is False
    assert stdout == b"tail\n"
    assert messages == KEPT[:1]


def test_without_build_finished_nothing_is_finished() -> None:
    stdout, _, messages, finished = _read([ARTIFACT + NOT_A_MESSAGE], echo=False)
    assert finished is None
    assert stdout == NOT_A_MESSAGE
    assert len(messages) == 1


def test_last_message_without_newline_is_read_on_close() -> None:
    _, _, messages, finished = _read([ARTIFACT + FINISHED.rstrip(b"\n")], echo=False)
    assert finished is True
    assert messages == KEPT[:1]


def test_broken_json_is_passed_as_output() -> None:
    broken = b'{"reason":"compiler-artifact", oops\n'
    stdout, _, messages, _ = _read([broken + ARTIFACT], echo=False)
    assert stdout == broken
    assert len(messages) == 1


@settings(max_examples=120, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=len(STREAM)), max_size=25), echo=st.booleans())
def test_any_chunking_gives_the_same_result(cuts: list[int], echo: bool) -> None:
    assert _read(_split(STREAM, cuts), echo=echo) == _read([STREAM], echo=echo)


@settings(max_examples=60, deadline=None)
@given(
    tail=st.binary(max_size=120),
    cuts=st.lists(st.integers(min_value=0, max_value=2000), max_size=12),
)
def test_program_output_passes_through_byte_for_byte(tail: bytes, cuts: list[int]) -> None:
    data = ARTIFACT + WARNING + FINISHED + tail
    stdout, stderr, messages, finished = _read(_split(data, [cut % (len(data) + 1) for cut in cuts]), echo=False)
    assert stdout == tail
    assert stderr.startswith(b"warning: unused variable")
    assert messages == KEPT[:2]
    assert finished is True


# --- Bounded memory, whatever Cargo's stdout holds ------------------------------------------------------------------


class _Counting:
    """A writer that keeps only how much it was given and what it began with."""

    def __init__(self) -> None:
        self.size = 0
        self.head = b""

    def __call__(self, chunk: bytes) -> None:
        if self.size < 64:
            self.head = (self.head + chunk)[:64]
        self.size += len(chunk)


def _feed_long_line(start: bytes, size: int, *, echo: bool) -> tuple[MessageReader, _Counting, int]:
    """Feed ``start`` and ``size`` bytes more of one line, as a container's output arrives, then a real message."""
    stdout = _Counting()
    reader = MessageReader(echo_messages=echo, write_stdout=stdout, write_stderr=stdout)
    block = b"x" * (64 << 10)
    tracemalloc.start()
    try:
        reader.feed(start)
        for _ in range(size // len(block)):
            reader.feed(block)
        reader.feed(b"\n" + ARTIFACT)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    reader.close()
    return reader, stdout, peak


@pytest.mark.parametrize("echo", [False, True])
@pytest.mark.parametrize(
    "start",
    [b"a line of program output", b'{"reason":"compiler-message","message":{"rendered":"'],
    ids=["plain", "json"],
)
def test_a_long_line_is_passed_on_as_it_comes(start: bytes, echo: bool) -> None:
    size = 8 * MAX_MESSAGE_BYTES
    reader, stdout, peak = _feed_long_line(start, size, echo=echo)
    assert stdout.head.startswith(start)
    assert stdout.size == len(start) + size + 1 + (len(ARTIFACT) if echo else 0)
    # The line's start while it may still be a message, and a copy of it when it is passed on: not the line.
    assert peak < 3 * MAX_MESSAGE_BYTES
    # The real message after it is still read, and the long line cost the report nothing.
    assert reader.messages == KEPT[:1]
    assert reader.overflowed == 0


def test_a_message_the_report_needs_but_too_long_to_read_is_counted() -> None:
    reader, stdout, _ = _feed_long_line(
        b'{"reason":"build-script-executed","package_id":"', MAX_MESSAGE_BYTES, echo=False
    )
    assert stdout.size > MAX_MESSAGE_BYTES
    assert reader.overflowed == 1


def test_kept_messages_are_bounded() -> None:
    stream = b"".join(
        _message("compiler-artifact", package_id=f"p{n} 0.1.0", filenames=[]) for n in range(MAX_KEPT_MESSAGES + 2)
    )
    reader = MessageReader(echo_messages=False, write_stdout=_Counting(), write_stderr=_Counting())
    reader.feed(stream)
    assert len(reader.messages) == MAX_KEPT_MESSAGES
    assert reader.overflowed == 2


HOSTILE_LINES = [
    b'{"reason":"compiler-message","message":"a string, not an object"}\n',
    b'{"reason":"compiler-message","message":["a", "list"]}\n',
    b'{"reason":"compiler-message","message":{"rendered":"lone \\ud800 surrogate"}}\n',
    b'{"reason":"compiler-message","message":{"rendered":12}}\n',
    b'{"reason":"compiler-artifact","package_id":"p","filenames":5,"out_dir":{"a":[1]}}\n',
    b'{"reason":' + b"[" * 100_000 + b"\n",
    b'{"reason":"build-finished","success":{"not":"a bool"}}\n',
]


@pytest.mark.parametrize("line", HOSTILE_LINES, ids=range(len(HOSTILE_LINES)))
def test_lines_only_a_hostile_build_script_writes_are_no_error(line: bytes) -> None:
    _, stderr, messages, finished = _read([ARTIFACT + line + FINISHED], echo=False)
    assert messages[0] == KEPT[0]
    assert finished is True
    assert b"lone ? surrogate" in stderr or b"lone" not in line


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
        max_leaves=12,
    ),
    st.sampled_from(["compiler-message", "compiler-artifact", "build-script-executed", "build-finished", "x"]),
    st.sampled_from(["message", "package_id", "filenames", "out_dir", "success", "rendered"]),
)
def test_any_message_shape_is_read_without_error(value: object, reason: str, key: str) -> None:
    line = json.dumps({"reason": reason, key: value}).encode() + b"\n"
    _read([line + FINISHED], echo=False)
