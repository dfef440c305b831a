"""Where each library that a build script linked came from: a build script's OUT_DIR, the image (and the Debian
package that owns the file), the project's mounts or a `links` override.

The linker looks for `-l NAME` in the `-L` paths that build scripts printed, then in the C compiler's own library
directories (for a cross compiler, its sysroot and the target's multiarch directories). Those directories and the
image's files exist only in the build's container, so one shell command there (``probe_argv``, run by ``find``
after a successful build) prints the compiler's directories, which candidate files exist, and `dpkg -S` of those;
``attribute`` then picks, for each library, the first file the linker would take, as the linker orders them, and
says where it came from.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import ClassVar

from xpcargo.container.session import Session
from xpcargo.errors import EngineError
from xpcargo.files import write_atomically
from xpcargo.report.model import BuildReport, LinkedLibrary, Origin, PackageReport

# The C compiler that links what runs on the build machine (build scripts, proc-macros): the image's own.
HOST_CC = "cc"

# argv: target C compiler, host C compiler, the file names, the host directories mounted in the container and the
# files whose owners are known already (each one per line), then every -L directory. `-print-search-dirs` prints
# `libraries: =DIR:DIR...`; each directory is canonicalised with `pwd -P` before `dpkg -S`, which knows files by
# the path their package installed them at (`..` and symlinked dirs differ). `dpkg -S` reads the whole package
# database (0.1 to 0.2 s): it is asked only about files of the image, never about the host's, nor twice about the
# same file of the same image (see ProbeCache).
_SCRIPT = r"""
set -f
target_cc=$1 host_cc=$2 names=$3 mounted=$4 known=$5
shift 5
nl='
'
IFS=$nl
dirs() { "$1" -print-search-dirs 2>/dev/null | sed -n 's/^libraries: =//p' | tr ':' '\n'; }
target_dirs=$(dirs "$target_cc")
host_dirs=$(dirs "$host_cc")
for dir in $target_dirs; do printf 'T\t%s\n' "$dir"; done
for dir in $host_dirs; do printf 'H\t%s\n' "$dir"; done
found=
for dir in "$@" $target_dirs $host_dirs; do
  for name in $names; do
    if [ -e "$dir/$name" ]; then
      canonical="$(cd "$dir" 2>/dev/null && pwd -P)/$name"
      printf 'E\t%s\t%s\n' "$dir/$name" "$canonical"
      for host in $mounted; do
        case "$canonical" in "$host"/*) continue 2 ;; esac
      done
      case "$nl$known$nl" in *"$nl$canonical$nl"*) continue ;; esac
      found="$found
$canonical"
    fi
  done
done
if [ -n "$found" ]; then
  found=$(printf '%s\n' $found | sort -u)
  dpkg -S $found 2>/dev/null | sed 's/^/O\t/'
fi
exit 0
"""

# The probe's own output is a few lines per library; more than this is not the probe speaking.
MAX_PROBE_BYTES = 4 << 20
# Linux takes 2 MiB of arguments and environment together; the build's environment needs some of it.
MAX_ARGV_BYTES = 1 << 20


@dataclass(frozen=True)
class Request:
    """A library as a build script named it: ``static=z``, ``dylib=ssl``, ``z``, ``static:+verbatim=libz.a``."""

    name: str
    kind: str | None
    file_names: tuple[str, ...]


def parse_library(entry: str) -> Request | None:
    """``[KIND[:MODIFIERS]=]NAME[:RENAME]``, as rustc's `-l` takes it; None for what no Linux linker searches."""
    spec, has_kind, name = entry.rpartition("=")
    kind, _, modifiers = spec.partition(":") if has_kind else ("", "", "")
    name = name.split(":", 1)[0]
    if not name or kind == "framework" or "/" in name:
        return None
    if "+verbatim" in modifiers.split(","):
        names: tuple[str, ...] = (name,)
    elif kind == "static":
        names = (f"lib{name}.a",)
    else:
        # A dylib, or no kind: ld takes the shared library first, in each directory.
        names = (f"lib{name}.so", f"lib{name}.a")
    return Request(name=name, kind=kind or None, file_names=names)


def search_path(entry: str) -> str:
    """The directory of a ``rustc-link-search`` entry (``native=/x``, ``all=/x``, ``/x``)."""
    kind, has_kind, path = entry.partition("=")
    return path if has_kind and kind in ("native", "all", "dependency", "crate", "framework") else entry


@dataclass(frozen=True)
class Probe:
    """What the probe saw in the container."""

    target_dirs: tuple[str, ...] = ()
    host_dirs: tuple[str, ...] = ()
    # Candidate path as searched -> the same file with its directory canonical.
    existing: Mapping[str, str] = field(default_factory=dict)
    # Canonical path -> the Debian packages that own it, as `dpkg -S` lists them ("" when none does).
    owners: Mapping[str, str] = field(default_factory=dict)


def _requests(report: BuildReport) -> list[Request]:
    return [
        request for package in report.packages for entry in package.linked_libs if (request := parse_library(entry))
    ]


def probe_argv(
    report: BuildReport, *, target_cc: str, mounted: Sequence[str] = (), known: Iterable[str] = ()
) -> list[str] | None:
    """The command that probes the container for ``report``'s libraries; None when no library needs it.

    ``mounted``: the host directories the container mounts, whose files no Debian package of the image owns;
    ``known``: the files whose owners an earlier probe of the same image found (see ``ProbeCache``).
    """
    requests = _requests(report)
    if not requests:
        return None
    names = sorted({name for request in requests for name in request.file_names})
    dirs = sorted({search_path(path) for package in report.packages for path in package.linked_paths})
    hosts = "\n".join(posixpath.normpath(path) for path in mounted)
    argv = ["sh", "-c", _SCRIPT, "probe", target_cc, HOST_CC, "\n".join(names), hosts, "\n".join(sorted(known)), *dirs]
    # Real builds name some dozens of libraries and paths; a runaway build script's thousands would not fit in one
    # command line, and their origins are not worth a second one.
    return argv if sum(map(len, argv)) <= MAX_ARGV_BYTES else None


def read_probe(output: bytes, *, mounted: Sequence[str] = (), known: Mapping[str, str] | None = None) -> Probe:
    """The probe's output; with the owners it was not asked about (``known``), and "" for each image file it was
    asked about that no package owns."""
    target_dirs: list[str] = []
    host_dirs: list[str] = []
    existing: dict[str, str] = {}
    owners: dict[str, str] = {}
    for raw in output.decode("utf-8", "replace").splitlines():
        kind, _, rest = raw.partition("\t")
        if kind == "T":
            target_dirs.append(rest)
        elif kind == "H":
            host_dirs.append(rest)
        elif kind == "E":
            searched, _, canonical = rest.partition("\t")
            existing.setdefault(searched, canonical)
        elif kind == "O" and not rest.startswith("diversion by "):
            # `zlib1g-dev:arm64: /usr/lib/aarch64-linux-gnu/libz.so`; several owners are comma-separated.
            packages, _, path = rest.rpartition(": ")
            if packages and path:
                owners[path] = packages
    known = known or {}
    for canonical in existing.values():
        if canonical in known:
            owners[canonical] = known[canonical]
        elif not _under(canonical, mounted):
            owners.setdefault(canonical, "")
    return Probe(tuple(target_dirs), tuple(host_dirs), existing, owners)


@dataclass(frozen=True, kw_only=True)
class Places:
    """The host directories the build's container mounts, by what put them there."""

    # Every build script's OUT_DIR is under the target dir.
    target_dir: str
    mounts: tuple[str, ...] = ()
    # Every other mount: the workspace, path dependencies, CARGO_HOME, links overrides' paths.
    project: tuple[str, ...] = ()


def _under(path: str, directories: Iterable[str]) -> bool:
    normal = PurePosixPath(posixpath.normpath(path))
    return any(normal.is_relative_to(posixpath.normpath(directory)) for directory in directories)


def find(
    session: Session, report: BuildReport, *, target_cc: str, places: Places, cache: ProbeCache | None
) -> BuildReport:
    """``report`` with its libraries' origins: from what earlier probes of the same image found, and the host's own
    files, when that answers everything; else asked of the build's own container, with one command."""
    if not _requests(report):
        return report
    known = cache.load() if cache is not None else Known()
    warm = _from_known(report, known, target_cc=target_cc, mounted=places.project)
    if warm is not None:
        return attribute(report, warm, places)
    argv = probe_argv(report, target_cc=target_cc, mounted=places.project, known=known.owners)
    if argv is None:
        return report
    output = bytearray()

    def keep(chunk: bytes) -> None:
        if len(output) < MAX_PROBE_BYTES:
            output.extend(chunk[: MAX_PROBE_BYTES - len(output)])

    try:
        session.run(argv, on_stdout=keep, on_stderr=lambda _: None)
    except EngineError:
        # The build succeeded; where its libraries came from is not worth failing it for.
        return report
    probe = read_probe(bytes(output), mounted=places.project, known=known.owners)
    if cache is not None and probe.target_dirs and probe.host_dirs:
        cache.save(_learned(known, probe, report, target_cc=target_cc, mounted=places.project))
    return attribute(report, probe, places)


def _candidates(report: BuildReport, target_dirs: Sequence[str], host_dirs: Sequence[str]) -> list[str]:
    """Every path the probe tests, spelled as the probe spells it."""
    names = sorted({name for request in _requests(report) for name in request.file_names})
    given = sorted({search_path(path) for package in report.packages for path in package.linked_paths})
    return [f"{directory}/{name}" for directory in (*given, *target_dirs, *host_dirs) for name in names]


def _from_known(report: BuildReport, known: Known, *, target_cc: str, mounted: Sequence[str]) -> Probe | None:
    """The probe's answer without the probe, or None when the image's part of it is not all known."""
    target_dirs, host_dirs = known.dirs.get(target_cc), known.dirs.get(HOST_CC)
    if target_dirs is None or host_dirs is None:
        return None
    existing: dict[str, str] = {}
    for path in _candidates(report, target_dirs, host_dirs):
        if _under(path, mounted):
            # Mounted at the same path: the host sees what the container saw.
            if os.path.exists(path):  # noqa: PTH110 - a path as the probe spells it, `//` included
                existing[path] = path
            continue
        canonical = known.files.get(path)
        if canonical is None or (canonical and canonical not in known.owners):
            return None
        if canonical:
            existing[path] = canonical
    return Probe(target_dirs, host_dirs, existing, known.owners)


def _learned(known: Known, probe: Probe, report: BuildReport, *, target_cc: str, mounted: Sequence[str]) -> Known:
    files = dict(known.files)
    for path in _candidates(report, probe.target_dirs, probe.host_dirs):
        if not _under(path, mounted):
            files[path] = probe.existing.get(path, "")
    dirs = {**known.dirs, target_cc: probe.target_dirs, HOST_CC: probe.host_dirs}
    return Known(dirs=dirs, files=files, owners={**known.owners, **probe.owners})


def attribute(report: BuildReport, probe: Probe, places: Places) -> BuildReport:
    """``report`` with each package's ``libraries``: the file the linker would take for each, and its origin."""
    target_paths = [p for package in report.packages if not package.host for p in _dirs(package)]
    host_paths = [p for package in report.packages if package.host for p in _dirs(package)]
    packages = []
    for package in report.packages:
        others = host_paths if package.host else target_paths
        defaults = probe.host_dirs if package.host else probe.target_dirs
        order = _unique([*_dirs(package), *others, *defaults])
        libraries = [
            _find(request, order, package, probe, places)
            for entry in package.linked_libs
            if (request := parse_library(entry))
        ]
        packages.append(replace(package, libraries=tuple(libraries)))
    return replace(report, packages=tuple(packages))


def _dirs(package: PackageReport) -> list[str]:
    return [search_path(path) for path in package.linked_paths]


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _find(
    request: Request, order: Sequence[str], package: PackageReport, probe: Probe, places: Places
) -> LinkedLibrary:
    for directory in order:
        for name in request.file_names:
            canonical = probe.existing.get(f"{directory}/{name}")
            if canonical is None:
                continue
            path = posixpath.normpath(f"{directory}/{name}")
            origin = _origin(path, directory, package, places)
            return LinkedLibrary(
                name=request.name,
                kind=request.kind,
                path=path,
                origin=origin,
                debian_package=(probe.owners.get(canonical) or None) if origin is Origin.IMAGE else None,
            )
    return LinkedLibrary(name=request.name, kind=request.kind, path=None, origin=Origin.NOT_FOUND)


def _origin(path: str, directory: str, package: PackageReport, places: Places) -> Origin:
    if package.overridden and directory in _dirs(package):
        return Origin.LINKS_OVERRIDE
    if _under(path, [places.target_dir]):
        return Origin.OUT_DIR
    if _under(path, places.mounts):
        return Origin.MOUNT
    if _under(path, places.project):
        return Origin.PROJECT
    return Origin.IMAGE


@dataclass(frozen=True, kw_only=True)
class Known:
    """What earlier probes of one image found: each C compiler's library directories, whether each path tested
    exists (its canonical path, or "" when it does not), and the owner of each file ("" when no package owns it)."""

    dirs: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    files: Mapping[str, str] = field(default_factory=dict)
    owners: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeCache:
    """What the probe found in one image, kept in the target dir: an image's files and their owners do not change
    while the image is the same, so a build that links what an earlier one linked asks the container nothing.

    A cache of another image is not read. One that cannot be read or written is no cache: the probe runs.
    """

    path: Path
    image: str

    # More is not a real build's libraries.
    MAX_ENTRIES: ClassVar[int] = 50_000

    def load(self) -> Known:
        try:
            document = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return Known()
        if not isinstance(document, dict) or document.get("image") != self.image:
            return Known()
        dirs = document.get("dirs")
        return Known(
            dirs={
                cc: tuple(paths)
                for cc, paths in (dirs.items() if isinstance(dirs, dict) else ())
                if isinstance(paths, list) and all(isinstance(path, str) for path in paths)
            },
            files=_strings(document.get("files")),
            owners=_strings(document.get("owners")),
        )

    def save(self, known: Known) -> None:
        if len(known.files) + len(known.owners) > self.MAX_ENTRIES:
            return
        document = {
            "image": self.image,
            "dirs": {cc: list(paths) for cc, paths in sorted(known.dirs.items())},
            "files": dict(sorted(known.files.items())),
            "owners": dict(sorted(known.owners.items())),
        }
        # A cache: a probe that cannot be kept is run again next time.
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, json.dumps(document, indent=1))


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {key: item for key, item in value.items() if isinstance(key, str) and isinstance(item, str)}
