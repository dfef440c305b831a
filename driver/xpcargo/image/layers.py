"""A thin layer on an image: apt and dpkg run in a container of the parent image, and what they changed in its file
system becomes the layer's tar.

The container runs as its root with the few capabilities apt and dpkg need, and with the host's network (apt
downloads). Packages come from Debian's mirror, through the .deb cache that mmdebstrap shares; pinned pool .debs (a
foreign Rust std) come from xpcargo's cache, verified against their hashes on the host. The engine says which paths
the install changed; apt's own state (indexes, logs, caches) is left out, and GNU tar in the container writes the
rest in a stable order with numeric owners, every time clamped to SOURCE_DATE_EPOCH when the image is locked, so a
locked layer is the same bytes wherever it is rebuilt.
"""

from __future__ import annotations

import re
import shlex
import tarfile
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xpcargo.config.targets import env_key, target_feature_flags
from xpcargo.container.runtime import Containers
from xpcargo.container.session import invoking_user, open_session
from xpcargo.container.spec import ContainerRequest, Mount
from xpcargo.emulation import PRELOAD_CFLAGS, PRELOAD_SOURCE, ExecPreload, preload_source
from xpcargo.errors import ImageBuildError
from xpcargo.hashing import file_sha256
from xpcargo.image.debian import deb_cache_held, foreign_architectures, raise_mirror_failure, retried
from xpcargo.image.lockfile import DPKG_QUERY_FORMAT, Package, parse_dpkg_query
from xpcargo.image.plan import CompilerRtBuild, CRuntimeBuild, Layer, StdBuild

# What apt and dpkg need as root: files of any owner and mode, maintainer scripts that switch users or set
# file capabilities. Nothing else (no mounts, no devices, no network administration).
CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "SETUID", "SETGID", "SETFCAP")
# Where the list of changed paths (in the build's scratch directory) and xpcargo's pinned pool .debs are mounted,
# read-only.
INPUT = PurePosixPath("/xpcargo-layer")
POOL = PurePosixPath("/xpcargo-pool")
_DEB_CACHE = PurePosixPath("/var/cache/apt/archives")

# apt's and dpkg's own state and logs: written by every install, different every time, needed by nothing later.
_LEFT_OUT = re.compile(
    r"^/(tmp|var/tmp|run|var/log|var/cache/apt|var/lib/apt/lists|var/cache/ldconfig|xpcargo-layer|xpcargo-pool)(/|$)"
    r"|^/var/lib/dpkg/lock(-frontend)?$|^/var/(lib/dpkg|cache/debconf)/.*-old$"
)


@dataclass(frozen=True, kw_only=True)
class BuiltLayer:
    tar: Path
    # sha256 of the uncompressed tar: the engine's diff_id for the layer.
    diff_id: str
    # Every package in the image with the layer, at its version.
    packages: tuple[Package, ...]


def install_script(layer: Layer, *, build_arch: str, pool_debs: Sequence[str], owner: str) -> str:
    """The shell script that installs ``layer``'s packages as root; ``pool_debs`` are file names under POOL (unpacked
    into the image), ``owner`` who gets the .debs it adds to the shared cache (the invoking user's)."""
    # The cache is the invoking user's: what apt leaves there (its lock, partial/, the .debs) goes back to the user
    # however the script ends, or the user's next mmdebstrap could not read it.
    lines = [
        "set -eu",
        f"trap 'chown -R {owner} {_DEB_CACHE}' EXIT",
        "export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8",
    ]
    lines += [f"dpkg --add-architecture {arch}" for arch in foreign_architectures(layer.packages, native=build_arch)]
    emulator_filter = "/etc/dpkg/dpkg.cfg.d/xpcargo-emulator"
    if layer.emulator:
        # qemu-user ships an emulator for every architecture (~450 MB); the target needs its own only.
        lines.append(
            f"printf 'path-exclude=/usr/bin/qemu-*\\npath-include=/usr/bin/%s\\n' {shlex.quote(layer.emulator)} "
            f"> {emulator_filter}"
        )
    # Nor could apt's download sandbox user write there.
    apt = "apt-get -q -o APT::Sandbox::User=root -o Acquire::Retries=3"
    if layer.packages:
        lines += [
            f"{apt} update",
            f"{apt} install -y --no-install-recommends {' '.join(shlex.quote(p) for p in layer.packages)}",
        ]
    lines += [f"dpkg-deb -x {shlex.quote(str(POOL / name))} /" for name in pool_debs]
    if layer.exec_preload is not None:
        lines += exec_preload_script(layer.exec_preload)
    lines += [f"rm -f {emulator_filter}", "rm -rf /var/lib/apt/lists/*"]
    return "\n".join(lines)


