"""The build-script report collected: what every build script (or ``links`` override) of the last build gave Cargo,
from Cargo's messages and ``cargo metadata``.

After each Cargo command xpcargo records, per package whose build script ran (Cargo's ``build-script-executed``
message says which, and where), the libraries, search paths, ``cfg``s and environment the script gave Cargo, plus two
things Cargo reports nowhere: the ``links`` metadata that dependents receive as ``DEP_<LINKS>_<KEY>`` and the build
script's warnings. All of them are read from the ``output`` file Cargo keeps beside the script's OUT_DIR, with the
parser in ``cargo.protocol`` (Cargo builds its message from the same file with the same rules), a line at a time: a
build script may print gigabytes, and the report keeps only the first entries of each (see ``MAX_ENTRIES``).

Cargo emits no ``build-script-executed`` message for a package whose ``links`` is overridden in
``[target.<triple>.<links>]`` of its config (checked with Cargo 1.95): the script neither builds nor runs. Such a
package is reported from the override table instead, and marked ``overridden``.

``from_build`` is what the build calls, in its container while it still runs: the report, and for a successful build
where each linked library came from (``origins``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path, PurePath
from typing import IO, Any, TypeGuard

from xpcargo.cargo.messages import MessageReader
from xpcargo.cargo.protocol import (
    TARGET_SETTING_KEYS,
    Instruction,
    LongLine,
    envify,
    instructions,
    output_lines,
)
from xpcargo.config.links import LinksOverrides, RustcFlagsError, split_rustc_flags
from xpcargo.container.session import Session
from xpcargo.errors import BuildScriptProtocolError, ReportError
from xpcargo.report import origins
from xpcargo.report.model import BuildReport, PackageReport, is_text, target_dir_name
from xpcargo.ui import escape_controls

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


def from_build(
    session: Session,
    reader: MessageReader,
    cargo_metadata: Mapping[str, Any] | None,
    *,
    code: int,
    links_overrides: LinksOverrides,
    target: str,
    profile: str,
    target_cc: str,
    places: origins.Places,
    probe_cache: origins.ProbeCache | None,
) -> BuildReport | ReportError | None:
    """The report of the Cargo command that just ran in ``session`` (``reader`` read its messages, ``code`` is its
    exit code), with its libraries' origins if it succeeded, asked of the build's container while it still runs.

    None when there is nothing to build it from (messages lost, or no ``cargo metadata``); the ``ReportError`` that
    stopped it, for ``store.keep`` to raise when the report is kept.
    """
    if reader.overflowed or cargo_metadata is None:
        return None
    try:
        collected = collect(
            messages=reader.messages,
            cargo_metadata=cargo_metadata,
            links_overrides=links_overrides,
            target=target,
            profile=profile,
            success=code == 0 and reader.finished is not False,
        )
    except ReportError as error:
        return error
    if not collected.success:
        return collected
    return origins.find(session, collected, target_cc=target_cc, places=places, cache=probe_cache)


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
    target_tree = target_dir_name(target)
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
    return is_text(value) and isinstance(value, str) and value.startswith("/") and "\0" not in value


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
