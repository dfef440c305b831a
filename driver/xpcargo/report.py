"""The build-script report: what every build script (or ``links`` override) of the last build gave Cargo.

After each Cargo command xpcargo records, per package whose build script ran (Cargo's ``build-script-executed``
message says which, and where), the libraries, search paths, ``cfg``s and environment the script gave Cargo, plus two
things Cargo reports nowhere: the ``links`` metadata that dependents receive as ``DEP_<LINKS>_<KEY>`` and the build
script's warnings. All of them are read from the ``output`` file Cargo keeps beside the script's OUT_DIR, with the
parser in ``cargo.protocol`` (Cargo builds its message from the same file with the same rules), a line at a time: a
build script may print gigabytes, and the report keeps only the first entries of each (see ``MAX_ENTRIES``).

Cargo emits no ``build-script-executed`` message for a package whose ``links`` is overridden in
``[target.<triple>.<links>]`` of its config (checked with Cargo 1.95): the script neither builds nor runs. Such a
package is reported from the override table instead, and marked ``overridden``.
"""

from __future__ import annotations

import enum
import errno
import json
import os
import re
import stat
import tempfile
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePath
from typing import IO, TYPE_CHECKING, Any, TypeGuard, TypeVar

from xpcargo.cargo import args as cargo_args
from xpcargo.cargo.protocol import (
    TARGET_SETTING_KEYS,
    Instruction,
    LongLine,
    envify,
    instructions,
    output_lines,
)
from xpcargo.config.links import LinksOverrides, RustcFlagsError, split_rustc_flags
from xpcargo.config.targets import check_triple
from xpcargo.errors import BuildScriptProtocolError, ReportError
from xpcargo.pipeline.artifacts import FinalArtifact, GlibcNeed, glibc_need
from xpcargo.pipeline.floor import links_glibc
from xpcargo.ui import escape_controls

if TYPE_CHECKING:
    from xpcargo.context import Context

# 2 added `glibc_floor` and `artifacts`; a report of version 1 is still read (with neither).
SCHEMA_VERSION = 2

# What the report keeps of one build script's output. Cargo keeps all of it (a build script printing a gigabyte
# leaves a gigabyte in `output`), but a report is read by a person or a script, and xpcargo must stay small while
# it reads: real build scripts print a handful of instructions, so these caps only ever cut a runaway or hostile
# script. What is cut is counted and named in a last warning that starts with CAPPED_MARKER.
# The first MAX_ENTRIES of each list (libraries, paths, cfgs, env and metadata names, warnings).
MAX_ENTRIES = 1000
# Text kept per package, over all its lists: 1000 entries of 4 KiB each in six lists would still be 24 MiB.
MAX_PACKAGE_CHARS = 256 * 1024
# A longer line is not interpreted at all (its start alone could be read as another instruction than Cargo read).
MAX_LINE_BYTES = 64 * 1024
CAPPED_MARKER = "xpcargo report capped:"
# Cargo writes OUT_DIR's path into `root-output`; anything longer than a path can be is not one.
_MAX_PATH_BYTES = 4096

_PACKAGE_FIELDS = (
    "package",
    "version",
    "links",
    "out_dir",
    "linked_libs",
    "linked_paths",
    "cfgs",
    "env",
    "metadata",
    "warnings",
    "overridden",
)
# Fields added since schema version 1 was written: a report without them still loads.
_ADDED_PACKAGE_FIELDS = ("host", "libraries")
_LIBRARY_FIELDS = ("name", "kind", "path", "origin", "debian_package")
_REPORT_FIELDS = ("schema_version", "target", "profile", "success", "packages")
_REPORT_FIELDS_V2 = (*_REPORT_FIELDS, "glibc_floor", "artifacts")
_ARTIFACT_FIELDS = ("path", "kinds", "package_id", "machine", "glibc")

