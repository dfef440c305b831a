"""What this installation of xpcargo is, found without importing anything but ``os`` and ``sys``: the user's cache
directory, and a fingerprint of xpcargo's files and the installed packages (what a help kept in the cache, and a
replayed build's record, are valid for)."""

from __future__ import annotations

import os
import sys

PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def source_fingerprint() -> str:
    """A checksum of what the help text is made from: this Python, xpcargo's source and the installed packages."""
    import zlib  # noqa: PLC0415 - a built-in module: costs nothing like hashlib's OpenSSL

    parts = [sys.version, sys.executable]
    for root, dirs, files in os.walk(PACKAGE_DIR):
        dirs[:] = sorted(name for name in dirs if name != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                stat = os.stat(os.path.join(root, name))
                parts.append(f"{root}/{name}:{stat.st_size}:{stat.st_mtime_ns}")
    # sys.path[0] is the script's directory or the working directory, which neither typer nor click come from.
    for directory in sys.path[1:]:
        try:
            parts.append(f"{directory}:{os.stat(directory).st_mtime_ns}")
        except OSError:
            continue
    return f"{zlib.crc32(chr(0).join(parts).encode('utf-8', 'surrogateescape')):08x}"


def cache_dir() -> str:
    """The user's cache, found as context.Settings finds it (XPCARGO_CACHE_DIR, else resources.default_cache_dir)."""
    environ = os.environ
    if environ.get("XPCARGO_CACHE_DIR"):
        return environ["XPCARGO_CACHE_DIR"]
    base = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".cache")
    return os.path.join(base, "xpcargo")
