"""Running a Cargo command for a target: plan it on the host, fetch what it needs, run it in the target's container,
and keep every build script's result.

Two steps, two containers at most:
1. fetch (only when the manifests, the lock file or the Cargo config changed since the last fetch): ``cargo fetch``
   and ``cargo metadata`` in a container on the host network, filling the shared ``CARGO_HOME`` on the host;
2. the command itself, in a container with no network at all, offline, so a build depends only on what is mounted.

Cargo always runs with a JSON ``--message-format`` so that its ``build-script-executed`` messages can be kept; the
diagnostics are printed as Cargo renders them, so the terminal looks as it would without xpcargo.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xpcargo import config, images, project, report, resources, targets
from xpcargo.buildscript import RustcFlagsError, split_rustc_flags
from xpcargo.engine import Engine, Mount
from xpcargo.errors import ConfigError, ProjectError, ReportError
from xpcargo.project import CargoArgs, Project
from xpcargo.session import Session, SessionPlan, open_session
from xpcargo.ui import Reporter, binary_writer

# Cargo says this when an offline build finds a crate missing from CARGO_HOME (someone cleaned the cache).
_OFFLINE_MISS = ("--offline was specified", "attempting to make an HTTP request, but --offline")
_LINK_SEARCH_KINDS = ("native=", "dependency=", "crate=", "framework=", "all=")
_DEBIAN_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@dataclass(frozen=True, kw_only=True)
class CargoPlan:
    """Everything decided before the engine is touched."""

    command: str
    spec: config.TargetSpec
    project: Project
    args: tuple[str, ...]
    parsed: CargoArgs
    mounts: tuple[Mount, ...]
    env: Mapping[str, str]
    links_overrides: Mapping[str, Mapping[str, Any]]
    overrides_file: Path | None
    state_dir: Path

    @property
    def hidden(self) -> tuple[Path, ...]:
        # CARGO_HOME/bin holds rustup's proxies and host-built tools; Cargo looks there first for `cargo-clippy`
        # and other subcommands, and would run the host's rustup instead of the image's clippy.
        bin_dir = self.project.cargo_home / "bin"
        return (bin_dir,) if bin_dir.is_dir() else ()

    @property
    def triple(self) -> str:
        return self.spec.triple

    @property
    def profile_dir(self) -> str:
        return project.profile_dir_name(self.parsed.profile)

    @property
    def injects_json(self) -> bool:
        """Whether xpcargo chooses the message format: when the user did not choose one."""
        return self.parsed.message_format is None

    @property
    def reads_messages(self) -> bool:
        return self.injects_json or "json" in (self.parsed.message_format or "")

    def cargo_argv(self, *, color: bool) -> list[str]:
        argv = ["cargo", self.command, "--target", self.triple]
        if self.injects_json:
            argv.append("--message-format=json-diagnostic-rendered-ansi" if color else "--message-format=json")
        if self.overrides_file is not None:
            argv += ["--config", str(self.overrides_file)]
        return [*argv, *self.args]

    def manifest_args(self) -> list[str]:
        args = ["--manifest-path", self.parsed.manifest_path] if self.parsed.manifest_path else []
        return [*args, "--locked"] if self.parsed.locked else args


def plan(
    command: str,
    triple: str,
    args: Sequence[str],
    *,
    cwd: Path,
    environ: Mapping[str, str] = os.environ,
) -> CargoPlan:
    parsed = project.parse_cargo_args(args)
    toolchains = config.load_toolchains(environ=environ)
    try:
        proj = project.discover(cwd, parsed, environ=environ)
    except ProjectError:
        # Outside a project, only the shipped table can know the target: a typo in it is the first thing to say.
        toolchains.target(triple)
        raise
    project_config = config.load_project_config(proj.workspace_root)
    spec = config.resolve_target(triple, toolchains, project_config, environ=environ)
    host = (
        config.resolve_target(targets.HOST_TRIPLE, toolchains, project_config, environ=environ)
        if targets.HOST_TRIPLE in toolchains.targets
        else None
    )
    state_dir = proj.target_dir / "xpcargo" / triple

    # Cargo merges the `--config` file xpcargo writes into the project's own config key by key; so does this.
    overrides = project.merge_links_overrides(proj.links_overrides(triple), spec.links_overrides)
    overrides_file = state_dir / "links-overrides.toml" if spec.links_overrides else None
    extra_mounts = [Path(os.path.normpath(path)) for path in spec.mounts]
    for path in extra_mounts:
        if not path.exists():
            raise ConfigError(
                f"the mount `{path}` configured for {triple} does not exist on this machine",
                hint="create it or remove it from `mounts` in xpcargo.toml",
            )
    extra_mounts += [path for path in _override_paths(overrides) if path.exists()]

    env = {
        **targets.passthrough_environment(environ, spec),
        **targets.toolchain_environment(spec, host),
        "CARGO_HOME": str(proj.cargo_home),
        "CARGO_TARGET_DIR": str(proj.target_dir),
    }
    return CargoPlan(
        command=command,
        spec=spec,
        project=proj,
        args=tuple(args),
        parsed=parsed,
        mounts=project.mounts_for(proj, extra_mounts),
        env=env,
        links_overrides=overrides,
        overrides_file=overrides_file,
        state_dir=state_dir,
    )


def _without_kind(path: str) -> str:
    """`native=/opt/lib` → `/opt/lib`: a link search path may name its kind."""
    return next((path[len(kind) :] for kind in _LINK_SEARCH_KINDS if path.startswith(kind)), path)


def _override_paths(overrides: Mapping[str, Mapping[str, Any]]) -> list[Path]:
    """Host paths that ``links`` overrides name: link search paths, and metadata values that are absolute paths."""
    found: list[str] = []
    for table in overrides.values():
        for key, value in table.items():
            for item in value if isinstance(value, list) else [value]:
                if not isinstance(item, str):
                    continue
                if key == "rustc-link-search":
                    found.append(_without_kind(item))
                elif key == "rustc-flags":
                    # Malformed flags are Cargo's to report; they name no path to mount.
                    with suppress(RustcFlagsError):
                        found += [_without_kind(path) for path in split_rustc_flags(item)[0]]
                else:
                    found.append(item)
    return [Path(os.path.normpath(path)) for path in found if Path(path).is_absolute()]


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise ConfigError(f"a links override holds a value TOML cannot say: {value!r}")


def write_overrides_file(plan: CargoPlan) -> None:
    """xpcargo's own `links` overrides, as a Cargo config file passed with `--config`."""
    if plan.overrides_file is None:
        return
    lines = []
    for links, table in plan.spec.links_overrides.items():
        lines.append(f"[target.{json.dumps(plan.triple)}.{json.dumps(links)}]")
        lines += [f"{json.dumps(key)} = {_toml_value(value)}" for key, value in table.items()]
        lines.append("")
    plan.overrides_file.parent.mkdir(parents=True, exist_ok=True)
    plan.overrides_file.write_text("\n".join(lines), encoding="utf-8")


