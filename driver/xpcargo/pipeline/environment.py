"""The environment of a build's container: the variables that point Cargo, build scripts and the cc crate at the
target's compilers, archiver, linker, emulator and pkg-config; which host variables cross over; and which of those
are credentials, kept out of the container's own environment and given only to the step that needs them."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType

from xpcargo.config.schema import read_toml
from xpcargo.config.targets import TargetSpec, env_key
from xpcargo.emulation import preload_path
from xpcargo.errors import ConfigError
from xpcargo.pipeline import binfmt

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
    }
)
# The fetch step downloads through the same proxy as the host; a proxy URL may carry a password, so these are
# treated as credentials.
_PROXY_NAMES = frozenset(
    {"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"}
)
# Registry tokens and credential settings: what lets a process publish or download private crates as the user.
_CREDENTIAL = re.compile(r"^CARGO_(REGISTRY|REGISTRIES_[A-Z0-9_]+)_(TOKEN|CREDENTIAL_PROVIDER|SECRET_KEY.*)$")
_DEBIAN_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Where a foreign target's container has xpcargo's own files (images/share/, mounted read-only): the CMake
# toolchain file, the runner that registers the emulator in the container's own binfmt_misc (a static target's), and
# the WASI runner.
SHARE_DIR = "/usr/local/share/xpcargo"
CMAKE_TOOLCHAIN_FILE = f"{SHARE_DIR}/toolchain.cmake"
BINFMT_RUNNER = f"{SHARE_DIR}/binfmt-run"
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


# What `cargo fetch` and `cargo metadata` would otherwise run from a project's Cargo config: both ask rustc for the
# target's cfg (through the wrappers), and rustflags could hand that rustc a codegen backend to load. Cargo prefers
# the environment to every config file, so these put the image's own rustc, no wrapper and no flags in their place in
# the step that has the network, the tokens and a writable CARGO_HOME. A linker, a runner and build scripts are never
# run by these two commands (tested with real Cargo in test_fetch_isolation.py).
FETCH_OVERRIDES: Mapping[str, str] = MappingProxyType(
    {
        "RUSTC": "rustc",
        "CARGO_BUILD_RUSTC": "rustc",
        "RUSTDOC": "rustdoc",
        "CARGO_BUILD_RUSTDOC": "rustdoc",
        "RUSTC_WRAPPER": "",
        "CARGO_BUILD_RUSTC_WRAPPER": "",
        "RUSTC_WORKSPACE_WRAPPER": "",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER": "",
        # Set, even empty, it wins over RUSTFLAGS and every `rustflags` of a config file.
        "CARGO_ENCODED_RUSTFLAGS": "",
    }
)
# The image's bundle, for a host that has none of its own: the fetch step always names one, so that a project's
# `http.cainfo` cannot make Cargo trust a proxy of its choosing with the registries' tokens.
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# crates.io's token: only `cargo publish` and `cargo owner` use it, never a download.
_PUBLISH_ONLY_CREDENTIALS = frozenset({"CARGO_REGISTRY_TOKEN"})
# Cargo's own credential providers, which run no program that a project could name.
_BUILT_IN_PROVIDERS = frozenset({"cargo:token", "cargo:libsecret", "cargo:wincred", "cargo:macos-keychain"})


def fetch_credentials(credentials: Mapping[str, str]) -> dict[str, str]:
    """The credentials `cargo fetch` needs: private registries' tokens and the proxy, not crates.io's token."""
    return {name: value for name, value in credentials.items() if name not in _PUBLISH_ONLY_CREDENTIALS}


def project_config_files(config_files: Iterable[Path], *, cargo_home: Path, checkout: Path) -> list[Path]:
    """The Cargo config files inside the checkout (and not CARGO_HOME's, which may live there in CI): the project's,
    which nothing trusts (those above the checkout are the user's own, as ``config.trust`` draws the line); and every
    file they `include`, wherever it is (Cargo reads those as part of the including file, so their `[env]` and
    credential providers are the project's too)."""
    return with_includes(
        path for path in config_files if path.is_relative_to(checkout) and not path.is_relative_to(cargo_home)
    )


def with_includes(config_files: Iterable[Path]) -> list[Path]:
    """``config_files`` and every file they `include`, each once, as Cargo reads them."""
    found: list[Path] = []
    pending = list(config_files)
    while pending:
        path = pending.pop(0)
        if path not in found:
            found.append(path)
            pending += _included(path)
    return found


def _included(path: Path) -> list[Path]:
    """The files that the Cargo config at ``path`` includes (`include = ["a.toml", { path = "b.toml" }]`), relative
    to its directory; one that is not there is Cargo's to report."""
    value = read_toml(path).get("include")
    entries = value if isinstance(value, list) else [value]
    names = [entry.get("path") if isinstance(entry, dict) else entry for entry in entries]
    return [path.parent / name for name in names if isinstance(name, str) and (path.parent / name).is_file()]


def fetch_config_args(config_files: Iterable[Path]) -> list[str]:
    """``--config`` arguments that blank every variable a project's ``[env]`` gives the processes Cargo starts:
    the fetch step's rustc would otherwise run with the project's ``LD_PRELOAD`` (``force = true`` beats even the
    environment). An argument on the command line is merged over the files, key by key."""
    args: list[str] = []
    for path in config_files:
        table = read_toml(path).get("env")
        if not isinstance(table, dict):
            continue
        for name, value in table.items():
            key = f"env.{json.dumps(name)}"
            if isinstance(value, dict):
                args += ["--config", f'{key}.value=""', "--config", f"{key}.force=false"]
                args += ["--config", f"{key}.relative=false"]
            else:
                args += ["--config", f'{key}=""']
    return args


def pinned_registries(config_files: Iterable[Path], cargo_home: Path) -> dict[str, str]:
    """``CARGO_REGISTRIES_<NAME>_INDEX`` for every registry that the user's own Cargo config (CARGO_HOME's) names:
    the environment wins over the project's config, which could otherwise point a registry the user holds a token
    for at a server of its own, and the fetch step would send that token there."""
    pinned: dict[str, str] = {}
    for path in config_files:
        if not path.is_relative_to(cargo_home):
            continue
        registries = read_toml(path).get("registries")
        for name, entry in (registries if isinstance(registries, dict) else {}).items():
            index = entry.get("index") if isinstance(entry, dict) else None
            if isinstance(index, str):
                pinned[f"CARGO_REGISTRIES_{name.upper().replace('-', '_')}_INDEX"] = index
    return pinned


def check_credential_providers(config_files: Iterable[Path]) -> None:
    """A project's Cargo config must not name a credential provider other than Cargo's own: the fetch step would run
    that program with the user's registry tokens and the network."""
    for path in config_files:
        data = read_toml(path)
        registry = data.get("registry")
        registries = data.get("registries")
        named: list[tuple[str, object]] = []
        if isinstance(registry, dict):
            named += [("registry.credential-provider", registry.get("credential-provider"))]
            named += [("registry.global-credential-providers", registry.get("global-credential-providers"))]
        if isinstance(registries, dict):
            named += [
                (f"registries.{name}.credential-provider", entry.get("credential-provider"))
                for name, entry in registries.items()
                if isinstance(entry, dict)
            ]
        for setting, value in named:
            providers = value if isinstance(value, list) and all(isinstance(v, str) for v in value) else [value]
            if value is None or all(provider in _BUILT_IN_PROVIDERS for provider in providers):
                continue
            raise ConfigError(
                f"{path}: `{setting}` names a credential provider of the project's ({value!r}), which would run "
                "with your registry tokens",
                hint="use one of Cargo's own providers there (cargo:token), or name your provider in your own "
                "CARGO_HOME/config.toml",
            )


def toolchain_environment(spec: TargetSpec, host: TargetSpec | None = None) -> dict[str, str]:
    """The conventional variables for ``spec``, in the forms that Cargo, the cc crate and pkg-config read.

    The host's tools (``host``, the entry for the images' own triple) are named too, whatever the target: Cargo
    applies the host triple's settings to build scripts, and variables that came and went with the target would
    make every build script stale whenever the target changes.
    """
    env = _tool_variables(host) if host is not None and host.triple != spec.triple else {}
    env.update(_tool_variables(spec))
    env.update(_foreign_variables(spec))
    env.update(spec.env)
    return env


def _foreign_variables(spec: TargetSpec) -> dict[str, str]:
    """What points the tools that -sys crates run (qemu, bindgen's clang, CMake) at a foreign target's sysroot,
    in the names cross uses, so that crates written for cross work unchanged."""
    env: dict[str, str] = {}
    if spec.emulator is not None and spec.emulator.startswith("qemu-"):
        # cross's name for "run the target's programs under qemu-user"; tests that start the crate's own binary
        # (ripgrep's, for one) put qemu-<arch> in front of it when this is set and not empty.
        env["CROSS_RUNNER"] = "qemu-user"
    if spec.sysroot:
        lower = spec.triple.replace("-", "_").replace(".", "_")
        env["QEMU_LD_PREFIX"] = spec.sysroot
        # bindgen adds --target itself; its clang needs the target's C headers.
        env[f"BINDGEN_EXTRA_CLANG_ARGS_{lower}"] = f"--sysroot={spec.sysroot}"
        env[f"CMAKE_TOOLCHAIN_FILE_{lower}"] = CMAKE_TOOLCHAIN_FILE
        env["XPCARGO_TARGET"] = spec.triple
    preload = preload_path(spec)
    if preload is not None:
        # Read by qemu only, which sets it in the program's own environment (never its own: the host's loader would
        # try to load a foreign library into qemu). The library then runs what the program starts of the target's
        # programs under qemu, and takes itself out of the environment the program sees.
        env["QEMU_SET_ENV"] = f"LD_PRELOAD={preload}"
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
        # The emulator as it is, where the exec preload runs what the program starts under it; else xpcargo's runner
        # that registers it in binfmt_misc where a user namespace is allowed (a static program ignores a preload).
        line = None if preload_path(spec) is not None else binfmt.registration(spec.emulator)
        # Through a shell: the file is mounted without its mode bits mattering.
        wrapper = ["sh", BINFMT_RUNNER, line] if line is not None else []
        env[f"CARGO_TARGET_{upper}_RUNNER"] = " ".join([*wrapper, *spec.runner])
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
        if name in wanted or name in _PASSED_NAMES or name in _PROXY_NAMES or name.startswith(_PASSED_PREFIXES):
            passed[name] = value
    return passed


def is_credential(name: str) -> bool:
    """Whether a variable must stay out of a container's environment (where every build script and anyone with
    access to the engine can read it) and reach only the exec of the step that needs it."""
    return name in _PROXY_NAMES or bool(_CREDENTIAL.match(name))


def host_ca_bundle(environ: Mapping[str, str]) -> Path | None:
    """The certificates the host trusts. Behind a TLS-inspecting proxy the image's own bundle is not enough, and
    the fetch step must trust what the host trusts to reach crates.io at all."""
    for name in ("CARGO_HTTP_CAINFO", "SSL_CERT_FILE"):
        configured = environ.get(name)
        if configured and Path(configured).is_file():
            return Path(configured)
    return _DEBIAN_CA_BUNDLE if _DEBIAN_CA_BUNDLE.is_file() else None


def _names_host_program(name: str) -> bool:
    # CARGO_TARGET_<TRIPLE>_LINKER and _RUNNER set on the host point at host programs (mold, clang, a wrapper).
    return name.startswith("CARGO_TARGET_") and name.endswith(("_LINKER", "_RUNNER"))
