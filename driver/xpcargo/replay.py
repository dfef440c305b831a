"""A no-op build replayed: the same `xpcargo build|check|clippy` again, in the same place, with nothing changed
since the last one, runs its Cargo command in the same warm container without importing the rest of xpcargo; and
`xpcargo image list` again, with the same configuration and the same answer from the engine, prints what it printed
(``replay_listing`` records it).

Python's start-up and the imports of the whole driver cost twice a `docker exec` (docs/costs.md), and a no-op's
answer depends on nothing that changed. So a build that found nothing to do (every artifact fresh, xpcargo silent,
Cargo's exit code 0) leaves a record of what it read and what it asked of the engine (``pipeline.replay_record``
writes it), and the next command with the same arguments, in the same directory, checks that record and, when
nothing in it changed, sends the engine the same exec itself.

Nothing is taken on trust from the record but what xpcargo wrote there; it lives in the user's cache, which no
container mounts. It names:
- what the build's plan depends on: xpcargo's own files and the installed packages
  (``installation.source_fingerprint``), the environment (a digest), the terminal, every file the plan read or
  looked for (there or not), where the mounts lead, the files in the project's packages (so that an edit takes the
  usual way at once, rather than after Cargo's answer), the contents of xpcargo's own files in the target dir, what
  the host shows at the mounts' sources (``container.host_view``), and the image its tag names on the engine;
- the warm container and until when it may take commands, the slot's lock, and the exec's request;
- each line the build printed on its standard output (a digest) with what the usual way printed for it on standard
  error (a diagnostic as Cargo rendered it, printed again as the line comes), and the files that must still be
  missing after it.

Any difference before the exec and this module returns None: nothing ran, and the command runs the usual way.
After the exec, an answer that differs from the record's (Cargo did something, or failed) is not a no-op's: the
record is dropped and the command runs again the usual way, whose Cargo then finds its work done and whose report
and hints are the usual ones. Cargo's standard error is passed on as it comes, in both runs.

Only the standard library's built-in modules are imported here (``os``, ``sys``, ``marshal``, ``fcntl``, ``time``
and the digest), and ``container.docker.replay_exec`` for the engine.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, NoReturn

try:
    from _sha2 import sha256  # type: ignore[import-not-found, unused-ignore]  # Python 3.12 and later
except ImportError:  # pragma: no cover - Python 3.11
    from _sha256 import sha256  # type: ignore[import-not-found, no-redef, unused-ignore]

# The commands whose standard output is Cargo's messages alone (no program of the project's prints there).
COMMANDS = frozenset({"build", "check", "clippy"})
# The listings whose output is the engine's answer read with what the plans name: replayed when both are unchanged.
LISTINGS = frozenset({("image", "list")})
# The record's layout; a record of another is ignored.
FORMAT = 1
# What the environment may change between two commands of one shell without changing what a build does.
_SHELL_VARIABLES = frozenset({"_", "OLDPWD"})
# Longer than any line of Cargo's messages that the usual way reads as one (cargo.messages.MAX_MESSAGE_BYTES).
_LONGEST_LINE = 4 << 20
# A warm container this close to the end of its lifetime is left to the usual way, which replaces it.
_LIFETIME_MARGIN = 5.0
# context.KNOBS says what it does, and Settings checks its value; read here before them: "0" turns replays off.
SETTING = "XPCARGO_REPLAY"

Signature = tuple[int, int, int, int, int, int]


def signature(path: str) -> Signature | None:
    """What changes when a file or directory is written, replaced, renamed over or made (the change time, which
    no user can set, included); None when there is nothing at ``path``."""
    try:
        return _of(os.stat(path))
    except OSError:
        return None


def _of(found: os.stat_result) -> Signature:
    return (found.st_mode, found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def walk(roots: Sequence[str], *, skip: Sequence[str], limit: int) -> list[tuple[str, Signature]] | None:
    """The signature of every directory and file under ``roots`` (symbolic links as links), ``skip`` and every
    `.git` left out; None when there are more than ``limit`` (a replay would cost what it saves)."""
    found: list[tuple[str, Signature]] = []
    pending = [root for root in roots if os.path.isdir(root)]
    skipped = set(skip)
    while pending:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            if entry.name == ".git" or entry.path in skipped:
                continue
            try:
                stat = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            found.append((entry.path, _of(stat)))
            if len(found) > limit:
                return None
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
    return sorted(found)


def content_digest(path: str) -> str | None:
    try:
        with open(path, "rb") as file:
            return str(sha256(file.read()).hexdigest())
    except OSError:
        return None


def environment_digest(environ: Mapping[str, str]) -> str:
    digest = sha256()
    for name in sorted(environ):
        if name not in _SHELL_VARIABLES:
            digest.update(f"{name}={environ[name]}\0".encode("utf-8", "surrogateescape"))
    return str(digest.hexdigest())


def digest(data: bytes) -> str:
    return str(sha256(data).hexdigest())


def terminal_state() -> tuple[int, ...]:
    """Which of the standard streams are terminals, and the size of standard error's: Cargo's colours and progress
    bar follow them."""
    state = [int(os.isatty(fd)) for fd in (0, 1, 2)]
    if state[2]:
        try:
            state += os.get_terminal_size(2)
        except OSError:
            state.append(-1)
    return tuple(state)


def record_path(cache_dir: str, argv: Sequence[str], cwd: str) -> str:
    """Where the record of ``argv`` run in ``cwd`` by this user is kept."""
    # Not marshal's bytes, which depend on how each string was made (interned or not).
    words = [str(FORMAT), cwd, str(os.getuid()), str(os.getgid()), *argv]
    key = digest("\0".join(words).encode("utf-8", "surrogateescape"))[:32]
    return os.path.join(cache_dir, "replay", key)


def load(path: str) -> dict[str, Any] | None:
    """The record at ``path``, or None when there is none or it is damaged (its digest covers it)."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError:
        return None
    digest, payload = data[:32], data[32:]
    if sha256(payload).digest() != digest:
        return None
    try:
        record = marshal.loads(payload)
    except (EOFError, ValueError, TypeError):
        return None
    return record if isinstance(record, dict) and record.get("format") == FORMAT else None


