"""Which recipe builds a target with the Rust a project asks for: read from the recipes' own `rust.version` and the
targets' std, with one error for what no image has."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.config.targets import TargetSpec, load_toolchains
from xpcargo.config.toolchain_file import OVERRIDE, Request
from xpcargo.context import Context
from xpcargo.errors import ConfigError
from xpcargo.image.recipe import ImageRecipe
from xpcargo.image.toolchain import available, choose, load_recipes, rust_of, unable

NEW = "trixie-rust"
OLD = "trixie-rust-1.85"
FILE = "/p/rust-toolchain.toml"


@pytest.fixture(scope="module")
def recipes() -> dict[str, ImageRecipe]:
    return load_recipes(resources.images_dir())


@pytest.fixture(scope="module")
def shipped() -> dict[str, TargetSpec]:
    return dict(load_toolchains(resources.toolchains_file()).targets)


def _chosen(spec: TargetSpec, channel: str, recipes: dict[str, ImageRecipe], origin: str = FILE) -> str:
    return choose(spec, Request(channel=channel, origin=origin), recipes, build_arch="amd64").recipe


def test_each_recipe_says_its_rust(recipes: dict[str, ImageRecipe]) -> None:
    assert {name: rust_of(recipe) for name, recipe in recipes.items()} == {NEW: "1.96.0", OLD: "1.85.1"}
    assert available(recipes.values()) == "1.85 and 1.96 (stable)"


X86_64 = "x86_64-unknown-linux-gnu"
ARMV5TE = "armv5te-unknown-linux-gnueabi"
# What each channel gives each kind of target, read from the recipes: a GNU target's std is Debian's package for its
# arch (in both recipes), a std from source needs the recipe's rust.source, except where Debian packages the target's
# std for the other Rust (armel's and wasm32's, for 1.85).
EXPECTED: dict[str, dict[str, str | None]] = {
    X86_64: {"1.85": OLD, "1.85.1": OLD, "1.96": NEW, "1.96.0": NEW, "stable": NEW},
    "aarch64-unknown-linux-gnu": {"1.85": OLD, "1.96": NEW, "stable": NEW},
    "i686-unknown-linux-gnu": {"1.85.1": OLD, "1.96.0": NEW, "stable": NEW},
    "s390x-unknown-linux-gnu": {"1.85": OLD, "stable": NEW},
    ARMV5TE: {"1.85": OLD, "1.85.1": OLD, "stable": NEW, "1.96": NEW},
    "wasm32-wasip1": {"1.85": OLD, "1.85.1": OLD, "stable": NEW, "1.96": NEW},
    "x86_64-unknown-linux-musl": {"1.85": None, "stable": NEW, "1.96": NEW},
}


@pytest.mark.parametrize(("triple", "channel"), [(t, c) for t, by in EXPECTED.items() for c in by])
def test_a_channel_a_recipe_has_selects_it(
    recipes: dict[str, ImageRecipe], shipped: dict[str, TargetSpec], triple: str, channel: str
) -> None:
    """`stable` is the newest Rust that can build the target; a version another recipe has but the target's std
    does not is one error that says why and how to build it with its own Rust."""
    expected = EXPECTED[triple][channel]
    if expected is not None:
        assert _chosen(shipped[triple], channel, recipes) == expected
        return
    with pytest.raises(ConfigError, match=f"and xpcargo cannot build {triple} with it") as caught:
        _chosen(shipped[triple], channel, recipes)
    assert f"{OVERRIDE}=default" in str(caught.value.hint)


def test_armv5te_builds_its_std_on_1_96_and_takes_debians_on_1_85(
    recipes: dict[str, ImageRecipe], shipped: dict[str, TargetSpec]
) -> None:
    armel = shipped[ARMV5TE]
    assert armel.std_from_source
    assert unable(armel, recipes[NEW], build_arch="amd64") is None
    # Debian's std of armel is ARMv5TE's: 1.85's recipe pins it, and its sources are not there.
    assert unable(armel, recipes[OLD], build_arch="amd64") is None
    old = choose(armel, Request(channel="1.85", origin=FILE), recipes, build_arch="amd64")
    assert (old.recipe, old.std_from_source) == (OLD, False)
    new = choose(armel, Request(channel="stable", origin=FILE), recipes, build_arch="amd64")
    assert (new.recipe, new.std_from_source) == (NEW, True)
    # Without Debian's package of it in the recipe, the sources are the only way.
    unpinned = replace(recipes[OLD], rust=replace(recipes[OLD].rust, std_sha256={}))
    assert "which the trixie-rust-1.85 recipe lacks" in str(unable(armel, unpinned, build_arch="amd64"))
    # Debian's armhf std is ARMv7 glibc's: never a std-from-source target of another libc or variant.
    armv6 = shipped["arm-unknown-linux-musleabihf"]
    assert "which the trixie-rust-1.85 recipe lacks" in str(unable(armv6, recipes[OLD], build_arch="amd64"))


def test_wasm32_builds_its_std_on_1_96_and_takes_debians_package_on_1_85(
    recipes: dict[str, ImageRecipe], shipped: dict[str, TargetSpec]
) -> None:
    wasm = shipped["wasm32-wasip1"]
    assert wasm.std_from_source
    assert recipes[OLD].rust.std_arch_independent == {"wasm32-wasip1": "libstd-rust-dev-wasm32"}
    assert recipes[NEW].rust.std_arch_independent == {}
    old = choose(wasm, Request(channel="1.85", origin=FILE), recipes, build_arch="amd64")
    assert (old.recipe, old.std_from_source) == (OLD, False)
    # A recipe that names no package of it, and has no sources, cannot build it.
    unnamed = replace(recipes[OLD], rust=replace(recipes[OLD].rust, std_arch_independent={}))
    assert "which the trixie-rust-1.85 recipe lacks" in str(unable(wasm, unnamed, build_arch="amd64"))
    packaged = replace(wasm, std="debian")
    assert unable(packaged, unnamed, build_arch="amd64") == "Debian packages no std of it for 1.85.1"
    assert unable(packaged, recipes[NEW], build_arch="amd64") == "Debian packages no std of it for 1.96.0"


def test_why_a_recipe_cannot_build_a_target(recipes: dict[str, ImageRecipe], shipped: dict[str, TargetSpec]) -> None:
    musl = shipped["x86_64-unknown-linux-musl"]
    assert "which the trixie-rust-1.85 recipe lacks" in str(unable(musl, recipes[OLD], build_arch="amd64"))
    # The build machine's own std comes with rustc; another machine's x86_64 std is a pool .deb like any other.
    assert unable(shipped[X86_64], recipes[OLD], build_arch="amd64") is None
    assert unable(shipped[X86_64], recipes[OLD], build_arch="arm64") is not None
    # A glibc floor is the recipe's: 1.85's has none below its own.
    floored = replace(shipped[X86_64], glibc="2.36")
    assert unable(floored, recipes[NEW], build_arch="amd64") is None
    assert "glibc floor 2.36" in str(unable(floored, recipes[OLD], build_arch="amd64"))


def test_an_image_of_the_users_or_the_override_default_keeps_the_recipe(
    recipes: dict[str, ImageRecipe], shipped: dict[str, TargetSpec]
) -> None:
    own = replace(shipped[X86_64], image="my/image:1")
    assert _chosen(own, "1.70", recipes) == NEW
    assert _chosen(shipped[X86_64], "default", recipes, origin=OVERRIDE) == NEW


@pytest.mark.parametrize(
    "channel",
    [
        "1.70",
        "1.70.0",
        "1.85.0",
        "1.96.1",
        "nightly",
        "beta",
        "nightly-2025-01-01",
        "stable-2025-01-01",
        "1.85-x86_64-unknown-linux-gnu",
        "../../host-toolchain",
        "/usr/local/rust",
        "host-toolchain",
        "default",
        "1.85\n1.96",
        "x" * 5000,
    ],
)
def test_anything_else_is_one_error_naming_what_there_is(
    recipes: dict[str, ImageRecipe], shipped: dict[str, TargetSpec], channel: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _chosen(shipped[X86_64], channel, recipes)
    line = caught.value.summary()
    assert line.startswith(f"error: {FILE} asks for Rust ")
    assert "which no xpcargo image provides" in line
    assert f"xpcargo provides 1.85 and 1.96 (stable); change the channel, or override it with {OVERRIDE}=" in line
    assert "\n" not in line
    assert len(line) < 400


def test_the_host_builds_each_target_with_what_the_project_asks(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    (tmp_path / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "1.85"\n', encoding="utf-8")

    def recipe(triple: str, **environ: str) -> str:
        context = Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), **environ})
        return context.host.target(triple, context.project_config_here()).recipe

    assert recipe(X86_64) == OLD
    assert recipe(X86_64, XPCARGO_TOOLCHAIN="default") == NEW
    assert recipe(X86_64, XPCARGO_TOOLCHAIN="1.96") == NEW
    assert recipe(ARMV5TE) == OLD
    assert recipe(ARMV5TE, XPCARGO_TOOLCHAIN="stable") == NEW
    with pytest.raises(ConfigError, match="XPCARGO_TOOLCHAIN asks for Rust nightly"):
        recipe(X86_64, XPCARGO_TOOLCHAIN="nightly")
    (tmp_path / "rust-toolchain.toml").unlink()
    assert recipe(X86_64) == NEW
