"""The image layer (image/layers.py) that builds a target's own C runtime from Debian's sources (`std-c-runtime`,
ARMv6): the recipe's pinned sources, the plan, the layer's script, and the settings a project may not turn into
commands."""

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

ARMV6 = "arm-unknown-linux-musleabihf"
MUSL = "x86_64-unknown-linux-musl"
ARMV6_FLAGS = ("-march=armv6kz+fp", "-mfpu=vfp", "-mfloat-abi=hard", "-marm")


@pytest.fixture(scope="module")
def recipe() -> ImageRecipe:
    return load_recipe("trixie-rust", directory=resources.images_dir())


def _plan(shipped: config.Toolchains, recipe: ImageRecipe, triple: str, **changes: object) -> ImagePlan:
    spec = replace(shipped.target(triple), **changes)  # type: ignore[arg-type]
    return plan_image(spec, recipe, build_arch="amd64")


def test_the_recipe_pins_musl_and_llvm_sources(recipe: ImageRecipe) -> None:
    musl, llvm = recipe.c_runtime_sources["musl"], recipe.c_runtime_sources["llvm"]
    assert musl.orig.path == "pool/main/m/musl/musl_1.2.5.orig.tar.gz"
    assert musl.debian is not None
    assert musl.debian.path.endswith(".debian.tar.xz")
    assert llvm.orig.path.startswith("pool/main/l/llvm-toolchain-19/")
    assert llvm.debian is None
    assert all(len(file.sha256) == 64 for file in (musl.orig, musl.debian, llvm.orig))


@pytest.mark.parametrize(
    "line",
    [
        "pool/main/m/musl/musl.tar.gz",  # no hash
        "http://attacker.invalid/musl.tar.gz " + "0" * 64,
        "pool/main/m/musl/../../../etc/musl.tar.gz " + "0" * 64,
        "pool/main/m/musl/$(touch x).tar.gz " + "0" * 64,
        "pool/main/m/musl/musl.deb " + "0" * 64,
    ],
)
def test_a_recipe_source_must_be_a_pinned_pool_tarball(tmp_path: Path, line: str) -> None:
    text = (resources.images_dir() / "trixie-rust.yaml").read_text(encoding="utf-8")
    good = next(row for row in text.splitlines() if row.strip().startswith("orig: pool/main/m/musl/"))
    (tmp_path / "bad.yaml").write_text(text.replace(good, f"    orig: {line}"), encoding="utf-8")
    with pytest.raises(ConfigError, match="c-runtime-sources"):
        load_recipe("bad", directory=tmp_path)


