"""The environment a target's container gets: its toolchain variables, and which host variables cross over."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from xpcargo import resources
from xpcargo.config import targets as config
from xpcargo.config.targets import env_key
from xpcargo.pipeline import binfmt
from xpcargo.pipeline.environment import (
    BINFMT_RUNNER,
    CMAKE_TOOLCHAIN_FILE,
    is_credential,
    passthrough_environment,
    toolchain_environment,
)

X86_64 = "x86_64-unknown-linux-gnu"
AARCH64 = "aarch64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"


def test_env_key() -> None:
    assert env_key(AARCH64) == "AARCH64_UNKNOWN_LINUX_GNU"
    assert env_key("thumbv7em-none-eabihf") == "THUMBV7EM_NONE_EABIHF"
    assert env_key("my.custom-target") == "MY_CUSTOM_TARGET"


def test_toolchain_environment_for_aarch64(shipped: config.Toolchains) -> None:
    spec = shipped.target(AARCH64)
    env = toolchain_environment(spec, shipped.target(X86_64))
    assert env["CC_aarch64_unknown_linux_gnu"] == "aarch64-linux-gnu-gcc"
    assert env["CXX_aarch64_unknown_linux_gnu"] == "aarch64-linux-gnu-g++"
    assert env["AR_aarch64_unknown_linux_gnu"] == "aarch64-linux-gnu-ar"
    assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"] == "aarch64-linux-gnu-gcc"
    # The emulator as it is (what Cargo prints reads like cross's), and the exec preload that qemu sets in the
    # program's own environment, which runs what the program starts of the target's under the emulator too.
    assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"] == "qemu-aarch64 -L /usr/aarch64-linux-gnu"
    assert env["QEMU_SET_ENV"] == "LD_PRELOAD=/usr/local/lib/xpcargo/aarch64-unknown-linux-gnu/exec-preload.so"
    assert env["PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu"] == (
        "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig"
    )
    assert env["PKG_CONFIG_ALLOW_CROSS_aarch64_unknown_linux_gnu"] == "1"
    # The host's tools are named too (build scripts are host units), and no other target's.
    assert env["CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"] == "gcc"
    assert env["CC_x86_64_unknown_linux_gnu"] == "gcc"
    assert not any("i686" in name or "I686" in name for name in env)
    assert "CC" not in env


@pytest.mark.parametrize("triple", [AARCH64, I686, "armv7-unknown-linux-gnueabihf", "s390x-unknown-linux-gnu"])
def test_a_foreign_target_points_qemu_bindgen_and_cmake_at_its_sysroot(shipped: config.Toolchains, triple: str) -> None:
    spec = shipped.target(triple)
    assert spec.sysroot is not None
    lower = triple.replace("-", "_")
    env = toolchain_environment(spec, shipped.target(X86_64))
    # What cross sets, so that tests written for cross (ripgrep's) run the crate's own binary under qemu.
    assert env["CROSS_RUNNER"] == "qemu-user"
    assert env["QEMU_LD_PREFIX"] == spec.sysroot
    # The runner's -L names the same sysroot: one place would be wrong if the two disagreed.
    assert spec.runner[1:] == ("-L", spec.sysroot)
    assert env[f"BINDGEN_EXTRA_CLANG_ARGS_{lower}"] == f"--sysroot={spec.sysroot}"
    assert env[f"CMAKE_TOOLCHAIN_FILE_{lower}"] == CMAKE_TOOLCHAIN_FILE
    assert env["XPCARGO_TARGET"] == triple
    # Nothing of the kind for the host, whose build scripts run natively.
    assert not any(name.endswith("x86_64_unknown_linux_gnu") and "CMAKE" in name for name in env)


def test_the_cmake_toolchain_file_reads_what_the_environment_sets() -> None:
    text = (resources.share_dir() / "toolchain.cmake").read_text(encoding="utf-8")
    for name in ("XPCARGO_TARGET", "QEMU_LD_PREFIX", "CC_${_xpcargo_lower}", "CARGO_TARGET_${_xpcargo_upper}_RUNNER"):
        assert f"$ENV{{{name}}}" in text, name


def test_a_native_target_gets_no_emulator_variables(shipped: config.Toolchains) -> None:
    env = toolchain_environment(shipped.target(X86_64))
    assert not {"CROSS_RUNNER", "QEMU_LD_PREFIX", "XPCARGO_TARGET"} & set(env)
    assert not any(name.startswith(("BINDGEN_EXTRA_CLANG_ARGS", "CMAKE_TOOLCHAIN_FILE")) for name in env)


def test_host_variables_do_not_change_with_the_target(shipped: config.Toolchains) -> None:
    """Cargo fingerprints build scripts with the host triple's settings: they must not come and go with --target."""

    def host_part(triple: str) -> dict[str, str]:
        env = toolchain_environment(shipped.target(triple), shipped.target(X86_64))
        return {name: value for name, value in env.items() if "x86_64" in name.lower()}

    assert host_part(AARCH64) == host_part(X86_64) == host_part(I686)
    assert host_part(AARCH64)


