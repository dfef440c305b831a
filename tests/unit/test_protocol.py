"""The build-script output parser against the rules of the Cargo book and Cargo's own parser."""

from __future__ import annotations

import io
import tracemalloc
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xpcargo.cargo.protocol import (
    BuildScriptOutput,
    Instruction,
    LinkArg,
    LongLine,
    dep_env_name,
    dependent_metadata,
    instructions,
    output_lines,
    parse,
)
from xpcargo.errors import BuildScriptProtocolError

# (script output, the fields of BuildScriptOutput it must produce; fields not named stay empty)
ACCEPTED: list[tuple[str, bytes, dict[str, Any]]] = [
    ("link-lib old", b"cargo:rustc-link-lib=static=foo", {"link_libs": ("static=foo",)}),
    ("link-lib new", b"cargo::rustc-link-lib=dylib:+verbatim=bar:baz", {"link_libs": ("dylib:+verbatim=bar:baz",)}),
    ("link-search old", b"cargo:rustc-link-search=native=/opt/lib", {"link_search": ("native=/opt/lib",)}),
    ("link-search new", b"cargo::rustc-link-search=/usr/lib", {"link_search": ("/usr/lib",)}),
    ("flags attached", b"cargo:rustc-flags=-lfoo -L/opt/lib", {"link_libs": ("foo",), "link_search": ("/opt/lib",)}),
    (
        "flags separate",
        b"cargo::rustc-flags=-l foo  -L   /opt/lib -l static=bar",
        {"link_libs": ("foo", "static=bar"), "link_search": ("/opt/lib",)},
    ),
    # A flag's value may itself look like a flag: Cargo takes the next word whatever it is.
    ("flags value is next word", b"cargo:rustc-flags=-l -lfoo", {"link_libs": ("-lfoo",)}),
    ("flags empty", b"cargo:rustc-flags=", {}),
    ("link-arg", b"cargo:rustc-link-arg=-Wl,--as-needed", {"link_args": (LinkArg(kind="all", arg="-Wl,--as-needed"),)}),
    (
        "link-arg-cdylib and its alias",
        b"cargo::rustc-link-arg-cdylib=-Wl,-soname,a\ncargo:rustc-cdylib-link-arg=-Wl,-soname,b",
        {"link_args": (LinkArg(kind="cdylib", arg="-Wl,-soname,a"), LinkArg(kind="cdylib", arg="-Wl,-soname,b"))},
    ),
    (
        "link-arg-bin",
        b"cargo::rustc-link-arg-bin=server=-Tlink.x=1",
        {"link_args": (LinkArg(kind="bin", arg="-Tlink.x=1", bin="server"),)},
    ),
    (
        "link-arg per kind",
        b"cargo:rustc-link-arg-bins=a\ncargo:rustc-link-arg-tests=b\n"
        b"cargo::rustc-link-arg-benches=c\ncargo::rustc-link-arg-examples=d",
        {
            "link_args": (
                LinkArg(kind="bins", arg="a"),
                LinkArg(kind="tests", arg="b"),
                LinkArg(kind="benches", arg="c"),
                LinkArg(kind="examples", arg="d"),
            )
        },
    ),
    (
        "cfg",
        b'cargo:rustc-cfg=has_foo\ncargo::rustc-cfg=my_component="foo"',
        {"cfgs": ("has_foo", 'my_component="foo"')},
    ),
    ("check-cfg", b'cargo::rustc-check-cfg=cfg(foo, values("bar"))', {"check_cfgs": ('cfg(foo, values("bar"))',)}),
    ("env with = in value", b"cargo:rustc-env=GREETING=a=b==c", {"env": (("GREETING", "a=b==c"),)}),
    ("env empty value", b"cargo::rustc-env=EMPTY=", {"env": (("EMPTY", ""),)}),
    ("warning both forms", b"cargo:warning=old\ncargo::warning=new = x", {"warnings": ("old", "new = x")}),
    ("error new form", b"cargo::error=no libfoo", {"errors": ("no libfoo",)}),
    # `error` is not a reserved old-form key, so `cargo:error=...` is metadata named `error`.
    ("error old form is metadata", b"cargo:error=x", {"metadata": (("error", "x"),)}),
    ("rerun-if-changed", b"cargo::rerun-if-changed=src/hello.c", {"rerun_if_changed": ("src/hello.c",)}),
    ("rerun-if-env-changed", b"cargo:rerun-if-env-changed=CC", {"rerun_if_env_changed": ("CC",)}),
    ("metadata old form", b"cargo:root=/opt/foo", {"metadata": (("root", "/opt/foo"),)}),
    ("metadata new form", b"cargo::metadata=root=/opt/foo=1", {"metadata": (("root", "/opt/foo=1"),)}),
    ("metadata old form named metadata", b"cargo:metadata=k=v", {"metadata": (("metadata", "k=v"),)}),
    ("metadata empty key and value", b"cargo:=\ncargo::metadata==", {"metadata": (("", ""), ("", ""))}),
    # Reserved old-form keys need their `=`: without it the line is a metadata key that happens to look reserved.
    ("reserved prefix needs its =", b"cargo:rustc-cfgx=1", {"metadata": (("rustc-cfgx", "1"),)}),
    (
        "trimmed",
        b"  \tcargo:rustc-cfg=a \r\n\x0bcargo::metadata=k=  v  \t",
        {"cfgs": ("a",), "metadata": (("k", "  v"),)},
    ),
    ("unicode whitespace trimmed", "\u3000cargo:rustc-cfg=a\u2003".encode(), {"cfgs": ("a",)}),
    # Rust's trim keeps U+001F (Python's str.strip would not), so this line does not start with `cargo:`.
    ("unit separator is not whitespace", b"\x1fcargo:rustc-cfg=a\ncargo:rustc-cfg=b\x1f", {"cfgs": ("b\x1f",)}),
    ("non-UTF-8 line skipped", b"cargo:rustc-cfg=\xff\ncargo:rustc-cfg=ok\n\xc3(\n", {"cfgs": ("ok",)}),
    ("other lines ignored", b"hello\nCARGO:rustc-cfg=a\n cargo :x\ncargo", {}),
    ("empty", b"", {}),
]