# --- Reading Cargo's stdout ----------------------------------------------------------------------------------------


@dataclass(kw_only=True)
class MessageReader:
    """Splits Cargo's stdout into its JSON messages and the program output that follows them.

    With a format xpcargo injected, diagnostics are printed (as Cargo rendered them) to stderr and other messages
    are kept, not shown. With a JSON format the user asked for, every line goes to stdout unchanged as well.
    Once Cargo reports ``build-finished``, what follows is the output of the program or tests it runs.
    """

    echo_messages: bool
    write_stdout: Callable[[bytes], None]
    write_stderr: Callable[[bytes], None]
    messages: list[dict[str, Any]] = field(default_factory=list)
    finished: bool | None = None
    _pending: bytes = b""

    def feed(self, chunk: bytes) -> None:
        if self.finished is not None and not self._pending:
            self.write_stdout(chunk)
            return
        self._pending += chunk
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            self._line(line + b"\n")
            if self.finished is not None:
                rest, self._pending = self._pending, b""
                if rest:
                    self.write_stdout(rest)
                return

    def close(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = b""

    def _line(self, line: bytes) -> None:
        message = _parse_message(line) if self.finished is None else None
        if message is None:
            self.write_stdout(line)
            return
        self.messages.append(message)
        if self.echo_messages:
            self.write_stdout(line)
        elif message["reason"] == "compiler-message":
            rendered = (message.get("message") or {}).get("rendered")
            if rendered:
                self.write_stderr(str(rendered).encode())
        if message["reason"] == "build-finished":
            self.finished = bool(message.get("success"))


def _parse_message(line: bytes) -> dict[str, Any] | None:
    if not line.startswith(b'{"reason":'):
        return None
    try:
        message = json.loads(line)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None


class _Tail:
    """The last few KiB of a stream, passed on unchanged, for recognising one of Cargo's errors afterwards."""

    def __init__(self, write: Callable[[bytes], None]) -> None:
        self._write = write
        self.text = b""

    def __call__(self, chunk: bytes) -> None:
        self._write(chunk)
        self.text = (self.text + chunk)[-8192:]


# --- Running -------------------------------------------------------------------------------------------------------


def _stderr_is_terminal() -> bool:
    return sys.stderr.isatty()


def _terminal_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Cargo in the container sees a pipe, not the user's terminal: tell it what the terminal can do."""
    if not _stderr_is_terminal() or environ.get("NO_COLOR"):
        return {}
    env = {"CARGO_TERM_COLOR": environ.get("CARGO_TERM_COLOR", "always")}
    if "CARGO_TERM_PROGRESS_WHEN" not in environ:
        env["CARGO_TERM_PROGRESS_WHEN"] = "always"
        env["CARGO_TERM_PROGRESS_WIDTH"] = str(shutil.get_terminal_size().columns)
    return env


def _fetch_state_file(plan: CargoPlan) -> Path:
    return plan.state_dir / "fetched.json"


def _load_metadata(plan: CargoPlan, fingerprint: str) -> dict[str, Any] | None:
    try:
        state = json.loads(_fetch_state_file(plan).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
        return None
    metadata = state.get("metadata")
    return metadata if isinstance(metadata, dict) else None


def _save_metadata(plan: CargoPlan, fingerprint: str, metadata: dict[str, Any]) -> None:
    path = _fetch_state_file(plan)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"fingerprint": fingerprint, "metadata": metadata}), encoding="utf-8")
    temporary.replace(path)


