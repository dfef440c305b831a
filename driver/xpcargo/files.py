"""Writing files: one atomic writer, and one TOML writer (the standard library reads TOML but does not write it);
and one way to read a file of the build's that may be anything (``reading_regular``).

``write_atomically`` (or ``replacing``, for content written in pieces; ``replacing_path`` for a writer that takes a
path) is for a file that another process may read,
or write, at the same time: a lock file, a record, a cache entry, a release file. ``toml_key``, ``toml_string``,
``toml_value`` and ``toml_table`` make the TOML files xpcargo writes (the image lock file, the trust record, the Cargo
config files it hands to Cargo with ``--config``), escaping what TOML needs escaped. ``reading_regular`` reads an
artifact the build wrote, which a build script may have made a FIFO or a device to block on.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO, NewType

# --- Atomic writes -------------------------------------------------------------------------------------------------

# O_NOFOLLOW and O_EXCL: the temporary file is new, never one that was there (a leftover, a link planted there).
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NAME_ATTEMPTS = 100


@contextlib.contextmanager
def replacing(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """An open binary file whose content replaces ``path`` when the block ends without an error.

    Guaranteed: a reader of ``path`` sees the old file or the new one, whole, never a part of either. The new content
    goes to a temporary file beside ``path`` (in the same directory, so that the rename stays within one file
    system), of a name of its own (``.<name>.<random>.tmp``, created exclusively, as ``mkstemp`` does: two writers of
    the same path, or a leftover of a run that died, never share one); it is flushed to the disk (``fsync``), given
    its permissions and renamed over ``path`` (``os.replace``). Two writers of one path both succeed, and the last
    rename wins. On any exception in the block or here, an interrupt (``KeyboardInterrupt``) included, the temporary
    file is removed and ``path`` is left as it was.

    The permissions are exactly ``mode`` when given (``0o600`` for a file that is the user's alone: the file is
    created with it, so it is never readable by others), else those of any new file (``0o666`` less the umask).

    Not guaranteed: the directory is not fsynced, so a crash of the machine just after the rename may bring back the
    old file (whole); writers are not serialized (take a lock for a read-modify-write); the directory must exist; an
    existing file's owner and permissions are not carried over.
    """
    temporary, descriptor = _create_beside(path, 0o600 if mode is not None else 0o666)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
            if mode is not None:
                os.fchmod(stream.fileno(), mode)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (a ``str`` as UTF-8), with the guarantees of ``replacing``."""
    with replacing(path, mode=mode) as stream:
        stream.write(data.encode() if isinstance(data, str) else data)


@contextlib.contextmanager
def replacing_path(path: Path) -> Iterator[Path]:
    """For a writer that takes a path, not a stream (the engine saving an image): the path of a new, empty temporary
    file beside ``path``, renamed over ``path`` when the block ends without an error, removed when it does not, as
    ``replacing`` does (but not fsynced: the writer closed the file)."""
    temporary, descriptor = _create_beside(path, 0o666)
    os.close(descriptor)
    try:
        yield temporary
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create_beside(path: Path, mode: int) -> tuple[Path, int]:
    for _ in range(_NAME_ATTEMPTS):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return temporary, os.open(temporary, _CREATE, mode)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")


# --- TOML ----------------------------------------------------------------------------------------------------------

# A key as TOML text: bare, or a quoted string. Only ``toml_key`` makes one, so a table header is never raw text.
Key = NewType("Key", str)

_BARE_KEY_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
# What a basic string must escape (TOML 1.0): the quote, the backslash and the control characters (tab too), in the
# short form where TOML has one, else as the same ``\\u00XX`` that JSON writes.
_SHORT_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}
_ESCAPES = {
    **{code: f"\\u{code:04x}" for code in [*range(0x20), 0x7F]},
    **{ord(character): escaped for character, escaped in _SHORT_ESCAPES.items()},
}


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string. Text other than the escaped characters stays as it is (the file is UTF-8)."""
    return f'"{text.translate(_ESCAPES)}"'


def toml_key(name: str, *, quoted: bool = False) -> Key:
    """``name`` as a TOML key: bare when TOML allows it (ASCII letters, digits, ``-`` and ``_``) and not ``quoted``,
    else a quoted string."""
    bare = not quoted and name != "" and _BARE_KEY_CHARACTERS.issuperset(name)
    return Key(name if bare else toml_string(name))


def toml_table(*keys: Key, array: bool = False) -> str:
    """The header of the table at the dotted ``keys`` (``[a.b]``), or of the next table of an array (``[[a.b]]``)."""
    dotted = ".".join(keys)
    return f"[[{dotted}]]" if array else f"[{dotted}]"


def toml_value(value: object, *, multiline: bool = False) -> str:
    """``value`` (a string, a boolean, a number, a list or tuple of values, a mapping of values) as an inline TOML
    value; a ``multiline`` array has one item a line, each indented and followed by a comma. TypeError for a value
    TOML cannot say (a datetime, ``None``)."""
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        # Python's `inf`, `-inf` and `nan` are TOML's too, and so is its exponent form (`1e+16`).
        return str(value)
    if isinstance(value, list | tuple):
        items = [toml_value(item) for item in value]
        return ("[\n" + "".join(f"    {item},\n" for item in items) + "]") if multiline else f"[{', '.join(items)}]"
    if isinstance(value, Mapping):
        pairs = [f"{toml_key(str(key))} = {toml_value(item)}" for key, item in value.items()]
        return "{ " + ", ".join(pairs) + " }"
    raise TypeError(f"TOML cannot say: {value!r}")


class NotRegularFileError(OSError):
    """What ``reading_regular`` found is no regular file."""


@contextlib.contextmanager
def reading_regular(path: Path) -> Iterator[tuple[Callable[[int, int], bytes], int]]:
    """``read(offset, size)`` of the regular file at ``path`` and its size; a symbolic link is followed, and a FIFO or a
    device is refused (NotRegularFileError) without blocking on it. Opening and reading raise OSError."""
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFileError("not a regular file")

        def read(offset: int, size: int) -> bytes:
            return os.pread(descriptor, size, offset)

        yield read, info.st_size
    finally:
        os.close(descriptor)
