"""Running a Cargo command for a target, from plan to report: the image, the fetch step when it is due, the
command itself in a container with no network, and every build script's result kept for ``xpcargo report``.

Two containers at most: the fetch step's (only when the project's manifests, lock file or Cargo config changed since
the last fetch) and the build's. Cargo always runs with a JSON ``--message-format`` so that its
``build-script-executed`` messages can be kept; the diagnostics are printed as Cargo renders them, so the terminal
looks as it would without xpcargo.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from xpcargo import report
from xpcargo.cargo.messages import MAX_MESSAGE_BYTES, MessageReader
from xpcargo.cargo.project import refuse_linked_target_dir
from xpcargo.container.location import EngineAddress, Engines
from xpcargo.container.runtime import ContainersAndVolumes, ImagesAndContainers, Output, Runtime
from xpcargo.container.session import Cancellation, Session, open_session
from xpcargo.context import Context
from xpcargo.errors import ImageBuildError, ProjectError, ReportError
from xpcargo.image import builder, send
from xpcargo.pipeline import floor, hints, origins, remote
from xpcargo.pipeline.artifacts import final_artifacts
from xpcargo.pipeline.fetch import FetchRecord, Metadata, fetch, fingerprint, read_metadata
from xpcargo.pipeline.plan import BuildPlan, Step, plan
from xpcargo.pipeline.reproducible import Reproducibility
from xpcargo.ui import Reporter, binary_writer

# Cargo says this when an offline build finds a crate missing from CARGO_HOME (someone cleaned the cache).
_OFFLINE_MISS = (b"--offline was specified", b"attempting to make an HTTP request, but --offline")


class Connect(Protocol):
    def __call__(self, context: Context, address: EngineAddress | None = None, /) -> Runtime:
        """A connection to the engine at ``address``, by default the one the environment names."""


def engines(context: Context, connect: Connect) -> Engines:
    """The engines of one command, each connected on first use."""
    return Engines(lambda address: connect(context, address), context.host.environ)


def cargo_command(
    context: Context,
    command: str,
    triple: str,
    args: Sequence[str],
    *,
    connect: Connect,
    reproducible: Reproducibility | None = None,
) -> int:
    """`xpcargo <command> --target <triple> [args]`: plan first, so bad input fails before the engine is asked."""
    build_plan = plan(context, command, triple, args, reproducible_settings=reproducible)
    pool = engines(context, connect)
    runtime = pool.runtime(build_plan.engine)
    return execute(context, build_plan, runtime=runtime, reporter=context.host.reporter(), engines=pool).code


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
    # What a failed build script said was missing from the image (see pipeline.hints).
    missing: hints.Missing | None = None
    # The build-script report, collected while the container still ran (so that it could say where each linked
    # library came from), or why it could not be.
    collected: report.BuildReport | ReportError | None = None


def _build(
    runtime: ContainersAndVolumes,
    plan: BuildPlan,
    image: str,
    metadata: Metadata | None,
    *,
    stdout: Output,
    stderr: Output,
    cancellation: Cancellation | None,
    reporter: Reporter,
) -> Outcome:
    """The Cargo command in a container with no network."""
    request = plan.request(Step.BUILD, image)
    with open_session(
        runtime, request, purpose="build", cancellation=cancellation, warm_locks=plan.warm_locks
    ) as session:
        if plan.remote is not None:
            remote.verify(
                session, runtime, plan.remote, image=image, user=plan.user, reporter=reporter, cancellation=cancellation
            )
        if metadata is None:
            code, metadata = read_metadata(session, plan, image, stderr=stderr)
            if code != 0:
                return Outcome(
                    code=code, metadata=None, messages=[], unread_messages=0, finished=None, offline_miss=False
                )
        reader = MessageReader(echo_messages=not plan.injects_json, write_stdout=stdout, write_stderr=stderr)
        scanner = hints.HintScanner(stderr)
        errors = _Tail(scanner)
        code = session.run(plan.command_argv(), on_stdout=reader.feed, on_stderr=errors)
        reader.close()
        scanner.close()
        # The build could write the workspace: before this machine writes the report and the state files into the
        # target dir, the target dir (and xpcargo's own directory in it) must still be no link to elsewhere.
        refuse_linked_target_dir(plan.project.workspace_root, plan.project.target_dir)
        if plan.remote is not None:
            # Before the report is collected: it reads each build script's output, on the host.
            wanted = remote.wanted_back(reader.messages, plan.project.target_dir)
            remote.pull(session, plan.remote, [*wanted, *plan.remote.lock_after_build()], reporter)
        collected = _collect(session, plan, image, reader, metadata, code=code) if plan.reads_messages else None
    return Outcome(
        code=code,
        metadata=metadata,
        messages=reader.messages,
        unread_messages=reader.overflowed,
        finished=reader.finished,
        offline_miss=code != 0 and any(hint in errors.text for hint in _OFFLINE_MISS),
        missing=scanner.found if code != 0 else None,
        collected=collected,
    )


def _collect(
    session: Session, plan: BuildPlan, image: str, reader: MessageReader, metadata: Metadata | None, *, code: int
) -> report.BuildReport | ReportError | None:
    """The build-script report of the command that just ran, with its libraries' origins if it succeeded."""
    if reader.overflowed or metadata is None:
        return None
    try:
        collected = report.collect(
            messages=reader.messages,
            cargo_metadata=metadata,
            links_overrides=plan.links,
            target=plan.triple,
            profile=plan.profile_dir,
            success=code == 0 and reader.finished is not False,
        )
    except ReportError as error:
        return error
    if not collected.success:
        return collected
    places = origins.Places(
        target_dir=str(plan.project.target_dir),
        mounts=tuple(plan.spec.mounts),
        project=tuple(str(mount.path) for mount in plan.mounts),
    )
    # xpcargo's own tags are content hashes; a project's own `image` may be retagged under the same name.
    cache = origins.ProbeCache(plan.state_dir / "library-probe.json", image) if plan.spec.image is None else None
    return origins.find(session, collected, target_cc=plan.spec.cc, places=places, cache=cache)


