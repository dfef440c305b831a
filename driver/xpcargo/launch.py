"""What runs first: a request for help answered from the help that typer printed before, a no-op build or `image list`
replayed (``replay``), and everything else handed to the CLI.

Importing click and typer and turning every command into a click command costs several times Python's own start-up,
which is all that `xpcargo --help` would need to pay. So the help text typer prints for `xpcargo [COMMAND...] --help`
is kept in the user's cache and printed from there next time, without importing anything but ``os`` and ``sys``. It is
generated, never written by hand: an entry is valid only for the same Python, the same xpcargo source (every file's
size and modification time) and the same installed packages (the modification time of each directory on
``sys.path``, which pip changes when it installs, upgrades or removes one), and for the same help width.
"""

from __future__ import annotations

import os
import sys

from xpcargo import installation

# click's help is as wide as the terminal up to 80 columns, less 2, and never narrower than 50 (HelpFormatter).
_MAX_WIDTH = 80
_MIN_WIDTH = 50
# `xpcargo --help`, `xpcargo image --help`, `xpcargo image list --help`: at most two command words.
_MAX_WORDS = 2


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    name = _entry_name(args)
    if name is not None:
        entry = os.path.join(
            installation.cache_dir(), "help", f"{installation.source_fingerprint()}-{_help_width()}-{name}.txt"
        )
        text = _read(entry)
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            sys.exit(0)
        _help_and_keep(args, entry)
    # replay imports only built-in modules: which commands it answers is its own to say (replay.COMMANDS, LISTINGS).
    from xpcargo import replay  # noqa: PLC0415 - not paid by a help from the cache

    code = replay.replay(args, cache_dir=installation.cache_dir(), fingerprint=installation.source_fingerprint)
    if code is not None:
        sys.exit(code)
    from xpcargo.cli import main as cli_main  # noqa: PLC0415 - click and typer are what a cached help avoids

    cli_main(args)


def _entry_name(args: list[str]) -> str | None:
    """The cache entry's name for `xpcargo WORD... --help`, or None when ``args`` ask for anything else."""
    *words, last = args or [""]
    if last != "--help" or len(words) > _MAX_WORDS:
        return None
    if not all(word[:1].isalnum() and word.replace("-", "").isalnum() and word.isascii() for word in words):
        return None
    # "+" is in no command's name: `image list` and a command named `image-list` never share an entry.
    return "+".join(["xpcargo", *words])


def _help_and_keep(args: list[str], entry: str) -> None:
    """Run the CLI for a help request, print what it prints, and keep it when it was help (exit code 0)."""
    import contextlib  # noqa: PLC0415
    import io  # noqa: PLC0415

    from xpcargo.cli import main as cli_main  # noqa: PLC0415

    printed = io.StringIO()
    code: str | int | None = 0
    try:
        with contextlib.redirect_stdout(printed):
            cli_main(args)
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.stdout.write(printed.getvalue())
        sys.stdout.flush()
    text = printed.getvalue()
    # The width click used is shutil's; an entry is named by the width the next run computes, and kept only when
    # the two agree, so that an entry never holds help laid out for another width.
    if code in (0, None) and text and _help_width() == _click_width():
        _write(entry, text)
    sys.exit(code)


def _help_width() -> int:
    """The width click lays help out at, computed as shutil.get_terminal_size does without importing shutil."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
        except (AttributeError, ValueError, OSError):
            columns = 0
    return max(min(columns or _MAX_WIDTH, _MAX_WIDTH) - 2, _MIN_WIDTH)


def _click_width() -> int:
    import shutil  # noqa: PLC0415

    return max(min(shutil.get_terminal_size().columns, _MAX_WIDTH) - 2, _MIN_WIDTH)


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as file:
            return file.read()
    except (OSError, UnicodeDecodeError):
        return None


def _write(path: str, text: str) -> None:
    """Keep ``text`` at ``path`` (atomically, so that a help printed at the same time never reads half of it) and drop
    the entries of other fingerprints; a cache that cannot be written only costs the next help its speed."""
    from pathlib import Path  # noqa: PLC0415 - typer is imported by now, and these cost nothing next to it

    from xpcargo.files import write_atomically  # noqa: PLC0415

    directory, name = os.path.split(path)
    fingerprint = name.split("-", 1)[0]
    try:
        os.makedirs(directory, exist_ok=True)
        write_atomically(Path(path), text)
        for old in os.listdir(directory):
            # A temporary file of this fingerprint's (`.<entry>.<random>.tmp`) may be another help's, being written.
            if not old.startswith((f"{fingerprint}-", f".{fingerprint}-")):
                os.unlink(os.path.join(directory, old))
    except OSError:
        return
