"""The Rust a project asks for: rustup's toolchain file (``rust-toolchain.toml``, or the legacy ``rust-toolchain``),
and the override of it (``XPCARGO_TOOLCHAIN``). Which image gives that Rust is ``image.toolchain``'s to say.

rustup looks in the directory Cargo runs in, then in each parent, and in one directory prefers the legacy
``rust-toolchain`` to ``rust-toolchain.toml`` (it warns that both exist). xpcargo does the same from the workspace
root, the one directory every command of a workspace shares, so that ``build``, ``image build``, ``dist`` and
``targets`` all see one answer wherever in the workspace they run.

The file is the checkout's, so untrusted: it is read only if it is a regular file of at most ``MAX_BYTES``, never
through a link that leads out of the directory it sits in (a link to the user's secrets would otherwise print them
as the "channel" in an error), and what it says is shown escaped and cut short.
"""

from __future__ import annotations

import os
import re
import stat
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from xpcargo.errors import ConfigError
from xpcargo.ui import escape_controls

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

# rustup's order within one directory: the legacy file first.
FILE_NAMES = ("rust-toolchain", "rust-toolchain.toml")
# A real toolchain file is a few lines; anything much larger is not one.
MAX_BYTES = 64 << 10
OVERRIDE = "XPCARGO_TOOLCHAIN"
# What XPCARGO_TOOLCHAIN says to build every target with its own Rust (as toolchains.yaml names its recipe),
# whatever the toolchain file asks.
DEFAULT = "default"
# The keys of rustup's [toolchain] table that choose more than the Rust: the image has what it has.
_IGNORED_KEYS = ("components", "targets", "profile")
_SHOWN_CHARS = 60
# rustup's channel grammar in a toolchain file: stable|beta|nightly|MAJOR.MINOR[.PATCH], an optional -YYYY-MM-DD.
CHANNEL = re.compile(r"^(stable|beta|nightly|[0-9]+\.[0-9]+(\.[0-9]+)?)(-[0-9]{4}-[0-9]{2}-[0-9]{2})?$")


@dataclass(frozen=True, kw_only=True)
class Request:
    """A Rust asked for: the channel as written, and who asked (the toolchain file's path, or the override)."""

    channel: str
    origin: str
    # The keys of the file xpcargo does not apply (components, targets, profile).
    ignored: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        """The channel for a message: escaped and cut short (it is the checkout's text)."""
        return shown(self.channel)

    @property
    def wants_default(self) -> bool:
        return self.channel == DEFAULT and self.origin == OVERRIDE


def shown(text: str) -> str:
    cut = text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "..."
    return escape_controls(cut)


def requested(environ: Mapping[str, str], file: Request | None) -> Request | None:
    """What the build asks for: ``XPCARGO_TOOLCHAIN`` when set (as ``RUSTUP_TOOLCHAIN`` overrides rustup's file),
    else the project's toolchain file."""
    override = environ.get(OVERRIDE, "").strip()
    if override:
        return Request(channel=override, origin=OVERRIDE)
    return file


def find(start: Path) -> Request | None:
    """The channel of the first toolchain file in ``start`` or a parent (rustup's search), or None: no file, or one
    that names no channel (only components: rustup's default toolchain then, the image's Rust here)."""
    for directory in (start, *start.parents):
        for name in FILE_NAMES:
            path = directory / name
            if os.path.lexists(path):
                return _read(path)
    return None


def _read(path: Path) -> Request | None:
    text = _contents(path)
    where = str(path)
    # rustup: a legacy file of one line is a toolchain's name; anything else (and rust-toolchain.toml) is TOML.
    if path.name == "rust-toolchain" and len(text.splitlines()) == 1 and "=" not in text and "[" not in text:
        return Request(channel=text.strip(), origin=where)
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as error:
        raise ConfigError(
            f"{where} is not a toolchain file: {shown(str(error))}",
            hint='rustup\'s form is `[toolchain]` with `channel = "1.85"`, or remove the file',
        ) from None
    table = data.get("toolchain")
    if not isinstance(table, dict):
        raise ConfigError(f"{where} has no [toolchain] table", hint='write `[toolchain]` and `channel = "1.85"`')
    if "path" in table:
        raise ConfigError(
            f"{where} names a toolchain by path (`{shown(str(table['path']))}`), which no xpcargo image has",
            hint=f'name a channel (`channel = "1.85"`), or override it with {OVERRIDE}=<channel>',
        )
    channel = table.get("channel")
    if channel is None:
        return None
    if not isinstance(channel, str) or not channel.strip():
        raise ConfigError(f"{where}: toolchain.channel is not a channel's name", hint='write it as `channel = "1.85"`')
    ignored = tuple(key for key in _IGNORED_KEYS if key in table)
    return Request(channel=channel.strip(), origin=where, ignored=ignored)


def _contents(path: Path) -> str:
    """The file's text: a regular file (never a FIFO or a device to block on), at most ``MAX_BYTES``, UTF-8, and
    reached by no link that leaves its own directory."""
    directory = path.parent.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(directory):
        raise ConfigError(
            f"{path} is a link to outside {directory}; xpcargo does not read it",
            hint=f"replace the link with the file itself, or override it with {OVERRIDE}=<channel>",
        )
    try:
        descriptor = os.open(resolved, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror or error}", hint="fix or remove the file") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path} is not a regular file", hint="a toolchain file is a small text file")
        data = os.read(descriptor, MAX_BYTES + 1)
    finally:
        os.close(descriptor)
    if len(data) > MAX_BYTES:
        raise ConfigError(
            f"{path} is larger than {MAX_BYTES >> 10} KiB, which no toolchain file is",
            hint='a toolchain file is `[toolchain]` with `channel = "1.85"`',
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8", hint="save it as UTF-8 text") from None
