"""The glibc floor of a target: the newest ``GLIBC_x.y`` its artifacts may need, and, when a project asks for a
lower one than the image's own (``glibc = "2.36"``), the older libc that meets it.

A lower floor keeps the image, its Rust and its cross compilers. The recipe pins another Debian suite's libc6,
libc6-dev, linux-libc-dev and libgcc-s1 .debs per architecture (``glibc-floors``); they are downloaded on the host,
unpacked into ``<cache>/sysroots/glibc-<version>/<debian arch>/`` and mounted read-only at the same path. The target's
link then uses that directory as its sysroot, and the cc crate's compilers its headers:

* rustc's link: ``--sysroot`` for gcc, plus the sysroot's multiarch library directories with ``-L`` and its start
  files with ``-B``. Debian's cross compilers search their own ``/usr/<triple>/lib`` (the image's libc) before any
  sysroot directory, so ``--sysroot`` alone would still link the image's libc for a foreign target.
* C and C++ (``CFLAGS_<target>``, ``CXXFLAGS_<target>``): ``--sysroot`` and the sysroot's include directories with
  ``-isystem``, which come before the cross compiler's own ``/usr/<triple>/include``.

The rust flags go where the reproducible mode's go (``reproducible.merge_rustflags``): added to the user's own, in a
form Cargo applies to the target's units only. With ``--target`` (xpcargo always passes it) Cargo gives no rustflags
to build scripts and proc-macros, so they link against the image's libc even when the host and the target are one
triple; ``CFLAGS_<target>`` does reach C code compiled for such a build script, which is harmless (headers of an
older glibc, linked against a newer one).
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from xpcargo.artifacts import links_glibc
from xpcargo.config.targets import TargetSpec
from xpcargo.elf import version_key
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.image.recipe import ImageRecipe

# Debian's multiarch tuple of each architecture: where its libraries and arch-specific headers live.
MULTIARCH = {
    "amd64": "x86_64-linux-gnu",
    "arm64": "aarch64-linux-gnu",
    "i386": "i386-linux-gnu",
    "armhf": "arm-linux-gnueabihf",
    "armel": "arm-linux-gnueabi",
    "ppc64el": "powerpc64le-linux-gnu",
    "s390x": "s390x-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "mips64el": "mips64el-linux-gnuabi64",
    "loong64": "loongarch64-linux-gnu",
}
# Written last into a finished sysroot: the pinned .debs it was made from.
_STAMP = ".xpcargo-sysroot"


@dataclass(frozen=True, kw_only=True)
class Sysroot:
    """An older libc for one architecture, as planned: where it goes, and the .debs it is made from."""

    version: str
    suite: str
    debian_arch: str
    directory: Path
    # (url, sha256) of each .deb.
    debs: tuple[tuple[str, str], ...]

    @property
    def multiarch(self) -> str:
        return MULTIARCH[self.debian_arch]

    def rust_flags(self) -> list[str]:
        root, tuple_ = self.directory, self.multiarch
        return [
            f"-Clink-arg=--sysroot={root}",
            f"-Clink-arg=-B{root}/usr/lib/{tuple_}/",
            f"-Clink-arg=-L{root}/usr/lib/{tuple_}",
            f"-Clink-arg=-L{root}/lib/{tuple_}",
        ]

    def c_flags(self) -> list[str]:
        root, tuple_ = self.directory, self.multiarch
        return [f"--sysroot={root}", f"-isystem{root}/usr/include/{tuple_}", f"-isystem{root}/usr/include"]


@dataclass(frozen=True, kw_only=True)
class Floor:
    """What a target's artifacts may need from glibc, and the older libc to link against when that is lower than
    the image's own."""

    version: str | None
    sysroot: Sysroot | None = None


def floor_of(spec: TargetSpec, recipe: ImageRecipe, *, cache_dir: Path) -> Floor:
    """The target's floor: the one it asks for, if the recipe can meet it, else the image's own glibc; none for a
    target that links no glibc."""
    if not links_glibc(spec.triple):
        if spec.glibc is not None:
            raise ConfigError(
                f"glibc {spec.glibc} for {spec.triple}: its programs link no glibc, so there is no floor to lower",
                hint=f"remove `glibc` from the settings of {spec.triple}",
            )
        return Floor(version=None)
    if spec.glibc is None or spec.glibc == recipe.glibc:
        return Floor(version=recipe.glibc)
    floor = recipe.glibc_floors.get(spec.glibc)
    if floor is None or spec.debian_arch not in floor.debs or spec.debian_arch not in MULTIARCH:
        supported = sorted(
            (version for version, item in recipe.glibc_floors.items() if spec.debian_arch in item.debs),
            key=version_key,
        )
        told = [*supported, *([f"{recipe.glibc} (the image's own)"] if recipe.glibc else [])]
        raise ConfigError(
            f"glibc {spec.glibc} for {spec.triple}: the recipe `{recipe.name}` has no such floor for "
            f"{spec.debian_arch}",
            hint=f"supported floors for {spec.triple}: {', '.join(told) or 'none'}; set `glibc` to one of them "
            "or remove it",
        )
    return Floor(
        version=spec.glibc,
        sysroot=Sysroot(
            version=floor.version,
            suite=floor.suite,
            debian_arch=spec.debian_arch,
            directory=cache_dir / "sysroots" / f"glibc-{floor.version}" / spec.debian_arch,
            debs=tuple((f"{recipe.mirror}/{path}", digest) for path, digest in floor.debs[spec.debian_arch]),
        ),
    )


