"""The command line: parse the arguments, build the context, call the command's function (``commands/``), print
what it returns, and turn its errors into one line and an exit code."""

# No `from __future__ import annotations` here: typer reads every command's annotations at each start, and strings
# would cost an eval each (typer.main.get_command took 18 ms with them, 5 ms without).

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import click
import typer
import typer.core

from xpcargo import __version__
from xpcargo.errors import InternalError, InterruptError, UsageError, XpcargoError

if TYPE_CHECKING:
    from xpcargo.commands import Answer
    from xpcargo.context import Context


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
image_app = typer.Typer(help="Build, lock, verify, list and prune xpcargo's toolchain images.", no_args_is_help=True)
app.add_typer(image_app, name="image")
volumes_app = typer.Typer(
    help="List and prune the volumes that stand in for your files on a remote engine.", no_args_is_help=True
)
app.add_typer(volumes_app, name="volumes")
cache_app = typer.Typer(help="The compile cache (sccache) of your builds: stats, clear, path.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
ManifestPathOption = Annotated[
    str | None,
    typer.Option("--manifest-path", metavar="PATH", help="The workspace's Cargo.toml (default: found from here)."),
]

_PASS_THROUGH: dict[str, Any] = {"allow_extra_args": True, "ignore_unknown_options": True}
TargetOption = Annotated[
    list[str] | None,
    typer.Option("--target", metavar="TRIPLE", help="The target triple (see `xpcargo targets`)."),
]
MatrixTargetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--target",
        metavar="TRIPLE",
        help="The target triple (see `xpcargo targets`); repeat it, or say `all`, to build several side by side.",
    ),
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


def _targets(targets: list[str] | None, command: str) -> list[str]:
    if targets:
        return targets
    from xpcargo.errors import UnknownTargetError  # noqa: PLC0415

    raise UnknownTargetError(
        f"`xpcargo {command}` needs --target",
        hint="name a target triple, e.g. `--target aarch64-unknown-linux-gnu`, or `--target all` "
        "(`xpcargo targets` lists them)",
    )


def _one_target(targets: list[str] | None, command: str) -> str:
    from xpcargo.errors import UnknownTargetError  # noqa: PLC0415

    named = _targets(targets, command)
    if len(set(named)) > 1 or named[0] == "all":
        raise UnknownTargetError(
            f"`xpcargo {command}` takes one --target, got {', '.join(named)}",
            hint="run one command per target",
        )
    return named[0]


def _context(*, command_line: Sequence[str] | None = None) -> "Context":
    """The command's context; ``command_line``, its arguments as typed (``main`` keeps them as click's ``obj``)."""
    from xpcargo.context import Context  # noqa: PLC0415

    return Context.of_this_process(command_line=tuple(command_line or ()))


def _define_cargo_command(name: str, summary: str) -> None:
    def command(
        ctx: typer.Context,
        target: MatrixTargetOption = None,
        target_jobs: Annotated[
            int | None,
            typer.Option(
                "--target-jobs",
                min=1,
                metavar="N",
                help="With several targets: how many build side by side (default: the number of cores, at least 2). "
                "Cargo's own -j/--jobs passes through.",
            ),
        ] = None,
        fail_fast: Annotated[
            bool, typer.Option("--fail-fast", help="With several targets: stop the others when one fails.")
        ] = False,
        reproducible: Annotated[
            bool,
            typer.Option(
                "--reproducible",
                help="Build reproducibly: SOURCE_DATE_EPOCH, paths remapped, fixed locale, time zone, umask and user, "
                "--locked (see docs/releases.md).",
            ),
        ] = False,
    ) -> int:
        from xpcargo.commands import cargo  # noqa: PLC0415

        names = _targets(target, name)
        return cargo.cargo(
            _context(command_line=ctx.obj),
            name,
            names,
            list(ctx.args),
            target_jobs=target_jobs,
            fail_fast=fail_fast,
            reproducible=reproducible,
        )

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
def verify(ctx: typer.Context, target: TargetOption = None) -> int:
    """Build twice (each time in a fresh copy of the workspace, the second with another umask, time zone, locale
    and user) and compare every binary and library; exit 12 when any differs.

    Every other argument goes to `cargo build` unchanged."""
    from xpcargo.commands import release  # noqa: PLC0415

    triple = _one_target(target, "verify")
    return release.verify(_context(), triple, list(ctx.args))


