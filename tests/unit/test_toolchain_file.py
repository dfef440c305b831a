"""rustup's toolchain file as xpcargo reads it: where (the workspace root, then its parents; in one directory the
legacy `rust-toolchain` first, as rustup does), the two forms, the override, and files that attack the reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xpcargo.config import toolchain_file
from xpcargo.config.targets import load_project_config
from xpcargo.config.toolchain_file import MAX_BYTES, OVERRIDE, Request, find, requested
from xpcargo.errors import ConfigError


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("name", "text", "channel"),
    [
        pytest.param("rust-toolchain.toml", '[toolchain]\nchannel = "1.85"\n', "1.85", id="toml"),
        pytest.param("rust-toolchain", "1.85.1\n", "1.85.1", id="legacy-one-line"),
        pytest.param("rust-toolchain", '[toolchain]\nchannel = "stable"\n', "stable", id="legacy-toml"),
        pytest.param("rust-toolchain.toml", '[toolchain]\ncomponents = ["rustfmt"]\n', None, id="no-channel"),
    ],
)
def test_the_two_forms(tmp_path: Path, name: str, text: str, channel: str | None) -> None:
    path = _write(tmp_path / name, text)
    assert find(tmp_path) == (Request(channel=channel, origin=str(path)) if channel else None)


def test_rustups_search_from_the_workspace_root_upward(tmp_path: Path) -> None:
    """A file above the workspace counts (rustup walks to the root); in one directory the legacy file wins and the
    nearer directory wins over a farther one."""
    root = tmp_path / "outer" / "ws"
    root.mkdir(parents=True)
    _write(tmp_path / "rust-toolchain.toml", '[toolchain]\nchannel = "1.96"\n')
    assert find(root) == Request(channel="1.96", origin=str(tmp_path / "rust-toolchain.toml"))
    _write(tmp_path / "outer" / "rust-toolchain", "1.85\n")
    assert find(root) == Request(channel="1.85", origin=str(tmp_path / "outer" / "rust-toolchain"))
    _write(root / "rust-toolchain.toml", '[toolchain]\nchannel = "stable"\n')
    _write(root / "rust-toolchain", "1.85.1\n")
    assert find(root) == Request(channel="1.85.1", origin=str(root / "rust-toolchain"))


def test_the_project_config_carries_it(tmp_path: Path) -> None:
    _write(tmp_path / "Cargo.toml", '[package]\nname = "app"\nversion = "0.1.0"\n')
    _write(tmp_path / "rust-toolchain.toml", '[toolchain]\nchannel = "1.85"\nprofile = "minimal"\n')
    config = load_project_config(tmp_path)
    assert config.toolchain == Request(
        channel="1.85", origin=str(tmp_path / "rust-toolchain.toml"), ignored=("profile",)
    )


def test_the_override_wins_over_the_file() -> None:
    file = Request(channel="1.70", origin="/p/rust-toolchain.toml")
    assert requested({}, file) is file
    assert requested({OVERRIDE: ""}, file) is file
    assert requested({OVERRIDE: "1.85"}, file) == Request(channel="1.85", origin=OVERRIDE)
    assert requested({OVERRIDE: "default"}, None) == Request(channel="default", origin=OVERRIDE)
    assert requested({OVERRIDE: "default"}, None).wants_default  # type: ignore[union-attr]
    # `default` in a file is a toolchain's name like any other, not the override's word.
    assert not Request(channel="default", origin="/p/rust-toolchain").wants_default


# --- Files that attack the reader --------------------------------------------------------------------------------


def test_a_toolchain_by_path_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "rust-toolchain.toml", '[toolchain]\npath = "../../host-toolchain"\n')
    with pytest.raises(ConfigError, match=r"names a toolchain by path \(`\.\./\.\./host-toolchain`\)"):
        find(tmp_path)


def test_a_link_out_of_its_directory_is_not_read(tmp_path: Path) -> None:
    """A link to the user's secrets would print them as the channel of an error: never followed out of the
    directory it sits in; a link within it is read."""
    secret = _write(tmp_path / "home" / "token", "s3cret-token\n")
    project = tmp_path / "project"
    project.mkdir()
    (project / "rust-toolchain").symlink_to(secret)
    with pytest.raises(ConfigError, match="is a link to outside") as caught:
        find(project)
    assert "s3cret" not in caught.value.summary()
    (project / "rust-toolchain").unlink()
    _write(project / "toolchains" / "pinned.toml", '[toolchain]\nchannel = "1.85"\n')
    (project / "rust-toolchain.toml").symlink_to("toolchains/pinned.toml")
    assert find(project) == Request(channel="1.85", origin=str(project / "rust-toolchain.toml"))
    # A dangling link is a file that cannot be read, said in one line.
    (project / "rust-toolchain.toml").unlink()
    (project / "rust-toolchain.toml").symlink_to("missing.toml")
    with pytest.raises(ConfigError, match="cannot read"):
        find(project)


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "rust-toolchain.toml"
    with path.open("wb") as sparse:
        sparse.truncate(100 << 20)
    with pytest.raises(ConfigError, match="larger than 64 KiB"):
        find(tmp_path)
    path.write_bytes(b"#" * MAX_BYTES)
    with pytest.raises(ConfigError, match="no \\[toolchain\\] table"):
        find(tmp_path)


def test_a_fifo_or_a_directory_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "rust-toolchain.toml")
    with pytest.raises(ConfigError, match="not a regular file"):
        find(tmp_path)
    (tmp_path / "rust-toolchain.toml").unlink()
    (tmp_path / "rust-toolchain").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read|not a regular file"):
        find(tmp_path)


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"\xff\xfe[toolchain]\n", "not UTF-8"),
        (b"[toolchain\n", "is not a toolchain file"),
        (b"x = " + b"[" * 5000 + b"]" * 5000 + b"\n", "is not a toolchain file|no \\[toolchain\\] table"),
        (b"toolchain = 5\n", "no \\[toolchain\\] table"),
        (b"[toolchain]\nchannel = 185\n", "not a channel's name"),
        (b'[toolchain]\nchannel = "  "\n', "not a channel's name"),
        (b"", "no \\[toolchain\\] table"),
    ],
)
def test_what_is_no_toolchain_file_is_one_error(tmp_path: Path, data: bytes, problem: str) -> None:
    (tmp_path / "rust-toolchain.toml").write_bytes(data)
    with pytest.raises(ConfigError, match=problem) as caught:
        find(tmp_path)
    assert "\n" not in caught.value.summary()


def test_what_a_file_says_is_shown_escaped_and_short() -> None:
    request = Request(channel="1.85\x1b]0;pwned\x07" + "x" * 500, origin="/p/rust-toolchain")
    assert "\x1b" not in request.shown
    assert "\\x1b" in request.shown
    assert len(request.shown) < 100
    assert toolchain_file.shown("1.85") == "1.85"
