"""Running a Cargo command for a target, from plan to report: the image, the fetch step when it is due, the
command itself in a container with no network, and every build script's result kept for ``xpcargo report``.

Two containers at most: the fetch step's (only when the project's manifests, lock file or Cargo config changed since
the last fetch) and the build's. Cargo always runs with a JSON ``--message-format`` so that its
``build-script-executed`` messages can be kept; the diagnostics are printed as Cargo renders them, so the terminal
looks as it would without xpcargo.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from xpcargo.cargo import links
from xpcargo.cargo.messages import MessageReader
from xpcargo.cargo.project import Project, refuse_linked_target_dir
from xpcargo.config import toolchain_file
from xpcargo.container.location import EngineAddress, Engines
from xpcargo.container.runtime import Output, Runtime
from xpcargo.container.session import Cancellation, Session, WarmSession, open_session
from xpcargo.context import Host
from xpcargo.errors import ProjectError, ReportError
from xpcargo.pipeline import compile_cache, floor, replay_record
from xpcargo.pipeline.fetch import FetchRecord, Metadata, fetch, fingerprint, read_metadata
from xpcargo.pipeline.plan import BuildPlan, plan
from xpcargo.pipeline.reproducible import Reproducibility
from xpcargo.pipeline.workspace import Step, Venue
from xpcargo.report import collect, hints, origins, store
from xpcargo.report.model import BuildReport
from xpcargo.ui import Reporter, binary_writer

# Cargo says this when an offline build finds a crate missing from CARGO_HOME (someone cleaned the cache).
_OFFLINE_MISS = (b"--offline was specified", b"attempting to make an HTTP request, but --offline")


class Connect(Protocol):
    def __call__(self, host: Host, address: EngineAddress | None = None, /) -> Runtime:
        """A connection to the engine at ``address``, by default the one the environment names."""


def engines(host: Host, connect: Connect) -> Engines:
    """The engines of one command, each connected on first use."""
    return Engines(lambda address: connect(host, address), host.environ)


def cargo_command(
    host: Host,
    project: Project,
    command: str,
    triple: str,
    args: Sequence[str],
    *,
    connect: Connect,
    reproducible: Reproducibility | None = None,
    cwd: Path | None = None,
) -> int:
    """`xpcargo <command> --target <triple> [args]`: plan first, so bad input fails before the engine is asked. Run
    from ``cwd`` as ``host.command_line``, a no-op is recorded for ``xpcargo.replay`` to run again."""
    build_plan = plan(host, project, command, triple, args, reproducible_settings=reproducible)
    pool = engines(host, connect)
    runtime = pool.runtime(build_plan.engine)
    reporter = host.reporter()
    capture = None
    if cwd is not None and host.settings.replay:
        capture = replay_record.capture(host.command_line, cwd, build_plan, settings=host.settings)
    if capture is None:
        return execute(host, build_plan, runtime=runtime, reporter=reporter, engines=pool).code
    # A copy of xpcargo's own lines: a command that said anything is no no-op.
    said = io.StringIO()
    reporter = replace(reporter, copy=said)
    outcome = execute(host, build_plan, runtime=runtime, reporter=reporter, engines=pool, capture=capture)
    replay_record.keep_or_forget(
        capture,
        build_plan,
        code=outcome.code,
        metadata=outcome.metadata,
        quiet=not said.getvalue() and outcome.unread_messages == 0,
        image_id=lambda reference: _image_id(runtime, reference),
    )
    return outcome.code


def _image_id(runtime: Runtime, reference: str) -> str | None:
    found = runtime.inspect_image(reference)
    return found.id if found is not None else None


class _Tail:
    """The last few KiB of a stream, passed on unchanged, for recognising one of Cargo's errors afterwards."""

    def __init__(self, write: Output) -> None:
        self._write = write
        self.text = b""

    def __call__(self, chunk: bytes) -> None:
        self._write(chunk)
        self.text = (self.text + chunk)[-8192:]