# Override keys that are neither metadata nor part of the report. Cargo refuses `warning` and the `rerun-if-*` keys
# (the book says they are ignored); `rustc-link-arg-bin` is missing on purpose: Cargo takes it as metadata there.
_OVERRIDE_NOT_METADATA = frozenset(
    {
        "rustc-check-cfg",
        "rustc-link-arg",
        "rustc-link-arg-cdylib",
        "rustc-cdylib-link-arg",
        "rustc-link-arg-bins",
        "rustc-link-arg-tests",
        "rustc-link-arg-benches",
        "rustc-link-arg-examples",
        "warning",
        "rerun-if-changed",
        "rerun-if-env-changed",
    }
)
_PATH_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")

_T = TypeVar("_T")


class Origin(str, enum.Enum):
    """Where a linked library was found, on the paths the linker searches for it."""

    # Under a build script's OUT_DIR: built or unpacked by the build (bundled, vendored).
    OUT_DIR = "out_dir"
    # In the image: a Debian package's file (``debian_package`` says which), or one no package owns.
    IMAGE = "image"
    # Under a directory the project mounts (`mounts`).
    MOUNT = "mount"
    # Under a search path of a `links` override.
    LINKS_OVERRIDE = "links_override"
    # Elsewhere in the project's own directories (the workspace, a path dependency, CARGO_HOME).
    PROJECT = "project"
    # On none of the paths searched: linked by a flag the report does not follow, or not at all (`check`).
    NOT_FOUND = "not_found"


@dataclass(frozen=True, kw_only=True)
class LinkedLibrary:
    """One entry of ``linked_libs``, and the file the linker finds for it."""

    # The library's name, without kind or modifiers (`z` of `static=z`).
    name: str
    # `static`, `dylib`, or None when the build script named no kind (the linker takes a shared library first).
    kind: str | None
    path: str | None
    origin: Origin
    # The Debian package (or packages, comma-separated, as `dpkg -S` says) that owns ``path``, for the image.
    debian_package: str | None = None


