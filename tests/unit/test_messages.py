"""Reading Cargo's stdout: JSON messages first, then the output of the program that Cargo runs."""

from __future__ import annotations

import itertools
import json
import sys
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from xpcargo.cargo.messages import MessageReader

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
REASONS = ["compiler-artifact", "compiler-message", "compiler-message", "build-script-executed", "build-finished"]


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
    assert [message["reason"] for message in messages] == REASONS
    assert messages[3]["linked_libs"] == ["static=z"]
    assert finished is True


def test_echo_mode_passes_every_line_unchanged() -> None:
    stdout, stderr, messages, finished = _read([STREAM], echo=True)
    assert stdout == STREAM
    assert stderr == b""
    assert [message["reason"] for message in messages] == REASONS
    assert finished is True


def test_output_after_build_finished_is_not_parsed() -> None:
    _, stderr, messages, _ = _read([STREAM], echo=False)
    assert b"the program printed this" not in stderr
    assert len(messages) == len(REASONS)


def test_failed_build_is_recorded_and_following_output_passed() -> None:
    stdout, _, messages, finished = _read([ARTIFACT + FAILED + b"tail\n"], echo=False)
    assert finished is False
    assert stdout == b"tail\n"
    assert messages[-1] == {"reason": "build-finished", "success": False}


def test_without_build_finished_nothing_is_finished() -> None:
    stdout, _, messages, finished = _read([ARTIFACT + NOT_A_MESSAGE], echo=False)
    assert finished is None
    assert stdout == NOT_A_MESSAGE
    assert len(messages) == 1


def test_last_message_without_newline_is_read_on_close() -> None:
    _, _, messages, finished = _read([ARTIFACT + FINISHED.rstrip(b"\n")], echo=False)
    assert finished is True
    assert [message["reason"] for message in messages] == ["compiler-artifact", "build-finished"]


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
    assert len(messages) == 3
    assert finished is True
