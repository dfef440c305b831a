"""The image layer (image/layers.py) that builds a target's own C runtime from Debian's sources (`std-c-runtime`,
ARMv6), and compiler-rt's C builtins in a std built from source (`std-cc`, `std-ar`): the recipe's pinned sources,
the plan, the layer's script, and the settings a project may not turn into commands."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path, PurePosixPath

import pytest

from xpcargo import resources
from xpcargo.config import targets as config
from xpcargo.errors import ConfigError
from xpcargo.image import layers
from xpcargo.image import plan as image_plan
from xpcargo.image.plan import ImagePlan, plan_image
from xpcargo.image.recipe import ImageRecipe, load_recipe

ARMV6 = "arm-unknown-linux-musleabihf"
MUSL = "x86_64-unknown-linux-musl"
WINDOWS = "x86_64-pc-windows-gnu"
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
        # The compiler and archiver of the std's compiler-rt: one program of the image, never a command.
        ("std-cc", "musl-gcc; touch /pwned"),
        ("std-cc", "$(touch /pwned)"),
        ("std-cc", "musl-gcc -fplugin=/tmp/evil.so"),
        ("std-cc", "-fplugin=/tmp/evil.so"),
        ("std-cc", "/opt/../tmp/evil"),
        ("std-ar", "ar`touch /pwned`"),
        ("std-ar", "relative/ar"),
        # The linker of the std's dylib (armv5te's): one program of the image too.
        ("std-linker", "arm-linux-gnueabi-gcc -Wl,--wrap=main"),
        ("std-linker", "gcc;touch${IFS}/pwned"),
        ("std-linker", "-fuse-ld=/tmp/evil"),
        # The archives every link of the target takes (wasm32's pthread stubs): files of the image, never a flag.
        ("link-archives", ["/usr/lib/x.a -Clink-arg=--export-all"]),
        ("link-archives", ["--whole-archive"]),
        ("wasi-emulated", ["getpid;touch${IFS}/pwned"]),
        # Target features go into the std build's RUSTFLAGS and every build's rustflags: one feature each.
        ("target-features", ["+crt-static -Clinker=/tmp/evil"]),
        ("target-features", ["+crt-static;touch${IFS}/pwned"]),
        ("target-features", ["$(touch /pwned)"]),
        ("target-features", ["crt-static"]),
        ("target-features", ["-Clinker=/tmp/evil"]),
    ],
)
def test_a_project_cannot_pass_commands_as_std_build_settings(
    tmp_path: Path, shipped: config.Toolchains, key: str, value: object
) -> None:
    rendered = "[" + ", ".join(f'"{item}"' for item in value) + "]" if isinstance(value, list) else f'"{value}"'
    (tmp_path / "xpcargo.toml").write_text(f"[target.{ARMV6}]\n{key} = {rendered}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=key) as caught:
        config.resolve_target(ARMV6, shipped, config.load_project_config(tmp_path), environ={})
    assert "xpcargo.toml" in str(caught.value)
    assert "\n" not in str(caught.value)


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


def test_riscv64_musl_builds_its_std_with_crt_static_and_no_other_std_changes(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    riscv64 = "riscv64gc-unknown-linux-musl"
    std = _plan(shipped, recipe, riscv64).std_build
    assert std is not None
    assert std.target_features == ("+crt-static",)
    script = layers.std_build_script(std, PurePosixPath("/src.deb"))
    build = next(line for line in script if "cargo build" in line)
    assert ' -Ctarget-feature=+crt-static" cargo build ' in build
    # A std without target features hashes as before the field existed: no other image's tag moved.
    plain = _plan(shipped, recipe, MUSL)
    assert plain.digest == _plan(shipped, recipe, MUSL, target_features=()).digest
    assert plain.digest != _plan(shipped, recipe, MUSL, target_features=("+crt-static",)).digest


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


# --- A glibc target's std built from source (armv5te) -----------------------------------------------------------------

ARMV5TE = "armv5te-unknown-linux-gnueabi"


def test_armv5te_links_its_std_dylib_with_the_cross_gcc_and_nothing_of_the_project(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    plan = _plan(shipped, recipe, ARMV5TE, linker="sh -c 'touch /pwned-linker'", env={"RUSTFLAGS": "-Cpwned"})
    std = plan.std_build
    assert std is not None
    assert plan.std_deb is None
    # glibc, libgcc_s and the start files are the cross gcc's: nothing is self-contained, no unwinder is completed.
    assert (std.self_contained, std.unwinder, std.c_runtime) == ((), None, None)
    assert std.linker == "arm-linux-gnueabi-gcc"
    script = layers.std_script(std, "src.deb")
    assert "pwned" not in script
    build = next(line for line in script.splitlines() if " cargo build " in line)
    assert " CARGO_TARGET_ARMV5TE_UNKNOWN_LINUX_GNUEABI_LINKER=arm-linux-gnueabi-gcc " in build
    assert "CC_armv5te_unknown_linux_gnueabi=arm-linux-gnueabi-gcc" in build
    # The project's own linker never rebuilds the std; the std's does.
    assert plan.digest == _plan(shipped, recipe, ARMV5TE).digest
    assert plan.digest != _plan(shipped, recipe, ARMV5TE, std_linker="arm-linux-gnueabi-gcc-14").digest


def test_a_std_without_its_own_linker_is_built_and_hashed_as_before(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    for triple in (MUSL, WINDOWS, ARMV6):
        std = _plan(shipped, recipe, triple).std_build
        assert std is not None
        assert std.linker is None
        assert "_LINKER=" not in layers.std_script(std, "src.deb")
    # The field is left out of what the tag hashes when unset: no other image's tag moved when it was added.
    plain = _plan(shipped, recipe, MUSL)
    assert "linker" not in json.dumps(plain_layer_content(plain))
    assert plain.digest != _plan(shipped, recipe, MUSL, std_linker="musl-gcc").digest


def plain_layer_content(plan: ImagePlan) -> object:
    """What the target layer's tag hashes of its std build."""
    content = image_plan._layer_content(plan.layers[0])
    assert isinstance(content, dict)
    return content["std_build"]