REJECTED: list[tuple[str, bytes, int, str]] = [
    ("unknown new-form key", b"cargo::rustc-cfg=a\ncargo::root=/opt", 2, "unknown key `root`"),
    ("unknown new-form key even if reserved-looking", b"cargo::rustc-cfgx=1", 1, "unknown key `rustc-cfgx`"),
    ("new form without =", b"cargo::rerun-if-changed", 1, "`cargo::KEY=VALUE`"),
    ("new form bare", b"cargo::", 1, "`cargo::KEY=VALUE`"),
    ("old form without =", b"\n\ncargo:rustc-cfg", 3, "`cargo:KEY=VALUE`"),
    ("old form bare", b"cargo:", 1, "`cargo:KEY=VALUE`"),
    ("new-form metadata without =", b"cargo::metadata=root", 1, "`cargo::metadata=KEY=VALUE`"),
    ("rustc-flags other flag", b"cargo:rustc-flags=-lfoo -O", 1, "only `-l` and `-L`"),
    ("rustc-flags word", b"cargo::rustc-flags=foo", 1, "only `-l` and `-L`"),
    ("rustc-flags no value", b"cargo:rustc-flags=-L /a -l", 1, "flag `-l` in rustc-flags has no value"),
    ("rustc-env without =", b"cargo:rustc-env=FOO", 1, "rustc-env has no value"),
    ("link-arg-bin without =", b"cargo::rustc-link-arg-bin=server", 1, "BIN=ARG"),
]


