"""The smallest Cargo project, written for the unit tests that plan or run a build of one (nothing compiles it)."""

from __future__ import annotations

import socket
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def app_project(tmp_path: Path, xpcargo_toml: str | None = None) -> Path:
    """A package `app` with a `main.rs` under ``tmp_path/app``, and, if given, its ``xpcargo.toml``."""
    root = tmp_path / "app"
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    (root / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    if xpcargo_toml is not None:
        (root / "xpcargo.toml").write_text(textwrap.dedent(xpcargo_toml), encoding="utf-8")
    return root


@contextmanager
def listening(path: Path) -> Iterator[None]:
    """A unix socket bound at ``path`` for as long as the block runs: what an engine's or an agent's socket is."""
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(path))
    try:
        yield
    finally:
        listener.close()