@dataclass(frozen=True, kw_only=True)
class Outcome:
    code: int
    metadata: Metadata | None
    messages: list[dict[str, Any]]
    # Messages the report needs that the reader could not keep (see MessageReader.overflowed).
    unread_messages: int
    finished: bool | None
    offline_miss: bool
    # What a failed build script said was missing from the image (see report.hints).
    missing: hints.Missing | None = None
    # The build-script report, collected while the container still ran (so that it could say where each linked
    # library came from), or why it could not be.
    collected: BuildReport | ReportError | None = None
    # What the compile cache said of the command, when it ran with one.
    cache_stats: compile_cache.Stats | None = None


def _build(
    venue: Venue,
    plan: BuildPlan,
    metadata: Metadata | None,
    *,
    stdout: Output,
    stderr: Output,
    capture: replay_record.Capture | None = None,
) -> Outcome:
    """The Cargo command in a container with no network; with ``capture``, what a replay of it needs is kept
    there."""
    request = plan.request(Step.BUILD, venue.image)
    with open_session(
        venue.runtime, request, purpose="build", cancellation=venue.cancellation, warm_locks=plan.warm.locks
    ) as session:
        plan.workspace.entered(session, venue)
        if metadata is None:
            code, metadata = read_metadata(session, plan, venue.image, stderr=stderr)
            if code != 0:
                return Outcome(
                    code=code, metadata=None, messages=[], unread_messages=0, finished=None, offline_miss=False
                )
        reader = MessageReader(echo_messages=not plan.invocation.injects_json, write_stdout=stdout, write_stderr=stderr)
        scanner = hints.HintScanner(stderr)
        errors = _Tail(scanner)
        # Named by Cargo's own words: the compile cache runs Cargo as the arguments of its script.
        on_stdout: Output = reader.feed
        if capture is not None and isinstance(session, WarmSession):
            capture.command = session.recorded(plan.command_argv())
            on_stdout = capture.tee(reader.feed)
        code = session.run(
            plan.command_argv(), on_stdout=on_stdout, on_stderr=errors, name=" ".join(plan.cargo_argv()[:2])
        )
        reader.close()
        scanner.close()
        # The build could write the workspace: before this machine writes the report and the state files into the
        # target dir, the target dir (and xpcargo's own directory in it) must still be no link to elsewhere.
        refuse_linked_target_dir(plan.project.workspace_root, plan.project.target_dir)
        cache = plan.compile_cache
        cache_stats = cache.collect() if isinstance(cache, compile_cache.CompileCache) else None
        plan.workspace.built(session, venue, reader.messages)
        reads = plan.invocation.reads_messages
        collected = _collect(session, plan, venue.image, reader, metadata, code=code) if reads else None
    return Outcome(
        code=code,
        metadata=metadata,
        messages=reader.messages,
        unread_messages=reader.overflowed,
        finished=reader.finished,
        offline_miss=code != 0 and any(hint in errors.text for hint in _OFFLINE_MISS),
        missing=scanner.found if code != 0 else None,
        collected=collected,
        cache_stats=cache_stats,
    )


def _collect(
    session: Session, plan: BuildPlan, image: str, reader: MessageReader, metadata: Metadata | None, *, code: int
) -> BuildReport | ReportError | None:
    """The build-script report of the command that just ran, with its libraries' origins if it succeeded."""
    # xpcargo's own tags are content hashes; a project's own `image` may be retagged under the same name.
    cache = origins.ProbeCache(plan.flags.state_dir / "library-probe.json", image) if plan.spec.image is None else None
    return collect.from_build(
        session,
        reader,
        metadata,
        code=code,
        links_overrides=plan.flags.links,
        target=plan.triple,
        profile=plan.invocation.profile_dir,
        target_cc=plan.spec.cc,
        places=origins.Places(
            target_dir=str(plan.project.target_dir),
            mounts=tuple(plan.spec.mounts),
            project=tuple(str(mount.path) for mount in plan.workspace.binds),
        ),
        probe_cache=cache,
    )