def _fingerprint(plan: CargoPlan, image: str) -> str:
    return plan.project.fingerprint(image, plan.parsed.manifest_path or "")


def _read_metadata(session: Session, plan: CargoPlan, image: str) -> tuple[int, dict[str, Any] | None]:
    """`cargo metadata`, kept beside the fingerprint of what it was read from, so unchanged projects skip it."""
    captured: list[bytes] = []
    code = session.run(
        ["cargo", "metadata", "--format-version", "1", "--offline", *plan.manifest_args()],
        env={"CARGO_NET_OFFLINE": "true"},
        on_stdout=captured.append,
    )
    if code != 0:
        return code, None
    try:
        metadata = json.loads(b"".join(captured))
    except ValueError:
        return 1, None
    if not isinstance(metadata, dict):
        return 1, None
    # Fingerprinted after `cargo fetch` ran: it may have just written Cargo.lock.
    _save_metadata(plan, _fingerprint(plan, image), metadata)
    return 0, metadata


def host_ca_bundle(environ: Mapping[str, str]) -> Path | None:
    """The certificates the host trusts. Behind a TLS-inspecting proxy the image's own bundle is not enough, and
    the fetch step must trust what the host trusts to reach crates.io at all."""
    for name in ("CARGO_HTTP_CAINFO", "SSL_CERT_FILE"):
        configured = environ.get(name)
        if configured and Path(configured).is_file():
            return Path(configured)
    return _DEBIAN_CA_BUNDLE if _DEBIAN_CA_BUNDLE.is_file() else None


def _fetch(
    engine: Engine, plan: CargoPlan, image: str, reporter: Reporter, environ: Mapping[str, str]
) -> tuple[int, dict[str, Any] | None]:
    """Download what the build needs into CARGO_HOME, in a container that may use the network."""
    reporter.status("Fetching", f"dependencies for {plan.project.workspace_root.name} (network step)")
    bundle = host_ca_bundle(environ)
    trust = {"CARGO_HTTP_CAINFO": str(bundle)} if bundle else {}
    session_plan = SessionPlan(
        image=image,
        mounts=(*plan.mounts, *([Mount(path=bundle, read_only=True)] if bundle else [])),
        workdir=plan.project.cwd,
        env={**plan.env, **_terminal_env(environ), **trust},
        network="host",
        purpose="fetch",
        hidden=plan.hidden,
    )
    with open_session(engine, session_plan) as session:
        code = session.run(["cargo", "fetch", *plan.manifest_args()])
        if code != 0:
            return code, None
        return _read_metadata(session, plan, image)


