"""What a target means inside its container: the variables that point Cargo, build scripts and the cc crate at
the target's compilers, archiver, linker, emulator and pkg-config, and which host variables cross over."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xpcargo.config import TargetSpec, env_key

# The images are amd64 root filesystems: build scripts and proc-macros are built for, and run on, this triple.
HOST_TRIPLE = "x86_64-unknown-linux-gnu"

# Host variables that change what Cargo builds and so must reach it; anything else stays on the host.
_PASSED_PREFIXES = ("CARGO_",)
_PASSED_NAMES = frozenset(
    {
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "RUST_BACKTRACE",
        "RUST_LOG",
        "RUST_TEST_THREADS",
        "RUST_MIN_STACK",
        "SOURCE_DATE_EPOCH",
        "NO_COLOR",
        "TERM",
        # The fetch step downloads through the same proxy as the host.
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    }
)
# These name programs on the host (a host rustc, an sccache wrapper, the host cargo binary) that do not exist in
# the container; passing them would break the build instead of configuring it.
_HOST_ONLY = frozenset(
    {
        "CARGO",
        "RUSTC",
        "RUSTDOC",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTDOC",
        "CARGO_BUILD_TARGET",
        "CARGO_MAKEFLAGS",
    }
)


def toolchain_environment(spec: TargetSpec, host: TargetSpec | None = None) -> dict[str, str]:
    """The conventional variables for ``spec``, in the forms that Cargo, the cc crate and pkg-config read.

    The host's tools (``host``, the entry for HOST_TRIPLE) are named too, whatever the target: Cargo applies the
    host triple's settings to build scripts, and variables that came and went with the target would make every
    build script stale whenever the target changes.
    """
    env = _tool_variables(host) if host is not None and host.triple != spec.triple else {}
    env.update(_tool_variables(spec))
    env.update(spec.env)
    return env


def _tool_variables(spec: TargetSpec) -> dict[str, str]:
    lower = spec.triple.replace("-", "_").replace(".", "_")
    upper = env_key(spec.triple)
    env = {
        f"CC_{lower}": spec.cc,
        f"CXX_{lower}": spec.cxx,
        f"AR_{lower}": spec.ar,
        f"CARGO_TARGET_{upper}_LINKER": spec.linker,
    }
    if spec.runner:
        env[f"CARGO_TARGET_{upper}_RUNNER"] = " ".join(spec.runner)
    if spec.pkg_config_libdir:
        env[f"PKG_CONFIG_LIBDIR_{lower}"] = ":".join(spec.pkg_config_libdir)
        # pkg-config-rs refuses to answer for a foreign target unless told that the libdir is the target's.
        env[f"PKG_CONFIG_ALLOW_CROSS_{lower}"] = "1"
    return env


def passthrough_environment(
    host: Mapping[str, str], spec: TargetSpec, extra_names: Iterable[str] = ()
) -> dict[str, str]:
    """The host variables that cross into the container: Cargo's own, rustc's flags, and what the project names."""
    own = _tool_variables(spec)
    wanted = set(extra_names) | set(spec.passthrough)
    passed: dict[str, str] = {}
    for name, value in host.items():
        if name in _HOST_ONLY or name in own or _names_host_program(name):
            continue
        if name in wanted or name in _PASSED_NAMES or name.startswith(_PASSED_PREFIXES):
            passed[name] = value
    return passed


def _names_host_program(name: str) -> bool:
    # CARGO_TARGET_<TRIPLE>_LINKER and _RUNNER set on the host point at host programs (mold, clang, a wrapper).
    return name.startswith("CARGO_TARGET_") and name.endswith(("_LINKER", "_RUNNER"))
