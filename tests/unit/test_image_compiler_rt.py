"""compiler-rt's C builtins in a std built from source (`std-cc`, `std-ar`): the plan, the layer's script, and the
settings a project may not turn into commands."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.config import targets as config
from xpcargo.errors import ConfigError
from xpcargo.image import layers
from xpcargo.image.plan import ImagePlan, plan_image
from xpcargo.image.recipe import ImageRecipe, load_recipe

MUSL = "x86_64-unknown-linux-musl"
ARMV6 = "arm-unknown-linux-musleabihf"
WINDOWS = "x86_64-pc-windows-gnu"


@pytest.fixture(scope="module")
def recipe() -> ImageRecipe:
    return load_recipe("trixie-rust", directory=resources.images_dir())


def _plan(shipped: config.Toolchains, recipe: ImageRecipe, triple: str, **changes: object) -> ImagePlan:
    spec = replace(shipped.target(triple), **changes)  # type: ignore[arg-type]
    return plan_image(spec, recipe, build_arch="amd64")


def test_every_std_built_from_source_has_compiler_rt(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    llvm = recipe.c_runtime_sources["llvm"].orig
    from_source = [triple for triple in shipped.targets if shipped.target(triple).std_from_source]
    assert {MUSL, ARMV6, WINDOWS} <= set(from_source)
    for triple in from_source:
        plan = _plan(shipped, recipe, triple)
        std = plan.std_build
        assert std is not None
        assert std.compiler_rt is not None, triple
        assert std.compiler_rt.source.url.endswith(llvm.path)
        assert std.compiler_rt.source.sha256 == llvm.sha256
        # The `cc` crate it is compiled with comes through apt, in the std's layer only.
        assert "librust-cc-dev" in plan.layers[0].packages
    assert "librust-cc-dev" not in _plan(shipped, recipe, "x86_64-unknown-linux-gnu").layers[0].packages


def test_armv6_unpacks_llvm_once_for_its_runtime_and_its_builtins(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    std = _plan(shipped, recipe, ARMV6).std_build
    assert std is not None
    names = [file.filename for file in std.source_files]
    assert names == sorted(set(names), key=names.index)
    assert sum(name.startswith("llvm-toolchain-19") for name in names) == 1
    assert any(name.startswith("musl_") for name in names)


def test_the_compiler_is_part_of_the_plan_and_the_project_cc_is_not(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    plain = _plan(shipped, recipe, MUSL)
    # A project that wraps its compiler (sccache, a linter) keeps the std it has.
    assert _plan(shipped, recipe, MUSL, cc="ccache musl-gcc", ar="llvm-ar").digest == plain.digest
    assert _plan(shipped, recipe, MUSL, std_cc="x86_64-linux-musl-gcc").digest != plain.digest
    # Without std-cc the std has the Rust builtins only, and the layer hashes as before the setting existed.
    bare = _plan(shipped, recipe, MUSL, std_cc=None, std_ar=None)
    assert bare.std_build is not None
    assert bare.std_build.compiler_rt is None
    assert bare.digest != plain.digest
    assert "librust-cc-dev" not in bare.layers[0].packages


def test_the_script_compiles_the_builtins_with_the_std_cc_only(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    std = _plan(shipped, recipe, MUSL, cc="sh -c 'touch /pwned-cc'", env={"CC": "/pwned"}).std_build
    assert std is not None
    script = layers.std_script(std, "src.deb")
    assert "pwned" not in script
    lines = script.splitlines()
    unpack = next(index for index, line in enumerate(lines) if "compiler-rt/lib/builtins" in line)
    build = next(index for index, line in enumerate(lines) if " cargo build " in line)
    assert unpack < build
    assert "--features compiler-builtins-c" in lines[build]
    assert "--locked" in lines[build]
    assert f"RUST_COMPILER_RT_ROOT={layers.STD_BUILD_DIR}/llvm/compiler-rt" in lines[build]
    assert "CC_x86_64_unknown_linux_musl=musl-gcc AR_x86_64_unknown_linux_musl=ar" in lines[build]
    # The vendor directory with Debian's cc beside the std's own crates, and the lock moved to that cc.
    assert f'source.vendored.directory=\\"{layers.STD_BUILD_DIR}/vendor\\"' in lines[build]
    assert "/usr/share/cargo/registry/cc-[0-9]*" in script
    # Without it, the std's own vendor directory and no C.
    bare = _plan(shipped, recipe, MUSL, std_cc=None, std_ar=None).std_build
    assert bare is not None
    bare_script = layers.std_script(bare, "src.deb")
    assert "compiler-builtins-c" not in bare_script
    assert "compiler-rt" not in bare_script


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"std_ar": None}, "add std-ar to"),
        ({"std_cc": None}, "add std-cc to"),
    ],
)
def test_half_a_compiler_is_one_line(
    shipped: config.Toolchains, recipe: ImageRecipe, changes: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigError, match="sets one of std-cc and std-ar") as caught:
        _plan(shipped, recipe, MUSL, **changes)
    assert "\n" not in str(caught.value)
    assert said in (caught.value.hint or "")


def test_a_recipe_without_llvm_sources_cannot_compile_compiler_rt(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    bare = replace(recipe, c_runtime_sources={})
    with pytest.raises(ConfigError, match="no c-runtime-sources for llvm"):
        plan_image(shipped.target(MUSL), bare, build_arch="amd64")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("std-cc", "musl-gcc; touch /pwned"),
        ("std-cc", "$(touch /pwned)"),
        ("std-cc", "musl-gcc -fplugin=/tmp/evil.so"),
        ("std-cc", "-fplugin=/tmp/evil.so"),
        ("std-cc", "/opt/../tmp/evil"),
        ("std-ar", "ar`touch /pwned`"),
        ("std-ar", "relative/ar"),
    ],
)
def test_a_project_cannot_pass_commands_as_std_compilers(
    tmp_path: Path, shipped: config.Toolchains, key: str, value: str
) -> None:
    (tmp_path / "xpcargo.toml").write_text(f'[target.{MUSL}]\n{key} = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=key) as caught:
        config.resolve_target(MUSL, shipped, config.load_project_config(tmp_path), environ={})
    assert "xpcargo.toml" in str(caught.value)
    assert "\n" not in str(caught.value)