def execute(
    context: Context,
    plan: BuildPlan,
    *,
    runtime: Runtime,
    reporter: Reporter,
    write_stdout: Output | None = None,
    write_stderr: Output | None = None,
    cancellation: Cancellation | None = None,
    engines: Engines | None = None,
) -> Outcome:
    """Run the planned Cargo command on ``runtime`` (the plan's engine); return what came of it: Cargo's exit code
    and its messages. ``engines`` gives this machine's engine, which builds an image a remote engine lacks."""
    stdout = write_stdout or binary_writer(sys.stdout)
    stderr = write_stderr or binary_writer(sys.stderr)
    image = _image(context, plan, runtime, reporter, engines)
    _ensure_sysroot(context, plan, reporter)
    _write_overrides_file(plan)
    _warn_about_toolchain_file(plan, reporter)
    if plan.remote is not None:
        remote.push(runtime, plan.remote, image=image, user=plan.user, reporter=reporter, cancellation=cancellation)
    record = FetchRecord.of(plan)
    refetched = False
    while True:
        metadata = record.load(fingerprint(plan, image))
        if metadata is None and not plan.parsed.offline:
            code, metadata = fetch(
                runtime, plan, image, reporter, stdout=stdout, stderr=stderr, cancellation=cancellation
            )
            if code != 0:
                return Outcome(
                    code=code, metadata=None, messages=[], unread_messages=0, finished=None, offline_miss=False
                )
        outcome = _build(
            runtime, plan, image, metadata, stdout=stdout, stderr=stderr, cancellation=cancellation, reporter=reporter
        )
        if not (outcome.offline_miss and not plan.parsed.offline and not refetched):
            break
        # The fetch record said all was downloaded, but CARGO_HOME lost crates since: fetch again, once.
        record.forget()
        refetched = True
        reporter.warn("crates went missing from CARGO_HOME since the last fetch; fetching again")
    _keep_report(plan, outcome, reporter)
    if outcome.missing is not None:
        # After Cargo's own output, which stays as it was, as does its exit code.
        reporter.hint(hints.hint(outcome.missing, triple=plan.triple, debian_arch=plan.spec.debian_arch))
    return outcome


def _image(
    context: Context, plan: BuildPlan, runtime: ImagesAndContainers, reporter: Reporter, engines: Engines | None = None
) -> str:
    """The target's image, built first if the engine lacks it; but never on a remote engine, whose layer builds
    could not bind-mount xpcargo's caches: there it is built on this machine's engine (or found there) and sent,
    under the same content-hash tags (``image.send``)."""
    image_plan = plan.image_plan
    if plan.remote is not None and image_plan is not None and not runtime.image_exists(image_plan.reference):
        missing = f"the engine at {plan.remote.engine} has no {image_plan.reference}"
        if engines is None:
            raise ImageBuildError(
                f"{missing}, and xpcargo builds images only on an engine that sees this machine's files",
                hint=f"build it here and send it: `xpcargo image save {plan.triple} -o DIR`, then "
                f"`DOCKER_HOST={plan.remote.engine} xpcargo image load DIR`",
            )
        local = engines.local(missing=missing)
        builder.for_context(context, local, reporter).ensure(image_plan)
        if local is not runtime:
            send.send(image_plan, local=local, remote=runtime, cache=context.host.settings.cache_dir, reporter=reporter)
        return image_plan.reference
    return builder.for_context(context, runtime, reporter).image_for(plan.spec, image_plan)