def execute(
    host: Host,
    plan: BuildPlan,
    *,
    runtime: Runtime,
    reporter: Reporter,
    write_stdout: Output | None = None,
    write_stderr: Output | None = None,
    cancellation: Cancellation | None = None,
    engines: Engines | None = None,
    capture: replay_record.Capture | None = None,
) -> Outcome:
    """Run the planned Cargo command on ``runtime`` (the plan's engine); return what came of it: Cargo's exit code
    and its messages. ``engines`` gives this machine's engine, which builds an image a remote engine lacks.
    ``capture`` keeps what a replay needs of a build that neither fetched nor read the project's metadata."""
    stdout = write_stdout or binary_writer(sys.stdout)
    stderr = write_stderr or binary_writer(sys.stderr)
    venue = _prepare(host, plan, runtime, reporter, engines=engines, cancellation=cancellation, command=True)
    record = FetchRecord.of(plan)
    offline = plan.invocation.parsed.offline
    refetched = False
    while True:
        metadata = record.load(fingerprint(plan, venue.image))
        if metadata is None and not offline:
            code, metadata = fetch(venue, plan, stdout=stdout, stderr=stderr)
            if code != 0:
                return Outcome(
                    code=code, metadata=None, messages=[], unread_messages=0, finished=None, offline_miss=False
                )
        outcome = _build(
            venue, plan, metadata, stdout=stdout, stderr=stderr, capture=capture if metadata is not None else None
        )
        if not (outcome.offline_miss and not offline and not refetched):
            break
        # The fetch record said all was downloaded, but CARGO_HOME lost crates since: fetch again, once.
        record.forget()
        refetched = True
        reporter.warn("crates went missing from CARGO_HOME since the last fetch; fetching again")
    _keep_report(plan, outcome, reporter)
    if outcome.cache_stats is not None:
        reporter.status("Cache", outcome.cache_stats.describe())
    if outcome.missing is not None:
        # After Cargo's own output, which stays as it was, as does its exit code.
        reporter.hint(hints.hint(outcome.missing, triple=plan.triple, debian_arch=plan.spec.debian_arch))
    return outcome


def _prepare(
    host: Host,
    plan: BuildPlan,
    runtime: Runtime,
    reporter: Reporter,
    *,
    engines: Engines | None,
    cancellation: Cancellation | None = None,
    command: bool = False,
) -> Venue:
    """What comes before a command's first container: the target's image on the engine, the glibc floor's sysroot,
    xpcargo's Cargo config files, for a Cargo ``command`` (not a shell) a word on a rustup toolchain file, and the
    build's files where the engine sees them."""
    image = plan.workspace.image(host.image_builder(runtime, reporter), plan.spec, plan.image_plan, engines)
    _ensure_sysroot(host, plan, reporter)
    _write_overrides_file(plan)
    cache = plan.compile_cache
    if isinstance(cache, compile_cache.CompileCache):
        cache.prepare()
    if command:
        _note_toolchain_file(plan, reporter)
        _note_doc_tests(plan, reporter)
        if isinstance(cache, compile_cache.CacheOff) and cache.say:
            reporter.status("Cache", f"off: {cache.reason}")
    venue = Venue(runtime=runtime, image=image, user=plan.user, reporter=reporter, cancellation=cancellation)
    plan.workspace.push(venue)
    return venue


def _ensure_sysroot(host: Host, plan: BuildPlan, reporter: Reporter) -> None:
    """The older libc of a lower glibc floor, on the host before any container mounts it."""
    sysroot = plan.flags.sysroot
    if sysroot is None:
        return
    made = floor.ensure(
        sysroot, cache_dir=host.settings.cache_dir, on_retry=reporter.warn, retry_wait=host.settings.retry_wait
    )
    if made:
        reporter.status(
            "Unpacked",
            f"glibc {sysroot.version} of Debian {sysroot.suite} ({sysroot.debian_arch}) into {sysroot.directory}",
        )


