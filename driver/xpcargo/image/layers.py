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

from xpcargo.container.runtime import Containers
from xpcargo.container.session import invoking_user, open_session
from xpcargo.container.spec import ContainerRequest, Mount
from xpcargo.errors import ImageBuildError
from xpcargo.hashing import file_sha256
from xpcargo.image.debian import deb_cache_held, foreign_architectures, raise_mirror_failure, retried
from xpcargo.image.lockfile import DPKG_QUERY_FORMAT, Package, parse_dpkg_query
from xpcargo.image.plan import Layer

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
    """The shell script that installs ``layer`` as root; ``pool_debs`` are file names under POOL, ``owner`` who
    gets the .debs it adds to the shared cache (the invoking user's)."""
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
    lines += [f"rm -f {emulator_filter}", "rm -rf /var/lib/apt/lists/*"]
    return "\n".join(lines)


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
) -> BuiltLayer:
    """Install ``layer`` on the image ``parent`` and write what changed to a tar in ``scratch``."""
    inputs = scratch / "input"
    inputs.mkdir(exist_ok=True)
    deb_cache.mkdir(parents=True, exist_ok=True)
    pools = {file.parent for file in pool_files}
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
        layer, build_arch=build_arch, pool_debs=[file.name for file in pool_files], owner=invoking_user()
    )
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

            code = session.run(["sh", "-c", script], on_stdout=take, on_stderr=take)
            if code != 0:
                _fail(target, code, list(tail), locked=locked, source=f"{layer.purpose} layer")
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

    with deb_cache_held(deb_cache, on_line):
        packages = retried(
            attempt, step=f"{layer.purpose} layer", target=target, on_retry=on_retry, first_wait=first_wait
        )
    return BuiltLayer(tar=tar, diff_id=f"sha256:{file_sha256(tar)}", packages=packages)


def _fail(target: str, code: int, tail: list[str], *, locked: bool, source: str) -> None:
    errors = [line for line in tail if line.startswith(("E:", "Err:", "W: Failed", "dpkg"))] or tail[-3:]
    quoted = " | ".join(errors[-3:])
    raise_mirror_failure(tail, quoted, target=target, locked=locked, mirror=None)
    raise ImageBuildError(
        f"image build for {target} failed at step `{source}` (exit {code}): {quoted}",
        hint="check the target's packages and the project's extra-packages; the message quotes apt",
    )
