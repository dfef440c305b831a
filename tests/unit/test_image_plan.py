"""Image plans (what goes into a target's image, and its content-hash tag) and the mmdebstrap command built from one."""

from __future__ import annotations

import fcntl
import hashlib
import os
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.config import targets as config
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.image import debian, layers
from xpcargo.image.lockfile import LockedImage, Package
from xpcargo.image.plan import (
    LABEL_PARENT,
    LABEL_PLAN,
    LABEL_RUST,
    LABEL_TARGET,
    ImagePlan,
    Layer,
    PoolDeb,
    StdBuild,
    plan_image,
)
from xpcargo.image.recipe import ImageRecipe, load_recipe

from .fake_runtime import Exec, FakeRuntime, Reply

X86_64 = "x86_64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"
AARCH64 = "aarch64-unknown-linux-gnu"


@pytest.fixture(scope="module")
def recipe() -> ImageRecipe:
    return load_recipe("trixie-rust", directory=resources.images_dir())


def _plan(shipped: config.Toolchains, recipe: ImageRecipe, triple: str, **changes: object) -> ImagePlan:
    spec = replace(shipped.target(triple), **changes)  # type: ignore[arg-type]
    return plan_image(spec, recipe, build_arch="amd64")


# --- The tag --------------------------------------------------------------------------------------------------------