# As the std's: at one fixed path, which no layer holds.
_PRELOAD_BUILD_DIR = "/tmp/xpcargo-preload"  # noqa: S108 - in the layer's own container, as its root


def exec_preload_script(preload: ExecPreload) -> list[str]:
    """The lines that compile xpcargo's exec preload (``emulation``) with the target's cross gcc, which the layer
    has just installed, from a fixed path under /tmp (which no layer holds) to its fixed place in the image."""
    q = shlex.quote
    source = f"{_PRELOAD_BUILD_DIR}/{PRELOAD_SOURCE}"
    options = " ".join(q(option) for option in (*PRELOAD_CFLAGS, *preload.defines()))
    return [
        f"mkdir -p {_PRELOAD_BUILD_DIR} {q(str(PurePosixPath(preload.path).parent))}",
        f"printf '%s' {q(preload_source())} > {source}",
        f"{q(preload.gnu_triple + '-gcc')} {options} -o {q(preload.path)} {source}",
        f"rm -rf {_PRELOAD_BUILD_DIR}",
    ]


def std_script(std: StdBuild, std_source: str) -> str:
    """The shell script that builds the layer's std (after its packages are installed) from the sources' .deb
    ``std_source``, a file name under POOL."""
    return "\n".join(["set -eu", "export LC_ALL=C.UTF-8", *std_build_script(std, POOL / std_source)])


# Where the std is built: under /tmp, which no layer holds, at one fixed path, so that the paths the build writes
# into the libraries are the same wherever and however often the layer is built.
STD_BUILD_DIR = "/tmp/xpcargo-std"  # noqa: S108 - in the layer's own container, as its root
# Debian builds LLVM's libunwind with _FORTIFY_SOURCE: it calls glibc's checked printf functions, which musl lacks.
# These do what the unchecked ones do. No header but the compiler's own, so any gcc of the architecture builds it.
FORTIFY_SOURCE = """\
/* Added by xpcargo to Debian's libunwind.a: the checked printf functions it calls, which musl does not have. */
#include <stdarg.h>
typedef __SIZE_TYPE__ size_t;
struct _IO_FILE;
int vfprintf(struct _IO_FILE *, const char *, va_list);
int vsnprintf(char *, size_t, const char *, va_list);
int __vfprintf_chk(struct _IO_FILE *f, int flag, const char *format, va_list ap) {
    (void)flag;
    return vfprintf(f, format, ap);
}
int __vsnprintf_chk(char *s, size_t n, int flag, size_t length, const char *format, va_list ap) {
    (void)flag;
    (void)length;
    return vsnprintf(s, n, format, ap);
}
"""


