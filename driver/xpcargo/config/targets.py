"""A target's settings: each declared once, on ``TargetSpec``, and resolved as one fold over layers.

The layers, lowest first: the shipped ``toolchains.yaml`` (``XPCARGO_TOOLCHAINS`` names another), the project's
``[build]``, the project's ``[target.<triple>]`` (in ``xpcargo.toml``, or ``[workspace.metadata.xpcargo]`` /
``[package.metadata.xpcargo]`` of the root ``Cargo.toml``), then the environment: ``XPCARGO_BUILD_<FIELD>`` and
``XPCARGO_TARGET_<TRIPLE>_<FIELD>``, in the manner of cross's ``CROSS_TARGET_<TRIPLE>_<KEY>``.

Every setting says, where it is declared, what kind of value it holds, how a higher layer combines with a lower one
(replace, append, update), and which layers may set it. Reading, validation, the environment forms and the fold
all follow from that one declaration.
"""

from __future__ import annotations

import difflib
import enum
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from xpcargo.config import toolchain_file
from xpcargo.config.links import LinksOverrides
from xpcargo.config.schema import EMPTY, ENV_NAME, Table, describe, frozen_map, load_yaml, read_toml
from xpcargo.errors import ConfigError, UnknownTargetError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

PROJECT_CONFIG_FILE = "xpcargo.toml"

_TRIPLE = re.compile(r"^[a-z0-9_.]+(-[a-z0-9_.]+){1,3}$")
# A recipe is a file of xpcargo's own images/ directory (or of XPCARGO_IMAGES): a bare name, never a path.
_RECIPE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
# Debian policy 5.6.1: a package name, optionally `:arch` (multiarch) and `=version`.
_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(?::(?P<arch>[a-z0-9_-]+))?(?:=[A-Za-z0-9.+~:-]+)?$")
_DEBIAN_ARCHES = frozenset(
    {"amd64", "arm64", "armel", "armhf", "i386", "loong64", "mips64el", "ppc64el", "riscv64", "s390x"}
    | {"all", "any", "native"}
)
# Debian's architecture of packages that run anywhere. As a target's debian-arch: a target with no Debian architecture
# of its own (wasm32), whose std is such a package.
ARCH_INDEPENDENT = "all"
# Debian's GNU triple of an architecture: its `<triple>-gcc` compiles an image layer's small C files: the one a std
# built from source adds to its unwinder (libc-neutral: the glibc cross compiler serves a musl target too), and the
# exec preload of a foreign glibc target (xpcargo.emulation).
GNU_TRIPLES = {
    "amd64": "x86_64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "armel": "arm-linux-gnueabi",
    "armhf": "arm-linux-gnueabihf",
    "i386": "i686-linux-gnu",
    "ppc64el": "powerpc64le-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "s390x": "s390x-linux-gnu",
}
# What Rust (and the kernel) call an architecture that Debian names otherwise.
_RUST_TO_DEBIAN_ARCH = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "i686": "i386",
    "i386": "i386",
    "x86": "i386",
    "armv7": "armhf",
    "arm": "armel",
    "powerpc64le": "ppc64el",
    "riscv64gc": "riscv64",
    "loongarch64": "loong64",
}


class Kind(enum.Enum):
    NAME = "a non-empty string"
    WORDS = "a list of non-empty strings"
    ENV = "a table of NAME = VALUE"
    LINKS = "a table of `links` overrides"


class Merge(enum.Enum):
    REPLACE = "replace"  # a higher layer's value replaces a lower one's
    APPEND = "append"  # lists: a higher layer's items follow a lower one's
    UPDATE = "update"  # tables: a higher layer's keys win, the others stay


class Source(enum.Enum):
    SHIPPED = "toolchains.yaml"
    BUILD = "[build]"
    TARGET = "[target.<triple>]"


_ALL = frozenset(Source)
_TARGET_ONLY = frozenset({Source.SHIPPED, Source.TARGET})
_PROJECT = frozenset({Source.BUILD, Source.TARGET})

# A check of one value: returns None when it is fine, else what is wrong (and optionally a hint).
Check = Callable[[Any], "tuple[str, str | None] | None"]


@dataclass(frozen=True, kw_only=True)
class Setting:
    kind: Kind
    merge: Merge
    sources: frozenset[Source]
    required: bool
    check: Check | None