def test_toolchain_environment_for_x86_64_has_no_runner(shipped: config.Toolchains) -> None:
    env = toolchain_environment(shipped.target(X86_64))
    assert env["CC_x86_64_unknown_linux_gnu"] == "gcc"
    assert env["CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"] == "gcc"
    assert not any(name.endswith("_RUNNER") for name in env)


def test_toolchain_environment_without_pkg_config(shipped: config.Toolchains) -> None:
    spec = replace(shipped.target(AARCH64), pkg_config_libdir=())
    env = toolchain_environment(spec)
    assert not any(name.startswith("PKG_CONFIG") for name in env)


def test_target_env_is_added_and_may_override(shipped: config.Toolchains) -> None:
    spec = replace(
        shipped.target(AARCH64),
        env=MappingProxyType({"OPENSSL_STATIC": "1", "CC_aarch64_unknown_linux_gnu": "ccache-gcc"}),
    )
    env = toolchain_environment(spec)
    assert env["OPENSSL_STATIC"] == "1"
    assert env["CC_aarch64_unknown_linux_gnu"] == "ccache-gcc"


HOST = {
    # Cargo's own and rustc's flags: passed.
    "CARGO_INCREMENTAL": "0",
    "CARGO_PROFILE_RELEASE_LTO": "true",
    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS": "-Ctarget-cpu=cortex-a72",
    "RUSTFLAGS": "-Dwarnings",
    "RUSTDOCFLAGS": "--cfg docsrs",
    "RUST_BACKTRACE": "1",
    "RUST_LOG": "info",
    "SOURCE_DATE_EPOCH": "1700000000",
    # Host programs: dropped.
    "RUSTC_WRAPPER": "sccache",
    "RUSTC_WORKSPACE_WRAPPER": "clippy-driver",
    "RUSTC": "/home/u/.rustup/toolchains/stable/bin/rustc",
    "RUSTDOC": "/usr/bin/rustdoc",
    "CARGO": "/home/u/.cargo/bin/cargo",
    "CARGO_BUILD_TARGET": "x86_64-unknown-linux-musl",
    "CARGO_BUILD_RUSTC_WRAPPER": "sccache",
    "CARGO_MAKEFLAGS": "-j --jobserver-fds=3,4",
    "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER": "clang",
    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER": "/opt/host/aarch64-ld",
    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER": "/usr/bin/qemu-aarch64-static",
    # The host's toolchain variables for the target: the container has its own.
    "CC_aarch64_unknown_linux_gnu": "/opt/host/cc",
    # Unrelated: dropped unless named.
    "PATH": "/usr/local/bin:/usr/bin",
    "HOME": "/home/u",
    "CC": "clang",
    "SSH_AUTH_SOCK": "/tmp/ssh",
    "MY_SETTING": "mine",
    "OTHER_SETTING": "other",
}
PASSED = {
    "CARGO_INCREMENTAL",
    "CARGO_PROFILE_RELEASE_LTO",
    "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "RUST_BACKTRACE",
    "RUST_LOG",
    "SOURCE_DATE_EPOCH",
}


def test_passthrough_keeps_cargo_and_rust_variables(shipped: config.Toolchains) -> None:
    passed = passthrough_environment(HOST, shipped.target(AARCH64))
    assert set(passed) == PASSED
    assert all(passed[name] == HOST[name] for name in passed)


@pytest.mark.parametrize(
    "name",
    [
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTC",
        "RUSTDOC",
        "CARGO",
        "CARGO_BUILD_TARGET",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_MAKEFLAGS",
        "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER",
        "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
        "CC_aarch64_unknown_linux_gnu",
        "PATH",
        "HOME",
        "CC",
        "SSH_AUTH_SOCK",
    ],
)
def test_passthrough_drops_host_programs_and_unrelated(shipped: config.Toolchains, name: str) -> None:
    spec = shipped.target(AARCH64)
    assert name not in passthrough_environment(HOST, spec)
    # Even a project naming a host program cannot send it into the container.
    if name.startswith(("RUSTC", "CARGO")):
        assert name not in passthrough_environment(HOST, replace(spec, passthrough=(name,)), [name])


def test_passthrough_adds_what_the_project_names(shipped: config.Toolchains) -> None:
    spec = replace(shipped.target(AARCH64), passthrough=("MY_SETTING",))
    passed = passthrough_environment(HOST, spec)
    assert passed["MY_SETTING"] == "mine"
    assert "OTHER_SETTING" not in passed
    with_extra = passthrough_environment(HOST, spec, ["OTHER_SETTING"])
    assert with_extra["OTHER_SETTING"] == "other"
    assert set(with_extra) == PASSED | {"MY_SETTING", "OTHER_SETTING"}