def test_plan_is_stable(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    first = _plan(shipped, recipe, AARCH64)
    second = plan_image(
        shipped.target(AARCH64), load_recipe("trixie-rust", directory=resources.images_dir()), build_arch="amd64"
    )
    assert first == second
    assert first.digest == second.digest
    assert len(first.digest) == 64
    assert first.final.tag == first.digest[:16]
    assert first.final.repository == f"xpcargo/{AARCH64}"
    assert first.reference == f"xpcargo/{AARCH64}:{first.final.tag}"


def test_the_chain_is_the_shared_base_then_the_targets_layer_then_the_projects(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    plain = _plan(shipped, recipe, AARCH64)
    base, target = plain.stages
    assert base.layer is None
    assert base.reference == f"xpcargo/trixie-rust:{plain.base.digest[:16]}"
    assert target.layer is not None
    assert target.layer.purpose == "target"
    assert target.parent == base
    # Every target of the recipe shares the base; a project's extra packages add a layer and change nothing below.
    assert _plan(shipped, recipe, I686).stages[0] == base
    extended = _plan(shipped, recipe, AARCH64, extra_packages=("libssl-dev:arm64",))
    assert extended.stages[:2] == plain.stages
    extra = extended.final
    assert extra.layer is not None
    assert (extra.layer.purpose, extra.layer.packages) == ("extra-packages", ("libssl-dev:arm64",))
    assert extra.parent == target
    assert extra.digest != target.digest


def test_each_target_has_its_own_tag(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    digests = {_plan(shipped, recipe, triple).digest for triple in (X86_64, I686, AARCH64)}
    assert len(digests) == 3


def test_package_order_does_not_change_the_tag(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    spec = shipped.target(AARCH64)
    one = _plan(shipped, recipe, AARCH64, extra_packages=("libssl-dev", "zlib1g-dev"))
    other = _plan(shipped, recipe, AARCH64, extra_packages=("zlib1g-dev", "libssl-dev"))
    assert one.digest == other.digest
    reordered = _plan(shipped, recipe, AARCH64, packages=tuple(reversed(spec.packages)))
    assert reordered.digest == _plan(shipped, recipe, AARCH64).digest
    shuffled_recipe = replace(recipe, packages=tuple(reversed(recipe.packages)))
    assert plan_image(spec, shuffled_recipe, build_arch="amd64").digest == _plan(shipped, recipe, AARCH64).digest
    # A package named twice is installed once.
    assert _plan(shipped, recipe, AARCH64, extra_packages=(spec.packages[0],)).digest == (
        _plan(shipped, recipe, AARCH64).digest
    )


def test_extra_package_changes_the_tag(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    base = _plan(shipped, recipe, AARCH64)
    extended = _plan(shipped, recipe, AARCH64, extra_packages=("libssl-dev",))
    assert extended.digest != base.digest
    assert extended.final.tag != base.final.tag
    assert extended.final.layer is not None
    assert "libssl-dev" in extended.final.layer.packages


def test_rust_version_changes_the_tag(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    bumped = replace(recipe, rust=replace(recipe.rust, version="1.97.0+dfsg1-1"))
    base = _plan(shipped, recipe, AARCH64)
    new = plan_image(shipped.target(AARCH64), bumped, build_arch="amd64")
    assert new.digest != base.digest
    assert new.rust_version == "1.97.0+dfsg1-1"
    assert new.std_deb is not None
    assert new.std_deb.url.endswith("_1.97.0+dfsg1-1_arm64.deb")
    # Even the native target, which has no std .deb, pins its compiler to the version.
    assert (
        plan_image(shipped.target(X86_64), bumped, build_arch="amd64").digest != _plan(shipped, recipe, X86_64).digest
    )


def test_other_recipe_fields_change_the_tag(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    base = _plan(shipped, recipe, X86_64).digest
    spec = shipped.target(X86_64)
    assert plan_image(spec, replace(recipe, mirror="http://other.example/debian"), build_arch="amd64").digest != base
    assert plan_image(spec, replace(recipe, suite="forky"), build_arch="amd64").digest != base
    assert plan_image(spec, replace(recipe, dpkg_exclude=()), build_arch="amd64").digest != base


def test_settings_outside_the_image_do_not_change_the_tag(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    base = _plan(shipped, recipe, AARCH64).digest
    assert _plan(shipped, recipe, AARCH64, cc="clang", passthrough=("X",), mounts=("/opt",)).digest == base


# --- The Rust std and the packages ----------------------------------------------------------------------------------


def test_native_target_has_no_std_deb(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    plan = _plan(shipped, recipe, X86_64)
    assert plan.std_deb is None
    assert plan.emulator is None


@pytest.mark.parametrize(("triple", "arch"), [(AARCH64, "arm64"), (I686, "i386")])
def test_foreign_target_gets_its_pinned_std_deb(
    shipped: config.Toolchains, recipe: ImageRecipe, triple: str, arch: str
) -> None:
    plan = _plan(shipped, recipe, triple)
    assert plan.std_deb is not None
    version = recipe.rust.version
    filename = f"libstd-rust-web-dev_{version}_{arch}.deb"
    assert plan.std_deb.url == f"{recipe.mirror}/{recipe.rust.std_pool}/{filename}"
    assert plan.std_deb.url.startswith("http://deb.debian.org/debian/pool/main/r/rustc-web/")
    assert plan.std_deb.filename == filename
    assert plan.std_deb.sha256 == recipe.rust.std_sha256[arch]
    assert plan.emulator == shipped.target(triple).runner[0]


def test_debian_arch_without_a_hash(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    with pytest.raises(ConfigError) as caught:
        _plan(shipped, recipe, AARCH64, debian_arch="mips64el")
    error = caught.value
    assert "\n" not in str(error)
    assert str(recipe.source) in error.message
    assert "rust.std.sha256" in error.message
    assert "mips64el" in error.message
    assert AARCH64 in error.message
    assert error.hint is not None
    assert f"libstd-rust-web-dev_{recipe.rust.version}_mips64el.deb" in error.hint


def test_engine_arch_decides_what_is_foreign(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    assert plan_image(shipped.target(AARCH64), recipe, build_arch="arm64").std_deb is None
    with pytest.raises(ConfigError, match="amd64"):
        plan_image(shipped.target(X86_64), recipe, build_arch="arm64")


def test_the_base_pins_rust_and_the_layers_add_the_target(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    plan = _plan(shipped, recipe, AARCH64, extra_packages=("libssl-dev",))
    version = recipe.rust.version
    packages = set(plan.base.packages)
    assert f"rustc-web={version}" in packages
    assert f"cargo-web={version}" in packages
    assert {name.split("=")[0] for name in packages} >= set(recipe.rust.packages)
    assert "rustc-web" not in packages  # only the pinned form
    assert set(recipe.packages) <= packages
    assert list(plan.base.packages) == sorted(packages)
    target, extra = plan.layers
    assert set(target.packages) == set(shipped.target(AARCH64).packages)
    assert extra.packages == ("libssl-dev",)


def test_labels(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    plan = _plan(shipped, recipe, AARCH64)
    base, target = plan.stages
    assert target.labels[LABEL_TARGET] == AARCH64
    assert target.labels[LABEL_PLAN] == plan.digest
    assert target.labels[LABEL_PARENT] == base.digest
    assert target.labels[LABEL_RUST] == recipe.rust.version
    # The base belongs to no target.
    assert LABEL_TARGET not in base.labels
    assert base.labels[LABEL_PLAN] == plan.base.digest


# --- mmdebstrap -----------------------------------------------------------------------------------------------------


def test_mmdebstrap_builds_the_base(tmp_path: Path, shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    plan = _plan(shipped, recipe, AARCH64).base
    tarball = tmp_path / "rootfs.tar"
    command = debian.mmdebstrap_command(plan, tarball, deb_cache=tmp_path / "debs", packages_file=tmp_path / "p.txt")
    assert command[0] == "mmdebstrap"
    assert "--mode=unshare" in command
    assert f"--include={','.join(plan.packages)}" in command
    for pattern in recipe.dpkg_exclude:
        assert f"--dpkgopt=path-exclude={pattern}" in command
    # Nothing of any target's: no emulator, no std.
    assert not any("qemu" in arg or "upload" in arg or "dpkg-deb" in arg for arg in command)
    # The shared .deb cache goes in and comes back out.
    assert any(arg.startswith("--setup-hook=sync-in ") and str(tmp_path / "debs") in arg for arg in command)
    assert any(arg.startswith("--customize-hook=sync-out ") and str(tmp_path / "debs") in arg for arg in command)
    assert command[-3:] == [recipe.suite, str(tarball), recipe.mirror]
    assert all(not arg.startswith(recipe.suite) for arg in command[1:-3])


def test_mmdebstrap_command_quotes_paths_with_spaces(
    tmp_path: Path, shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    plan = _plan(shipped, recipe, AARCH64).base
    cache = tmp_path / "deb cache"
    command = debian.mmdebstrap_command(plan, tmp_path / "r.tar", deb_cache=cache, packages_file=tmp_path / "p.txt")
    assert f"--setup-hook=sync-in '{cache}' /var/cache/apt/archives/" in command


# --- A layer --------------------------------------------------------------------------------------------------------


def test_a_target_layer_keeps_only_its_emulator_and_unpacks_its_std(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    layer = _plan(shipped, recipe, I686).layers[0]
    script = layers.install_script(layer, build_arch="amd64", pool_debs=["std i386.deb"], owner="1000:1000")
    lines = script.splitlines()
    # qemu-user ships every emulator; only the target's own is kept, re-included after the exclusion, and the
    # filter leaves with the install.
    (filter_line,) = [line for line in lines if "path-exclude=/usr/bin/qemu-*" in line]
    assert "path-include=/usr/bin/%s" in filter_line
    assert "qemu-i386" in filter_line
    install = next(i for i, line in enumerate(lines) if " install " in line)
    assert lines.index(filter_line) < install
    assert all(package in lines[install] for package in layer.packages)
    assert "--no-install-recommends" in lines[install]
    assert f"dpkg-deb -x '{layers.POOL}/std i386.deb' /" in lines
    assert "rm -f /etc/dpkg/dpkg.cfg.d/xpcargo-emulator" in lines
    # What apt leaves in the shared cache is the invoking user's, however the script ends.
    assert lines[:2] == ["set -eu", "trap 'chown -R 1000:1000 /var/cache/apt/archives' EXIT"]


def test_a_layer_of_foreign_packages_adds_their_architecture() -> None:
    layer = Layer(purpose="extra-packages", packages=("libssl-dev:arm64", "protobuf-compiler"))
    script = layers.install_script(layer, build_arch="amd64", pool_debs=[], owner="0:0")
    assert "dpkg --add-architecture arm64" in script.splitlines()
    assert "qemu" not in script


def test_a_layer_holds_what_the_install_changed_but_apts_own_state() -> None:
    changes = [
        ("C", "/usr"),
        ("A", "/usr/bin/aarch64-linux-gnu-gcc"),
        ("A", "/usr/lib/rustlib/aarch64-unknown-linux-gnu"),
        ("C", "/var/lib/dpkg/status"),
        ("A", "/var/lib/dpkg/status-old"),
        ("A", "/var/lib/dpkg/lock-frontend"),
        ("A", "/var/lib/apt/lists/deb.debian.org_debian_dists_trixie_InRelease"),
        ("A", "/var/log/apt/history.log"),
        ("A", "/var/cache/ldconfig/aux-cache"),
        ("C", "/tmp"),
        ("A", "/xpcargo-layer"),
        ("D", "/etc/old.conf"),
        ("D", "/var/log/old.log"),
    ]
    kept, deleted = layers.layer_paths(changes)
    assert kept == [
        "usr",
        "usr/bin/aarch64-linux-gnu-gcc",
        "usr/lib/rustlib/aarch64-unknown-linux-gnu",
        "var/lib/dpkg/status",
    ]
    assert deleted == ["/etc/old.conf"]


def test_a_locked_layer_is_written_with_clamped_times(tmp_path: Path) -> None:
    command = layers.tar_command(layers.INPUT / "paths", source_date_epoch=1700000000)
    assert "--mtime=@1700000000" in command
    assert "--clamp-mtime" in command
    assert "--numeric-owner" in command
    assert "--no-recursion" in command
    assert not any("mtime" in arg for arg in layers.tar_command(layers.INPUT / "paths", source_date_epoch=None))


def test_deleted_paths_become_whiteouts(tmp_path: Path) -> None:
    tar = tmp_path / "layer.tar"
    with tarfile.open(tar, "w") as archive:
        archive.addfile(tarfile.TarInfo("usr"))
    layers.add_whiteouts(tar, ["/etc/old.conf", "/usr/share/gone"], mtime=5)
    with tarfile.open(tar) as archive:
        members = archive.getmembers()
    assert [member.name for member in members] == ["usr", "etc/.wh.old.conf", "usr/share/.wh.gone"]
    assert {member.mtime for member in members[1:]} == {5}


@pytest.mark.parametrize(
    ("line", "transient"),
    [
        (
            "E: Failed to fetch http://deb.debian.org/debian/dists/trixie/main/binary-amd64/Packages.xz  File has "
            "unexpected size (9436656 != 9437612). Mirror sync in progress? [IP: 1.2.3.4 80]",
            True,
        ),
        ("Err:7 http://deb.debian.org/debian trixie/main amd64 gcc amd64 4:14.2.0-1  503  Service Unavailable", True),
        ("E: Failed to fetch http://deb.debian.org/debian/pool/main/g/gcc.deb  Hash Sum mismatch", True),
        ("Get:12 http://deb.debian.org/debian trixie/main amd64 libgcc-s1 amd64 14.2.0-19 [503 kB]", False),
        ("E: Unable to locate package xpcargo-no-such-package", False),
        ("E: Version '9.9' for 'rustc-web' was not found", False),
    ],
)
def test_mirror_trouble_is_told_from_a_real_error(line: str, transient: bool) -> None:
    assert bool(debian.MIRROR_TROUBLE.search(line)) is transient


# --- A layer's container, against the fake runtime ----------------------------------------------------------------


def _layer_runtime(install: Reply) -> FakeRuntime:
    def script(call: Exec) -> Reply:
        if call.argv[0] == "sh":
            return install
        if call.argv[0] == "dpkg-query":
            return Reply(stdout=b"libc6:amd64=2.41-12\ngcc-riscv64-linux-gnu:amd64=4:14.2.0-1\n")
        assert call.argv[0] == "tar", call.argv
        return Reply(stdout=b"the layer's tar")

    return FakeRuntime(script=script)


def _build_layer(runtime: FakeRuntime, tmp_path: Path, **changes: object) -> layers.BuiltLayer:
    (tmp_path / "pool").mkdir(exist_ok=True)
    std = tmp_path / "pool" / "std.deb"
    std.write_bytes(b"deb")
    arguments: dict[str, object] = {
        "parent": "xpcargo/trixie-rust:base",
        "layer": Layer(purpose="target", packages=("gcc-riscv64-linux-gnu",), emulator="qemu-riscv64"),
        "target": "riscv64gc-unknown-linux-gnu",
        "build_arch": "amd64",
        "locked": False,
        "source_date_epoch": None,
        "scratch": tmp_path,
        "deb_cache": tmp_path / "debs",
        "pool_files": [std],
        "on_line": lambda _: None,
        "on_retry": lambda _: None,
        "first_wait": 0,
        **changes,
    }
    return layers.build(runtime, **arguments)  # type: ignore[arg-type]


def test_a_layer_runs_as_a_root_of_few_capabilities_that_sees_no_project(tmp_path: Path) -> None:
    runtime = _layer_runtime(Reply())
    built = _build_layer(runtime, tmp_path)
    (request,) = runtime.started
    assert (request.image, request.user, request.network) == ("xpcargo/trixie-rust:base", "0:0", "host")
    assert request.capabilities == layers.CAPABILITIES
    assert "SYS_ADMIN" not in request.capabilities
    # xpcargo's .deb cache, and read-only the list of changed paths and the pool: nothing of the project's.
    assert {(str(m.path), m.source, m.read_only) for m in request.mounts} == {
        ("/var/cache/apt/archives", tmp_path / "debs", False),
        (str(layers.INPUT), tmp_path / "input", True),
        (str(layers.POOL), tmp_path / "pool", True),
    }
    assert [call.argv[0] for call in runtime.execs] == ["sh", "dpkg-query", "tar"]
    # What the engine said changed is what tar is asked to write, and the layer is what tar wrote.
    assert (tmp_path / "input" / "paths").read_bytes() == b"usr/bin/new-tool\0"
    assert built.tar.read_bytes() == b"the layer's tar"
    assert built.diff_id == "sha256:" + hashlib.sha256(b"the layer's tar").hexdigest()
    assert [str(p) for p in built.packages] == ["gcc-riscv64-linux-gnu:amd64=4:14.2.0-1", "libc6:amd64=2.41-12"]
    assert not runtime.running


def test_a_layer_builds_its_std_after_apt_without_holding_the_deb_cache(tmp_path: Path) -> None:
    # The .deb cache is held while apt runs, and free while the std builds (minutes), for another image build's apt.
    held: list[tuple[str, bool]] = []

    def cache_is_free() -> bool:
        fd = os.open(tmp_path / "debs" / ".mmdebstrap.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)
        return True

    def script(call: Exec) -> Reply:
        if call.argv[0] == "sh":
            held.append((call.argv[2].splitlines()[1][:12], not cache_is_free()))
        if call.argv[0] == "dpkg-query":
            return Reply(stdout=b"musl-dev:amd64=1.2.5-3\n")
        return Reply()

    std = StdBuild(triple="x86_64-unknown-linux-musl", source=PoolDeb(url="pool/src.deb", sha256="0" * 64))
    layer = Layer(purpose="target", packages=("musl-dev",), std_build=std)
    _build_layer(FakeRuntime(script=script), tmp_path, layer=layer, std_source=tmp_path / "pool" / "src.deb")
    assert held == [("trap 'chown ", True), ("export LC_AL", False)]


def test_a_layer_apt_cannot_install_is_one_error_quoting_apt_without_retries(tmp_path: Path) -> None:
    runtime = _layer_runtime(Reply(code=100, stdout=b"Reading package lists...\nE: Unable to locate package nope\n"))
    with pytest.raises(ImageBuildError) as caught:
        _build_layer(runtime, tmp_path)
    assert "failed at step `target layer` (exit 100): E: Unable to locate package nope" in caught.value.message
    assert len(runtime.started) == 1
    assert not runtime.running


def test_a_mirror_mid_sync_is_tried_again_in_a_new_container(tmp_path: Path) -> None:
    trouble = b"E: Failed to fetch http://deb.debian.org/x.deb  Hash Sum mismatch\n"
    runtime = _layer_runtime(Reply(code=100, stdout=trouble))
    retries: list[str] = []
    with pytest.raises(ImageBuildError, match="after 6 tries"):
        _build_layer(runtime, tmp_path, on_retry=retries.append)
    assert len(runtime.started) == 6
    assert len(retries) == 5
    assert not runtime.running


def test_an_arch_independent_std_comes_through_apt_in_the_targets_layer(shipped: config.Toolchains) -> None:
    # On 1.85 (a project's rust-toolchain.toml asks for it: image.toolchain then takes Debian's std instead of
    # building it), wasm32's std is the package the recipe names, pinned to its Rust.
    recipe_185 = load_recipe("trixie-rust-1.85", directory=resources.images_dir())
    wasm = replace(shipped.target("wasm32-wasip1"), recipe=recipe_185.name, std="debian")
    plan = plan_image(wasm, recipe_185, build_arch="amd64")
    assert plan.std_deb is None
    assert plan.std_build is None
    (layer,) = plan.layers
    assert f"libstd-rust-dev-wasm32={recipe_185.rust.version}" in layer.packages
    # A recipe that names none cannot give it a packaged std: one line that says to build it from source.
    bare = replace(recipe_185, rust=replace(recipe_185.rust, std_arch_independent={}))
    with pytest.raises(ConfigError, match="has no package of the std of target wasm32-wasip1") as caught:
        plan_image(wasm, bare, build_arch="amd64")
    assert 'std = "source"' in str(caught.value.hint)
    # It shares the base of armel's target on 1.85, whose std is a pool .deb.
    armel_185 = replace(shipped.target("armv5te-unknown-linux-gnueabi"), recipe=recipe_185.name, std="debian")
    armel = plan_image(armel_185, recipe_185, build_arch="amd64")
    assert armel.std_deb is not None
    assert plan.base == armel.base


# --- A std built from source ----------------------------------------------------------------------------------------

MUSL = "x86_64-unknown-linux-musl"


def test_a_std_from_source_comes_from_the_recipes_pinned_sources_not_a_std_deb(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    plan = _plan(shipped, recipe, MUSL)
    assert plan.std_deb is None
    std = plan.std_build
    assert std is not None
    source = recipe.rust.source
    assert source is not None
    assert std.source.url == f"{recipe.mirror}/{recipe.rust.std_pool}/{source.package}_{source.version}_all.deb"
    assert std.source.sha256 == source.sha256
    assert std.triple == MUSL
    assert std.gnu_triple == "x86_64-linux-gnu"
    assert "/usr/lib/x86_64-linux-musl/libc.a" in std.self_contained
    # The sources are the recipe's, so another version of them is another image.
    other = replace(recipe, rust=replace(recipe.rust, source=replace(source, sha256="0" * 64)))
    assert plan_image(shipped.target(MUSL), other, build_arch="amd64").reference != plan.reference


AARCH64_MUSL = "aarch64-unknown-linux-musl"


def test_a_foreign_musl_target_is_data_only(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    # The generic form: arm64's musl differs from x86_64's in its settings only, and shares its base.
    plan = _plan(shipped, recipe, AARCH64_MUSL)
    assert plan.base == _plan(shipped, recipe, MUSL).base
    assert plan.emulator == "qemu-aarch64"
    (layer,) = plan.layers
    assert {"musl-dev:arm64", "libunwind-19-dev:arm64", "gcc-aarch64-linux-gnu"} <= set(layer.packages)
    std = plan.std_build
    assert std is not None
    assert std.triple == AARCH64_MUSL
    assert std.gnu_triple == "aarch64-linux-gnu"
    assert std.unwinder == "/usr/lib/aarch64-linux-gnu/libunwind.a"
    assert "/usr/lib/aarch64-linux-musl/libc.a" in std.self_contained
    assert "/usr/lib/gcc-cross/aarch64-linux-gnu/14/crtbeginS.o" in std.self_contained
    assert (
        "dpkg --add-architecture arm64"
        in layers.install_script(layer, build_arch="amd64", pool_debs=[], owner="0:0").splitlines()
    )
    script = layers.std_script(std, "src.deb")
    assert f"--target {AARCH64_MUSL}" in next(line for line in script.splitlines() if " cargo build " in line)
    # The unwinder's fortify functions are compiled for arm64, by the cross gcc the layer installs.
    assert "aarch64-linux-gnu-gcc -O2 -fPIC -ffreestanding" in script


def test_a_std_from_source_keeps_its_build_when_locked(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    unlocked = _plan(shipped, recipe, MUSL)
    lock = LockedImage(
        plan=unlocked.digest,
        build_arch="amd64",
        suite="trixie",
        mirror=recipe.mirror,
        source_date_epoch=1700000000,
        packages=(Package(name="musl-dev", arch="amd64", version="1.2.5-3.1~deb13u1"),),
        base_packages=(),
    )
    locked = plan_image(shipped.target(MUSL), recipe, build_arch="amd64", lock=lock)
    assert locked.layers[0].purpose == "locked"
    assert locked.std_build == unlocked.std_build


def test_a_recipe_without_sources_cannot_build_a_std(shipped: config.Toolchains, recipe: ImageRecipe) -> None:
    bare = replace(recipe, rust=replace(recipe.rust, source=None))
    with pytest.raises(ConfigError, match=r"has no rust\.source"):
        plan_image(shipped.target(MUSL), bare, build_arch="amd64")


def test_the_std_build_script_is_fixed_and_quotes_every_setting(
    shipped: config.Toolchains, recipe: ImageRecipe
) -> None:
    # The project's own C compiler and environment are for its builds: the layer's std build never runs them.
    plan = _plan(
        shipped,
        recipe,
        MUSL,
        cc="sh -c 'touch /pwned-cc'",
        linker="sh -c 'touch /pwned-linker'",
        env={"RUSTFLAGS": "-Cpwned"},
        std_self_contained=("/usr/lib/odd path/crt1.o",),
    )
    std = plan.std_build
    assert std is not None
    script = layers.std_script(std, "src all.deb")
    assert "pwned" not in script
    lines = script.splitlines()
    assert f"dpkg-deb -x '{layers.POOL}/src all.deb' {layers.STD_BUILD_DIR}/src" in lines
    (build,) = [line for line in lines if " cargo build " in line]
    for flag in ("--offline", "--locked", "--profile dist", f"--target {MUSL}", "-p sysroot", "--remap-path-prefix"):
        assert flag in build
    assert f'--config "profile.dist.codegen-units={std.codegen_units}"' in build
    assert "ln -s '/usr/lib/odd path/crt1.o' \"$sysroot/self-contained/\"" in lines
    assert "x86_64-linux-gnu-gcc -O2 -fPIC -ffreestanding" in script
    assert lines[0] == "set -eu"
    assert f"rm -rf {layers.STD_BUILD_DIR}" in lines