def _setting(
    kind: Kind,
    *,
    sources: frozenset[Source] = _TARGET_ONLY,
    merge: Merge = Merge.REPLACE,
    required: bool = False,
    check: Check | None = None,
) -> Any:
    metadata = {"setting": Setting(kind=kind, merge=merge, sources=sources, required=required, check=check)}
    if kind is Kind.NAME:
        return field(default="" if required else None, metadata=metadata)
    if kind is Kind.WORDS:
        return field(default=(), metadata=metadata)
    if kind is Kind.ENV:
        return field(default_factory=lambda: EMPTY, metadata=metadata)
    return field(default_factory=LinksOverrides, metadata=metadata)


def _check_recipe(name: str) -> tuple[str, str | None] | None:
    if _RECIPE_NAME.match(name):
        return None
    return f"`{name}` is not a recipe name", "name a recipe of xpcargo's images/ directory, without a path"


def _check_runner(words: tuple[str, ...]) -> tuple[str, str | None] | None:
    # Cargo splits a runner given through the environment at white space, so no single word may contain any.
    if any(not part.strip() or part.split() != [part] for part in words):
        return "each word must be non-empty and contain no white space", None
    return None


def _check_packages(names: tuple[str, ...]) -> tuple[str, str | None] | None:
    for name in names:
        match = _PACKAGE.match(name)
        if match is None:
            return (
                f"`{name}` is not a Debian package name",
                "use Debian's form NAME, NAME:ARCH or NAME=VERSION (lowercase letters, digits, + - .)",
            )
        arch = match.group("arch")
        if arch and arch not in _DEBIAN_ARCHES:
            debian = _RUST_TO_DEBIAN_ARCH.get(arch, "")
            known = ", ".join(sorted(_DEBIAN_ARCHES - {"all", "any", "native"}))
            suggestion = f"; Debian calls `{arch}` `{debian}`: write `{name.replace(':' + arch, ':' + debian)}`"
            return (
                f"`{name}` names the architecture `{arch}`, which Debian does not have",
                f"Debian's architectures are {known}" + (suggestion if debian else ""),
            )
    return None


def _check_glibc(version: str) -> tuple[str, str | None] | None:
    if re.fullmatch(r"[0-9]+\.[0-9]+", version):
        return None
    return f"`{version}` is not a glibc version", "write it as MAJOR.MINOR, e.g. `2.36`"


def _check_env_names(names: tuple[str, ...]) -> tuple[str, str | None] | None:
    bad = next((name for name in names if not ENV_NAME.match(name)), None)
    return (f"`{bad}` is not a valid environment variable name", None) if bad else None


def _check_absolute(paths: tuple[str, ...]) -> tuple[str, str | None] | None:
    relative = next((path for path in paths if not Path(path).is_absolute()), None)
    return (f"`{relative}` is not an absolute path", None) if relative else None


# An ssh:// engine: `ssh://[USER@]HOST[:PORT]`, the host a name or an address. Nothing else: the host reaches a
# ProxyCommand of ~/.ssh/config (`%h`) that paramiko splits into words, so a host of spaces or one that starts with
# `-` (`ssh://-oProxyCommand=...`) would be words of the user's command line, not a host.
_SSH_ENGINE = re.compile(
    r"ssh://(?:[A-Za-z0-9_][A-Za-z0-9_.-]*@)?"
    r"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?|\[[0-9A-Fa-f:.]+\])"
    r"(?::[0-9]{1,5})?"
)


def _check_engine(url: str) -> tuple[str, str | None] | None:
    if url.startswith("ssh://"):
        if _SSH_ENGINE.fullmatch(url):
            return None
        return (
            f"`{url}` is not an ssh:// engine's address",
            "write it as ssh://[USER@]HOST[:PORT], the host a name or an address (aliases of ~/.ssh/config work too)",
        )
    if url.startswith(("unix:///", "tcp://")) and url.split("://", 1)[1].strip("/"):
        return None
    return (
        f"`{url}` is not an engine's address",
        "write it as DOCKER_HOST takes it: ssh://HOST, tcp://HOST:PORT or unix:///PATH",
    )


def _check_sysroot(path: str) -> tuple[str, str | None] | None:
    return _check_absolute((path,))