def std_build_script(std: StdBuild, source: PurePosixPath) -> list[str]:
    """The script's lines that build ``std.triple``'s std from the sources' .deb at ``source`` and install it into
    rustc's sysroot, as rustup's std would be: the libraries, and the `self-contained` directory of start files, C
    library and unwinder that rustc links a static program with.

    The build is the one Rust's own build does for its prebuilt std: the library workspace's `sysroot` crate in its
    `dist` profile (embedded bitcode for LTO, `panic_abort` built with panic=abort), offline from the vendored
    dependencies, unstable outside the std (-Zforce-unstable-if-unmarked), source paths written as `/rustc/<commit>`
    like rustup's. One change: ``std.codegen_units`` instead of the profile's one. Every value is quoted: a setting is
    data, never a command."""
    triple = shlex.quote(std.triple)
    build = STD_BUILD_DIR
    # With compiler-rt, the crates are the std's own and Debian's `cc` beside them (_compiler_rt_script).
    vendor = f"{build}/vendor" if std.compiler_rt is not None else "$library/vendor"
    config = [
        'source.crates-io.replace-with="vendored"',
        f'source.vendored.directory="{vendor}"',
        f"profile.dist.codegen-units={std.codegen_units}",
    ]
    lines = [
        f"rm -rf {build} && mkdir -p {build}/home",
        *(c_runtime_script(std.c_runtime) if std.c_runtime is not None else []),
        f"dpkg-deb -x {shlex.quote(str(source))} {build}/src",
        f'library="$(readlink -f {build}/src/usr/lib/rustlib/src/rust)/library"',
        "commit=$(rustc -vV | sed -n 's/^commit-hash: //p')",
        f'sysroot="$(rustc --print sysroot)/lib/rustlib/{std.triple}/lib"',
    ]
    features, env = "", ""
    if std.compiler_rt is not None:
        features = " --features compiler-builtins-c"
        env = _compiler_rt_env(std.triple, std.compiler_rt)
        lines += _compiler_rt_script(std.compiler_rt)
    if std.linker is not None:
        # The std's dylib is linked for the target by the image's linker for it, not rustc's default `cc`.
        env += f" CARGO_TARGET_{env_key(std.triple)}_LINKER={shlex.quote(std.linker)}"
    # Target features are checked words of plain characters (config.targets): one option each.
    rustflags = " ".join(
        [
            "-Zforce-unstable-if-unmarked --remap-path-prefix=${library%/library}=/rustc/$commit",
            *target_feature_flags(std.target_features),
        ]
    )
    lines += [
        f'env CARGO_HOME={build}/home RUSTC_BOOTSTRAP=1{env} RUSTFLAGS="{rustflags}"'
        f' cargo build -Zavoid-dev-deps --manifest-path "$library/Cargo.toml" -p sysroot --profile dist{features}'
        f" --target {triple} --offline --locked --target-dir {build}/target"
        + "".join(f' --config "{item.replace(chr(34), chr(92) + chr(34))}"' for item in config),
        'mkdir -p "$sysroot/self-contained"',
        # The sysroot crate only gathers the others.
        f"for rlib in {build}/target/{triple}/dist/deps/*.rlib; do"
        ' case "${rlib##*/}" in libsysroot-*) ;; *) cp "$rlib" "$sysroot/" ;; esac; done',
    ]
    for path in std.self_contained:
        lines += [_must_exist(path, "std-self-contained"), f'ln -s {shlex.quote(path)} "$sysroot/self-contained/"']
    if std.unwinder is not None:
        unwinder = shlex.quote(std.unwinder)
        lines += [
            _must_exist(std.unwinder, "std-unwinder"),
            f"cp {unwinder} {build}/libunwind.a",
            f"printf '%s' {shlex.quote(FORTIFY_SOURCE)} > {build}/fortify.c",
            f"{shlex.quote(f'{std.gnu_triple}-gcc')} -O2 -fPIC -ffreestanding -c {build}/fortify.c"
            f" -o {build}/xpcargo-fortify.o",
            # D: no dates or owners in the archive.
            f"ar rcsD {build}/libunwind.a {build}/xpcargo-fortify.o",
            f'cp {build}/libunwind.a "$sysroot/self-contained/libunwind.a"',
        ]
    lines.append(f"rm -rf {build}")
    return lines


# Where the std build finds the crates it compiles compiler-rt with: Debian's packages of them (librust-cc-dev and its
# dependencies), which the std's vendored sources lack.
_DEBIAN_CRATES = "/usr/share/cargo/registry"


