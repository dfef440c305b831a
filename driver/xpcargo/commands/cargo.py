"""`xpcargo build|check|test|run|doc|clippy|bench` and `xpcargo shell`: Cargo, and a shell, in the targets'
containers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from xpcargo.commands import engine

if TYPE_CHECKING:
    from xpcargo.context import Context


def cargo(
    context: Context,
    command: str,
    names: Sequence[str],
    args: Sequence[str],
    *,
    target_jobs: int | None,
    fail_fast: bool,
    reproducible: bool,
) -> int:
    """`xpcargo <command> --target ...`: Cargo's exit code, or the worst of the targets built side by side."""
    from xpcargo.pipeline import matrix  # noqa: PLC0415

    return matrix.cargo_command(
        context.host,
        context.cwd,
        command,
        context.named_targets(names),
        args,
        connect=engine.connect,
        target_jobs=target_jobs,
        fail_fast=fail_fast,
        reproducible=reproducible,
    )


def shell(context: Context, triple: str, argv: Sequence[str], *, interactive: bool) -> int:
    """`xpcargo shell`: ``argv`` (what follows `--`), or an interactive shell, in the target's container."""
    from xpcargo.pipeline import run  # noqa: PLC0415
    from xpcargo.pipeline.plan import find_project  # noqa: PLC0415

    command = list(argv[1:] if argv[:1] == ["--"] else argv)
    # Before the project is looked for: outside a project, this is the first thing wrong.
    run.check_shell(command, interactive=interactive)
    project = find_project(context.host, context.cwd, triple, [])
    return run.shell(context.host, project, triple, command, connect=engine.connect, interactive=interactive)
