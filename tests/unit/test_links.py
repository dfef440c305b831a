"""`links` overrides (config/links.py and cargo/links.py): the host paths they name, their merge, how rustc-flags
split, the overrides of a Cargo config file and the Cargo config file written from them."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import tomllib

from xpcargo.cargo import links
from xpcargo.config.links import LinksOverrides, split_rustc_flags
from xpcargo.errors import ConfigError


def _paths(tables: dict[str, dict[str, Any]]) -> list[Path]:
    return list(LinksOverrides(tables).host_paths())


# --- host_paths ------------------------------------------------------------------------------------------------


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
    assert set(_paths(overrides)) == {
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
    assert _paths(overrides) == [Path("/opt/ssl/lib"), Path("/opt/crypto/lib")]


def test_override_paths_of_nothing() -> None:
    assert _paths({}) == []
    assert _paths({"z": {"rustc-link-lib": ["z"], "rustc-flags": "-lz"}}) == []


def test_override_paths_from_rustc_flags_with_a_kind() -> None:
    overrides = {"a": {"rustc-flags": "-L native=/opt/a -Lnative=/opt/b"}}
    assert set(_paths(overrides)) == {Path("/opt/a"), Path("/opt/b")}


def test_a_higher_layer_wins_and_arrays_join() -> None:
    lower = LinksOverrides({"z": {"rustc-link-search": ["/far"], "root": "/far", "only-low": "x"}})
    higher = LinksOverrides(
        {"z": {"rustc-link-search": ["/near"], "root": "/near"}, "ssl": {"rustc-link-lib": ["ssl"]}}
    )
    merged = higher.over(lower)
    assert merged.tables == {
        "z": {"rustc-link-search": ["/far", "/near"], "root": "/near", "only-low": "x"},
        "ssl": {"rustc-link-lib": ["ssl"]},
    }
    assert set(merged) == {"z", "ssl"}
    assert not LinksOverrides()
    assert merged.get("missing") is None


def test_from_cargo_config_skips_the_targets_own_settings() -> None:
    data = {
        "target": {
            "aarch64-unknown-linux-gnu": {"linker": "x", "runner": ["y"], "z": {"rustc-link-lib": ["z"]}, "bad": 3}
        }
    }
    overrides = links.from_cargo_config(data, "aarch64-unknown-linux-gnu")
    assert overrides.tables == {"z": {"rustc-link-lib": ["z"]}}
    assert not links.from_cargo_config(data, "i686-unknown-linux-gnu")
    assert not links.from_cargo_config({"target": "x"}, "i686-unknown-linux-gnu")


def test_split_rustc_flags_whitespace_is_rusts() -> None:
    assert split_rustc_flags("-lfoo\u3000-L\t/a\n-l\u00a0bar") == (("/a",), ("foo", "bar"))


# --- the Cargo config file -----------------------------------------------------------------------------------------

OVERRIDES = LinksOverrides(
    {
        "openssl": {
            "rustc-link-lib": ["ssl", "crypto"],
            "rustc-link-search": ["native=/opt/ssl/lib"],
            "include": "/opt/ssl/include",
            "rustc-flags": "-L /x",
            "version": 3,
            "ratio": 1.5,
            "static": True,
        },
        "z": {"rustc-link-lib": []},
    }
)


def test_the_cargo_config_file_is_what_it_was() -> None:
    """Byte for byte the file the writer before files.py wrote (a Cargo config's keys quoted, arrays inline)."""
    assert links.as_cargo_config(OVERRIDES, "aarch64-unknown-linux-gnu") == (
        '[target."aarch64-unknown-linux-gnu"."openssl"]\n"rustc-link-lib" = ["ssl", "crypto"]\n'
        '"rustc-link-search" = ["native=/opt/ssl/lib"]\n"include" = "/opt/ssl/include"\n"rustc-flags" = "-L /x"\n'
        '"version" = 3\n"ratio" = 1.5\n"static" = true\n\n[target."aarch64-unknown-linux-gnu"."z"]\n'
        '"rustc-link-lib" = []\n'
    )


def test_the_cargo_config_file_reads_back_as_the_overrides() -> None:
    hostile = LinksOverrides({'we"ird\n': {"root": '/a "b"\\c\n\x7f', 'k"ey': ["\t"]}})
    triple = "x.y"
    for overrides in (OVERRIDES, hostile):
        read = tomllib.loads(links.as_cargo_config(overrides, triple))
        assert read == {"target": {triple: {name: dict(table) for name, table in overrides.tables.items()}}}


def test_a_value_toml_cannot_say_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"a links override holds a value TOML cannot say: datetime.date\(2026"):
        links.as_cargo_config(LinksOverrides({"z": {"when": [datetime.date(2026, 1, 1)]}}), "x")