def _compiler_rt_script(compiler_rt: CompilerRtBuild) -> list[str]:
    """The lines that unpack compiler-rt's builtins from LLVM's tarball under POOL and give the std's build a vendor
    directory with Debian's `cc` crate beside the std's own crates, with the std's lock file moved to that `cc`."""
    build = STD_BUILD_DIR
    return [
        f"mkdir -p {build}/llvm {build}/vendor",
        f"tar -xf {shlex.quote(str(POOL / compiler_rt.source.filename))} -C {build}/llvm --strip-components=1"
        " --wildcards '*/compiler-rt/lib/builtins/*'",
        f'for crate in "$library"/vendor/* {_DEBIAN_CRATES}/cc-[0-9]* {_DEBIAN_CRATES}/shlex-[0-9]*; do'
        f' ln -s "$crate" {build}/vendor/; done',
        # The std's lock names the cc of Rust's own build; Debian's is the one there is: its version and checksum go
        # into the lock, which the build still holds to (--locked).
        f"crate=$(ls -d {_DEBIAN_CRATES}/cc-[0-9]* | sort -V | tail -n 1)",
        """sum=$(sed -n 's/.*"package":"\\([0-9a-f]*\\)".*/\\1/p' "$crate/.cargo-checksum.json")""",
        """awk -v version="${crate##*/cc-}" -v sum="$sum" '/^name = /{cc = ($0 == "name = \\"cc\\"")}"""
        """ cc && /^version = /{$0 = "version = \\"" version "\\""}"""
        """ cc && /^checksum = /{$0 = "checksum = \\"" sum "\\""} {print}'"""
        f' "$library/Cargo.lock" > {build}/Cargo.lock',
        f'mv {build}/Cargo.lock "$library/Cargo.lock"',
    ]


def _compiler_rt_env(triple: str, compiler_rt: CompilerRtBuild) -> str:
    """The variables (each after a space) that make compiler-builtins compile compiler-rt with the image's tools."""
    suffix = triple.replace("-", "_")
    return (
        f" RUST_COMPILER_RT_ROOT={STD_BUILD_DIR}/llvm/compiler-rt"
        f" CC_{suffix}={shlex.quote(compiler_rt.cc)} AR_{suffix}={shlex.quote(compiler_rt.ar)}"
    )


# LLVM's libunwind as LLVM's own build (and Rust's, for its musl targets) compiles it: C and C++ without exceptions or
# RTTI, for the one architecture it runs on. Unwind-EHABI is ARM's (empty elsewhere); Unwind-seh is Windows'.
_UNWIND_C = ("UnwindLevel1", "UnwindLevel1-gcc-ext", "Unwind-sjlj")
_UNWIND_ASM = ("UnwindRegistersRestore", "UnwindRegistersSave")
_UNWIND_CXX = ("libunwind", "Unwind-EHABI")
_UNWIND_FLAGS = (
    "-O2 -fPIC -funwind-tables -fno-exceptions -fstrict-aliasing -fvisibility=hidden -D_LIBUNWIND_IS_NATIVE_ONLY"
    " -D_LIBUNWIND_DISABLE_VISIBILITY_ANNOTATIONS -DNDEBUG"
)
# compiler-rt's crtbegin.c/crtend.c as Rust's build compiles them for its musl targets' self-contained directory.
_CRT_FLAGS = "-std=c11 -O2 -DCRT_HAS_INITFINI_ARRAY -DEH_USE_FRAME_REGISTRY"