def _write_overrides_file(plan: BuildPlan) -> None:
    """xpcargo's own `links` overrides, and reproducible mode's rustflags, as Cargo config files passed with
    `--config`."""
    flags = plan.flags
    files = [
        (flags.overrides_file, links.as_cargo_config(plan.spec.links, plan.triple) if flags.overrides_file else "")
    ]
    files.append((flags.rustflags_file, flags.rustflags_config or ""))
    for path, text in files:
        if path is None:
            continue
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as error:
            raise ProjectError(
                f"cannot write {path}: {error.strerror}",
                hint="point --target-dir (or CARGO_TARGET_DIR) at a writable place",
            ) from None


def _note_toolchain_file(plan: BuildPlan, reporter: Reporter) -> None:
    """The keys of rustup's toolchain file that choose more than the Rust (its Rust chose the image already, with
    ``Host.target``): nothing installs them in the image, which has what it has. Said, not refused."""
    request = toolchain_file.find(plan.project.workspace_root)
    if request is None or not request.ignored or plan.image_plan is None:
        return
    reporter.warn(
        f"{request.origin}: {', '.join(request.ignored)} not applied: the image has what it has (Rust "
        f"{plan.image_plan.rust_version.split('+', 1)[0]} with clippy; `xpcargo targets` lists its targets)"
    )


# The first Cargo that runs a cross-compiled target's doc tests (with the target's runner): doctest-xcompile, stable
# since 1.89. Before it, `cargo test` skips them for any target other than the machine's, without a word.
DOC_TESTS_CROSS_SINCE = (1, 89)


def _note_doc_tests(plan: BuildPlan, reporter: Reporter) -> None:
    """`xpcargo test` for a target that runs under a runner (not the machine's own), with a Cargo that skips its doc
    tests: said in one line, since Cargo says nothing."""
    if plan.invocation.command != "test" or plan.image_plan is None or not plan.spec.runner:
        return
    rust = plan.image_plan.rust_version.split("+", 1)[0]
    if tuple(int(part) for part in rust.split(".")[:2] if part.isdigit()) >= DOC_TESTS_CROSS_SINCE:
        return
    reporter.warn(
        f"doc tests are not run: Cargo {rust} skips them for {plan.triple} (not this machine's target); Rust 1.89 "
        "and later run them under the target's runner (XPCARGO_TOOLCHAIN=default: the target's own Rust)"
    )


def _keep_report(plan: BuildPlan, outcome: Outcome, reporter: Reporter) -> None:
    """Record what the build scripts decided. Cargo's result stands whatever happens to the report."""
    store.keep(
        outcome.collected,
        target_dir=plan.project.target_dir,
        target=plan.triple,
        profile=plan.invocation.profile_dir,
        hidden_by=None if plan.invocation.reads_messages else plan.invocation.parsed.message_format,
        unread_messages=outcome.unread_messages,
        messages=outcome.messages,
        glibc_floor=plan.flags.glibc_floor,
        warn=reporter.warn,
    )


def check_shell(argv: Sequence[str], *, interactive: bool) -> None:
    """`xpcargo shell` without a command needs a terminal: said before the project is looked for."""
    if not argv and not interactive:
        raise ProjectError(
            "`xpcargo shell` without a command needs a terminal",
            hint="pass the command after --, e.g. `xpcargo shell --target T -- uname -m`",
        )


def shell(
    host: Host, project: Project, triple: str, argv: Sequence[str], *, connect: Connect, interactive: bool
) -> int:
    """Run ``argv`` (or an interactive shell) with exactly the mounts and environment a build gets (the caller has
    checked with ``check_shell`` that there is one to run)."""
    build_plan = plan(host, project, "shell", triple, [])
    pool = engines(host, connect)
    venue = _prepare(host, build_plan, pool.runtime(build_plan.engine), host.reporter(), engines=pool)
    request = build_plan.request(Step.SHELL, venue.image)
    with open_session(venue.runtime, request, purpose="shell", warm_locks=build_plan.warm.locks) as session:
        build_plan.workspace.entered(session, venue)
        if not argv:
            return session.run_interactive(["bash", "-l"])
        return session.run(list(argv))