def test_passthrough_of_a_name_the_host_does_not_have(shipped: config.Toolchains) -> None:
    spec = replace(shipped.target(AARCH64), passthrough=("NOT_SET_ANYWHERE",))
    assert "NOT_SET_ANYWHERE" not in passthrough_environment({}, spec)
    assert passthrough_environment({}, spec) == {}


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("CARGO_REGISTRY_TOKEN", True),
        ("CARGO_REGISTRIES_MY_CORP_TOKEN", True),
        ("CARGO_REGISTRIES_MY_CORP_CREDENTIAL_PROVIDER", True),
        ("CARGO_REGISTRY_CREDENTIAL_PROVIDER", True),
        ("https_proxy", True),
        ("HTTP_PROXY", True),
        ("ALL_PROXY", True),
        ("CARGO_REGISTRIES_MY_CORP_INDEX", False),
        ("CARGO_HOME", False),
        ("RUSTFLAGS", False),
    ],
)
def test_credentials_are_told_apart(name: str, secret: bool) -> None:
    assert is_credential(name) is secret


def test_the_binfmt_line_is_qemus_own_for_aarch64() -> None:
    # As qemu's binfmt definition for aarch64 (qemu-binfmt-conf.sh) writes it.
    magic = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
    mask = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"
    assert binfmt.registration("qemu-aarch64") == f":xpcargo-qemu-aarch64:M::{magic}:{mask}:/usr/bin/qemu-aarch64:F"


def test_the_binfmt_line_of_a_big_endian_machine() -> None:
    line = binfmt.registration("qemu-s390x")
    assert line is not None
    # EI_DATA 2, and e_type and e_machine (22) stored big-endian.
    assert r"\x02\x02\x01" in line
    assert line.split(":")[4].endswith(r"\x00\x02\x00\x16")
    assert line.split(":")[5].endswith(r"\xff\xfe\xff\xff")


@pytest.mark.parametrize("triple", ["aarch64-unknown-linux-musl", "armv7-unknown-linux-musleabihf"])
def test_a_static_target_keeps_the_binfmt_runner_and_gets_no_preload(shipped: config.Toolchains, triple: str) -> None:
    spec = shipped.target(triple)
    env = toolchain_environment(spec, shipped.target(X86_64))
    # A static program has no dynamic loader to honour a preload: the emulator goes behind xpcargo's runner, which
    # registers it in the container's own binfmt_misc where a user namespace is allowed.
    runner = env[f"CARGO_TARGET_{env_key(triple)}_RUNNER"]
    assert runner == f"sh {BINFMT_RUNNER} {binfmt.registration(spec.emulator)} {' '.join(spec.runner)}"
    assert "QEMU_SET_ENV" not in env


def test_an_unknown_emulator_runs_without_binfmt(shipped: config.Toolchains) -> None:
    assert binfmt.registration("my-wrapper") is None
    assert binfmt.registration(None) is None
    spec = replace(shipped.target(AARCH64), runner=("my-wrapper", "--flag"))
    env = toolchain_environment(spec)
    assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"] == "my-wrapper --flag"
    # Nor a preload, which only qemu would set.
    assert "QEMU_SET_ENV" not in env


def test_the_wasm_target_runs_under_node_and_is_no_qemu_target(shipped: config.Toolchains) -> None:
    env = toolchain_environment(shipped.target("wasm32-wasip1"), shipped.target(X86_64))
    # LLVM 22's, the LLVM of the image's rustc.
    assert env["CC_wasm32_wasip1"] == "clang-22 --target=wasm32-wasip1"
    assert env["CARGO_TARGET_WASM32_WASIP1_LINKER"] == "wasm-ld-22"
    # pkg-config answers for the target (finding nothing) rather than refusing to cross-compile.
    assert env["PKG_CONFIG_LIBDIR_wasm32_wasip1"] == "/usr/lib/wasm32-wasi/pkgconfig"
    assert env["PKG_CONFIG_ALLOW_CROSS_wasm32_wasip1"] == "1"
    runner = env["CARGO_TARGET_WASM32_WASIP1_RUNNER"].split()
    # Node is no emulator that binfmt_misc could register: no binfmt wrapper in front of it.
    assert runner[0] == "node"
    assert BINFMT_RUNNER not in runner
    assert (resources.share_dir() / runner[-1].rsplit("/", 1)[-1]).is_file()
    # cross's CROSS_RUNNER means qemu-user, and QEMU_LD_PREFIX, bindgen's and CMake's sysroot settings need a
    # sysroot: a test that read them would put qemu in front of a .wasm file.
    for name in ("CROSS_RUNNER", "QEMU_LD_PREFIX", "CMAKE_TOOLCHAIN_FILE_wasm32_wasip1", "XPCARGO_TARGET"):
        assert name not in env, name