def c_runtime_script(runtime: CRuntimeBuild) -> list[str]:
    """The lines that build a C runtime (``std-c-runtime: musl``) from the sources' tarballs under POOL and install it
    under ``runtime.prefix``: musl (Debian's patches applied, in their series' order) as a static library with its
    start files and gcc specs, LLVM's libunwind, compiler-rt's crtbegin/crtend, each compiled with ``runtime.cflags``
    by Debian's cross gcc, and ``bin/gcc``, a wrapper that compiles and links for the runtime with the same options.
    Every value is quoted; the tarballs' contents are pinned by hash (the recipe's c-runtime-sources)."""
    q = shlex.quote
    work = f"{STD_BUILD_DIR}/c-runtime"
    prefix = q(runtime.prefix)
    gcc, gxx, ar = (q(f"{runtime.gnu_triple}-{tool}") for tool in ("gcc", "g++", "ar"))
    flags = " ".join(q(flag) for flag in runtime.cflags)
    musl, llvm = runtime.files("musl"), runtime.files("llvm")
    lines = [
        f"mkdir -p {work}/musl {work}/llvm {work}/obj {prefix}/bin {prefix}/lib",
        f"tar -xf {q(str(POOL / musl[0].filename))} -C {work}/musl --strip-components=1",
    ]
    if len(musl) > 1:
        lines += [
            f"tar -xf {q(str(POOL / musl[1].filename))} -C {work}/musl",
            # quilt's series: one patch a line, `#` comments.
            f"sed -e 's/#.*//' -e '/^[[:space:]]*$/d' {work}/musl/debian/patches/series | while read -r patch _; do"
            f' patch -d {work}/musl -p1 --quiet --no-backup-if-mismatch < "{work}/musl/debian/patches/$patch"'
            " || exit 1; done",
        ]
    lines += [
        # --target: Debian's cross toolchain (its -ar and -ranlib too); the wrapper only for its gcc specs.
        f"(cd {work}/musl && ./configure --prefix={prefix} --target={q(runtime.gnu_triple)} --disable-shared"
        f' --enable-wrapper=gcc CFLAGS="{flags} -O2" >/dev/null'
        f' && make -j"$(nproc)" >/dev/null && make install >/dev/null)',
        f"rm -f {prefix}/bin/musl-gcc",
        f"tar -xf {q(str(POOL / llvm[0].filename))} -C {work}/llvm --strip-components=1 --wildcards"
        " '*/libunwind/*' '*/compiler-rt/lib/builtins/crtbegin.c' '*/compiler-rt/lib/builtins/crtend.c'",
        # musl's headers and gcc's own (stddef.h, arm_acle.h), never the image's glibc ones.
        f'sys="-nostdinc -isystem {prefix}/include -isystem $({gcc} -print-file-name=include)"',
        f'unwind="{flags} $sys {_UNWIND_FLAGS} -I{work}/llvm/libunwind/include"',
        f"for f in {' '.join(_UNWIND_C)}; do"
        f" {gcc} -std=c99 $unwind -c {work}/llvm/libunwind/src/$f.c -o {work}/obj/$f.o; done",
        f"for f in {' '.join(_UNWIND_ASM)}; do"
        f" {gcc} $unwind -c {work}/llvm/libunwind/src/$f.S -o {work}/obj/$f.o; done",
        f"for f in {' '.join(_UNWIND_CXX)}; do {gxx} -std=c++17 -nostdinc++ -fno-rtti $unwind"
        f" -c {work}/llvm/libunwind/src/$f.cpp -o {work}/obj/$f.o; done",
        f"{ar} rcsD {prefix}/lib/libunwind.a {work}/obj/*.o",
        "for kind in begin end; do"
        f" {gcc} {_CRT_FLAGS} {flags} $sys -c {work}/llvm/compiler-rt/lib/builtins/crt$kind.c"
        f" -o {prefix}/lib/crt$kind.o"
        f" && {gcc} {_CRT_FLAGS} -fPIC {flags} $sys -c {work}/llvm/compiler-rt/lib/builtins/crt$kind.c"
        f" -o {prefix}/lib/crt${{kind}}S.o; done",
        f"printf '%s\\n' {' '.join(q(line) for line in _c_runtime_wrapper(runtime))} > {prefix}/bin/gcc",
        f"chmod 755 {prefix}/bin/gcc",
        f"rm -rf {work}",
    ]
    return lines


