"""What every replay's record holds (``xpcargo.replay``), and the record of `xpcargo image list`: its output, made
from the engine's answer to one request and from the configuration (the toolchain table, the recipes, the project's
`xpcargo.toml` and lock file), given again while both are unchanged. The record of a build is
``pipeline.replay_record``'s, which builds on this."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xpcargo import installation, replay
from xpcargo.container.runtime import RecordedRequest
from xpcargo.context import Host, Settings
from xpcargo.files import write_atomically

# What a plan looks for in the working directory and each directory above it, and in the workspace's: Cargo's
# manifests, lock file and config, rustup's toolchain files and xpcargo's own.
_LOOKED_FOR = (
    "Cargo.toml",
    "Cargo.lock",
    "xpcargo.toml",
    "xpcargo-images.lock",
    "rust-toolchain",
    "rust-toolchain.toml",
    ".cargo",
    ".cargo/config",
    ".cargo/config.toml",
)
# A tree with more files than this is not recorded: checking them all would cost what a replay saves.
MOST_FILES = 20_000
# A record not written again for this long is dropped when another is written (a replayed one is read, not written:
# it takes the usual way once, which writes it again).
FORGOTTEN_AFTER = 30 * 86400


def configuration(settings: Settings, *starts: Path) -> list[str] | None:
    """What any command's configuration comes from: the files looked for in each of ``starts`` and the directories
    above, the toolchain table and the recipes, and docker's config (which engine); None for a recipe directory too
    large to check."""
    recipes = replay.walk([str(settings.recipes_dir)], skip=(), limit=MOST_FILES)
    if recipes is None:
        return None
    found = [str(directory / name) for start in starts for directory in (start, *start.parents) for name in _LOOKED_FOR]
    docker_config = Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker")
    found += [str(docker_config / "config.json"), str(docker_config / "contexts" / "meta")]
    found += [str(settings.toolchains_file), str(settings.recipes_dir), *(path for path, _ in recipes)]
    return found


def keep_listing(host: Host, cwd: Path, recorded: RecordedRequest | None, output: str) -> None:
    """Record `xpcargo image list` (``output``, made from the engine's answer to ``recorded``, which did not change
    while it was made), or forget its record when it cannot be replayed."""
    argv = host.command_line
    if argv != ("image", "list") or not host.settings.replay:
        return
    path = replay.record_path(str(host.settings.cache_dir), argv, str(cwd))
    named = configuration(host.settings, cwd)
    if recorded is None or named is None:
        replay.forget(path)
        return
    files = sorted(set(named))
    record = {
        **common(argv, str(cwd), kind="listing"),
        "files": [(file, replay.signature(file)) for file in files],
        "contents": [],
        "views": [],
        "socket": recorded.socket,
        "api": recorded.api,
        "timeout": recorded.timeout,
        "target": recorded.target,
        # Digested as the replay digests its own answer.
        "answer": replay.digest(recorded.answer),
        "output": output,
    }
    write(path, record)


def common(argv: Sequence[str], cwd: str, *, kind: str) -> dict[str, Any]:
    return {
        "format": replay.FORMAT,
        "kind": kind,
        "argv": list(argv),
        "cwd": cwd,
        "fingerprint": installation.source_fingerprint(),
        "environ": replay.environment_digest(os.environ),
        "terminal": replay.terminal_state(),
    }


def write(path: str, record: Mapping[str, Any]) -> None:
    """Keep ``record`` at ``path``, and drop the records not written for ``FORGOTTEN_AFTER`` seconds (a record is
    one per command and directory: those of projects long gone would pile up). A record that cannot be written
    only costs the next command its replay."""
    directory = Path(path).parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(Path(path), replay.encode(record), mode=0o600)
    except OSError:
        replay.forget(path)
        return
    old = time.time() - FORGOTTEN_AFTER
    with contextlib.suppress(OSError):
        for entry in os.scandir(directory):
            if entry.stat(follow_symlinks=False).st_mtime < old:
                replay.forget(entry.path)
