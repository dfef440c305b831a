"""The smallest Cargo project, written for the unit tests that plan or run a build of one (nothing compiles it), and
its plan as the commands make it."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from xpcargo.cargo.args import parse_cargo_args
from xpcargo.context import Context, Host
from xpcargo.pipeline import matrix
from xpcargo.pipeline.matrix import Summary
from xpcargo.pipeline.plan import BuildPlan, find_project, plan
from xpcargo.pipeline.reproducible import Reproducibility


def app_project(tmp_path: Path, xpcargo_toml: str | None = None) -> Path:
    """A package `app` with a `main.rs` under ``tmp_path/app``, and, if given, its ``xpcargo.toml``."""
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    (root / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    if xpcargo_toml is not None:
        (root / "xpcargo.toml").write_text(textwrap.dedent(xpcargo_toml), encoding="utf-8")
    return root


def plan_in(
    context: Context,
    command: str,
    triple: str,
    args: Sequence[str],
    *,
    reproducible_settings: Reproducibility | None = None,
) -> BuildPlan:
    """The plan of ``command`` for the project that ``context``'s working directory and ``args`` name."""
    project = find_project(context.host, context.cwd, triple, args)
    return plan(context.host, project, command, triple, args, reproducible_settings=reproducible_settings)


@contextmanager
def listening(path: Path) -> Iterator[None]:
    """A unix socket bound at ``path`` for as long as the block runs: what an engine's or an agent's socket is."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    try:
        yield
    finally:
        listener.close()


def where(context: Context) -> tuple[Host, Path]:
    """What the layers below the commands take of a command's context: the Host, and the directory it runs in."""
    return context.host, context.cwd


def build_matrix(context: Context, command: str, triples: list[str], args: list[str], **options: Any) -> Summary:
    """``matrix.build_matrix`` as a command calls it: from the context's directory, for the project it finds there."""
    project = context.project(parse_cargo_args(args))
    return matrix.build_matrix(context.host, context.cwd, command, triples, args, project=project, **options)