def _c_runtime_wrapper(runtime: CRuntimeBuild) -> list[str]:
    """The lines of ``bin/gcc`` of a C runtime: Debian's cross gcc with the runtime's options, its start files found
    first (-B) and musl's specs (its headers and libraries only)."""
    q = shlex.quote
    words = [f"{runtime.gnu_triple}-gcc", *runtime.cflags, f"-B{runtime.prefix}/lib"]
    return [
        "#!/bin/sh",
        "# xpcargo: the C compiler of this target's own C runtime (std-c-runtime).",
        f'exec {" ".join(q(word) for word in words)} "$@" -specs {q(runtime.prefix + "/lib/musl-gcc.specs")}',
    ]


def _must_exist(path: str, setting: str) -> str:
    """A line that fails the build with apt's `E:` form (which the failure quotes) when ``path`` is no file."""
    quoted = shlex.quote(path)
    return f"test -f {quoted} || {{ echo 'E: {setting}: '{quoted}' is not a file of the image' >&2; exit 1; }}"


def tar_command(list_file: PurePosixPath, *, source_date_epoch: int | None) -> list[str]:
    """GNU tar writing the paths listed in ``list_file`` (NUL-separated, relative to /) to stdout, reproducibly."""
    command = [
        "tar",
        "--create",
        "--file=-",
        "--directory=/",
        "--no-recursion",
        "--null",
        f"--files-from={list_file}",
        "--numeric-owner",
        "--format=posix",
        "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
    ]
    if source_date_epoch is not None:
        command += [f"--mtime=@{source_date_epoch}", "--clamp-mtime"]
    return command