@app.command(context_settings=_PASS_THROUGH, cls=_PassThroughCommand)
def dist(
    ctx: typer.Context,
    target: MatrixTargetOption = None,
    out_dir: Annotated[
        str | None,
        typer.Option("--out-dir", metavar="DIR", help="Where to write the archives (default: <target-dir>/dist)."),
    ] = None,
    version_in_name: Annotated[
        bool, typer.Option("--version-in-name", help="Name archives <bin>-v<version>-<target>.tar.gz.")
    ] = False,
    target_jobs: Annotated[
        int | None,
        typer.Option(
            "--target-jobs", min=1, metavar="N", help="How many targets build side by side (with --no-verify)."
        ),
    ] = None,
    *,
    no_verify: Annotated[
        bool,
        typer.Option("--no-verify", help="Build once, not twice and compared as verify does (the provenance says so)."),
    ] = False,
) -> int:
    """Build every binary reproducibly for every target, twice as verify does, and pack each as
    <bin>-<target>.tar.gz when both builds agree, with sha256.sum, dist-manifest.json and provenance.intoto.json
    beside them.

    Every other argument goes to `cargo build --release --bins` unchanged."""
    from xpcargo.commands import release  # noqa: PLC0415

    return release.dist(
        _context(),
        _targets(target, "dist"),
        list(ctx.args),
        out_dir=Path(out_dir) if out_dir else None,
        version_in_name=version_in_name,
        target_jobs=target_jobs,
        verified=not no_verify,
    )


@app.command(context_settings=_PASS_THROUGH, cls=_PassThroughCommand)
def shell(ctx: typer.Context, target: TargetOption = None) -> int:
    """Run a command (after --), or an interactive shell, in the target's container with a build's mounts and
    environment."""
    from xpcargo.commands import cargo  # noqa: PLC0415

    triple = _one_target(target, "shell")
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    return cargo.shell(_context(), triple, list(ctx.args), interactive=interactive)


@app.command()
def trust(
    revoke: Annotated[bool, typer.Option("--revoke", help="Withdraw the consent given to this checkout.")] = False,
    show: Annotated[
        bool, typer.Option("--show", help="Only show what the checkout's settings reach, and whether you consented.")
    ] = False,
    manifest_path: Annotated[str | None, typer.Option(help="Path to the project's Cargo.toml.")] = None,
) -> None:
    """Consent to what the checkout's own settings reach outside it (mounts, path dependencies, `links` paths, a
    target dir, `passthrough`, `engine`, `image`): records the checkout and a digest of exactly those settings in
    your config dir; changing any of them withdraws the consent."""
    from xpcargo.commands import trust as trusting  # noqa: PLC0415

    context = _context()
    _say(context, trusting.trust(context, revoke=revoke, show=show, manifest_path=manifest_path))


@app.command()
def targets(
    *,
    target: MatrixTargetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per target.")] = False,
    github_matrix: Annotated[
        bool,
        typer.Option("--github-matrix", help='Print a GitHub Actions matrix: {"include": [{"target": ...}]}.'),
    ] = False,
) -> None:
    """List the targets xpcargo knows: C library (glibc floor), linking, runner, Rust and image of each."""
    from xpcargo.commands import targets as listing  # noqa: PLC0415

    infos = listing.describe(_context(), target or [])
    if github_matrix:
        typer.echo(listing.github_matrix(infos))
    elif as_json:
        typer.echo(listing.as_json(infos))
    else:
        _print_table(listing.rows(infos))


