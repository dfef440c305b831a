"""Planning a Cargo command on the host, and reading Cargo's stdout: JSON messages first, then program output."""

from __future__ import annotations

import itertools
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xpcargo import cargo
from xpcargo.engine import Mount
from xpcargo.errors import ConfigError, UnknownTargetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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
    reader = cargo.MessageReader(echo_messages=echo, write_stdout=stdout.append, write_stderr=stderr.append)
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


# --- CargoPlan ------------------------------------------------------------------------------------------------------


def _project(tmp_path: Path, xpcargo_toml: str | None = None) -> Path:
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    (root / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    if xpcargo_toml is not None:
        (root / "xpcargo.toml").write_text(textwrap.dedent(xpcargo_toml), encoding="utf-8")
    return root


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin", **extra}


def _plan(tmp_path: Path, command: str, args: list[str], *, triple: str = AARCH64, **kw: Any) -> cargo.CargoPlan:
    root = _project(tmp_path, kw.pop("xpcargo_toml", None))
    return cargo.plan(command, triple, args, cwd=root, environ=_environ(tmp_path, **kw))


def test_cargo_argv_puts_target_and_format_before_user_args(tmp_path: Path) -> None:
    args = ["--release", "-p", "app", "--", "--message-format", "human", "--target", "x86_64", "--"]
    plan = _plan(tmp_path, "run", args)
    argv = plan.cargo_argv(color=False)
    assert argv[:5] == ["cargo", "run", "--target", AARCH64, "--message-format=json"]
    assert argv[5:] == args
    assert plan.cargo_argv(color=True)[4] == "--message-format=json-diagnostic-rendered-ansi"
    assert plan.injects_json
    assert plan.reads_messages
    assert plan.profile_dir == "release"


def test_no_injection_when_the_user_chose_a_format(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "check", ["--message-format=json-diagnostic-short", "--workspace"])
    assert plan.cargo_argv(color=True) == [
        "cargo",
        "check",
        "--target",
        AARCH64,
        "--message-format=json-diagnostic-short",
        "--workspace",
    ]
    assert not plan.injects_json
    assert plan.reads_messages


def test_a_human_format_is_not_read(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", ["--message-format", "short"])
    assert not any(arg.startswith("--message-format=") for arg in plan.cargo_argv(color=False))
    assert not plan.reads_messages


def test_a_message_format_after_dashdash_is_the_programs(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "run", ["--", "--message-format=short"])
    assert plan.injects_json
    assert plan.cargo_argv(color=False)[4] == "--message-format=json"


def test_plan_environment(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", [], RUSTFLAGS="-Dwarnings", RUSTC_WRAPPER="sccache")
    assert plan.env["CC_aarch64_unknown_linux_gnu"] == "aarch64-linux-gnu-gcc"
    assert plan.env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"].startswith("qemu-aarch64")
    assert plan.env["RUSTFLAGS"] == "-Dwarnings"
    assert plan.env["CARGO_HOME"] == str(tmp_path / "home" / ".cargo")
    assert plan.env["CARGO_TARGET_DIR"] == str(tmp_path.resolve() / "app" / "target")
    assert "RUSTC_WRAPPER" not in plan.env
    assert "PATH" not in plan.env
    assert "HOME" not in plan.env
    assert plan.state_dir == tmp_path.resolve() / "app" / "target" / "xpcargo" / AARCH64
    assert plan.overrides_file is None


def test_plan_with_an_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(UnknownTargetError):
        _plan(tmp_path, "build", [], triple="aarch64-unknown-linux-gnux")


LINKS_PROJECT = f"""\
    [target.{AARCH64}.links.z]
    rustc-link-lib = ["static=z"]
    rustc-link-search = ["native={{lib}}"]
    include = "{{include}}"
    "with space" = "a \\"quoted\\" value"
    level = 3
    static = true
"""


def test_links_overrides_go_into_a_config_file(tmp_path: Path) -> None:
    lib, include = tmp_path / "zlib" / "lib", tmp_path / "zlib" / "include"
    lib.mkdir(parents=True)
    include.mkdir()
    plan = _plan(tmp_path, "build", ["--offline"], xpcargo_toml=LINKS_PROJECT.format(lib=lib, include=include))
    assert plan.overrides_file == plan.state_dir / "links-overrides.toml"
    argv = plan.cargo_argv(color=False)
    assert argv[:7] == [
        "cargo",
        "build",
        "--target",
        AARCH64,
        "--message-format=json",
        "--config",
        str(plan.overrides_file),
    ]
    assert argv[7:] == ["--offline"]

    cargo.write_overrides_file(plan)
    written = tomllib.loads(plan.overrides_file.read_text(encoding="utf-8"))
    assert written == {
        "target": {
            AARCH64: {
                "z": {
                    "rustc-link-lib": ["static=z"],
                    "rustc-link-search": [f"native={lib}"],
                    "include": str(include),
                    "with space": 'a "quoted" value',
                    "level": 3,
                    "static": True,
                }
            }
        }
    }
    # The directories the override names exist on the host, so they are mounted, read-only.
    assert Mount(path=lib, read_only=True) in plan.mounts
    assert Mount(path=include, read_only=True) in plan.mounts


def test_links_overrides_merge_the_projects_cargo_config(tmp_path: Path) -> None:
    root = _project(tmp_path, f'[target.{AARCH64}.links.z]\ninclude = "/from-xpcargo"\n')
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(
        f'[target.{AARCH64}.z]\nrustc-link-lib = ["z"]\ninclude = "/from-cargo-config"\n', encoding="utf-8"
    )
    plan = cargo.plan("build", AARCH64, [], cwd=root, environ=_environ(tmp_path))
    assert plan.links_overrides == {"z": {"rustc-link-lib": ["z"], "include": "/from-xpcargo"}}


def test_configured_mount_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{tmp_path / "missing"}"]\n')


def test_configured_mount_is_read_only(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    plan = _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{sdk}"]\n')
    assert Mount(path=sdk, read_only=True) in plan.mounts


def test_configured_mount_with_dotdot_is_mounted(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    dotted = tmp_path.resolve() / "app" / ".." / "sdk"
    plan = _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{dotted}"]\n')
    assert any(mount.path.resolve() == sdk.resolve() for mount in plan.mounts)


# --- _override_paths ------------------------------------------------------------------------------------------------


def test_override_paths_from_link_search_and_metadata() -> None:
    overrides: dict[str, dict[str, Any]] = {
        "z": {
            "rustc-link-search": ["native=/opt/z/lib", "/opt/plain", "dependency=/opt/dep", "all=/opt/all", "rel"],
            "rustc-link-lib": ["static=z"],
            "root": "/opt/z",
            "include": "/opt/z/include",
            "version": "1.3.1",
            "count": 3,
            "relative": "lib/z",
        },
        "ssl": {"rustc-link-search": "framework=/opt/frameworks"},
    }
    assert set(cargo._override_paths(overrides)) == {
        Path("/opt/z/lib"),
        Path("/opt/plain"),
        Path("/opt/dep"),
        Path("/opt/all"),
        Path("/opt/z"),
        Path("/opt/z/include"),
        Path("/opt/frameworks"),
    }


def test_override_paths_from_rustc_flags() -> None:
    overrides = {"ssl": {"rustc-flags": "-l ssl -L /opt/ssl/lib -lcrypto -L/opt/crypto/lib -L relative"}}
    assert cargo._override_paths(overrides) == [Path("/opt/ssl/lib"), Path("/opt/crypto/lib")]


def test_override_paths_of_nothing() -> None:
    assert cargo._override_paths({}) == []
    assert cargo._override_paths({"z": {"rustc-link-lib": ["z"], "rustc-flags": "-lz"}}) == []


def test_override_paths_from_rustc_flags_with_a_kind() -> None:
    overrides = {"a": {"rustc-flags": "-L native=/opt/a -Lnative=/opt/b"}}
    assert set(cargo._override_paths(overrides)) == {Path("/opt/a"), Path("/opt/b")}