def run(
    plan: CargoPlan,
    *,
    engine: Engine,
    reporter: Reporter,
    environ: Mapping[str, str] = os.environ,
    write_stdout: Callable[[bytes], None] | None = None,
    write_stderr: Callable[[bytes], None] | None = None,
    refetched: bool = False,
) -> int:
    """Run the planned Cargo command; return Cargo's exit code."""
    write_stdout = write_stdout or binary_writer(sys.stdout)
    write_stderr = write_stderr or binary_writer(sys.stderr)
    image = images.ensure_image(engine, plan.spec, cache=resources.cache_dir(environ), reporter=reporter)
    write_overrides_file(plan)
    if not refetched:
        _warn_about_toolchain_file(plan, reporter)

    metadata = _load_metadata(plan, _fingerprint(plan, image))
    if metadata is None and not plan.parsed.offline:
        code, metadata = _fetch(engine, plan, image, reporter, environ)
        if code != 0:
            return code

    color = _stderr_is_terminal() and not environ.get("NO_COLOR")
    session_plan = SessionPlan(
        image=image,
        mounts=plan.mounts,
        workdir=plan.project.cwd,
        env={**plan.env, **_terminal_env(environ), "CARGO_NET_OFFLINE": "true"},
        hidden=plan.hidden,
    )
    with open_session(engine, session_plan) as session:
        if metadata is None:
            code, metadata = _read_metadata(session, plan, image)
            if code != 0:
                return code
        reader = MessageReader(
            echo_messages=not plan.injects_json, write_stdout=write_stdout, write_stderr=write_stderr
        )
        errors = _Tail(write_stderr)
        code = session.run(plan.cargo_argv(color=color), on_stdout=reader.feed, on_stderr=errors)
        reader.close()

    offline_miss = any(hint.encode() in errors.text for hint in _OFFLINE_MISS)
    if code != 0 and offline_miss and not plan.parsed.offline and not refetched:
        # The fetch state said all was downloaded, but CARGO_HOME lost crates since: fetch again, once.
        _fetch_state_file(plan).unlink(missing_ok=True)
        reporter.warn("crates went missing from CARGO_HOME since the last fetch; fetching again")
        return run(
            plan,
            engine=engine,
            reporter=reporter,
            environ=environ,
            write_stdout=write_stdout,
            write_stderr=write_stderr,
            refetched=True,
        )

    if not plan.reads_messages:
        report.report_path(plan.project.target_dir, plan.triple, plan.profile_dir).unlink(missing_ok=True)
        reporter.warn(
            f"build-script report not updated: --message-format={plan.parsed.message_format} hides "
            "Cargo's build-script messages"
        )
    elif metadata is not None:
        _keep_report(plan, reader, metadata, success=code == 0 and reader.finished is not False, reporter=reporter)
    return code


def _warn_about_toolchain_file(plan: CargoPlan, reporter: Reporter) -> None:
    """rustup's toolchain file means nothing in the image, which has one pinned Rust: say so when they differ."""
    requested = plan.project.requested_toolchain()
    if requested is None or plan.spec.image:
        return
    path, channel = requested
    upstream = images.plan_for(plan.spec).rust_version.split("+", 1)[0]
    if channel in ("stable", upstream) or upstream.startswith(f"{channel}."):
        return
    reporter.warn(
        f"{path.name} asks for Rust `{channel}`; the {plan.triple} image builds with Rust {upstream} "
        "(rustup toolchain files are not read in the container)"
    )


def _keep_report(
    plan: CargoPlan, reader: MessageReader, metadata: dict[str, Any], *, success: bool, reporter: Reporter
) -> None:
    path = report.report_path(plan.project.target_dir, plan.triple, plan.profile_dir)
    try:
        collected = report.collect(
            messages=reader.messages,
            cargo_metadata=metadata,
            links_overrides=plan.links_overrides,
            target=plan.triple,
            profile=plan.profile_dir,
            success=success,
        )
    except ReportError as error:
        # Cargo's result stands whatever happens to the report; a stale report must not outlive it, though.
        path.unlink(missing_ok=True)
        reporter.warn(f"build-script report not saved: {error.message}")
        return
    report.save(collected, path)


def load_report(
    triple: str, args: Sequence[str], *, cwd: Path, environ: Mapping[str, str] = os.environ
) -> report.BuildReport:
    parsed = project.parse_cargo_args(args)
    proj = project.discover(cwd, parsed, environ=environ)
    profile_dir = project.profile_dir_name(parsed.profile)
    path = report.report_path(proj.target_dir, triple, profile_dir)
    try:
        return report.load(path)
    except ReportError as error:
        if error.hint is None:
            error.hint = f"run `xpcargo build --target {triple}` first"
        raise


def run_shell(plan: CargoPlan, argv: Sequence[str], *, engine: Engine, reporter: Reporter) -> int:
    """Run ``argv`` (or an interactive shell) with exactly the mounts and environment a build gets."""

    if not argv and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise ProjectError(
            "`xpcargo shell` without a command needs a terminal",
            hint="pass the command after --, e.g. `xpcargo shell --target T -- uname -m`",
        )
    image = images.ensure_image(engine, plan.spec, cache=resources.cache_dir(), reporter=reporter)
    write_overrides_file(plan)
    session_plan = SessionPlan(
        image=image,
        mounts=plan.mounts,
        workdir=plan.project.cwd,
        env={**plan.env, "CARGO_NET_OFFLINE": "true"},
        hidden=plan.hidden,
    )
    with open_session(engine, session_plan) as session:
        if not argv:
            return session.run_interactive(["bash", "-l"])
        return session.run(list(argv))
