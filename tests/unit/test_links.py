"""`links` overrides: the host paths they name, their merge, and the Cargo config file written from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from xpcargo.cargo.links import LinksOverrides


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
    overrides = LinksOverrides.from_cargo_config(data, "aarch64-unknown-linux-gnu")
    assert overrides.tables == {"z": {"rustc-link-lib": ["z"]}}
    assert not LinksOverrides.from_cargo_config(data, "i686-unknown-linux-gnu")
    assert not LinksOverrides.from_cargo_config({"target": "x"}, "i686-unknown-linux-gnu")
