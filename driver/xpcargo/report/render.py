"""The build-script report for people (a block per package, escaped for the terminal) and for scripts (JSON,
every value exact), and the artifacts' view: the newest glibc each needs, next to the target's floor."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from xpcargo.artifacts import links_glibc
from xpcargo.cargo.protocol import envify
from xpcargo.report.model import BuildReport, LinkedLibrary, Origin
from xpcargo.report.store import artifact_json, package_json
from xpcargo.ui import escape_controls

# What JSON leaves raw but a terminal may act on: DEL, C1 controls, the Unicode separators and bidi controls.
_JSON_UNESCAPED_CONTROLS = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def render_json(report: BuildReport) -> str:
    """One JSON object per package, for scripts: every value exact, and no raw control character in the text.

    JSON escapes C0 controls itself; the others are written as ``\\u`` escapes too, which decode to the same value.
    """
    text = json.dumps([package_json(package) for package in report.packages], indent=2, ensure_ascii=False)
    return _JSON_UNESCAPED_CONTROLS.sub(lambda match: f"\\u{ord(match.group()):04x}", text)


def render_artifacts_json(report: BuildReport) -> str:
    """One JSON object per final artifact: its path, kinds, package, ELF machine, and the newest glibc it needs,
    with the target's floor."""
    entries = [{**artifact_json(artifact), "glibc_floor": report.glibc_floor} for artifact in report.artifacts]
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
    width = max((len(str(artifact.path)) for artifact in report.artifacts), default=0)
    for artifact in report.artifacts:
        need = artifact.describe_need(report.glibc_floor)
        lines.append(escape_controls(f"  {artifact.path!s:<{width}}  {need}"))
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