@dataclass(frozen=True, kw_only=True)
class PackageReport:
    """One package's build script (or ``links`` override), as Cargo used it for the target."""

    package: str
    version: str
    links: str | None
    # Absolute; None when an override replaced the build script.
    out_dir: str | None
    linked_libs: tuple[str, ...]
    linked_paths: tuple[str, ...]
    cfgs: tuple[str, ...]
    env: dict[str, str]
    # Normalised KEY -> VALUE, exactly as immediate dependents receive DEP_<LINKS>_<KEY>.
    metadata: dict[str, str]
    warnings: tuple[str, ...]
    overridden: bool
    # The build script ran for the build machine, not the target: a build-dependency's or a proc-macro's.
    host: bool = False
    # Where each of ``linked_libs`` came from, after a successful build (see pipeline.origins).
    libraries: tuple[LinkedLibrary, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ArtifactReport:
    """A final artifact of the build (what Cargo named: binaries, shared and static libraries, test executables)
    and what it needs from glibc."""

    path: str
    kinds: tuple[str, ...]
    package_id: str
    need: GlibcNeed


@dataclass(frozen=True, kw_only=True)
class BuildReport:
    """The build scripts of one Cargo command for one target and profile, and the artifacts it made."""

    target: str
    profile: str
    success: bool
    # Sorted by package name, then version.
    packages: tuple[PackageReport, ...]
    # The newest glibc the target's artifacts may need (the image's own, or the project's lower floor).
    glibc_floor: str | None = None
    artifacts: tuple[ArtifactReport, ...] = ()


def artifact_reports(found: Iterable[FinalArtifact]) -> tuple[ArtifactReport, ...]:
    """Each artifact with its glibc need, read from the file now."""
    return tuple(
        ArtifactReport(
            path=str(item.path),
            kinds=tuple(sorted(item.kinds)),
            package_id=item.package_id,
            need=glibc_need(item.path),
        )
        for item in found
    )


def collect(
    *,
    messages: Iterable[Mapping[str, Any]],
    cargo_metadata: Mapping[str, Any],
    links_overrides: LinksOverrides,
    target: str,
    profile: str,
    success: bool,
) -> BuildReport:
    """Build the report of one Cargo command from its JSON messages and ``cargo metadata --format-version 1``.

    ``links_overrides`` are the ``[target.<target>.<links>]`` tables Cargo used for this build. Paths in
    the messages must be valid on this machine (xpcargo mounts every directory at its own path).
    """
    packages = {package["id"]: package for package in cargo_metadata["packages"]}
    target_tree = _target_dir_name(target)
    seen: set[str] = set()
    in_target_tree: set[str] = set()
    executed: dict[str, list[Mapping[str, Any]]] = {}
    for message in messages:
        package_id = message.get("package_id")
        if not isinstance(package_id, str):
            continue
        seen.add(package_id)
        if any(target_tree in PurePath(path).parts for path in _message_paths(message)):
            in_target_tree.add(package_id)
        if message.get("reason") == "build-script-executed":
            executed.setdefault(package_id, []).append(message)
    # With `--target`, Cargo builds the target's units under <target-dir>/<triple>/ and host units (build scripts'
    # own dependencies, proc macros) elsewhere; without it, everything is built for the target.
    in_target_graph = in_target_tree if in_target_tree else seen

    entries: list[tuple[str, PackageReport]] = []
    for package_id in seen:
        package = packages.get(package_id)
        if package is None:
            raise ReportError(
                f"Cargo built `{package_id}`, which `cargo metadata` does not list",
                hint="read `cargo metadata` from the workspace that was built",
            )
        links = package.get("links")
        override = links_overrides.get(links) if links is not None and links not in TARGET_SETTING_KEYS else None
        # Target overrides replace only the target's unit; a host-only use of the package still runs its script.
        if override is not None and package_id in in_target_graph:
            entries.append((package_id, _from_override(package, links, override)))
        elif package_id in executed:
            # The target's run beats a host run of the same package; among equals the last message is the newest.
            runs = executed[package_id]
            targets = [run for run in runs if target_tree in PurePath(str(run.get("out_dir"))).parts]
            entry = _from_message(package, (targets or runs)[-1])
            # Cargo's message has no field that says for which platform a script ran; with --target, the OUT_DIR
            # does: <target-dir>/<triple>/... for the target, <target-dir>/<profile>/build/... for the host.
            host = not targets and bool(in_target_tree)
            entries.append((package_id, replace(entry, host=True) if host else entry))
    entries.sort(key=lambda entry: (entry[1].package, _version_key(entry[1].version), entry[0]))
    return BuildReport(target=target, profile=profile, success=success, packages=tuple(e for _, e in entries))


def _message_paths(message: Mapping[str, Any]) -> list[str]:
    filenames = message.get("filenames")
    paths = [message.get("out_dir"), *(filenames if isinstance(filenames, list) else ())]
    return [path for path in paths if isinstance(path, str)]


def _from_message(package: Mapping[str, Any], message: Mapping[str, Any]) -> PackageReport:
    name, version, links = package["name"], package["version"], package.get("links")
    out_dir = message.get("out_dir")
    if not _is_path(out_dir):
        raise ReportError(f"Cargo's `build-script-executed` message for {name} v{version} has no usable `out_dir`")
    # Cargo keeps the script's stdout beside OUT_DIR, and in `root-output` the OUT_DIR it had when the script ran.
    run_dir = Path(out_dir).parent
    generated_in = _read_root_output(run_dir / "root-output") or out_dir
    kept = _Kept(links=links)
    try:
        with _open_regular(run_dir / "output") as stream:
            for item in instructions(
                output_lines(stream, max_bytes=MAX_LINE_BYTES),
                package=f"{name} v{version}",
                moved_out_dir=(generated_in, out_dir),
            ):
                kept.add(item)
    except OSError as error:
        raise ReportError(
            f"cannot read the output of the build script of {name} v{version}: {error.strerror or error}",
            hint=f"Cargo keeps it in {run_dir}; build again if the target directory was cleaned meanwhile",
        ) from None
    except BuildScriptProtocolError as error:
        # Cargo read the same file and accepted it, so it changed since (or Cargo and this parser disagree).
        raise ReportError(
            f"the output of the build script of {name} v{version} changed after Cargo read it: "
            + escape_controls(error.message),
            hint="build again; if this repeats, report it as a bug in xpcargo",
        ) from None
    return kept.package_report(package=name, version=version, out_dir=out_dir)


def _is_path(value: object) -> TypeGuard[str]:
    """An absolute path this machine can open: Cargo writes no other, but its stdout is not only Cargo's."""
    return _is_text(value) and isinstance(value, str) and value.startswith("/") and "\0" not in value


def _open_regular(path: Path) -> IO[bytes]:
    """``path`` opened for reading, if it is a regular file and not a symbolic link.

    Build scripts run as the user and can replace files beside their OUT_DIR; a symbolic link would be followed on
    this machine, and a FIFO or /dev/zero would keep xpcargo reading forever.
    """
    try:
        # O_NONBLOCK: opening a FIFO would otherwise wait for a writer.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        if path.is_symlink():
            raise OSError(error.errno, f"{path.name} is a symbolic link, not the file Cargo writes") from None
        raise
    stream = os.fdopen(descriptor, "rb")
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        stream.close()
        raise OSError(errno.EINVAL, f"{path.name} is not a regular file")
    return stream


def _read_root_output(path: Path) -> str | None:
    """The OUT_DIR Cargo recorded in ``root-output``, or None when it is missing or is no absolute path."""
    try:
        with _open_regular(path) as stream:
            data = stream.read(_MAX_PATH_BYTES + 1)
    except OSError:
        return None
    text = os.fsdecode(data)
    return text if len(data) <= _MAX_PATH_BYTES and _is_path(text) else None


# The report's lists and tables, and what each is called in the capping warning.
_LISTS = {"link_libs": "linked libs", "link_search": "linked paths", "cfgs": "cfgs", "warnings": "warnings"}
_TABLES = {"env": "env variables", "metadata": "metadata keys"}


class _Kept:
    """One package's lists being read, within the caps, with a count of what was not kept."""

    def __init__(self, *, links: str | None) -> None:
        self._links = links
        self._lists: dict[str, list[str]] = {field: [] for field in _LISTS}
        self._tables: dict[str, dict[str, str]] = {field: {} for field in _TABLES}
        self._chars = 0
        self._not_kept: Counter[str] = Counter()
        self._long_lines = 0

    def add(self, item: Instruction | LongLine) -> None:
        if not isinstance(item, Instruction):
            self._long_lines += 1
        elif item.field in _LISTS and isinstance(item.value, str):
            self._append(item.field, item.value)
        elif item.field == "env" and isinstance(item.value, tuple):
            self._put("env", *item.value)
        elif item.field == "metadata" and isinstance(item.value, tuple) and self._links is not None:
            # Normalised as dependents read it; Cargo sets the variables in printed order, so a later value wins.
            # Without `links` there is no variable name to pass metadata in, so Cargo passes none.
            self._put("metadata", envify(item.value[0]), item.value[1])

    def _append(self, field: str, value: str) -> None:
        values = self._lists[field]
        if len(values) < MAX_ENTRIES and self._chars + len(value) <= MAX_PACKAGE_CHARS:
            values.append(value)
            self._chars += len(value)
        else:
            self._not_kept[_LISTS[field]] += 1

    def _put(self, field: str, key: str, value: str) -> None:
        table = self._tables[field]
        old = table.get(key)
        grown = len(value) - len(old) if old is not None else len(key) + len(value)
        if (old is not None or len(table) < MAX_ENTRIES) and self._chars + grown <= MAX_PACKAGE_CHARS:
            table[key] = value
            self._chars += grown
        else:
            self._not_kept[_TABLES[field]] += 1

    def package_report(self, *, package: str, version: str, out_dir: str) -> PackageReport:
        warnings = list(self._lists["warnings"])
        cut = [f"{label} {count}" for label, count in self._not_kept.items()]
        if self._long_lines:
            cut.append(f"lines over {MAX_LINE_BYTES // 1024} KiB {self._long_lines}")
        if cut:
            warnings.append(
                f"{CAPPED_MARKER} not kept: {', '.join(cut)} (xpcargo keeps the first {MAX_ENTRIES} entries of each "
                f"list, {MAX_PACKAGE_CHARS // 1024} KiB of text per package, and reads lines up to "
                f"{MAX_LINE_BYTES // 1024} KiB; Cargo's `output` file beside out_dir has everything)"
            )
        return PackageReport(
            package=package,
            version=version,
            links=self._links,
            out_dir=out_dir,
            linked_libs=tuple(self._lists["link_libs"]),
            linked_paths=tuple(self._lists["link_search"]),
            cfgs=tuple(self._lists["cfgs"]),
            env=self._tables["env"],
            metadata=self._tables["metadata"],
            warnings=tuple(warnings),
            overridden=False,
        )


def _from_override(package: Mapping[str, Any], links: str, table: Mapping[str, Any]) -> PackageReport:
    # Values of the wrong type are skipped: Cargo refuses to build with them, so they never reach a successful
    # build's report, and a failed build's report is never shown.
    libs: list[str] = []
    paths: list[str] = []
    cfgs: list[str] = []
    env: dict[str, str] = {}
    metadata: dict[str, str] = {}
    # Cargo reads the keys sorted: that fixes the order of libraries and paths, and which of two metadata keys that
    # normalise alike (`Some-Key`, `some_key`) reaches dependents.
    for key, value in sorted(table.items(), key=lambda item: item[0]):
        if key == "rustc-flags":
            flag_paths, flag_libs = _override_flags(value)
            paths.extend(flag_paths)
            libs.extend(flag_libs)
        elif key == "rustc-link-lib":
            libs.extend(_toml_strings(value))
        elif key == "rustc-link-search":
            paths.extend(_toml_strings(value))
        elif key == "rustc-cfg":
            cfgs.extend(_toml_strings(value))
        elif key == "rustc-env":
            if isinstance(value, Mapping):
                env.update((name, text) for name, text in value.items() if isinstance(text, str))
        elif key not in _OVERRIDE_NOT_METADATA and isinstance(value, str):
            metadata[envify(key)] = value
    return PackageReport(
        package=package["name"],
        version=package["version"],
        links=links,
        out_dir=None,
        linked_libs=tuple(libs),
        linked_paths=tuple(paths),
        cfgs=tuple(cfgs),
        env=env,
        metadata=metadata,
        warnings=(),
        overridden=True,
    )


def _override_flags(value: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if isinstance(value, str):
        try:
            return split_rustc_flags(value)
        except RustcFlagsError:
            pass
    return (), ()


def _toml_strings(value: object) -> list[str]:
    # Tuples too: overrides from xpcargo's own configuration may arrive frozen.
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return list(value)
    return []


def _version_key(version: str) -> tuple[tuple[int, ...], int, tuple[tuple[int, int, str], ...]]:
    """Semantic-version order, so that 0.10.0 sorts after 0.9.0 and 1.0.0-rc.1 before 1.0.0."""
    release, _, pre = version.partition("+")[0].partition("-")
    numbers = tuple(int(part) if part.isascii() and part.isdigit() else -1 for part in release.split("."))
    identifiers = tuple(
        (0, int(part), "") if part.isascii() and part.isdigit() else (1, 0, part)
        for part in (pre.split(".") if pre else ())
    )
    return numbers, 0 if pre else 1, identifiers


def _target_dir_name(target: str) -> str:
    # Cargo names a target's directory after the triple, or after the file stem of a custom target's JSON file.
    return PurePath(target).stem if target.endswith(".json") else target


def report_path(target_dir: Path, target: str, profile: str) -> Path:
    """Where the report of the last ``profile`` build for ``target`` lives."""
    target_name = _target_dir_name(target)
    for part in (target_name, profile):
        if not _PATH_COMPONENT.fullmatch(part) or part in {".", ".."}:
            raise ReportError(
                f"`{part}` is not usable in a file name",
                hint="a target triple or a profile name has only letters, digits, `_`, `-` and `.`",
            )
    return target_dir / "xpcargo" / "build-scripts" / target_name / f"{profile}.json"


def _package_json(package: PackageReport) -> dict[str, Any]:
    return {
        "package": package.package,
        "version": package.version,
        "links": package.links,
        "out_dir": package.out_dir,
        "linked_libs": list(package.linked_libs),
        "linked_paths": list(package.linked_paths),
        "cfgs": list(package.cfgs),
        "env": dict(package.env),
        "metadata": dict(package.metadata),
        "warnings": list(package.warnings),
        "overridden": package.overridden,
        "host": package.host,
        "libraries": [
            {
                "name": library.name,
                "kind": library.kind,
                "path": library.path,
                "origin": library.origin.value,
                "debian_package": library.debian_package,
            }
            for library in package.libraries
        ],
    }


def _artifact_json(artifact: ArtifactReport) -> dict[str, Any]:
    return {
        "path": artifact.path,
        "kinds": list(artifact.kinds),
        "package_id": artifact.package_id,
        "machine": artifact.need.machine,
        "glibc": artifact.need.glibc,
    }


def save(report: BuildReport, path: Path) -> None:
    """Write the report so that a reader sees the old file or the new one, never half of one."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "target": report.target,
        "profile": report.profile,
        "success": report.success,
        "packages": [_package_json(package) for package in report.packages],
        "glibc_floor": report.glibc_floor,
        "artifacts": [_artifact_json(artifact) for artifact in report.artifacts],
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # In the same directory, so that os.replace is a rename within one file system.
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise ReportError(f"cannot write the build-script report {path}: {error}") from None
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        # Path.replace is os.replace: an atomic rename over the old report.
        Path(temporary).replace(path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ReportError(f"cannot write the build-script report {path}: {error}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class _CorruptError(Exception):
    pass


def load_last(context: Context, triple: str, args: Sequence[str]) -> BuildReport:
    """`xpcargo report`: the report of the last build for ``triple`` with these Cargo arguments (profile, manifest,
    target dir). Here rather than beside the build, so that reading a report does not import the build."""
    check_triple(triple)
    parsed = cargo_args.parse_cargo_args(args)
    project = context.project(parsed)
    return load(report_path(project.target_dir, triple, cargo_args.profile_dir_name(parsed.profile)))


def load(path: Path) -> BuildReport:
    """Read a report written by ``save``; only the report of a successful build is ever returned."""
    # report_path puts each target in a directory of its own name.
    hint = f"run `xpcargo build --target {path.parent.name}` first"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"no build-script report at {path}", hint=hint) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ReportError(f"cannot read the build-script report {path}: {error}", hint=hint) from None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ReportError(f"the build-script report {path} is not valid JSON ({error})", hint=hint) from None
    try:
        report = _report_from_json(document)
    except _CorruptError as error:
        raise ReportError(f"the build-script report {path} is corrupt: {error}", hint=hint) from None
    if not report.success:
        raise ReportError(
            f"the last {report.profile} build for {report.target} failed, so its build-script report is incomplete",
            hint=f"fix the build, then run `xpcargo build --target {report.target}` again",
        )
    return report


def _report_from_json(document: object) -> BuildReport:
    version = document.get("schema_version") if isinstance(document, dict) else None
    if isinstance(document, dict) and (type(version) is not int or version not in (1, SCHEMA_VERSION)):
        raise _CorruptError(f"schema version {version!r} is not {SCHEMA_VERSION}")
    fields = _object(document, _REPORT_FIELDS if version == 1 else _REPORT_FIELDS_V2, "the report")
    packages = fields["packages"]
    if not isinstance(packages, list):
        raise _CorruptError("`packages` is not a list")
    artifacts = fields.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise _CorruptError("`artifacts` is not a list")
    floor = fields.get("glibc_floor")
    return BuildReport(
        target=_typed(fields, "target", str),
        profile=_typed(fields, "profile", str),
        success=_typed(fields, "success", bool),
        packages=tuple(_package_from_json(package) for package in packages),
        glibc_floor=None if floor is None else _typed(fields, "glibc_floor", str),
        artifacts=tuple(_artifact_from_json(artifact) for artifact in artifacts),
    )


def _artifact_from_json(value: object) -> ArtifactReport:
    fields = _object(value, _ARTIFACT_FIELDS, "an artifact")
    return ArtifactReport(
        path=_typed(fields, "path", str),
        kinds=_strings(fields, "kinds"),
        package_id=_typed(fields, "package_id", str),
        need=GlibcNeed(
            machine=None if fields["machine"] is None else _typed(fields, "machine", str),
            glibc=None if fields["glibc"] is None else _typed(fields, "glibc", str),
        ),
    )


def _package_from_json(value: object) -> PackageReport:
    fields = _object(value, _PACKAGE_FIELDS, "a package", added=_ADDED_PACKAGE_FIELDS)
    libraries = fields.get("libraries", [])
    if not isinstance(libraries, list):
        raise _CorruptError("`libraries` is not a list")
    return PackageReport(
        package=_typed(fields, "package", str),
        version=_typed(fields, "version", str),
        links=None if fields["links"] is None else _typed(fields, "links", str),
        out_dir=None if fields["out_dir"] is None else _typed(fields, "out_dir", str),
        linked_libs=_strings(fields, "linked_libs"),
        linked_paths=_strings(fields, "linked_paths"),
        cfgs=_strings(fields, "cfgs"),
        env=_string_map(fields, "env"),
        metadata=_string_map(fields, "metadata"),
        warnings=_strings(fields, "warnings"),
        overridden=_typed(fields, "overridden", bool),
        host=_typed(fields, "host", bool) if "host" in fields else False,
        libraries=tuple(map(_library_from_json, libraries)),
    )


def _library_from_json(value: object) -> LinkedLibrary:
    fields = _object(value, _LIBRARY_FIELDS, "a library")
    origin = _typed(fields, "origin", str)
    if origin not in {member.value for member in Origin}:
        raise _CorruptError(f"`origin` {origin!r} is none of {', '.join(member.value for member in Origin)}")
    optional = {key: None if fields[key] is None else _typed(fields, key, str) for key in ("kind", "path")}
    package = fields["debian_package"]
    return LinkedLibrary(
        name=_typed(fields, "name", str),
        kind=optional["kind"],
        path=optional["path"],
        origin=Origin(origin),
        debian_package=None if package is None else _typed(fields, "debian_package", str),
    )


def _object(value: object, keys: tuple[str, ...], what: str, *, added: tuple[str, ...] = ()) -> dict[str, object]:
    if not isinstance(value, dict) or not set(keys) <= set(value) <= set(keys) | set(added):
        every = ", ".join(keys) + (f" (and perhaps {', '.join(added)})" if added else "")
        raise _CorruptError(f"{what} does not have exactly the fields {every}")
    return value


def _typed(fields: dict[str, object], key: str, kind: type[_T]) -> _T:
    value = fields[key]
    if not isinstance(value, kind):
        raise _CorruptError(f"`{key}` is not a {kind.__name__}")
    if isinstance(value, str) and not _is_text(value):
        raise _CorruptError(f"`{key}` holds a lone surrogate, which is no text")
    return value


def _strings(fields: dict[str, object], key: str) -> tuple[str, ...]:
    value = fields[key]
    if not isinstance(value, list) or not all(_is_text(item) for item in value):
        raise _CorruptError(f"`{key}` is not a list of strings")
    return tuple(value)


def _string_map(fields: dict[str, object], key: str) -> dict[str, str]:
    value = fields[key]
    if not isinstance(value, dict) or not all(_is_text(name) and _is_text(item) for name, item in value.items()):
        raise _CorruptError(f"`{key}` is not a table of strings")
    return dict(value)


def _is_text(value: object) -> bool:
    """A str that can be written out: JSON's `\\ud800` escapes give lone surrogates, which no UTF-8 stream takes."""
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# What JSON leaves raw but a terminal may act on: DEL, C1 controls, the Unicode separators and bidi controls.
_JSON_UNESCAPED_CONTROLS = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def render_json(report: BuildReport) -> str:
    """One JSON object per package, for scripts: every value exact, and no raw control character in the text.

    JSON escapes C0 controls itself; the others are written as ``\\u`` escapes too, which decode to the same value.
    """
    text = json.dumps([_package_json(package) for package in report.packages], indent=2, ensure_ascii=False)
    return _JSON_UNESCAPED_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def render_artifacts_json(report: BuildReport) -> str:
    """One JSON object per final artifact: its path, kinds, package, ELF machine, and the newest glibc it needs,
    with the target's floor."""
    entries = [{**_artifact_json(artifact), "glibc_floor": report.glibc_floor} for artifact in report.artifacts]
    text = json.dumps(entries, indent=2, ensure_ascii=False)
    return _JSON_UNESCAPED_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def render_artifacts(report: BuildReport) -> str:
    """The final artifacts with the newest glibc each needs, next to the target's floor."""
    if report.glibc_floor is None and not links_glibc(report.target):
        lines = [f"artifacts ({report.target} links no glibc: it has no glibc floor):"]
    else:
        floor = report.glibc_floor or "unknown"
        lines = [f"artifacts (newest GLIBC_ each needs; the glibc floor of {report.target} is {floor}):"]
    if not report.artifacts:
        lines.append(
            "  none recorded (the last build made no binary or library for the target, or predates this report)"
        )
    width = max((len(artifact.path) for artifact in report.artifacts), default=0)
    for artifact in report.artifacts:
        need = artifact.need.describe(report.glibc_floor)
        lines.append(escape_controls(f"  {artifact.path:<{width}}  {need}"))
    return "\n".join(lines)


def render_table(report: BuildReport) -> str:
    """A block per package for people: name@version, links, out dir, then every field that is not empty.

    Every value is shown with its control characters escaped: a build script's warning must not retitle, clear or
    recolour the terminal, nor forge lines of the report. ``render_json`` needs no such care: JSON escapes them.
    """
    if not report.packages:
        empty = "no package of this build has a build script or a links override"
        return "\n\n".join([empty, render_artifacts(report)]) if report.artifacts else empty
    blocks = []
    for package in report.packages:
        if package.out_dir is not None:
            out_dir = package.out_dir
        else:
            out_dir = f"none: build script overridden by [target.{report.target}.{package.links}]"
        rows: list[tuple[str, Iterable[str]]] = [("links", [package.links or "-"]), ("out dir", [out_dir])]
        rows += [
            ("linked libs", package.linked_libs),
            ("linked paths", package.linked_paths),
            ("cfgs", package.cfgs),
            ("env", [f"{name}={value}" for name, value in package.env.items()]),
            # Shown under the name dependents read, which is what a user looks for in their build script.
            (
                "metadata",
                [f"DEP_{envify(package.links or '')}_{key}={value}" for key, value in package.metadata.items()],
            ),
            ("warnings", package.warnings),
            ("libraries", [_library_line(library) for library in package.libraries]),
        ]
        if package.host:
            rows.insert(0, ("runs for", ["the build machine (a build-dependency's or a proc-macro's build script)"]))
        lines = [escape_controls(f"{package.package}@{package.version}")]
        for label, values in rows:
            for index, value in enumerate(values):
                lines.append(f"  {label + ':' if index == 0 else '':<14}{escape_controls(value)}")
        blocks.append("\n".join(lines))
    if report.artifacts:
        blocks.append(render_artifacts(report))
    return "\n\n".join(blocks)


def _library_line(library: LinkedLibrary) -> str:
    name = f"{library.kind}={library.name}" if library.kind else library.name
    match library.origin:
        case Origin.NOT_FOUND:
            return f"{name}: not found on the search paths"
        case Origin.IMAGE:
            owner = f"Debian package {library.debian_package}" if library.debian_package else "no Debian package"
            return f"{name}: {library.path} (image, {owner})"
        case Origin.OUT_DIR:
            return f"{name}: {library.path} (built in OUT_DIR)"
        case Origin.MOUNT:
            return f"{name}: {library.path} (the project's mounts)"
        case Origin.LINKS_OVERRIDE:
            return f"{name}: {library.path} (a links override)"
        case Origin.PROJECT:
            return f"{name}: {library.path} (the project's files)"
        case _:  # pragma: no cover - every Origin has its case above (typing.assert_never is Python 3.11's)
            raise AssertionError(f"no wording for the origin {library.origin}")
