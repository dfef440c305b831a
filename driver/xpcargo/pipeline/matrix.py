"""Several targets in one command: each target in its own container, side by side up to a limit, sharing the
project's target dir (so artifacts land where Cargo puts them for one target), then one summary.

Targets share the target dir on purpose. Cargo locks the host part of it (`target/debug`, where build scripts and
proc-macros are built) for the length of a build, so targets side by side wait there for each other; but the host
part is then built once, not once per target. Measured on a 2-core machine (docs/ci.md, "Several targets at once"),
that beats a target dir per target, whose host builds compete for the same cores.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from xpcargo.artifacts import Artifact, final_artifacts
from xpcargo.cargo.project import Project
from xpcargo.container.location import Engines
from xpcargo.container.session import Cancellation
from xpcargo.context import Host
from xpcargo.errors import CancelledError, InterruptError, XpcargoError
from xpcargo.pipeline import compile_cache, run
from xpcargo.pipeline import plan as plan_module
from xpcargo.pipeline.plan import BuildPlan, find_project, plan, project_at
from xpcargo.pipeline.reproducible import Reproducibility
from xpcargo.ui import LineWriter, Reporter, binary_writer, render_table, size

# How long Ctrl-C waits for the targets' own cleanup before it says what it could not confirm.
_CLEANUP_WAIT = 15.0


@dataclass(frozen=True, kw_only=True)
class TargetResult:
    triple: str
    # Cargo's exit code, or the exit code of xpcargo's own error for this target.
    code: int
    seconds: float
    artifacts: tuple[Artifact, ...] = ()
    # The newest glibc the target's artifacts may need (docs/targets.md, "The glibc floor").
    glibc_floor: str | None = None
    error: str | None = None
    cancelled: bool = False
    # What the compile cache said of the target's command, when it ran with one.
    cache_stats: compile_cache.Stats | None = None

    @property
    def ok(self) -> bool:
        return self.code == 0 and not self.cancelled

    @property
    def result(self) -> str:
        if self.cancelled:
            return "cancelled"
        if self.ok:
            return "ok"
        return f"failed ({self.code})"


class _Output:
    """Where the targets write: whole lines, each attributable to its target; JSON messages the user asked for
    go to stdout unchanged."""

    def __init__(self, triples: Sequence[str], *, color: bool) -> None:
        self._width = max(len(triple) for triple in triples)
        self._color = color
        self._stdout_lock = threading.Lock()
        self._stderr_lock = threading.Lock()

    def prefix(self, triple: str) -> str:
        return f"{triple:<{self._width}} | "

    def writers(self, triple: str, *, raw_stdout: bool) -> tuple[LineWriter, LineWriter]:
        prefix = self.prefix(triple).encode()
        stdout = LineWriter(binary_writer(sys.stdout), self._stdout_lock, b"" if raw_stdout else prefix)
        stderr = LineWriter(binary_writer(sys.stderr), self._stderr_lock, prefix)
        return stdout, stderr

    def reporter(self, triple: str) -> Reporter:
        return Reporter(color=self._color, prefix=self.prefix(triple))


def _run_one(
    host: Host, build_plan: BuildPlan, engines: Engines, output: _Output, cancellation: Cancellation
) -> TargetResult:
    started = time.monotonic()
    stdout, stderr = output.writers(build_plan.triple, raw_stdout=not build_plan.invocation.injects_json)
    reporter = output.reporter(build_plan.triple)
    try:
        cancellation.check()
        outcome = run.execute(
            host,
            build_plan,
            runtime=engines.runtime(build_plan.engine),
            reporter=reporter,
            write_stdout=stdout,
            write_stderr=stderr,
            cancellation=cancellation,
            engines=engines,
        )
    except XpcargoError as error:
        cancelled = isinstance(error, CancelledError) or cancellation.cancelled
        if not cancelled:
            reporter.warn(error.summary().removeprefix("error: "))
        return TargetResult(
            triple=build_plan.triple,
            code=error.exit_code,
            seconds=time.monotonic() - started,
            error=None if cancelled else error.summary(),
            cancelled=cancelled,
        )
    finally:
        stdout.close()
        stderr.close()
    seconds = time.monotonic() - started
    if outcome.code != 0 and cancellation.cancelled:
        # Its container was removed under it: Cargo's code says so, not what went wrong.
        return TargetResult(triple=build_plan.triple, code=outcome.code, seconds=seconds, cancelled=True)
    tree = build_plan.project.target_dir / build_plan.triple
    artifacts = final_artifacts(outcome.messages, tree, digests=True) if outcome.code == 0 else ()
    reporter.status("Finished" if outcome.code == 0 else "Failed", f"in {seconds:.1f}s")
    return TargetResult(
        triple=build_plan.triple,
        code=outcome.code,
        seconds=seconds,
        artifacts=artifacts,
        glibc_floor=build_plan.flags.glibc_floor,
        cache_stats=outcome.cache_stats,
    )


def cargo_command(
    host: Host,
    cwd: Path,
    command: str,
    triples: Sequence[str],
    args: Sequence[str],
    *,
    connect: run.Connect,
    target_jobs: int | None,
    fail_fast: bool,
    reproducible: bool = False,
) -> int:
    """`xpcargo <command> --target ...` (run from ``cwd``): one target runs as it always has; several run side by
    side."""
    # One project for every target: the arguments name it, whatever the target.
    project = project_at(host, cwd, args) if reproducible else find_project(host, cwd, triples[0], args)
    settings = plan_module.reproducibility(host, project, triples[0]) if reproducible else None
    if len(triples) == 1:
        return run.cargo_command(
            host, project, command, triples[0], args, connect=connect, reproducible=settings, cwd=cwd
        )
    jobs = target_jobs if target_jobs is not None else default_target_jobs()
    return build_matrix(
        host,
        cwd,
        command,
        triples,
        args,
        project=project,
        connect=connect,
        target_jobs=jobs,
        fail_fast=fail_fast,
        reproducible=settings,
    ).exit_code


def build_matrix(
    host: Host,
    cwd: Path,
    command: str,
    triples: Sequence[str],
    args: Sequence[str],
    *,
    project: Project,
    connect: run.Connect,
    target_jobs: int,
    fail_fast: bool,
    reproducible: Reproducibility | None = None,
) -> Summary:
    """`xpcargo <command> --target A --target B ...` of ``project`` (run from ``cwd``): every target planned first
    (bad input fails before the engine is asked), then run side by side, `target_jobs` at a time; then the summary,
    shown and returned."""
    # Cargo's progress bar redraws one line; several of them interleaved would be noise.
    host = replace(host, terminal=replace(host.terminal, progress_width=None))
    plans = [plan(host, project, command, triple, args, reproducible_settings=reproducible) for triple in triples]
    # One connection per engine the targets name (most often the one), each made once, before any target starts:
    # an engine that is not there fails the command as it does for one target.
    pool = run.engines(host, connect)
    for build_plan in plans:
        pool.runtime(build_plan.engine)
    output = _Output(triples, color=host.terminal.color)
    cancellation = Cancellation()
    pending: queue.Queue[BuildPlan] = queue.Queue()
    for build_plan in plans:
        pending.put(build_plan)
    done: queue.Queue[TargetResult | BaseException] = queue.Queue()

    def worker() -> None:
        while True:
            try:
                build_plan = pending.get_nowait()
            except queue.Empty:
                return
            try:
                done.put(_run_one(host, build_plan, pool, output, cancellation))
            except BaseException as crash:  # noqa: BLE001 - handed to the main thread, which raises it
                done.put(crash)
                return

    started = time.monotonic()
    # Daemon threads: on Ctrl-C the main thread cancels what they run and does not wait forever for them.
    workers = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(target_jobs, len(plans))))]
    for thread in workers:
        thread.start()
    results: dict[str, TargetResult] = {}
    try:
        while len(results) < len(plans):
            try:
                result = done.get(timeout=0.2)
            except queue.Empty:
                continue
            if isinstance(result, BaseException):
                # A bug in one target's thread: stop the others, and let the bug be reported as one.
                cancellation.cancel()
                raise result
            results[result.triple] = result
            if fail_fast and not result.ok and not result.cancelled:
                cancellation.cancel()
    except (KeyboardInterrupt, InterruptError) as caught:
        # Ctrl-C, SIGTERM or SIGHUP reach this thread only: stop every target, let each clean up after itself.
        interrupt = caught if isinstance(caught, InterruptError) else InterruptError("interrupted")
        cancellation.cancel(interrupt.signal_name)
        deadline = time.monotonic() + _CLEANUP_WAIT
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        interrupt.left_behind += cancellation.left_behind
        interrupt.still_running += cancellation.still_running
        raise interrupt from None
    ordered = [results[triple] for triple in triples]
    summary = Summary(command=command, results=tuple(ordered), seconds=time.monotonic() - started)
    _show(summary, host, cwd)
    return summary


def _show(summary: Summary, host: Host, cwd: Path) -> None:
    """The summary on stderr (stdout may be JSON for a tool), and in GitHub's step summary when there is one."""
    reporter = host.reporter()
    reporter.status("Summary", summary.headline())
    sys.stderr.write(summary.table(relative_to=cwd))
    sys.stderr.flush()
    step_summary = host.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        try:
            with Path(step_summary).open("a", encoding="utf-8") as stream:
                stream.write(summary.markdown(relative_to=cwd))
        except OSError as error:
            reporter.warn(f"cannot append the summary to GITHUB_STEP_SUMMARY ({step_summary}): {error.strerror}")