def test_armv6_builds_its_c_runtime_then_its_std(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    plan = _plan(shipped, recipe, ARMV6)
    assert plan.emulator == "qemu-arm"
    assert shipped.target(ARMV6).runner == ("qemu-arm", "-cpu", "arm1176")
    std = plan.std_build
    assert std is not None
    runtime = std.c_runtime
    assert runtime is not None
    assert runtime.kind == "musl"
    assert runtime.cflags == ARMV6_FLAGS
    assert runtime.gnu_triple == "arm-linux-gnueabihf"
    assert runtime.prefix == f"/opt/xpcargo/{ARMV6}"
    assert [file.filename for file in runtime.files("musl")] == [
        "musl_1.2.5.orig.tar.gz",
        "musl_1.2.5-3.1~deb13u1.debian.tar.xz",
    ]
    # Debian's armhf libraries are ARMv7: none of them may be linked in.
    assert std.unwinder is None
    assert all(path.startswith(f"/opt/xpcargo/{ARMV6}/lib/") for path in std.self_contained)
    assert {"libc.a", "libunwind.a", "crtbegin.o", "crtend.o", "crt1.o"} <= {
        Path(path).name for path in std.self_contained
    }
    # Other targets' plans do not change with the field: their layer hashes no c_runtime at all.
    musl_layer = _plan(shipped, recipe, MUSL).layers[0]
    assert musl_layer.std_build is not None
    assert musl_layer.std_build.c_runtime is None


def test_the_flags_are_part_of_the_image_plan(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    armv6 = _plan(shipped, recipe, ARMV6)
    armv7 = _plan(shipped, recipe, ARMV6, std_c_flags=("-march=armv7-a+fp", "-mfloat-abi=hard"))
    assert armv6.digest != armv7.digest
    assert armv6.base == armv7.base


def test_the_script_builds_the_runtime_before_the_std_and_quotes_every_value(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    plan = _plan(shipped, recipe, ARMV6, cc="sh -c 'touch /pwned-cc'", env={"CFLAGS": "-pwned"})
    std = plan.std_build
    assert std is not None
    script = layers.std_script(std, "src.deb")
    assert "pwned" not in script
    lines = script.splitlines()
    configure = next(index for index, line in enumerate(lines) if "./configure" in line)
    build = next(index for index, line in enumerate(lines) if " cargo build " in line)
    assert configure < build
    assert "--target=arm-linux-gnueabihf --disable-shared" in lines[configure]
    assert 'CFLAGS="-march=armv6kz+fp -mfpu=vfp -mfloat-abi=hard -marm -O2"' in lines[configure]
    assert f"{layers.POOL}/musl_1.2.5.orig.tar.gz" in script
    assert "debian/patches/series" in script
    assert "Unwind-EHABI" in script
    assert "arm-linux-gnueabihf-g++ -std=c++17 -nostdinc++" in script
    # The wrapper the target's cc and linker name: the cross gcc with the runtime's options and musl's specs.
    assert "exec arm-linux-gnueabihf-gcc -march=armv6kz+fp -mfpu=vfp -mfloat-abi=hard -marm" in script
    assert f"-B/opt/xpcargo/{ARMV6}/lib" in script
    assert f'ln -s /opt/xpcargo/{ARMV6}/lib/libunwind.a "$sysroot/self-contained/"' in lines
    # No fortify functions: this libunwind is built against musl's headers.
    assert "-ffreestanding" not in script


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"std": None}, "std-c-runtime"),
        ({"std_c_runtime": None}, "std-c-flags"),
    ],
)
def test_half_a_c_runtime_is_one_line(
    shipped: config.Toolchains, recipe: ImageRecipe, changes: dict[str, object], said: str
) -> None:
    with pytest.raises(ConfigError, match=said) as caught:
        _plan(shipped, recipe, ARMV6, **changes)
    assert "\n" not in str(caught.value)


def test_a_recipe_without_c_runtime_sources_cannot_build_one(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    bare = replace(recipe, c_runtime_sources={})
    with pytest.raises(ConfigError, match="no c-runtime-sources for musl, llvm"):
        plan_image(shipped.target(ARMV6), bare, build_arch="amd64")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("std-c-flags", ["-march=armv6; touch /pwned"]),
        ("std-c-flags", ["$(touch /pwned)"]),
        ("std-c-flags", ["-O2 -marm"]),
        ("std-c-flags", ["march=armv6"]),
        ("std-c-flags", ["-march=armv6'"]),
        ("std-c-runtime", "glibc"),
        ("std-c-runtime", "musl; touch /pwned"),
    ],
)
def test_a_project_cannot_pass_commands_as_c_runtime_settings(
    tmp_path: Path, shipped: config.Toolchains, key: str, value: object
) -> None:
    rendered = "[" + ", ".join(f'"{item}"' for item in value) + "]" if isinstance(value, list) else f'"{value}"'
    (tmp_path / "xpcargo.toml").write_text(f"[target.{ARMV6}]\n{key} = {rendered}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=key) as caught:
        config.resolve_target(ARMV6, shipped, config.load_project_config(tmp_path), environ={})
    assert "xpcargo.toml" in str(caught.value)