def _ensure_sysroot(context: Context, plan: BuildPlan, reporter: Reporter) -> None:
    """The older libc of a lower glibc floor, on the host before any container mounts it."""
    sysroot = plan.sysroot
    if sysroot is None:
        return
    made = floor.ensure(
        sysroot,
        cache_dir=context.host.settings.cache_dir,
        on_retry=reporter.warn,
        retry_wait=context.host.settings.retry_wait,
    )
    if made:
        reporter.status(
            "Unpacked",
            f"glibc {sysroot.version} of Debian {sysroot.suite} ({sysroot.debian_arch}) into {sysroot.directory}",
        )


def _write_overrides_file(plan: BuildPlan) -> None:
    """xpcargo's own `links` overrides, and reproducible mode's rustflags, as Cargo config files passed with
    `--config`."""
    files = [(plan.overrides_file, plan.spec.links.as_cargo_config(plan.triple) if plan.overrides_file else "")]
    files.append((plan.rustflags_file, plan.rustflags_config or ""))
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


def _warn_about_toolchain_file(plan: BuildPlan, reporter: Reporter) -> None:
    """rustup's toolchain file means nothing in the image, which has one pinned Rust: say so when they differ."""
    requested = plan.project.requested_toolchain()
    if requested is None or plan.image_plan is None:
        return
    path, channel = requested
    upstream = plan.image_plan.rust_version.split("+", 1)[0]
    if channel in ("stable", upstream) or upstream.startswith(f"{channel}."):
        return
    reporter.warn(
        f"{path.name} asks for Rust `{channel}`; the {plan.triple} image builds with Rust {upstream} "
        "(rustup toolchain files are not read in the container)"
    )


def _keep_report(plan: BuildPlan, outcome: Outcome, reporter: Reporter) -> None:
    """Record what the build scripts decided. Cargo's result stands whatever happens to the report."""
    try:
        path = report.report_path(plan.project.target_dir, plan.triple, plan.profile_dir)
        if not plan.reads_messages:
            path.unlink(missing_ok=True)
            reporter.warn(
                f"build-script report not updated: --message-format={plan.parsed.message_format} hides "
                "Cargo's build-script messages"
            )
            return
        if outcome.metadata is None:
            return
        if outcome.unread_messages:
            # A report that silently lacks a package is worse than none; the stale one must go too.
            path.unlink(missing_ok=True)
            reporter.warn(
                f"build-script report not saved: {outcome.unread_messages} of Cargo's messages were too long "
                f"(over {MAX_MESSAGE_BYTES >> 20} MiB) or too many to keep"
            )
            return
        if isinstance(outcome.collected, ReportError):
            # A stale report must not outlive the build it described.
            path.unlink(missing_ok=True)
            raise outcome.collected
        if outcome.collected is not None:
            found = final_artifacts(outcome.messages, plan.project.target_dir / plan.triple)
            artifacts = report.artifact_reports(found)
            report.save(replace(outcome.collected, glibc_floor=plan.glibc_floor, artifacts=artifacts), path)
    except (ReportError, OSError) as error:
        reporter.warn(f"build-script report not saved: {error}")


def shell(context: Context, triple: str, argv: Sequence[str], *, connect: Connect, interactive: bool) -> int:
    """Run ``argv`` (or an interactive shell) with exactly the mounts and environment a build gets."""
    if not argv and not interactive:
        raise ProjectError(
            "`xpcargo shell` without a command needs a terminal",
            hint="pass the command after --, e.g. `xpcargo shell --target T -- uname -m`",
        )
    build_plan = plan(context, "shell", triple, [])
    pool = engines(context, connect)
    runtime, reporter = pool.runtime(build_plan.engine), context.host.reporter()
    image = _image(context, build_plan, runtime, reporter, pool)
    _ensure_sysroot(context, build_plan, reporter)
    _write_overrides_file(build_plan)
    if build_plan.remote is not None:
        remote.push(runtime, build_plan.remote, image=image, user=build_plan.user, reporter=reporter)
    request = build_plan.request(Step.SHELL, image)
    with open_session(runtime, request, purpose="shell", warm_locks=build_plan.warm_locks) as session:
        if build_plan.remote is not None:
            remote.verify(session, runtime, build_plan.remote, image=image, user=build_plan.user, reporter=reporter)
        if not argv:
            return session.run_interactive(["bash", "-l"])
        return session.run(list(argv))