@pytest.mark.parametrize(("data", "expected"), [case[1:] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_accepted(data: bytes, expected: dict[str, Any]) -> None:
    assert parse(data) == BuildScriptOutput(**expected)


@pytest.mark.parametrize(
    ("data", "line_number", "message"), [case[1:] for case in REJECTED], ids=[case[0] for case in REJECTED]
)
def test_rejected(data: bytes, line_number: int, message: str) -> None:
    with pytest.raises(BuildScriptProtocolError) as caught:
        parse(data, package="foo-sys v0.1.0")
    assert message in caught.value.message
    assert "build script of `foo-sys v0.1.0`" in caught.value.message
    assert caught.value.line_number == line_number
    assert caught.value.line == data.split(b"\n")[line_number - 1].decode().strip()
    assert caught.value.hint


def test_str_input_matches_bytes() -> None:
    text = "cargo:rustc-cfg=ä\ncargo::metadata=k=v\n"
    assert parse(text) == parse(text.encode())


def test_str_with_lone_surrogate_line_is_skipped() -> None:
    text = b"cargo:rustc-cfg=\xff\ncargo:rustc-cfg=ok".decode("utf-8", "surrogateescape")
    assert parse(text).cfgs == ("ok",)


def test_rustc_bootstrap_is_not_passed_to_rustc() -> None:
    output = parse(b"cargo:rustc-env=RUSTC_BOOTSTRAP=1\ncargo:rustc-env=A=1")
    assert output.env == (("A", "1"),)
    assert "RUSTC_BOOTSTRAP=1" in output.warnings[0]


def test_moved_out_dir_is_rewritten_in_values() -> None:
    data = b"cargo:rustc-link-search=native=/old/out\ncargo:include=/old/out/include\ncargo::rustc-cfg=x"
    output = parse(data, moved_out_dir=("/old/out", "/new/out"))
    assert output.link_search == ("native=/new/out",)
    assert output.metadata == (("include", "/new/out/include"),)


@pytest.mark.parametrize(
    ("links", "key", "name"),
    [
        ("foo", "root", "DEP_FOO_ROOT"),
        ("foo-bar", "include-dir", "DEP_FOO_BAR_INCLUDE_DIR"),
        ("z", "Some_Key", "DEP_Z_SOME_KEY"),
        # Unicode uppercase, as Rust's `char::to_uppercase`.
        ("straße", "ß", "DEP_STRASSE_SS"),
    ],
)
def test_dep_env_name(links: str, key: str, name: str) -> None:
    assert dep_env_name(links, key) == name


def test_dependent_metadata_later_duplicates_win() -> None:
    output = parse(b"cargo::metadata=Some-Key=v1\ncargo:root=/r\ncargo:some_key=v2\ncargo:other=o")
    assert dependent_metadata(output, "foo") == {"SOME_KEY": "v2", "ROOT": "/r", "OTHER": "o"}


def test_dependent_metadata_needs_links() -> None:
    assert dependent_metadata(parse(b"cargo:root=/r"), None) == {}


_FRAGMENTS = st.sampled_from(
    [
        "cargo:",
        "cargo::",
        "metadata",
        "rustc-flags",
        "rustc-link-lib",
        "rustc-link-search",
        "rustc-link-arg",
        "rustc-link-arg-bin",
        "rustc-link-arg-cdylib",
        "rustc-cdylib-link-arg",
        "rustc-cfg",
        "rustc-check-cfg",
        "rustc-env",
        "RUSTC_BOOTSTRAP",
        "warning",
        "error",
        "rerun-if-changed",
        "key",
        "-l",
        "-L",
        "-lfoo",
        "=",
        " ",
        "\t",
        "\r",
        "\n",
        "\u3000",
        "\x1f",
        "\udcff",
        "é",
    ]
)


@settings(
    max_examples=500, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    _parse_or_protocol_error(data)


@settings(
    max_examples=1000, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_arbitrary_instructions_never_raise_anything_else(text: str) -> None:
    _parse_or_protocol_error(text)
    _parse_or_protocol_error(text.encode("utf-8", "surrogatepass"))


def _parse_or_protocol_error(data: bytes | str) -> None:
    error: BuildScriptProtocolError | None = None
    try:
        parse(data)
    except BuildScriptProtocolError as caught:
        error = caught
    assert error is None or error.line_number >= 1


# --- Streaming: the same rules a line at a time, in bounded memory ------------------------------------------------


def _streamed(data: bytes, *, max_bytes: int = 1 << 20) -> BuildScriptOutput:
    """parse() rebuilt from the streaming entry point, to compare the two."""
    collected: dict[str, list[Any]] = {}
    for item in instructions(output_lines(io.BytesIO(data), max_bytes=max_bytes)):
        assert isinstance(item, Instruction)
        collected.setdefault(item.field, []).append(item.value)
    return BuildScriptOutput(**{field: tuple(values) for field, values in collected.items()})


@pytest.mark.parametrize("data", [case[1] for case in ACCEPTED], ids=[case[0] for case in ACCEPTED])
def test_streaming_reads_what_parse_reads(data: bytes) -> None:
    assert _streamed(data) == parse(data)
    assert _streamed(data + b"\n") == parse(data + b"\n")


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(st.lists(_FRAGMENTS, max_size=30).map("".join))
def test_streaming_agrees_with_parse_on_anything(text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    try:
        expected: BuildScriptOutput | str = parse(data)
    except BuildScriptProtocolError as error:
        expected = error.message
    try:
        streamed: BuildScriptOutput | str = _streamed(data)
    except BuildScriptProtocolError as error:
        streamed = error.message
    assert streamed == expected


def test_output_lines_reports_long_lines_by_length() -> None:
    data = b"cargo:rustc-cfg=a\n" + b"x" * 25 + b"\n" + b"y" * 10 + b"\n\ncargo:rustc-cfg=" + b"z" * 30
    assert list(output_lines(io.BytesIO(data), max_bytes=10)) == [17, 25, b"y" * 10, b"", 46]
    assert list(output_lines(io.BytesIO(b"a\nbb"), max_bytes=2)) == [b"a", b"bb"]
    assert list(output_lines(io.BytesIO(b""), max_bytes=2)) == []


def test_long_lines_keep_their_numbers_and_are_not_interpreted() -> None:
    data = b"cargo:rustc-cfg=a\ncargo:rustc-cfg=" + b"b" * 100 + b"\ncargo::bad\n"
    items = instructions(output_lines(io.BytesIO(data), max_bytes=50))
    assert next(items) == Instruction(field="cfgs", value="a")
    assert next(items) == LongLine(number=2, length=116)
    with pytest.raises(BuildScriptProtocolError) as caught:
        next(items)
    assert caught.value.line_number == 3


def test_a_long_line_is_read_in_bounded_memory() -> None:
    data = b"cargo:warning=" + b"w" * (32 << 20) + b"\ncargo:rustc-cfg=after\n"
    stream = io.BytesIO(data)
    tracemalloc.start()
    try:
        items = list(instructions(output_lines(stream, max_bytes=64 << 10)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert items == [LongLine(number=1, length=(32 << 20) + 14), Instruction(field="cfgs", value="after")]
    assert peak < 4 << 20
