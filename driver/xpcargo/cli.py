"""The command line: parse arguments, call the layers below, turn their errors into one line and an exit code."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
import typer.core

from xpcargo import __version__
from xpcargo.errors import InterruptError, XpcargoError

if TYPE_CHECKING:
    from xpcargo.engine import Engine
    from xpcargo.ui import Reporter


class _PassThroughCommand(typer.core.TyperCommand):
    """Keeps everything after `--` for Cargo, `--` included: `xpcargo run -- --flag` must reach the program."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" not in args:
            return super().parse_args(ctx, args)
        split = args.index("--")
        rest = super().parse_args(ctx, args[:split])
        ctx.args = [*ctx.args, *args[split:]]
        return rest


app = typer.Typer(
    name="xpcargo",
    help="Cross-compile Cargo projects in toolchain containers that xpcargo builds itself from Debian packages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
image_app = typer.Typer(help="Build, list and prune xpcargo's toolchain images.", no_args_is_help=True)
app.add_typer(image_app, name="image")

_PASS_THROUGH: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}
TargetOption = Annotated[
    str | None,
    typer.Option("--target", metavar="TRIPLE", help="The target triple to build for (see `xpcargo targets`)."),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"xpcargo {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Cross-compile Cargo projects in toolchain containers."""


def _require_target(target: str | None, command: str) -> str:
    if target:
        return target
    from xpcargo.errors import UnknownTargetError  # noqa: PLC0415

    raise UnknownTargetError(
        f"`xpcargo {command}` needs --target",
        hint="name a target triple, e.g. `--target aarch64-unknown-linux-gnu` (`xpcargo targets` lists them)",
    )


def _reporter() -> Reporter:
    from xpcargo.ui import Reporter  # noqa: PLC0415

    return Reporter()


def _engine() -> Engine:
    from xpcargo.engine import Engine  # noqa: PLC0415

    return Engine.connect()


def _cargo(command: str, target: str | None, args: list[str]) -> int:
    from xpcargo import cargo  # noqa: PLC0415

    triple = _require_target(target, command)
    plan = cargo.plan(command, triple, args, cwd=Path.cwd())
    with _interrupts_as_errors():
        return cargo.run(plan, engine=_engine(), reporter=_reporter())


def _define_cargo_command(name: str, summary: str) -> None:
    def command(ctx: typer.Context, target: TargetOption = None) -> int:
        return _cargo(name, target, list(ctx.args))

    command.__doc__ = f"{summary}\n\nEvery other argument goes to `cargo {name}` unchanged."
    app.command(name, context_settings=_PASS_THROUGH, cls=_PassThroughCommand)(command)


for _name, _summary in (
    ("build", "Build the project for a target."),
    ("check", "Check the project for a target (`--message-format=json` feeds rust-analyzer)."),
    ("test", "Build and run the tests for a target, under its emulator."),
    ("run", "Build and run a binary for a target, under its emulator."),
    ("doc", "Build the documentation for a target."),
    ("clippy", "Lint the project for a target with clippy."),
    ("bench", "Build and run the benchmarks for a target, under its emulator."),
):
    _define_cargo_command(_name, _summary)


@app.command(context_settings=_PASS_THROUGH, cls=_PassThroughCommand)
def shell(ctx: typer.Context, target: TargetOption = None) -> int:
    """Run a command (after --), or an interactive shell, in the target's container with a build's mounts and
    environment."""
    from xpcargo import cargo  # noqa: PLC0415

    triple = _require_target(target, "shell")
    argv = list(ctx.args)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    plan = cargo.plan("shell", triple, [], cwd=Path.cwd())
    with _interrupts_as_errors():
        return cargo.run_shell(plan, argv, engine=_engine(), reporter=_reporter())


@app.command()
def targets() -> None:
    """List the targets xpcargo knows, with their emulators and images."""
    from xpcargo import images  # noqa: PLC0415
    from xpcargo.config import load_toolchains  # noqa: PLC0415

    toolchains = load_toolchains()
    rows = [("TARGET", "DEBIAN ARCH", "RUNS WITH", "IMAGE")]
    for triple, spec in sorted(toolchains.targets.items()):
        rows.append((triple, spec.debian_arch, spec.emulator or "native", images.plan_for(spec).reference))
    _print_table(rows)


@app.command()
def report(
    *,
    target: TargetOption = None,
    release: Annotated[bool, typer.Option("--release", "-r", help="The release profile's report.")] = False,
    profile: Annotated[str | None, typer.Option(help="The report of this profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per package.")] = False,
    manifest_path: Annotated[str | None, typer.Option(help="Path to the project's Cargo.toml.")] = None,
    target_dir: Annotated[str | None, typer.Option(help="The target dir the build used.")] = None,
) -> None:
    """Print what every build script of the last build for a target decided."""
    from xpcargo import cargo  # noqa: PLC0415
    from xpcargo import report as reports  # noqa: PLC0415

    triple = _require_target(target, "report")
    args = [*(["--release"] if release else []), *(["--profile", profile] if profile else [])]
    args += [*(["--manifest-path", manifest_path] if manifest_path else [])]
    args += [*(["--target-dir", target_dir] if target_dir else [])]
    loaded = cargo.load_report(triple, args, cwd=Path.cwd())
    typer.echo(reports.render_json(loaded) if as_json else reports.render_table(loaded))


@image_app.command("build")
def image_build(
    target_names: Annotated[list[str] | None, typer.Argument(metavar="[TARGET]...", help="Default: all.")] = None,
) -> None:
    """Build the images for these targets (all by default) unless the engine has them already."""
    from xpcargo import images, resources  # noqa: PLC0415

    specs = _project_targets(target_names)
    engine, reporter = _engine(), _reporter()
    with _interrupts_as_errors():
        for spec in specs:
            reference = images.ensure_image(engine, spec, cache=resources.cache_dir(), reporter=reporter)
            reporter.status("Ready", f"{spec.triple}: {reference}")


@image_app.command("list")
def image_list() -> None:
    """List xpcargo's images, marking those that today's recipes would build."""
    from xpcargo import images  # noqa: PLC0415

    current = {images.plan_for(spec).reference for spec in _project_targets(None)}
    rows = [("IMAGE", "TARGET", "SIZE", "STATUS")]
    for image in images.list_images(_engine()):
        name = image.tags[0] if image.tags else image.id[7:19]
        status = "current" if current.intersection(image.tags) else "stale"
        rows.append((name, image.labels.get(images.LABEL_TARGET, "?"), f"{image.size / 2**30:.2f} GB", status))
    _print_table(rows)


@image_app.command("prune")
def image_prune(
    everything: Annotated[bool, typer.Option("--all", help="Remove current images too, not only stale ones.")] = False,
) -> None:
    """Remove xpcargo's stale images (and only xpcargo's)."""
    from xpcargo import images, resources  # noqa: PLC0415

    keep = set() if everything else {images.plan_for(spec).reference for spec in _project_targets(None)}
    removed = images.prune_images(_engine(), keep=keep, cache=resources.cache_dir())
    reporter = _reporter()
    for image in removed:
        reporter.status("Removed", image.tags[0] if image.tags else image.id)
    reporter.status("Pruned", f"{len(removed)} image(s), {sum(i.size for i in removed) / 2**30:.2f} GB")


def _project_targets(names: list[str] | None) -> list[Any]:
    """Targets as the project in the working directory configures them (or as shipped, outside a project)."""
    from xpcargo import config, project  # noqa: PLC0415
    from xpcargo.errors import ProjectError  # noqa: PLC0415

    toolchains = config.load_toolchains()
    try:
        root = project.find_workspace_root(project.find_manifest(Path.cwd(), None))
        project_config = config.load_project_config(root)
    except ProjectError:
        project_config = config.ProjectConfig(source=None)
    wanted = names or sorted({*toolchains.targets, *project_config.targets})
    return [config.resolve_target(name, toolchains, project_config) for name in wanted]


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _fail(message: str, hint: str | None, code: int) -> int:
    line = f"error: {message}"
    if hint:
        line += f" (hint: {hint})"
    print(line, file=sys.stderr)
    return code


@contextmanager
def _interrupts_as_errors() -> Iterator[None]:
    """Ctrl-C and SIGTERM unwind the stack like any error, so every container, temporary file and untagged image is
    cleaned up on the way out. (typer would turn a KeyboardInterrupt into a bare exit code; this gets there first.)"""

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        raise InterruptError("terminated by SIGTERM; nothing was left running")

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        yield
    except KeyboardInterrupt:
        raise InterruptError("interrupted; nothing was left running") from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> None:
    try:
        result = app(args=argv, prog_name="xpcargo", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except XpcargoError as error:
        code = _fail(error.message, error.hint, error.exit_code)
    except click.exceptions.NoArgsIsHelpError as error:
        # `xpcargo` or `xpcargo image` alone: the help is the answer, printed as help, not squeezed into an error.
        print(error.format_message(), file=sys.stderr)
        code = 2
    except click.UsageError as error:
        code = _fail(error.format_message().replace("\n", " "), "see `xpcargo --help`", 2)
    except (typer.Abort, KeyboardInterrupt):
        code = _fail("interrupted", None, InterruptError.exit_code)
    except typer.Exit as exit_:
        code = exit_.exit_code
    except Exception as error:
        if os.environ.get("XPCARGO_DEBUG"):
            raise
        code = _fail(
            f"internal error: {type(error).__name__}: {error}",
            "this is a bug in xpcargo; run again with XPCARGO_DEBUG=1 for a traceback and report it",
            70,
        )
    sys.stdout.flush()
    sys.exit(code)
