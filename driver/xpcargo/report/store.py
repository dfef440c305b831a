"""Where the build-script report of each target and profile lives in the target dir, writing it (whole or not at
all) after a build, or removing the one a build no longer matches, and reading it back for ``xpcargo report``."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from xpcargo.artifacts import NOT_ELF, Artifact, GlibcNeed, final_artifacts
from xpcargo.cargo import args as cargo_args
from xpcargo.cargo.messages import MAX_MESSAGE_BYTES
from xpcargo.cargo.project import discover
from xpcargo.config.targets import check_triple
from xpcargo.errors import ReportError
from xpcargo.files import write_atomically
from xpcargo.report.model import BuildReport, LinkedLibrary, Origin, PackageReport, is_text, target_dir_name

# 2 added `glibc_floor` and `artifacts`; a report of version 1 is still read (with neither).
SCHEMA_VERSION = 2

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
_ADDED_ARTIFACT_FIELDS = ("static",)

_PATH_COMPONENT = re.compile(r"[A-Za-z0-9_.-]+")

_T = TypeVar("_T")


def report_path(target_dir: Path, target: str, profile: str) -> Path:
    """Where the report of the last ``profile`` build for ``target`` lives."""
    target_name = target_dir_name(target)
    for part in (target_name, profile):
        if not _PATH_COMPONENT.fullmatch(part) or part in {".", ".."}:
            raise ReportError(
                f"`{part}` is not usable in a file name",
                hint="a target triple or a profile name has only letters, digits, `_`, `-` and `.`",
            )
    return target_dir / "xpcargo" / "build-scripts" / target_name / f"{profile}.json"


def package_json(package: PackageReport) -> dict[str, Any]:
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


def artifact_json(artifact: Artifact) -> dict[str, Any]:
    need = artifact.glibc or NOT_ELF
    return {
        "path": str(artifact.path),
        "kinds": sorted(artifact.kinds),
        "package_id": artifact.package_id,
        "machine": need.machine,
        "glibc": need.glibc,
        "static": need.static,
    }


def save(report: BuildReport, path: Path) -> None:
    """Write the report so that a reader sees the old file or the new one, never half of one."""
    document = {
        "schema_version": SCHEMA_VERSION,
        "target": report.target,
        "profile": report.profile,
        "success": report.success,
        "packages": [package_json(package) for package in report.packages],
        "glibc_floor": report.glibc_floor,
        "artifacts": [artifact_json(artifact) for artifact in report.artifacts],
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, text, mode=0o600)
    except OSError as error:
        raise ReportError(f"cannot write the build-script report {path}: {error}") from None


def keep(
    collected: BuildReport | ReportError | None,
    *,
    target_dir: Path,
    target: str,
    profile: str,
    hidden_by: str | None,
    unread_messages: int,
    messages: Sequence[Mapping[str, Any]],
    glibc_floor: str | None,
    warn: Callable[[str], None],
) -> None:
    """Record what the build scripts decided (``collect.from_build``), with the final artifacts Cargo named in
    ``messages`` and the target's ``glibc_floor``; or remove the report the build no longer matches. ``hidden_by``
    is the `--message-format` that kept Cargo's build-script messages from xpcargo, if any; ``collected`` None
    with every message read leaves the report as it is (Cargo never ran). Cargo's result stands whatever happens to
    the report: what goes wrong here is a warning."""
    try:
        path = report_path(target_dir, target, profile)
        if hidden_by is not None:
            path.unlink(missing_ok=True)
            warn(f"build-script report not updated: --message-format={hidden_by} hides Cargo's build-script messages")
            return
        if unread_messages:
            # A report that silently lacks a package is worse than none; the stale one must go too.
            path.unlink(missing_ok=True)
            warn(
                f"build-script report not saved: {unread_messages} of Cargo's messages were too long "
                f"(over {MAX_MESSAGE_BYTES >> 20} MiB) or too many to keep"
            )
            return
        if isinstance(collected, ReportError):
            # A stale report must not outlive the build it described.
            path.unlink(missing_ok=True)
            raise collected
        if collected is not None:
            artifacts = final_artifacts(messages, target_dir / target)
            save(replace(collected, glibc_floor=glibc_floor, artifacts=artifacts), path)
    except (ReportError, OSError) as error:
        warn(f"build-script report not saved: {error}")


class _CorruptError(Exception):
    pass


def load_last(triple: str, args: Sequence[str], *, cwd: Path, environ: Mapping[str, str]) -> BuildReport:
    """`xpcargo report`: the report of the last build for ``triple`` with these Cargo arguments (profile, manifest,
    target dir), of the project found from ``cwd`` as a build finds it. Here rather than beside the build, so that
    reading a report does not import the build."""
    check_triple(triple)
    parsed = cargo_args.parse_cargo_args(args)
    project = discover(cwd, parsed, environ=environ)
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


def _artifact_from_json(value: object) -> Artifact:
    fields = _object(value, _ARTIFACT_FIELDS, "an artifact", added=_ADDED_ARTIFACT_FIELDS)
    return Artifact(
        path=Path(_typed(fields, "path", str)),
        kinds=frozenset(_strings(fields, "kinds")),
        package_id=_typed(fields, "package_id", str),
        glibc=GlibcNeed(
            machine=None if fields["machine"] is None else _typed(fields, "machine", str),
            glibc=None if fields["glibc"] is None else _typed(fields, "glibc", str),
            static=_typed(fields, "static", bool) if "static" in fields else False,
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
    if isinstance(value, str) and not is_text(value):
        raise _CorruptError(f"`{key}` holds a lone surrogate, which is no text")
    return value


def _strings(fields: dict[str, object], key: str) -> tuple[str, ...]:
    value = fields[key]
    if not isinstance(value, list) or not all(is_text(item) for item in value):
        raise _CorruptError(f"`{key}` is not a list of strings")
    return tuple(value)


def _string_map(fields: dict[str, object], key: str) -> dict[str, str]:
    value = fields[key]
    if not isinstance(value, dict) or not all(is_text(name) and is_text(item) for name, item in value.items()):
        raise _CorruptError(f"`{key}` is not a table of strings")
    return dict(value)