def layer_paths(changes: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    """The paths the layer holds (relative, sorted: each directory before what is in it) and those it deletes."""
    kept = sorted(path.lstrip("/") for kind, path in changes if kind != "D" and not _LEFT_OUT.search(path))
    deleted = sorted(path for kind, path in changes if kind == "D" and not _LEFT_OUT.search(path))
    return kept, deleted


def add_whiteouts(tar: Path, deleted: Sequence[str], *, mtime: int) -> None:
    """Mark each deleted path in the layer the way image layers do: an empty `.wh.<name>` beside it."""
    if not deleted:
        return
    with tarfile.open(tar, "a", format=tarfile.PAX_FORMAT) as archive:
        for path in deleted:
            posix = PurePosixPath(path)
            info = tarfile.TarInfo(str(posix.parent / f".wh.{posix.name}").lstrip("/"))
            info.mtime = mtime
            archive.addfile(info)


def build(
    runtime: Containers,
    *,
    parent: str,
    layer: Layer,
    target: str,
    build_arch: str,
    locked: bool,
    source_date_epoch: int | None,
    scratch: Path,
    deb_cache: Path,
    pool_files: Sequence[Path],
    on_line: Callable[[str], None],
    on_retry: Callable[[str], None],
    first_wait: float = 4,
    std_source: Path | None = None,
    source_files: Sequence[Path] = (),
) -> BuiltLayer:
    """Install ``layer`` on the image ``parent`` and write what changed to a tar in ``scratch``; ``std_source`` is
    the std's sources' .deb when the layer builds a std, ``source_files`` the tarballs of its C parts' sources (all
    in the pool directory of ``pool_files``)."""
    inputs = scratch / "input"
    inputs.mkdir(exist_ok=True)
    deb_cache.mkdir(parents=True, exist_ok=True)
    pools = {file.parent for file in (*pool_files, *([std_source] if std_source else []), *source_files)}
    if len(pools) > 1:
        raise ValueError(f"pool .debs from several directories: {sorted(pools)}")
    request = ContainerRequest(
        image=parent,
        user="0:0",
        workdir=Path("/"),
        mounts=(
            Mount(path=Path(str(_DEB_CACHE)), source=deb_cache),
            Mount(path=Path(str(INPUT)), source=inputs, read_only=True),
            *(Mount(path=Path(str(POOL)), source=pool, read_only=True) for pool in pools),
        ),
        network="host",
        capabilities=CAPABILITIES,
    )
    script = install_script(
        layer,
        build_arch=build_arch,
        pool_debs=[file.name for file in pool_files],
        owner=invoking_user(),
    )
    std = _std_script_of(layer, std_source)
    tar = scratch / "layer.tar"

    def attempt() -> tuple[Package, ...]:
        with open_session(runtime, request, purpose="image-layer") as session:
            tail: deque[str] = deque(maxlen=40)
            pending = bytearray()

            def take(chunk: bytes) -> None:
                pending.extend(chunk)
                *lines, rest = pending.split(b"\n")
                pending[:] = rest
                for raw in lines:
                    line = raw.decode(errors="replace").rstrip()
                    if line:
                        tail.append(line)
                        if line.startswith(("E: ", "W: ", "Err:")):
                            on_line(line)

            # The .deb cache is held while apt uses it, not for the minutes a std build takes: another image build
            # installs its packages meanwhile.
            with deb_cache_held(deb_cache, on_line):
                code = session.run(["sh", "-c", script], on_stdout=take, on_stderr=take)
            if code != 0:
                _fail(target, code, list(tail), locked=locked, source=f"{layer.purpose} layer")
            if std is not None:
                code = session.run(["sh", "-c", std], on_stdout=take, on_stderr=take)
                if code != 0:
                    _fail(target, code, list(tail), locked=locked, source=f"{layer.purpose} layer's std build")
            query: list[bytes] = []
            code = session.run(
                ["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT],
                on_stdout=query.append,
                on_stderr=lambda _: None,
            )
            if code != 0:
                raise ImageBuildError(
                    f"image build for {target}: dpkg-query failed in the new layer (exit {code})",
                    hint="this is a bug in xpcargo; run again with XPCARGO_DEBUG=1 and report it",
                )
            kept, deleted = layer_paths(session.changes())
            (inputs / "paths").write_bytes(b"".join(path.encode() + b"\0" for path in kept))
            with tar.open("wb") as out:

                def write(chunk: bytes) -> None:
                    out.write(chunk)

                code = session.run(
                    tar_command(INPUT / "paths", source_date_epoch=source_date_epoch),
                    on_stdout=write,
                    on_stderr=lambda chunk: tail.append(chunk.decode(errors="replace")),
                )
            if code != 0:
                said = tail[-1].strip() if tail else f"tar exit {code}"
                raise ImageBuildError(
                    f"image build for {target}: writing the {layer.purpose} layer failed: {said}",
                    hint="check the free space in xpcargo's cache directory",
                )
            add_whiteouts(tar, deleted, mtime=source_date_epoch or 0)
            return parse_dpkg_query(b"".join(query).decode(errors="replace"))

    packages = retried(attempt, step=f"{layer.purpose} layer", target=target, on_retry=on_retry, first_wait=first_wait)
    return BuiltLayer(tar=tar, diff_id=f"sha256:{file_sha256(tar)}", packages=packages)


def _std_script_of(layer: Layer, std_source: Path | None) -> str | None:
    if layer.std_build is None:
        return None
    if std_source is None:
        raise ValueError(f"the layer builds {layer.std_build.triple}'s std, and its sources' .deb is not given")
    return std_script(layer.std_build, std_source.name)


def _fail(target: str, code: int, tail: list[str], *, locked: bool, source: str) -> None:
    errors = [line for line in tail if line.startswith(("E:", "Err:", "W: Failed", "dpkg"))] or tail[-3:]
    quoted = " | ".join(errors[-3:])
    raise_mirror_failure(tail, quoted, target=target, locked=locked, mirror=None)
    raise ImageBuildError(
        f"image build for {target} failed at step `{source}` (exit {code}): {quoted}",
        hint="check the target's packages and the project's extra-packages; the message quotes apt",
    )
