"""`xpcargo verify` and `xpcargo dist`: reproducible builds compared, and release archives."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xpcargo.commands import engine

if TYPE_CHECKING:
    from xpcargo.context import Context


def verify(context: Context, triple: str, args: Sequence[str]) -> int:
    """`xpcargo verify`: 0 when both builds agree, 12 when an artifact differs."""
    from xpcargo.release import verify as verifying  # noqa: PLC0415

    return verifying.verify(context.host, context.cwd, triple, args, connect=engine.connect)


def dist(
    context: Context,
    names: Sequence[str],
    args: Sequence[str],
    *,
    out_dir: Path | None,
    version_in_name: bool,
    target_jobs: int | None,
    verified: bool,
) -> int:
    """`xpcargo dist`: the archives of every target's binaries, with their checksums, manifest and provenance."""
    from xpcargo.release import dist as releasing  # noqa: PLC0415

    return releasing.dist(
        context.host,
        context.cwd,
        context.named_targets(names),
        args,
        connect=engine.connect,
        out_dir=out_dir,
        version_in_name=version_in_name,
        target_jobs=target_jobs,
        verified=verified,
    )