def ensure(sysroot: Sysroot, *, cache_dir: Path, on_retry: Callable[[str], None], retry_wait: float) -> bool:
    """Download and unpack ``sysroot`` unless it is there already; True when it had to be made."""
    stamp = "".join(f"{url} {digest}\n" for url, digest in sysroot.debs)
    if _holds(sysroot.directory, stamp):
        return False
    debs = [
        _download(sysroot, url, digest, cache_dir=cache_dir, on_retry=on_retry, retry_wait=retry_wait)
        for url, digest in sysroot.debs
    ]
    sysroot.directory.parent.mkdir(parents=True, exist_ok=True)
    # Unpacked beside its place and renamed into it: a reader sees the whole sysroot or none, and two processes
    # making the same one each make their own and one of them wins.
    scratch = Path(tempfile.mkdtemp(prefix=f".{sysroot.debian_arch}.", dir=sysroot.directory.parent))
    try:
        # mkdtemp's 0700 would keep the sysroot from a build running under another uid than the one that made it.
        scratch.chmod(0o755)
        for deb in debs:
            unpack_deb(deb, scratch)
        (scratch / _STAMP).write_text(stamp, encoding="utf-8")
        if _holds(sysroot.directory, stamp):
            # Another process made it meanwhile, and its build may have it mounted already: keep that one.
            return True
        if sysroot.directory.exists():
            stale = Path(tempfile.mkdtemp(prefix=f".{sysroot.debian_arch}.stale.", dir=sysroot.directory.parent))
            with contextlib.suppress(OSError):
                sysroot.directory.replace(stale / "old")
            shutil.rmtree(stale, ignore_errors=True)
        try:
            scratch.replace(sysroot.directory)
        except OSError:
            if not _holds(sysroot.directory, stamp):
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


def _holds(directory: Path, stamp: str) -> bool:
    """Whether ``directory`` is a finished sysroot of exactly these .debs."""
    try:
        return (directory / _STAMP).read_text(encoding="utf-8") == stamp
    except (OSError, UnicodeDecodeError):
        return False


def _download(
    sysroot: Sysroot, url: str, digest: str, *, cache_dir: Path, on_retry: Callable[[str], None], retry_wait: float
) -> Path:
    """One pinned .deb through the image builder's pool download: its cache, retries and hash check."""
    from xpcargo.image.debian import fetch_pool_file  # noqa: PLC0415 - tenacity and urllib on demand only

    try:
        return fetch_pool_file(
            url,
            digest,
            cache_dir / "pool",
            on_retry=on_retry,
            first_wait=retry_wait,
            step=f"glibc {sysroot.version} download",
            gone_hint="the mirror keeps only a suite's current versions: renew the pins of `glibc-floors` in the "
            "recipe (images/README.md says how)",
        )
    except ImageBuildError as error:
        detail = error.message.split(": ", 1)[-1]
        raise ImageBuildError(
            f"cannot download {sysroot.suite}'s glibc {sysroot.version} for {sysroot.debian_arch}: {detail}",
            hint=error.hint,
        ) from None


def unpack_deb(deb: Path, destination: Path) -> None:
    """Unpack the data of a .deb (an ar archive holding ``data.tar.{xz,gz,zst}``) into ``destination``.

    Absolute symbolic links (``libm.so -> /lib/<triple>/libm.so.6``) are made relative, so that they point into the
    sysroot and not at the image's own libc; nothing is written outside ``destination``.
    """
    try:
        data = _ar_member(deb.read_bytes(), "data.tar")
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            members = []
            for member in archive.getmembers():
                name = PurePosixPath(member.name.lstrip("./") or ".")
                if member.issym() and member.linkname.startswith("/"):
                    target = PurePosixPath(member.linkname.lstrip("/"))
                    member.linkname = os.path.relpath(target, name.parent)
                if member.isfile() or member.isdir() or member.issym() or member.islnk():
                    members.append(member)
            # The data filter (Python 3.12, and 3.10.12 and 3.11.4 on) keeps every member inside ``destination``.
            # An older Python has no filter argument; the .deb is then still Debian's own, checked by its sha256.
            if hasattr(tarfile, "data_filter"):
                archive.extractall(destination, members=members, filter="data")
            else:  # pragma: no cover - Python before 3.10.12
                archive.extractall(destination, members=members)  # noqa: S202 - a pinned .deb of Debian's
    except (OSError, tarfile.TarError, EOFError, ValueError) as error:
        raise ImageBuildError(
            f"cannot unpack {deb.name} into {destination}: {error}",
            hint=f"remove {deb} to download it again",
        ) from None


def _ar_member(archive: bytes, prefix: str) -> bytes:
    """The first member of a Unix ar archive whose name starts with ``prefix``."""
    if not archive.startswith(b"!<arch>\n"):
        raise ValueError("not an ar archive")
    offset = 8
    while offset + 60 <= len(archive):
        header = archive[offset : offset + 60]
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = offset + 60
        if name.startswith(prefix):
            if name.endswith(".zst"):
                raise ValueError(f"{name} is compressed with zstd, which Python's tarfile cannot read")
            return archive[start : start + size]
        offset = start + size + (size & 1)
    raise ValueError(f"no {prefix}.* member")