# Where a target's Rust std comes from: Debian's package of it (the default), or a build from the recipe's
# `rust.source` in the target's image layer.
STD_DEBIAN = "debian"
STD_SOURCE = "source"
# A path of the image that the std build copies or links: plain characters only, so that no value could ever be read
# as more than one word or as an option by the commands of the layer's build.
_IMAGE_PATH = re.compile(r"^(/[A-Za-z0-9_.+-]+)+$")


def _check_std(value: str) -> tuple[str, str | None] | None:
    if value in (STD_DEBIAN, STD_SOURCE):
        return None
    return f"`{value}` is not where a std comes from", f"write `{STD_DEBIAN}` (Debian's package) or `{STD_SOURCE}`"


# The C runtimes a target's layer can build for itself from the recipe's `c-runtime-sources` (`std-c-runtime`).
C_RUNTIME_MUSL = "musl"
C_RUNTIMES = (C_RUNTIME_MUSL,)
# A flag of the C runtime's compiler: one option of plain characters, so that the layer's script (which runs as
# root) can only ever pass it to gcc as that one option.
_C_FLAG = re.compile(r"^-[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")


def _check_c_runtime(value: str) -> tuple[str, str | None] | None:
    if value in C_RUNTIMES:
        return None
    return f"`{value}` is not a C runtime xpcargo builds", f"known: {', '.join(C_RUNTIMES)}"


def _check_c_flags(flags: tuple[str, ...]) -> tuple[str, str | None] | None:
    bad = next((flag for flag in flags if not _C_FLAG.match(flag)), None)
    if bad is None:
        return None
    return f"`{bad}` is not one compiler option of plain characters", "write options like -march=armv6kz+fp"


# A target feature every build of the target gets (`-C target-feature=<it>`): a sign and a feature name, so that the
# value can only ever be that one option, in the std build's script and in the build's rustflags alike.
_TARGET_FEATURE = re.compile(r"^[+-][A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*$")


def _check_target_features(features: tuple[str, ...]) -> tuple[str, str | None] | None:
    bad = next((feature for feature in features if not _TARGET_FEATURE.match(feature)), None)
    if bad is None:
        return None
    return f"`{bad}` is not a target feature", "write a sign and a feature name, like +crt-static"


# wasi-libc's emulations of POSIX interfaces WASI preview 1 lacks, which C code gets by default on wasm32-wasip1
# (`wasi-emulated`): each is a define that makes wasi-libc's headers declare the functions, and a static library of
# Debian's wasi-libc that defines them. The library is linked as an archive, so a module takes only what it calls.
WASI_EMULATIONS = ("process-clocks", "signal", "mman", "getpid")
WASI_LIBC_DIR = "/usr/lib/wasm32-wasip1"


def _check_wasi_emulated(names: tuple[str, ...]) -> tuple[str, str | None] | None:
    bad = next((name for name in names if name not in WASI_EMULATIONS), None)
    if bad is None:
        return None
    return f"`{bad}` is not one of wasi-libc's emulations", f"known: {', '.join(WASI_EMULATIONS)}"


