"""`xpcargo verify`: build twice, as differently as a rebuild elsewhere would, and compare every final artifact.

Each build runs in a fresh copy of the workspace in a directory of its own (``build_twice``), with a fresh target
dir and its own container. The second also runs under another umask, time zone, locale, user name and home. Both
are reproducible builds with the same SOURCE_DATE_EPOCH. The artifacts Cargo names (binaries, shared and static
libraries) are compared byte for byte. `dist` builds through ``build_twice`` too, so what it packs is what was
verified.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType

from xpcargo.artifacts import Artifact, final_artifacts
from xpcargo.config import trust
from xpcargo.config.targets import load_project_config
from xpcargo.context import Host
from xpcargo.errors import NotReproducibleError, ProjectError
from xpcargo.pipeline import run
from xpcargo.pipeline.plan import BuildPlan, plan, project_at, reproducibility, trust_boundary
from xpcargo.pipeline.reproducible import VARIED, Reproducibility
from xpcargo.ui import render_table

# Options xpcargo sets itself for each of the two builds.
_REPLACED = ("--manifest-path", "--target-dir")
_CHUNK = 1 << 16


@dataclass(frozen=True, kw_only=True)
class Comparison:
    name: str  # relative to the target's tree: `release/app`
    first: Artifact | None
    second: Artifact | None
    first_difference: int | None = None

    @property
    def same(self) -> bool:
        # Compared by content: both artifacts must have been read (``final_artifacts(..., digests=True)``).
        first, second = self.first, self.second
        return first is not None and second is not None and first.sha256 is not None and first.sha256 == second.sha256


@dataclass(frozen=True, kw_only=True)
class Rebuilt:
    """Two builds of one target, each in a copy of the workspace in a directory of its own."""

    plans: tuple[BuildPlan, BuildPlan]
    artifacts: tuple[tuple[Artifact, ...], tuple[Artifact, ...]]
    comparisons: tuple[Comparison, ...]
    directories: tuple[Path, ...]

    @property
    def differing(self) -> tuple[Comparison, ...]:
        return tuple(comparison for comparison in self.comparisons if not comparison.same)


def verify(host: Host, cwd: Path, triple: str, args: Sequence[str], *, connect: run.Connect) -> int:
    """Build twice the project that ``args`` name from ``cwd``, compare, print the table; raise
    ``NotReproducibleError`` when anything differs."""
    settings = reproducibility(host, project_at(host, cwd, args), triple)
    rebuilt = build_twice(host, cwd, triple, args, settings=settings, connect=connect)
    if isinstance(rebuilt, int):
        return rebuilt
    keep = False
    try:
        if not rebuilt.comparisons:
            raise ProjectError(
                "the build made no binary or library to compare",
                hint="verify compares what Cargo names as final artifacts: build a bin, cdylib or staticlib "
                "(e.g. `--release --bins`)",
            )
        sys.stdout.write(table(rebuilt.comparisons))
        keep = bool(rebuilt.differing)
        report_differences(rebuilt, triple)
    finally:
        if not keep:
            discard(rebuilt.directories)
    host.reporter().status(
        "Verified", f"{len(rebuilt.comparisons)} artifacts for {triple} are identical in both builds"
    )
    return 0


def report_differences(rebuilt: Rebuilt, triple: str) -> None:
    """Explain each artifact that differs and raise ``NotReproducibleError``; nothing when all are the same."""
    for comparison in rebuilt.differing:
        sys.stdout.write(explain(comparison))
        if comparison.first is not None and comparison.second is not None:
            _diffoscope(comparison.first.path, comparison.second.path)
    sys.stdout.flush()
    if rebuilt.differing:
        raise NotReproducibleError(
            f"{len(rebuilt.differing)} of {len(rebuilt.comparisons)} artifacts differ between the two builds for "
            f"{triple}: " + ", ".join(comparison.name for comparison in rebuilt.differing),
            hint=f"both builds are kept in {' and '.join(str(path) for path in rebuilt.directories)} (remove them "
            "when done); look for timestamps, absolute paths or unordered iteration in build scripts and proc-macros",
        )


def build_twice(
    host: Host, cwd: Path, triple: str, args: Sequence[str], *, settings: Reproducibility, connect: run.Connect
) -> Rebuilt | int:
    """Two reproducible builds of the target, the second varied (`VARIED`), and their artifacts compared; or
    Cargo's exit code when a build fails.

    Each build runs in a fresh copy of the workspace (with its path dependencies) in a directory of its own made
    by ``mkdtemp`` in the temporary directory, with its target dir beside the copy: the two builds look alike (the
    same depth, a random name, nothing that says which is checked, or that either is), neither can reach the
    other's tree (neither mounts the real workspace, which could hold the other), and runs at the same time, of
    the same workspace or not, never share a directory. The directories are the caller's to ``discard``.
    """
    project = project_at(host, cwd, args)
    # The copies hold the project's settings at other paths: the trust boundary is crossed once, by the project
    # itself (its checkout, the user's consent to it), and that stands for both copies.
    trust.require(trust_boundary(host, project, load_project_config(project.workspace_root)), triple)
    consented = replace(host, environ=MappingProxyType({**host.environ, trust.CONSENT_VARIABLE: "1"}))
    rest = without_options(args, _REPLACED)
    root = _copied_root(project.workspace_root, project.outside_paths)
    directories: list[Path] = []
    try:
        plans = []
        for variation in (settings.variation, VARIED):
            directory = Path(tempfile.mkdtemp())
            directories.append(directory)
            copy = directory / root.name
            _copy_tree(root, copy, skip=(project.target_dir,))
            moved_cwd = copy / cwd.relative_to(root) if cwd.is_relative_to(root) else copy
            manifest = copy / project.manifest.relative_to(root)
            copied_args = [*rest, "--manifest-path", str(manifest), "--target-dir", str(directory / "target")]
            copied = project_at(consented, moved_cwd, copied_args)
            plans.append(
                plan(
                    consented,
                    copied,
                    "build",
                    triple,
                    copied_args,
                    reproducible_settings=settings.with_variation(variation),
                )
            )
        first, second = plans
        pool, reporter = run.engines(host, connect), host.reporter()
        runtime = pool.runtime(first.engine)
        built: list[tuple[Artifact, ...]] = []
        for number, build_plan in enumerate(plans, start=1):
            reporter.status("Verifying", f"build {number} of 2 in {build_plan.project.workspace_root}")
            outcome = run.execute(host, build_plan, runtime=runtime, reporter=reporter, engines=pool)
            if outcome.code != 0:
                discard(directories)
                return outcome.code
            tree = build_plan.project.target_dir / build_plan.triple
            built.append(final_artifacts(outcome.messages, tree, digests=True))
    except BaseException:
        discard(directories)
        raise
    return Rebuilt(
        plans=(first, second),
        artifacts=(built[0], built[1]),
        comparisons=tuple(compare(first, built[0], second, built[1])),
        directories=tuple(directories),
    )


def discard(directories: Sequence[Path]) -> None:
    """Remove the directories a run made for itself (only its own: another run's are never touched)."""
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def without_options(args: Sequence[str], names: Sequence[str]) -> list[str]:
    """``args`` without the options ``names`` (as `--name value` or `--name=value`), up to a `--`."""
    kept: list[str] = []
    index = 0
    while index < len(args):
        arg = args[index]
        if arg == "--":
            return [*kept, *args[index:]]
        if arg in names:
            index += 2
            continue
        if arg.partition("=")[0] in names:
            index += 1
            continue
        kept.append(arg)
        index += 1
    return kept


def _copied_root(workspace: Path, outside: Sequence[Path]) -> Path:
    """The smallest directory holding the workspace and its path dependencies, so relative paths still hold."""
    root = Path(os.path.commonpath([workspace, *outside])) if outside else workspace
    if root == Path(root.anchor):
        raise ProjectError(
            f"the workspace {workspace} and its path dependencies share no directory but /",
            hint="verify copies the workspace with its path dependencies; keep them under one directory",
        )
    return root


def _copy_tree(source: Path, destination: Path, *, skip: Sequence[Path]) -> None:
    """``source`` copied (links as links) but for ``.git``, ``skip`` and what is neither a file, a directory nor a
    link: a FIFO, a socket or a device is nothing a build reads (a remote engine is never sent one either), and
    copying one would block or fail."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        return {name for name in names if name == ".git" or here / name in skip or _special(here / name)}

    try:
        shutil.copytree(source, destination, ignore=ignore, symlinks=True)
    except shutil.Error as error:
        failures = error.args[0] if error.args and isinstance(error.args[0], list) else []
        where, _, why = failures[0] if failures and len(failures[0]) == 3 else (source, None, str(error))
        raise ProjectError(
            f"cannot copy the workspace for the two builds: {where}: {why}",
            hint="verify and dist build in copies of the workspace; make every file in it readable",
        ) from None
    except OSError as error:
        raise ProjectError(
            f"cannot copy the workspace for the two builds: {error.filename or source}: {error.strerror or error}",
            hint="verify and dist build in copies of the workspace; make every file in it readable",
        ) from None


def _special(path: Path) -> bool:
    try:
        mode = path.lstat().st_mode
    except OSError:
        return False  # copytree reports it
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode) or stat.S_ISLNK(mode))


def compare(
    first_plan: BuildPlan, first: Sequence[Artifact], second_plan: BuildPlan, second: Sequence[Artifact]
) -> list[Comparison]:
    """Each artifact of either build, matched by its path in the target's tree, in the first build's order."""
    first_tree = first_plan.project.target_dir / first_plan.triple
    second_tree = second_plan.project.target_dir / second_plan.triple
    ones = {str(artifact.path.relative_to(first_tree)): artifact for artifact in first}
    twos = {str(artifact.path.relative_to(second_tree)): artifact for artifact in second}
    found = []
    for name in [*ones, *(name for name in twos if name not in ones)]:
        one, two = ones.get(name), twos.get(name)
        offset = None
        if one is not None and two is not None and one.sha256 != two.sha256:
            offset = first_difference(one.path, two.path)
        found.append(Comparison(name=name, first=one, second=two, first_difference=offset))
    return found


def first_difference(one: Path, two: Path) -> int:
    """The offset of the first byte that differs (the shorter file's length when one is a prefix of the other)."""
    offset = 0
    with one.open("rb") as left, two.open("rb") as right:
        while True:
            a, b = left.read(_CHUNK), right.read(_CHUNK)
            if a != b:
                return offset + next(
                    (index for index, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
                )
            if not a:
                return offset
            offset += len(a)


def table(comparisons: Sequence[Comparison]) -> str:
    rows = [("ARTIFACT", "BUILD 1 SHA256", "BUILD 2 SHA256", "RESULT")]
    for comparison in comparisons:
        rows.append(
            (
                comparison.name,
                (comparison.first.sha256 or "") if comparison.first else "(missing)",
                (comparison.second.sha256 or "") if comparison.second else "(missing)",
                "same" if comparison.same else "differs",
            )
        )
    return render_table(rows)


def explain(comparison: Comparison) -> str:
    if comparison.first is None or comparison.second is None:
        only = "first" if comparison.first is not None else "second"
        return f"{comparison.name}: only the {only} build made it\n"
    return (
        f"{comparison.name} differs from byte {comparison.first_difference} on: {comparison.first.path} "
        f"({comparison.first.size} bytes) and {comparison.second.path} ({comparison.second.size} bytes)\n"
    )


def _diffoscope(one: Path, two: Path) -> None:
    """diffoscope's account of the difference, when it is installed."""
    program = shutil.which("diffoscope")
    if program is None:
        return
    sys.stdout.flush()
    subprocess.run([program, "--text", "-", str(one), str(two)], check=False)