@dataclass(frozen=True, kw_only=True)
class Summary:
    command: str
    results: tuple[TargetResult, ...]
    seconds: float

    @property
    def exit_code(self) -> int:
        """0 when every target succeeded; else the code of the first target, in the order given, that failed."""
        failed = [result for result in self.results if not result.ok and not result.cancelled]
        return failed[0].code if failed else (130 if any(r.cancelled for r in self.results) else 0)

    def headline(self) -> str:
        counts: dict[str, int] = {}
        for result in self.results:
            key = "cancelled" if result.cancelled else "ok" if result.ok else "failed"
            counts[key] = counts.get(key, 0) + 1
        told = ", ".join(f"{count} {key}" for key, count in counts.items())
        cached = [result.cache_stats for result in self.results if result.cache_stats is not None]
        rate = sum(cached, compile_cache.Stats()).rate if cached else None
        cache = f"; compile cache {rate:.0%} hit rate" if rate is not None else ""
        return f"`{self.command}` for {len(self.results)} targets in {self.seconds:.1f}s: {told}{cache}"

    def rows(self, *, relative_to: Path) -> list[tuple[str, ...]]:
        rows: list[tuple[str, ...]] = [("TARGET", "RESULT", "TIME", "ARTIFACT", "SIZE", "GLIBC", "SHA256")]
        for result in self.results:
            first = (result.triple, result.result, f"{result.seconds:.1f}s")
            if not result.artifacts:
                rows.append((*first, "-", "", "", ""))
            for index, artifact in enumerate(result.artifacts):
                lead = first if index == 0 else ("", "", "")
                shown = (_shown(artifact.path, relative_to), size(artifact.size) if artifact.size is not None else "")
                rows.append((*lead, *shown, artifact.describe_need(result.glibc_floor), artifact.sha256 or ""))
        return rows

    def table(self, *, relative_to: Path) -> str:
        return render_table(self.rows(relative_to=relative_to))

    def markdown(self, *, relative_to: Path) -> str:
        rows = self.rows(relative_to=relative_to)
        header, *body = rows
        lines = [f"### xpcargo {self.headline()}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" * len(header))
        lines += ["| " + " | ".join(_markdown_cell(cell) for cell in row) + " |" for row in body]
        return "\n".join(lines) + "\n\n"


def _markdown_cell(text: str) -> str:
    return f"`{text}`" if text and ("/" in text or len(text) == 64) else text.replace("|", "\\|")


def _shown(path: Path, base: Path) -> str:
    return str(path.relative_to(base)) if path.is_relative_to(base) else str(path)


def default_target_jobs() -> int:
    return max(2, os.cpu_count() or 2)