def wasi_emulated_flags(names: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The C compiler's options and rustc's for ``names`` (checked against WASI_EMULATIONS): the define each
    emulation's declarations need, and its archive of wasi-libc as one more input of the link."""
    c_flags = [f"-D_WASI_EMULATED_{name.replace('-', '_').upper()}" for name in names]
    rust_flags = [f"-Clink-arg={WASI_LIBC_DIR}/libwasi-emulated-{name}.a" for name in names]
    return c_flags, rust_flags


def link_archive_flags(archives: tuple[str, ...]) -> list[str]:
    """rustc's options that give the linker each of ``archives`` (checked image paths) as one more input."""
    return [f"-Clink-arg={archive}" for archive in archives]


def target_feature_flags(features: tuple[str, ...]) -> list[str]:
    """rustc's options for ``features``: one spelling for the std's build in the image and every build of the
    target, which must agree."""
    return [f"-Ctarget-feature={feature}" for feature in features]


def _check_image_paths(paths: tuple[str, ...]) -> tuple[str, str | None] | None:
    bad = next((path for path in paths if not _IMAGE_PATH.match(path) or "/../" in f"{path}/"), None)
    if bad is None:
        return None
    return f"`{bad}` is not an absolute path of plain characters", "name a file of the image, e.g. /usr/lib/x/crt1.o"


def _check_image_path(path: str) -> tuple[str, str | None] | None:
    return _check_image_paths((path,))


# Whether a target's builds use the compile cache (XPCARGO_CACHE=off turns it off for every target, whatever this says).
COMPILE_CACHE_ON = "on"
COMPILE_CACHE_OFF = "off"


def _check_on_off(value: str) -> tuple[str, str | None] | None:
    if value in (COMPILE_CACHE_ON, COMPILE_CACHE_OFF):
        return None
    return f"`{value}` is neither on nor off", f"write `{COMPILE_CACHE_ON}` or `{COMPILE_CACHE_OFF}`"


# A program of the image that the layer's std build runs: a name found on its PATH, or an absolute path, of plain
# characters only and never an option, so that the value is one word of the script whatever it holds.
_IMAGE_PROGRAM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


def _check_image_program(value: str) -> tuple[str, str | None] | None:
    if _IMAGE_PROGRAM.match(value) or _check_image_path(value) is None:
        return None
    return f"`{value}` is not a program name or absolute path of plain characters", "name a program of the image"


@dataclass(frozen=True, kw_only=True)
class TargetSpec:
    """Everything xpcargo needs to know about one target, after every layer of configuration is applied.

    Each field but ``triple`` is a setting: its key in the files is the field name with ``-`` for
    ``_`` (``debian-arch``), and its environment form is the field name in capitals
    (``XPCARGO_TARGET_<T>_DEBIAN_ARCH``).
    """

    triple: str
    # The image recipe in images/ (without .yaml).
    recipe: str = _setting(Kind.NAME, required=True, check=_check_recipe)
    # Debian's name of the target architecture (selects the Rust std .deb).
    debian_arch: str = _setting(Kind.NAME, required=True)
    # Debian packages added to the recipe's.
    packages: tuple[str, ...] = _setting(Kind.WORDS, check=_check_packages)
    # The C/C++ compilers and archiver that build scripts (and the cc crate) must use, and what rustc links with.
    cc: str = _setting(Kind.NAME, required=True)
    cxx: str = _setting(Kind.NAME, required=True)
    ar: str = _setting(Kind.NAME, required=True)
    linker: str = _setting(Kind.NAME, required=True)
    # How Cargo runs a built program (an emulator for a foreign architecture); empty runs it natively.
    runner: tuple[str, ...] = _setting(Kind.WORDS, check=_check_runner)
    # Where pkg-config looks for the target's .pc files.
    pkg_config_libdir: tuple[str, ...] = _setting(Kind.WORDS, check=_check_absolute)
    # The target's C library and headers (Debian's cross sysroot): qemu's QEMU_LD_PREFIX, bindgen's and CMake's root.
    sysroot: str | None = _setting(Kind.NAME, check=_check_sysroot)
    # Where the Rust std comes from: `debian` (Debian's package for debian-arch; also when unset), or `source`: built
    # from the recipe's `rust.source` in the target's image layer, for a target Debian packages no std for (musl).
    std: str | None = _setting(Kind.NAME, check=_check_std)
    # A std built from source: files of the image linked into rustc's `self-contained` directory of the target, which
    # rustc takes a statically linked program's start files and C library from (musl's crt1.o, libc.a, gcc's
    # crtbegin.o), under their own names.
    std_self_contained: tuple[str, ...] = _setting(Kind.WORDS, check=_check_image_paths)
    # A std built from source: a static LLVM libunwind of the image, installed there as libunwind.a (the unwinder a
    # static musl program links), with the two fortify functions that Debian's build of it calls and musl lacks.
    std_unwinder: str | None = _setting(Kind.NAME, check=_check_image_path)
    # A std built from source: a C runtime the layer builds for the target from the recipe's pinned Debian sources
    # (`c-runtime-sources`), for an architecture variant Debian builds no C library for (ARMv6). `musl`: musl's
    # libc.a and start files, compiler-rt's crtbegin/crtend and LLVM's libunwind, installed under
    # /opt/xpcargo/<triple>, with a gcc wrapper there (bin/gcc) that compiles for it with musl's headers.
    std_c_runtime: str | None = _setting(Kind.NAME, check=_check_c_runtime)
    # The options every file of that C runtime is compiled with, and that its gcc wrapper passes (the architecture).
    std_c_flags: tuple[str, ...] = _setting(Kind.WORDS, check=_check_c_flags)
    # A std built from source: the C compiler and archiver of the image that compile compiler-rt's builtins into its
    # compiler_builtins (Rust's `compiler-builtins-c`, as in rustup's std): the C functions that C code compiled by
    # gcc calls and no Rust code defines, like __popcountdi2. Declared apart from `cc`/`ar`, so that a project that
    # wraps its compiler does not rebuild the std. Unset: the std has the Rust builtins only.
    std_cc: str | None = _setting(Kind.NAME, check=_check_image_program)
    std_ar: str | None = _setting(Kind.NAME, check=_check_image_program)
    # A std built from source: the program of the image that links the std's own dylib (the std's `dylib` crate
    # type), for a target that links dynamically and whose Rust default linker (`cc`) is the build machine's: a glibc
    # target (armv5te). Unset: rustc's default for the target (MinGW's gcc for windows-gnu; a static musl target
    # links no dylib). Apart from `linker`, like std-cc, so that a project's own linker never rebuilds the std.
    std_linker: str | None = _setting(Kind.NAME, check=_check_image_program)
    # Target features (`+crt-static`) that every build of the target and, for a std built from source, the std's
    # build get as `-C target-feature=...`, added to the user's own rustflags: for a target whose Rust default is not
    # what its releases ship (riscv64gc-unknown-linux-musl links dynamically unless `+crt-static`).
    target_features: tuple[str, ...] = _setting(Kind.WORDS, check=_check_target_features)
    # wasi-libc's emulations (WASI_EMULATIONS) that C code of the target gets: their defines added to the user's own
    # CFLAGS_<target>, their libraries to the link. `[]` turns them off.
    wasi_emulated: tuple[str, ...] = _setting(Kind.WORDS, check=_check_wasi_emulated)
    # Static archives of the image that every link of the target takes as inputs after everything else (the linker
    # takes from an archive only the members that define what is still undefined): for a std built from source
    # against a C library that lacks functions the std calls (wasm32-wasip1's pthread stubs). Files of the image of
    # plain characters only, each one `-Clink-arg=<path>` added to the user's rustflags.
    link_archives: tuple[str, ...] = _setting(Kind.WORDS, check=_check_image_paths)
    # Extra environment for every command in the container.
    env: Mapping[str, str] = _setting(Kind.ENV, sources=_ALL, merge=Merge.UPDATE)
    # The engine the target builds on, instead of the one DOCKER_HOST (or the docker context) names: `ssh://builder`,
    # `tcp://10.0.0.5:2376`, `unix:///run/podman/podman.sock`. A multi-target build spreads over the engines named.
    engine: str | None = _setting(Kind.NAME, sources=frozenset({Source.TARGET}), check=_check_engine)
    # An image already in the engine to use instead of building one.
    image: str | None = _setting(Kind.NAME, sources=frozenset({Source.TARGET}))
    # The newest glibc the target's artifacts may need: a floor of the recipe's `glibc-floors` (`2.36`), met by
    # linking against that older libc; unset, the image's own glibc.
    glibc: str | None = _setting(Kind.NAME, check=_check_glibc)
    # Debian packages a project adds to the image (multiarch `libssl-dev:arm64` included).
    extra_packages: tuple[str, ...] = _setting(Kind.WORDS, sources=_PROJECT, merge=Merge.APPEND, check=_check_packages)
    # Host variables copied into the container.
    passthrough: tuple[str, ...] = _setting(Kind.WORDS, sources=_PROJECT, merge=Merge.APPEND, check=_check_env_names)
    # Extra host directories mounted read-only at the same path.
    mounts: tuple[str, ...] = _setting(Kind.WORDS, sources=_PROJECT, merge=Merge.APPEND, check=_check_absolute)
    # The compile cache (sccache) for the target's builds: `on` (also when unset) or `off`. Only ever turns it off:
    # XPCARGO_CACHE=off is the user's, and wins over every layer here.
    compile_cache: str | None = _setting(Kind.NAME, sources=_ALL, check=_check_on_off)
    # `links` overrides, passed to Cargo with --config.
    links: LinksOverrides = _setting(  # noqa: RUF009 - a dataclass field() with a default factory
        Kind.LINKS, sources=frozenset({Source.TARGET}), merge=Merge.UPDATE
    )

    @property
    def emulator(self) -> str | None:
        return self.runner[0] if self.runner else None

    @property
    def std_from_source(self) -> bool:
        return self.std == STD_SOURCE


SETTINGS: Mapping[str, Setting] = MappingProxyType(
    {item.name: item.metadata["setting"] for item in fields(TargetSpec) if "setting" in item.metadata}
)


def setting_key(name: str) -> str:
    """The key of a setting in the files: `debian_arch` → `debian-arch`."""
    return name.replace("_", "-")


def env_key(triple: str) -> str:
    """The form of a triple that Cargo uses in variable names: `CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER`."""
    return triple.replace("-", "_").replace(".", "_").upper()


# --- Layers --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Layer:
    """The settings one place gives: field name -> a value already of the field's kind."""

    origin: str  # how an error names the place: `xpcargo.toml: target.aarch64-unknown-linux-gnu`
    values: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


# Builds the error for a value: (the key inside the value, "" for the value itself; the problem; a hint).
Fail = Callable[[str, str, "str | None"], ConfigError]


def _convert(setting: Setting, raw: object, fail: Fail) -> object:
    """``raw`` as read from TOML or YAML, validated and converted into the field's kind."""
    value: object
    match setting.kind:
        case Kind.NAME:
            if not isinstance(raw, str) or not raw:
                raise fail("", f"expected a non-empty string, got {describe(raw)}", None)
            value = raw
        case Kind.WORDS:
            if not isinstance(raw, list) or not all(isinstance(item, str) and item for item in raw):
                raise fail("", f"expected a list of non-empty strings, got {describe(raw)}", None)
            value = tuple(raw)
        case Kind.ENV:
            value = _env_table(raw, fail)
        case Kind.LINKS:
            value = _links_table(raw, fail)
    if setting.check is not None:
        problem = setting.check(value)
        if problem is not None:
            raise fail("", *problem)
    return value


def _env_table(raw: object, fail: Fail) -> Mapping[str, str]:
    if not isinstance(raw, Mapping):
        raise fail("", f"expected a table of NAME = VALUE, got {describe(raw)}", None)
    result: dict[str, str] = {}
    for name, item in raw.items():
        if not isinstance(name, str) or not ENV_NAME.match(name):
            raise fail(str(name), "is not a valid environment variable name", None)
        if not isinstance(item, str | int | float | bool):
            raise fail(name, f"expected a string, got {describe(item)}", None)
        result[name] = str(item).lower() if isinstance(item, bool) else str(item)
    return frozen_map(result)


def _links_table(raw: object, fail: Fail) -> LinksOverrides:
    if not isinstance(raw, Mapping):
        raise fail("", f"expected a table of `links` overrides, got {describe(raw)}", None)
    tables: dict[str, Mapping[str, object]] = {}
    for name, entry in raw.items():
        # Cargo validates an override's keys itself; here it only has to be a table.
        if not isinstance(entry, Mapping):
            raise fail(str(name), f"expected a table, got {describe(entry)}", None)
        tables[str(name)] = dict(entry)
    return LinksOverrides(tables)


def read_layer(table: Table, source: Source, *, require: bool = False) -> Layer:
    """The settings of one table of a file; ``require`` makes the required settings required here."""
    values: dict[str, object] = {}
    for name, setting in SETTINGS.items():
        if source not in setting.sources:
            continue
        key = setting_key(name)
        raw = table.value(key, required=require and setting.required)
        if raw is None:
            continue

        def fail(inner: str, problem: str, hint: str | None, key: str = key) -> ConfigError:
            return table.fail(f"{key}.{inner}" if inner else key, problem, hint=hint)

        values[name] = _convert(setting, raw, fail)
    table.finish()
    return Layer(origin=f"{table.source}: {table.where}" if table.where else str(table.source), values=values)


def _environment_value(setting: Setting, raw: str) -> object:
    """What an environment variable says, in the form a file would: words split at white space, an env table as
    NAME=VALUE words, `links` overrides as a TOML inline table."""
    match setting.kind:
        case Kind.NAME:
            return raw
        case Kind.WORDS:
            return raw.split()
        case Kind.ENV:
            pairs = [word.partition("=") for word in raw.split()]
            if any(not equals for _, equals, _ in pairs):
                return raw  # not a table: reported as such
            return {name: value for name, _, value in pairs}
        case Kind.LINKS:
            try:
                return tomllib.loads(f"value = {raw}")["value"]
            except (tomllib.TOMLDecodeError, RecursionError):
                return raw  # not a table: reported as such


def environment_layer(environ: Mapping[str, str], prefix: str, source: Source) -> Layer:
    """The settings that ``<prefix><FIELD>`` variables give (``XPCARGO_BUILD_`` or ``XPCARGO_TARGET_<TRIPLE>_``)."""
    values: dict[str, object] = {}
    for name, setting in SETTINGS.items():
        variable = f"{prefix}{name.upper()}"
        raw = environ.get(variable)
        if source not in setting.sources or not raw:
            continue

        def fail(inner: str, problem: str, hint: str | None, variable: str = variable) -> ConfigError:
            return ConfigError(f"{variable}{f' ({inner})' if inner else ''}: {problem}", hint=hint)

        values[name] = _convert(setting, _environment_value(setting, raw), fail)
    return Layer(origin="the environment", values=values)


def environment_settings(source: Source) -> tuple[str, ...]:
    """The variable suffixes (``IMAGE``, ``EXTRA_PACKAGES``, ...) that the environment may set for ``source``."""
    return tuple(name.upper() for name, setting in SETTINGS.items() if source in setting.sources)


def _combine(setting: Setting, lower: object, higher: object) -> object:
    """A higher layer's value over a lower one's. Values are already of the setting's kind (``_convert``)."""
    if setting.merge is Merge.APPEND and isinstance(lower, tuple) and isinstance(higher, tuple):
        return lower + higher
    if setting.merge is Merge.UPDATE:
        if isinstance(lower, LinksOverrides) and isinstance(higher, LinksOverrides):
            return higher.over(lower)
        if isinstance(lower, Mapping) and isinstance(higher, Mapping):
            return frozen_map({**lower, **higher})
    return higher


def fold(triple: str, layers: Iterable[Layer]) -> TargetSpec:
    """Apply ``layers``, lowest first, into one ``TargetSpec``."""
    values: dict[str, Any] = {}
    origins: list[str] = []
    for layer in layers:
        origins.append(layer.origin)
        for name, value in layer.values.items():
            values[name] = _combine(SETTINGS[name], values.get(name), value)
    missing = [name for name, setting in SETTINGS.items() if setting.required and name not in values]
    if missing:
        required = ", ".join(setting_key(name) for name, setting in SETTINGS.items() if setting.required)
        where = next((origin for origin in reversed(origins) if "target." in origin), origins[-1] if origins else "")
        raise ConfigError(
            f"{where}.{setting_key(missing[0])}: is missing (a target that toolchains.yaml does not know needs "
            f"{required})"
        )
    return TargetSpec(triple=triple, **values)


def layer_of(spec: TargetSpec) -> Layer:
    """A resolved target as a layer, to fold more layers over it."""
    return Layer(
        origin=f"toolchains.yaml: targets.{spec.triple}",
        values={name: getattr(spec, name) for name, setting in SETTINGS.items() if Source.SHIPPED in setting.sources},
    )


# --- The shipped table --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Toolchains:
    source: Path
    targets: Mapping[str, TargetSpec]

    def target(self, triple: str) -> TargetSpec:
        try:
            return self.targets[triple]
        except KeyError:
            raise unknown_target(triple, self.targets) from None


def unknown_target(triple: str, known: Iterable[str]) -> UnknownTargetError:
    names = sorted(known)
    close = difflib.get_close_matches(triple, names, n=1, cutoff=0.6)
    suggestion = f"did you mean `{close[0]}`? " if close else ""
    return UnknownTargetError(
        f"unknown target `{triple}`",
        hint=f"{suggestion}known targets: {', '.join(names)} (see `xpcargo targets`)",
    )


def _validate_triple(table: Table, triple: str) -> None:
    if not _TRIPLE.match(triple):
        raise table.fail(triple, "is not a target triple (expected something like `aarch64-unknown-linux-gnu`)")


def check_triple(triple: str) -> str:
    """A triple given on the command line: the same grammar, so it is safe in a file name or a label."""
    if not _TRIPLE.match(triple):
        raise UnknownTargetError(
            f"`{triple}` is not a target triple",
            hint="name one like `aarch64-unknown-linux-gnu` (`xpcargo targets` lists them)",
        )
    return triple


def load_toolchains(path: Path, *, parsed: Path | None = None) -> Toolchains:
    """Load and validate a toolchains.yaml (``parsed``: see ``load_yaml``)."""
    top = Table(path, "", load_yaml(path, parsed=parsed))
    version = top.value("version", required=True)
    if version != 1:
        raise top.fail("version", f"unsupported version {version!r} (this xpcargo reads version 1)")
    targets_table = top.required_table("targets")
    targets: dict[str, TargetSpec] = {}
    for triple in targets_table.names():
        _validate_triple(targets_table, triple)
        layer = read_layer(targets_table.required_table(triple), Source.SHIPPED, require=True)
        targets[triple] = fold(triple, [layer])
    targets_table.finish()
    top.finish()
    if not targets:
        raise top.fail("targets", "lists no target")
    return Toolchains(source=path, targets=frozen_map(targets))


# --- The project's own configuration -------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProjectConfig:
    source: Path | None
    build: Layer = field(default_factory=lambda: Layer(origin="[build]"))
    targets: Mapping[str, Layer] = field(default_factory=lambda: MappingProxyType({}))
    # The workspace root it was read for, where the project's other files are (its image lock file among them);
    # None outside a project.
    root: Path | None = None
    # The Rust the project's toolchain file asks for (rustup's search from the workspace root), if any.
    toolchain: toolchain_file.Request | None = None


def load_project_config(workspace_root: Path) -> ProjectConfig:
    """Read ``xpcargo.toml`` from the workspace root, else ``[workspace.metadata.xpcargo]`` of its Cargo.toml; and
    the toolchain file rustup would find from there."""
    return replace(_load_settings(workspace_root), root=workspace_root, toolchain=toolchain_file.find(workspace_root))


def _load_settings(workspace_root: Path) -> ProjectConfig:
    own_file = workspace_root / PROJECT_CONFIG_FILE
    if own_file.is_file():
        return _read_project(own_file, "", read_toml(own_file))
    manifest = workspace_root / "Cargo.toml"
    if manifest.is_file():
        data = read_toml(manifest)
        for section in ("workspace", "package"):
            section_data = data.get(section)
            metadata = section_data.get("metadata") if isinstance(section_data, dict) else None
            if isinstance(metadata, dict) and "xpcargo" in metadata:
                return _read_project(manifest, f"{section}.metadata.xpcargo", metadata["xpcargo"])
    return ProjectConfig(source=None)


def _read_project(source: Path, where: str, data: object) -> ProjectConfig:
    top = Table(source, where, data)
    build_table = top.table("build")
    build = read_layer(build_table, Source.BUILD) if build_table else Layer(origin=f"{source}: build")
    targets: dict[str, Layer] = {}
    targets_table = top.table("target")
    if targets_table is not None:
        for triple in targets_table.names():
            _validate_triple(targets_table, triple)
            targets[triple] = read_layer(targets_table.required_table(triple), Source.TARGET)
        targets_table.finish()
    top.finish()
    return ProjectConfig(source=source, build=build, targets=frozen_map(targets))


def resolve_target(
    triple: str, toolchains: Toolchains, project: ProjectConfig, *, environ: Mapping[str, str]
) -> TargetSpec:
    """Fold the layers for ``triple``: shipped entry, ``[build]``, ``[target.<triple>]``, then the environment."""
    own = project.targets.get(triple)
    if triple not in toolchains.targets and own is None:
        raise unknown_target(triple, {*toolchains.targets, *project.targets})
    layers = [layer_of(toolchains.targets[triple])] if triple in toolchains.targets else []
    layers += [project.build, *([own] if own is not None else [])]
    layers += [
        environment_layer(environ, "XPCARGO_BUILD_", Source.BUILD),
        environment_layer(environ, f"XPCARGO_TARGET_{env_key(triple)}_", Source.TARGET),
    ]
    return fold(triple, layers)