def encode(record: Mapping[str, Any]) -> bytes:
    payload = marshal.dumps(dict(record))
    return bytes(sha256(payload).digest()) + payload


def forget(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        return


def unchanged(record: Mapping[str, Any]) -> bool:
    """Whether every file the record names is as it was, every content it hashed the same, and the host shows what
    it showed at each of the mounts' sources."""
    for path, expected in record["files"]:
        if signature(path) != expected:
            return False
    if not all(content_digest(path) == expected for path, expected in record["contents"]):
        return False
    from xpcargo.container.host_view import host_view, read_mount_table  # noqa: PLC0415

    table = read_mount_table()
    return all(host_view(source, table) == expected for source, expected in record["views"])


def _fits(record: Mapping[str, Any], argv: Sequence[str], *, fingerprint: str) -> bool:
    import time  # noqa: PLC0415 - a built-in module, needed here only

    return (
        record["argv"] == list(argv)
        and record["cwd"] == os.getcwd()
        and record["fingerprint"] == fingerprint
        and record["environ"] == environment_digest(os.environ)
        and record["terminal"] == terminal_state()
        and (record["kind"] == "listing" or time.time() < record["container_ends"] - _LIFETIME_MARGIN)
        and unchanged(record)
    )


def _locked(path: str | None) -> int | None:
    """The slot's lock, held until this process ends; None when another command holds it (or it cannot be had)."""
    import fcntl  # noqa: PLC0415

    if path is None:
        return -1
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return None
    return descriptor


class _Lines:
    """Cargo's standard output, line by line against the record's: what the usual way printed for a line (a
    diagnostic Cargo rendered) is printed as the line comes, as long as every line so far is the record's."""

    __slots__ = ("_expected", "_pending", "_seen", "_wrong")

    def __init__(self, expected: Sequence[tuple[str, bytes]]) -> None:
        self._expected = expected
        self._pending = b""
        self._seen = 0
        self._wrong = False

    def feed(self, piece: bytes) -> None:
        if self._wrong:
            return
        self._pending += piece
        if len(self._pending) > _LONGEST_LINE:
            # No line of a no-op's is this long (and this process's memory must not grow with one that is).
            self._wrong = True
            self._pending = b""
            return
        while not self._wrong and b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            self._line(line + b"\n")

    def _line(self, line: bytes) -> None:
        if self._seen >= len(self._expected) or digest(line) != self._expected[self._seen][0]:
            self._wrong = True
            return
        rendered = self._expected[self._seen][1]
        if rendered:
            from xpcargo.container.docker.replay_exec import write_stderr  # noqa: PLC0415

            write_stderr(rendered)
        self._seen += 1

    def matched(self) -> bool:
        if self._pending and not self._wrong:
            self._line(self._pending)
            self._pending = b""
        return not self._wrong and self._seen == len(self._expected)


class _Exec:
    """The record's exec and what its answer must be, read from the record once, before anything runs."""

    __slots__ = ("absent_after", "api", "container", "engine", "head", "image", "lines", "name", "reference", "tail")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.engine, self.api = str(record["socket"]), str(record["api"])
        self.reference, self.image = (str(part) for part in record["image"])
        self.container, self.name = str(record["container"]), str(record["name"])
        self.head, self.tail = bytes(record["exec_head"]), bytes(record["exec_tail"])
        self.lines = [(str(line), bytes(rendered)) for line, rendered in record["lines"]]
        self.absent_after = [str(path) for path in record["absent_after"]]


def replay(argv: Sequence[str], *, cache_dir: str, fingerprint: Callable[[], str]) -> int | None:
    """Cargo's exit code when the command was replayed; None when it must run the usual way (then nothing of it
    ran, or what ran is to be run again: Cargo finds its work done)."""
    if not argv or (argv[0] not in COMMANDS and tuple(argv) not in LISTINGS) or os.environ.get(SETTING) == "0":
        return None
    try:
        return _replay(argv, cache_dir=cache_dir, fingerprint=fingerprint)
    except KeyboardInterrupt:
        # Before the exec nothing ran; after it, the closed connection ends the command's tether, and the wrapper
        # kills whatever is left of it.
        _fail_interrupted()


def _replay(argv: Sequence[str], *, cache_dir: str, fingerprint: Callable[[], str]) -> int | None:
    path = record_path(cache_dir, argv, os.getcwd())
    record = load(path)
    if record is None:
        return None
    try:
        if not _fits(record, argv, fingerprint=fingerprint()):
            return None
        if record["kind"] == "listing":
            return _list(record)
        command, lock_path, timeout = _Exec(record), record["lock"], float(record["timeout"])
    except (KeyError, TypeError, ValueError):
        # A record of an older xpcargo's (the fingerprint names the source, not the record's layout).
        forget(path)
        return None
    lock = _locked(lock_path if isinstance(lock_path, str) else None)
    if lock is None:
        return None
    try:
        return _run(command, path, timeout=timeout)
    finally:
        if lock >= 0:
            os.close(lock)


def _run(command: _Exec, path: str, *, timeout: float) -> int | None:
    from xpcargo.container.docker import replay_exec  # noqa: PLC0415

    engine, api = command.engine, command.api
    try:
        if replay_exec.image_id(engine, api, command.reference, timeout=timeout) != command.image:
            return None
        body = command.head + os.urandom(8).hex().encode() + command.tail
        exec_id = replay_exec.create_exec(engine, api, command.container, body, timeout=timeout)
    except replay_exec.NotStarted:
        return None
    lines = _Lines(command.lines)
    try:
        code = replay_exec.run_exec(
            engine, api, exec_id, timeout=timeout, on_stdout=lines.feed, on_stderr=replay_exec.write_stderr
        )
    except replay_exec.Lost as error:
        _fail_lost(command, str(error))
    done = code == 0 and lines.matched() and all(not os.path.lexists(absent) for absent in command.absent_after)
    if done:
        return 0
    # Not a no-op's answer (or a wrapper that refused, in a container about to end): the usual way runs it again.
    forget(path)
    return None


def _list(record: Mapping[str, Any]) -> int | None:
    """A listing's output, again, when the engine's answer is the one it was made from."""
    from xpcargo.container.docker import replay_exec  # noqa: PLC0415

    engine, target, timeout, output = (
        str(record["socket"]),
        str(record["target"]),
        float(record["timeout"]),
        record["output"],
    )
    try:
        if digest(replay_exec.answer(engine, target, timeout=timeout)) != record["answer"]:
            return None
    except replay_exec.NotStarted:
        return None
    sys.stdout.write(str(output))
    sys.stdout.flush()
    return 0


def _fail_lost(command: _Exec, reason: str) -> NoReturn:
    from xpcargo.errors import EngineLostError  # noqa: PLC0415

    error = EngineLostError(
        f"lost the engine while `{command.name}` ran: {reason}",
        hint="check that the engine is still running, then run the command again",
    )
    error.still_running.append((command.container, command.name))
    print(error.summary(), file=sys.stderr)
    sys.exit(error.exit_code)


def _fail_interrupted() -> NoReturn:
    from xpcargo.errors import InterruptError  # noqa: PLC0415

    error = InterruptError("interrupted")
    print(error.summary(), file=sys.stderr)
    sys.exit(error.exit_code)