@app.command()
def report(
    *,
    target: TargetOption = None,
    release: Annotated[bool, typer.Option("--release", "-r", help="The release profile's report.")] = False,
    profile: Annotated[str | None, typer.Option(help="The report of this profile.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON: one object per package.")] = False,
    artifacts: Annotated[
        bool,
        typer.Option(
            "--artifacts", help="Print the final artifacts instead, with the newest glibc each needs and the floor."
        ),
    ] = False,
    manifest_path: Annotated[str | None, typer.Option(help="Path to the project's Cargo.toml.")] = None,
    target_dir: Annotated[str | None, typer.Option(help="The target dir the build used.")] = None,
) -> None:
    """Print what every build script of the last build for a target decided, and what each artifact needs from
    glibc."""
    from xpcargo.commands import report as reporting  # noqa: PLC0415

    triple = _one_target(target, "report")
    shown = reporting.report(
        _context(),
        triple,
        release=release,
        profile=profile,
        manifest_path=manifest_path,
        target_dir=target_dir,
        artifacts=artifacts,
        as_json=as_json,
    )
    typer.echo(shown)


@app.command()
def info(as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Say which engine xpcargo talks to: Docker or Podman, its version and API version, rootless or not, where."""
    from xpcargo.commands import engine  # noqa: PLC0415

    for line in engine.info(engine.connect(_context().host), as_json=as_json):
        typer.echo(line)


@app.command()
def ps() -> None:
    """List your warm containers: the build containers kept running for the next command (see XPCARGO_KEEP_WARM)."""
    from xpcargo.commands import engine  # noqa: PLC0415

    _print_table(engine.ps(engine.connect(_context().host)))


@app.command()
def down(
    everything: Annotated[
        bool, typer.Option("--all", help="Stop every warm container of yours, not only this workspace's.")
    ] = False,
) -> None:
    """Stop the warm containers of the workspace here (with --all, all of yours), and whatever runs in them."""
    from xpcargo.commands import engine  # noqa: PLC0415

    context = _context()
    _say(context, engine.down(context, engine.connect(context.host), everything=everything))


@image_app.command("build")
def image_build(
    target_names: Annotated[list[str] | None, typer.Argument(metavar="[TARGET]...", help="Default: all.")] = None,
) -> None:
    """Build the images for these targets (all by default) unless the engine has them already."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context()
    images.build(context, engine.connect(context.host), target_names or [])


@image_app.command("lock")
def image_lock(
    target_names: Annotated[list[str] | None, typer.Argument(metavar="[TARGET]...", help="Default: all.")] = None,
    refresh: Annotated[
        bool, typer.Option("--refresh", help="Build the images anew from today's mirror first, then lock them.")
    ] = False,
) -> None:
    """Write the exact Debian packages of these targets' images to the project's xpcargo-images.lock."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context()
    images.lock(context, engine.connect(context.host), target_names or [], refresh=refresh)


@image_app.command("verify")
def image_verify(target: Annotated[str, typer.Argument(metavar="TARGET")]) -> None:
    """Build a locked target's image layers again and check that they are the same."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context()
    images.verify(context, engine.connect(context.host), target)


@image_app.command("list")
def image_list(ctx: typer.Context) -> None:
    """List xpcargo's images, marking those that today's recipes would build."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context(command_line=ctx.obj)
    typer.echo(images.listing(context, engine.connect(context.host)), nl=False)


def _duration(text: str) -> float:
    from xpcargo.ui import parse_duration  # noqa: PLC0415

    return parse_duration(text, option="--older-than")


@image_app.command("key")
def image_key(
    target_names: Annotated[list[str] | None, typer.Argument(metavar="[TARGET]...", help="Default: all.")] = None,
) -> None:
    """Print the CI cache key of these targets' images: it changes exactly when one of the images would."""
    from xpcargo.commands import images  # noqa: PLC0415

    typer.echo(images.key(_context(), target_names or []))


@image_app.command("save")
def image_save(
    target_names: Annotated[list[str] | None, typer.Argument(metavar="[TARGET]...", help="Default: all.")] = None,
    *,
    output: Annotated[Path, typer.Option("--output", "-o", help="The directory to write <plan digest>.tar to.")],
) -> None:
    """Write these targets' images (built first if missing) to files named by their plan digest, for a CI cache."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context()
    images.save(context, engine.connect(context.host), target_names or [], output)


@image_app.command("load")
def image_load(
    directory: Annotated[Path, typer.Argument(help="A directory written by `xpcargo image save`.")],
) -> None:
    """Load the saved images whose plan a target has now; refuse a file that does not hold what its name says."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context()
    images.load(context, engine.connect(context.host), directory)


@image_app.command("prune")
def image_prune(
    everything: Annotated[bool, typer.Option("--all", help="Remove current images too, not only stale ones.")] = False,
    older_than: Annotated[
        float | None,
        typer.Option(
            "--older-than",
            metavar="DURATION",
            parser=_duration,
            help="Only images not used for this long: 30m, 12h, 7d, 2w.",
        ),
    ] = None,
) -> None:
    """Remove the images xpcargo built, except the current ones of the shipped targets and any a container uses."""
    from xpcargo.commands import engine, images  # noqa: PLC0415

    context = _context()
    images.prune(context, engine.connect(context.host), everything=everything, unused_for=older_than)


@volumes_app.command("list")
def volumes_list() -> None:
    """List your volumes on the engine (remote mode): what each mirrors, and which containers use it."""
    from xpcargo.commands import engine, volumes  # noqa: PLC0415

    _print_table(volumes.rows(engine.connect(_context().host)))


@volumes_app.command("prune")
def volumes_prune() -> None:
    """Remove your volumes on the engine that no container uses (a warm build container keeps its own)."""
    from xpcargo.commands import engine, volumes  # noqa: PLC0415

    context = _context()
    _say(context, volumes.prune(context, engine.connect(context.host)))


@cache_app.command("stats")
def cache_stats() -> None:
    """List the compile caches your builds used: workspace, builds, hits, misses, hit rate, size, directory."""
    from xpcargo.commands import cache  # noqa: PLC0415

    _print_table(cache.rows(_context()))


@cache_app.command("clear")
def cache_clear(
    everything: Annotated[
        bool, typer.Option("--all", help="Clear every compile cache, not only this workspace's.")
    ] = False,
    manifest_path: ManifestPathOption = None,
) -> None:
    """Empty the compile cache of the workspace here (with --all, every one) and forget its statistics."""
    from xpcargo.commands import cache  # noqa: PLC0415

    context = _context()
    _say(context, cache.clear(context, everything=everything, manifest_path=manifest_path))


@cache_app.command("path")
def cache_path(manifest_path: ManifestPathOption = None) -> None:
    """Print the directory of the workspace's compile cache (to save and restore it in CI)."""
    from xpcargo.commands import cache  # noqa: PLC0415

    context = _context()
    _say(context, cache.path(context, manifest_path=manifest_path))


def _print_table(rows: Sequence[tuple[str, ...]]) -> None:
    from xpcargo.ui import render_table  # noqa: PLC0415

    typer.echo(render_table(rows), nl=False)


def _say(context: "Context", output: "Answer") -> None:
    for line in output.lines:
        typer.echo(line)
    reporter = context.host.reporter()
    for verb, message in output.statuses:
        reporter.status(verb, message)


def _fail(error: XpcargoError) -> int:
    print(error.summary(), file=sys.stderr)
    return error.exit_code


def main(argv: list[str] | None = None) -> None:
    from xpcargo import interrupts  # noqa: PLC0415

    try:
        with interrupts.as_errors():
            args = sys.argv[1:] if argv is None else argv
            result = app(args=args, prog_name="xpcargo", standalone_mode=False, obj=tuple(args))
        code = result if isinstance(result, int) else 0
    except XpcargoError as error:
        code = _fail(error)
    except click.exceptions.NoArgsIsHelpError as error:
        # `xpcargo` or `xpcargo image` alone: the help is the answer, printed as help, not squeezed into an error.
        print(error.format_message(), file=sys.stderr)
        code = 2
    except click.UsageError as error:
        code = _fail(UsageError(error.format_message().replace("\n", " "), hint="see `xpcargo --help`"))
    except (typer.Abort, KeyboardInterrupt):
        code = _fail(InterruptError("interrupted"))
    except typer.Exit as exit_:
        code = exit_.exit_code
    except Exception as error:
        # Read here, not through Settings: the error may have come before (or from) reading the settings.
        if os.environ.get("XPCARGO_DEBUG"):
            raise
        code = _fail(
            InternalError(
                f"internal error: {type(error).__name__}: {error}",
                hint="this is a bug in xpcargo; run again with XPCARGO_DEBUG=1 for a traceback and report it",
            )
        )
    sys.stdout.flush()
    sys.exit(code)
