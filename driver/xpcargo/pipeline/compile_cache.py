"""The compile cache: sccache in the build step's container, with its local disk cache in a directory of this
machine's, kept across builds, `cargo clean` and warm containers.

- **Where.** One directory per workspace, ``<cache dir>/compile/<sha256 of the workspace root>`` (XPCARGO_CACHE_DIR's
  cache dir), shared by every target and command of that workspace; or one directory the user names in
  XPCARGO_CACHE, shared by every workspace built with that value. Never one the project names: the directory is
  mounted at its own path, read-write, into the build step's (and the shell's) container and nowhere else, so a
  build reaches no other workspace's cache.
- **On or off.** On by default for the Cargo commands of the build step; off with XPCARGO_CACHE=off (the user's, which
  wins) or a target's `compile-cache = "off"`; off for reproducible builds (`dist`, `verify`, `--reproducible`), which
  owe nothing to earlier builds; off for an image of the project's own (which may have no sccache) and on a remote
  engine (which cannot see this machine's directory). Off, said once, when the build has a rustc wrapper of its own
  (a Cargo config's `build.rustc-wrapper`, or a wrapper in the build's environment): Cargo prefers RUSTC_WRAPPER to
  every config file, so setting it would silently replace the project's wrapper.
- **Its server's life.** The first compilation starts sccache's server (on the loopback of the container, whose
  network is `none`); the command runs under a small shell that, once Cargo is done, writes the server's statistics
  for the host and stops it: nothing of it outlives the command (and if the command is stopped, the session kills the
  server with every other process of the command). A no-op build starts no server.
- **The wrapper.** What Cargo runs rustc through is xpcargo's script, written by this machine beside the cache
  (``<key>.wrapper/sccache``) and mounted read-only: the build writes into the cache, never into what this machine
  writes, so a link the build plants there cannot turn the next build's write of the wrapper elsewhere.
- **No remote backend.** Debian's sccache 0.10 is built with none (Redis, S3, GitHub Actions, ...), and the build
  step has no network anyway. The wrapper removes a project's SCCACHE_* variables: sccache's settings are xpcargo's.
- **C and C++.** The cc crate wraps the compiler it is given in RUSTC_WRAPPER when that is sccache, so the
  `CC_<target>` compilers of build scripts are cached too, without changing those variables.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcargo import files
from xpcargo.config.schema import read_toml
from xpcargo.config.targets import COMPILE_CACHE_OFF, TargetSpec
from xpcargo.container.spec import Mount
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.pipeline import environment

# Debian's sccache package, in every image of xpcargo's recipes.
SCCACHE = "/usr/bin/sccache"
# What Cargo runs rustc through (RUSTC_WRAPPER), and the cc crate the C compilers: a script beside the cache directory,
# named `sccache` because the cc crate wraps its compiler only in a RUSTC_WRAPPER of that name, that takes away the
# CARGO_* variables xpcargo set for Cargo alone before it runs sccache. sccache keys every CARGO_* variable a
# compilation sees, and these (the terminal's width, the target dir, each target's linker and runner) would make
# every terminal, checkout and target a cache of its own; rustc then sees what it would see on the host.
_WRAPPER_NAME = "sccache"
_UNSET_VARIABLE = "XPCARGO_RUSTC_UNSET"
# sccache's server listens on the loopback of the build's container (its network is `none`), at this port.
_PORT = 4226
# How sccache's server is set up, whatever the build's environment (a project's `[env]` reaches rustc too): the
# command's end stops it, so no idle timeout may end it within a long link; and a cache that fails (a full disk, a
# server that would not start) compiles without it instead of failing the build.
_SERVER_SETTINGS = {
    "SCCACHE_SERVER_PORT": str(_PORT),
    "SCCACHE_IDLE_TIMEOUT": "0",
    "SCCACHE_IGNORE_SERVER_IO_ERROR": "1",
}


def _wrapper_script(directory: Path) -> str:
    settings = "".join(f"export {name}={value}\n" for name, value in _SERVER_SETTINGS.items())
    return f"""#!/bin/sh
# xpcargo's compile cache, written by xpcargo before each build: the CARGO_* variables that xpcargo set for Cargo
# alone taken away, then sccache, with this directory as its cache.
for name in ${_UNSET_VARIABLE}; do unset "$name"; done
unset {_UNSET_VARIABLE}
# sccache's server takes its settings from the compilation that starts it, which a project's `[env]` reaches (its
# size, say, which would evict what other workspaces put in a shared cache): only xpcargo's are kept.
for name in $(env | sed -n 's/=.*//; /^SCCACHE_[A-Za-z0-9_]*$/p'); do unset "$name"; done
export SCCACHE_DIR={shlex.quote(str(directory))}
{settings}case "${{1##*/}}" in
  rustc|rustc-*|clippy-driver) exec {SCCACHE} "$@" ;;
esac
# A C or C++ compiler that the cc crate runs through this script: sccache where it knows the compiler. One it does
# not know (a script, such as a musl target's C++ compiler that says why there is no C++) it refuses before running
# anything; that compiler then runs as it is, uncached, as it would without the cache.
{_UNKNOWN_COMPILER_FALLBACK}"""


_UNKNOWN_COMPILER_FALLBACK = f"""errors=$(mktemp 2>/dev/null) || exec {SCCACHE} "$@"
{SCCACHE} "$@" 2>"$errors"; status=$?
if [ "$status" -ne 0 ] && grep -q 'Compiler not supported' "$errors"; then rm -f "$errors"; exec "$@"; fi
cat "$errors" >&2; rm -f "$errors"; exit "$status"
"""

_VARIABLE_NAME = re.compile(r"^CARGO_[A-Z0-9_]+$")
# The variables that name a rustc wrapper to Cargo, the environment's over every config file.
_WRAPPER_VARIABLES = (
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
)
_WRAPPER_KEYS = ("rustc-wrapper", "rustc-workspace-wrapper")
# The statistics file is the build's to write: read no more of it than statistics take.
_STATS_LIMIT = 64 * 1024
# What a directory of sccache's local cache holds (what `clear` removes from a directory the user named).
_SCCACHE_ENTRIES = frozenset({*"0123456789abcdef", "preprocessor"})
# Runs the command ("$@"); then, if the command started sccache's server (the first compilation does; a no-op build
# does not, and pays nothing), writes the server's statistics to the file "$0" and stops it. The command's exit status
# is the shell's. The listening socket is seen in the container's own /proc/net/tcp (127.0.0.1:4226, LISTEN).
_LISTENING = f"0100007F:{_PORT:04X} 00000000:0000 0A"
_WRAPPER_SCRIPT = (
    '"$@"; status=$?; '
    f"if grep -q '{_LISTENING}' /proc/net/tcp 2>/dev/null; then "
    f'{SCCACHE} --show-stats --stats-format=json >"$0" 2>/dev/null; '
    f"{SCCACHE} --stop-server >/dev/null 2>&1; "
    "fi; "
    'exit "$status"'
)


@dataclass(frozen=True, kw_only=True)
class Stats:
    """What sccache said of one command, or of every command that recorded into a cache."""

    hits: int = 0
    misses: int = 0
    # Compilations sccache cannot cache (binaries, incremental builds of the workspace's own crates, ...).
    uncacheable: int = 0

    def __add__(self, other: Stats) -> Stats:
        return Stats(
            hits=self.hits + other.hits,
            misses=self.misses + other.misses,
            uncacheable=self.uncacheable + other.uncacheable,
        )

    @property
    def rate(self) -> float | None:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None

    def describe(self) -> str:
        rate = self.rate
        shown = f"{rate:.0%} hit rate" if rate is not None else "nothing cacheable compiled"
        return f"{self.hits} hits, {self.misses} misses ({shown}), {self.uncacheable} not cacheable"


@dataclass(frozen=True, kw_only=True)
class CompileCache:
    """The compile cache of one build: sccache's directory, and where the command's statistics go."""

    directory: Path
    # The host's running totals of that directory (beside it, never mounted: no build writes them).
    record: Path
    # Where the command writes sccache's statistics for the host (xpcargo's state dir of the target, in the target
    # dir): the build's to write, read as untrusted.
    stats_file: Path
    workspace: Path
    # The variables of the build that are the user's or the project's: rustc keeps them, whatever their name.
    kept_variables: frozenset[str] = frozenset()

    @property
    def wrapper(self) -> Path:
        return wrapper_directory(self.record) / _WRAPPER_NAME

    def mounts(self) -> tuple[Mount, ...]:
        return Mount(path=self.directory), Mount(path=self.wrapper.parent, read_only=True)

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """What the build's environment ``env`` gets: sccache as the wrapper, where its cache is, and the CARGO_*
        variables of ``env`` that xpcargo set for Cargo alone, which the wrapper takes away from rustc."""
        unset = sorted(name for name in env if _VARIABLE_NAME.match(name) and name not in self.kept_variables)
        return {
            "RUSTC_WRAPPER": str(self.wrapper),
            _UNSET_VARIABLE: " ".join(unset),
            "SCCACHE_DIR": str(self.directory),
            **_SERVER_SETTINGS,
        }

    def wrapped(self, argv: Sequence[str]) -> list[str]:
        """``argv``, then the statistics of sccache's server written for the host and the server stopped, if the
        command started one; the exit status is ``argv``'s."""
        return ["sh", "-c", _WRAPPER_SCRIPT, str(self.stats_file), *argv]

    def prepare(self) -> None:
        """Before the container: the directory there to mount with the wrapper in it (written anew: the last build
        could change it), no statistics of an earlier command left."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Beside the record, in xpcargo's cache dir: with a cache the user names, the first build on a machine
            # makes that directory.
            self.wrapper.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._write_wrapper()
        except OSError as error:
            raise ProjectError(
                f"cannot prepare the compile cache {error.filename or self.directory}: {error.strerror}",
                hint="point XPCARGO_CACHE_DIR at a writable place, or build with XPCARGO_CACHE=off",
            ) from None
        # The statistics go to the target dir: a failure there is the target dir's, named by the directory that could
        # not be made (the target dir itself, on a first build).
        try:
            self.stats_file.parent.mkdir(parents=True, exist_ok=True)
            self.stats_file.unlink(missing_ok=True)
        except OSError as error:
            missing = next((path for path in reversed(self.stats_file.parents) if not path.exists()), None)
            raise ProjectError(
                f"cannot create {missing}: {error.strerror}"
                if missing is not None
                else f"cannot write {self.stats_file}: {error.strerror}",
                hint="point --target-dir (or CARGO_TARGET_DIR) at a writable place",
            ) from None

    def _write_wrapper(self) -> None:
        """The wrapper, rewritten only when it is not as xpcargo writes it: Cargo keys its cache of rustc's answers
        (`-vV`, the target's cfg) on the wrapper's modification time, and asking again through sccache would start its
        server in every no-op build."""
        script = _wrapper_script(self.directory)
        try:
            info = self.wrapper.lstat()
            unchanged = (
                stat.S_ISREG(info.st_mode)
                and stat.S_IMODE(info.st_mode) == 0o755
                and self.wrapper.read_text(encoding="utf-8") == script
            )
        except (OSError, UnicodeDecodeError):
            unchanged = False
        if not unchanged:
            files.write_atomically(self.wrapper, script, mode=0o755)

    def collect(self) -> Stats | None:
        """The command's statistics, added to the directory's totals; None when the command wrote none (it was
        stopped, or sccache could not say)."""
        stats = read_stats(self.stats_file)
        if stats is not None:
            add_to_record(self.record, stats, directory=self.directory, workspace=self.workspace)
        return stats


def unwrapped(argv: Sequence[str]) -> tuple[Path, tuple[str, ...]] | None:
    """The statistics file and the command that ``CompileCache.wrapped`` was given to make ``argv``; None for a command
    run as it is."""
    if len(argv) < 5 or tuple(argv[:3]) != ("sh", "-c", _WRAPPER_SCRIPT):
        return None
    return Path(argv[3]), tuple(argv[4:])


@dataclass(frozen=True, kw_only=True)
class CacheOff:
    """Why a build runs without the compile cache; ``say`` when the user would not expect it."""

    reason: str
    say: bool = False


Choice = CompileCache | CacheOff


def key_of(workspace_root: Path) -> str:
    return hashlib.sha256(str(workspace_root).encode()).hexdigest()[:32]


def root(cache_dir: Path) -> Path:
    """Where the workspaces' caches and the records of every cache are."""
    return cache_dir / "compile"


def directory_for(cache_dir: Path, workspace_root: Path, shared: Path | None) -> tuple[Path, Path]:
    """The cache directory a build of ``workspace_root`` uses, and the host's record of it."""
    if shared is not None:
        key = hashlib.sha256(f"shared\0{shared}".encode()).hexdigest()[:32]
        return shared, root(cache_dir) / f"{key}.json"
    key = key_of(workspace_root)
    return root(cache_dir) / key, root(cache_dir) / f"{key}.json"


def wrapper_directory(record: Path) -> Path:
    """Where this machine writes the wrapper of the cache that ``record`` records: beside it, never in the cache."""
    return record.with_suffix(".wrapper")


def choose(
    *,
    enabled: bool,
    cache_dir: Path,
    shared: Path | None,
    workspace_root: Path,
    spec: TargetSpec,
    state_dir: Path,
    env: Mapping[str, str],
    config_files: Iterable[Path],
    args: Sequence[str],
    reproducible: bool,
    remote: bool,
    kept_variables: Iterable[str] = (),
) -> Choice:
    """Whether a build uses the compile cache, and which."""
    off = [
        (not enabled, "XPCARGO_CACHE=off"),
        (spec.compile_cache == COMPILE_CACHE_OFF, f"compile-cache = off for {spec.triple}"),
        (reproducible, "a reproducible build owes nothing to earlier builds"),
        (bool(spec.image), "the target's `image` is not xpcargo's, and may have no sccache"),
        (remote, "a remote engine cannot see this machine's cache directory"),
    ]
    reason = next((reason for applies, reason in off if applies), None)
    if reason is not None:
        return CacheOff(reason=reason)
    wrapper = project_wrapper(env, config_files, args)
    if wrapper is not None:
        return CacheOff(reason=f"{wrapper} names a rustc wrapper, which runs as it is, without sccache", say=True)
    directory, record = directory_for(cache_dir, workspace_root, shared)
    return CompileCache(
        directory=directory,
        record=record,
        stats_file=state_dir / "compile-cache-stats.json",
        workspace=workspace_root,
        kept_variables=frozenset(kept_variables),
    )


def project_wrapper(env: Mapping[str, str], config_files: Iterable[Path], args: Sequence[str]) -> str | None:
    """What names a rustc wrapper for the build, if anything does: a variable of its environment, a Cargo config
    file (the files it includes too), or a `--config` argument."""
    named = next((name for name in _WRAPPER_VARIABLES if env.get(name)), None)
    if named is not None:
        return named
    inline, given_files = _config_arguments(args)
    for value in inline:
        key = value.split("=", 1)[0].strip().strip('"')
        if key in {f"build.{wrapper}" for wrapper in _WRAPPER_KEYS}:
            return f"`--config {value}`"
    for path in environment.with_includes([*config_files, *given_files]):
        build = read_toml(path).get("build")
        if isinstance(build, dict) and any(build.get(wrapper) for wrapper in _WRAPPER_KEYS):
            return f"{path} (`build.rustc-wrapper`)"
    return None


def _config_arguments(args: Sequence[str]) -> tuple[list[str], list[Path]]:
    """The `--config` arguments: inline `KEY=VALUE` ones, and files."""
    values: list[str] = []
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "--config" and index + 1 < len(args):
            values.append(args[index + 1])
        elif arg.startswith("--config="):
            values.append(arg.removeprefix("--config="))
    inline = [value for value in values if "=" in value and not Path(value).is_file()]
    return inline, [Path(value) for value in values if value not in inline and Path(value).is_file()]


def read_stats(path: Path) -> Stats | None:
    """sccache's `--show-stats --stats-format=json`, as the build left it: a regular file, at most 64 KiB, numbers
    only taken where numbers belong. None when there is none, or nothing readable."""
    try:
        with files.reading_regular(path) as (read, size):
            data = read(0, min(size, _STATS_LIMIT))
    except OSError:
        return None
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        return None
    stats = parsed.get("stats") if isinstance(parsed, dict) else None
    if not isinstance(stats, dict):
        return None
    return Stats(
        hits=_count(stats.get("cache_hits")),
        misses=_count(stats.get("cache_misses")),
        uncacheable=_number(stats.get("requests_not_cacheable")),
    )


def _count(per_language: object) -> int:
    counts = per_language.get("counts") if isinstance(per_language, dict) else None
    return sum(_number(value) for value in counts.values()) if isinstance(counts, dict) else 0


def _number(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53 else 0


# --- The host's records: `xpcargo cache stats|clear|path` -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Record:
    """What the host knows of one cache directory: the workspaces that used it and every command's statistics."""

    directory: Path
    # The record's own file.
    path: Path
    workspaces: tuple[str, ...]
    stats: Stats
    builds: int


@contextlib.contextmanager
def _locked(record: Path) -> Iterator[None]:
    """Builds of several targets record side by side: one read-modify-write of a record at a time."""
    record.parent.mkdir(parents=True, exist_ok=True)
    with record.with_suffix(".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def add_to_record(record: Path, stats: Stats, *, directory: Path, workspace: Path) -> None:
    with _locked(record):
        known = read_record(record)
        workspaces = known.workspaces if known is not None else ()
        kept = Record(
            directory=directory,
            path=record,
            workspaces=tuple(dict.fromkeys((*workspaces, str(workspace)))),
            stats=(known.stats if known is not None else Stats()) + stats,
            builds=(known.builds if known is not None else 0) + 1,
        )
        files.write_atomically(record, json.dumps(_as_json(kept), indent=1) + "\n")


def _as_json(record: Record) -> dict[str, Any]:
    stats = record.stats
    return {
        "directory": str(record.directory),
        "workspaces": list(record.workspaces),
        "builds": record.builds,
        "hits": stats.hits,
        "misses": stats.misses,
        "uncacheable": stats.uncacheable,
    }


def read_record(record: Path) -> Record | None:
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("directory"), str):
        return None
    workspaces = data.get("workspaces")
    return Record(
        directory=Path(data["directory"]),
        path=record,
        workspaces=tuple(w for w in workspaces if isinstance(w, str)) if isinstance(workspaces, list) else (),
        stats=Stats(
            hits=_number(data.get("hits")),
            misses=_number(data.get("misses")),
            uncacheable=_number(data.get("uncacheable")),
        ),
        builds=_number(data.get("builds")),
    )


def records(cache_dir: Path) -> list[Record]:
    """Every cache directory the host has recorded a build into, by path."""
    found = [read_record(path) for path in sorted(root(cache_dir).glob("*.json"))]
    return sorted((record for record in found if record is not None), key=lambda record: str(record.directory))


def size_of(directory: Path) -> int:
    """The bytes of the regular files under ``directory``, no link followed."""
    total = 0
    for parent, _, names in os.walk(directory):
        for name in names:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size  # noqa: PTH118 - os.walk's strings
    return total


def clear(directory: Path, record: Path, *, shared: bool) -> None:
    """Empty a cache and forget its statistics. A directory of xpcargo's goes whole; one the user named (shared)
    loses only what sccache put there."""
    try:
        with _locked(record):
            if shared:
                for entry in directory.iterdir() if directory.is_dir() else ():
                    if entry.name in _SCCACHE_ENTRIES and entry.is_dir() and not entry.is_symlink():
                        shutil.rmtree(entry)
            elif directory.is_dir():
                shutil.rmtree(directory)
            wrapper = wrapper_directory(record)
            if wrapper.is_dir() and not wrapper.is_symlink():
                shutil.rmtree(wrapper)
            record.unlink(missing_ok=True)
    except OSError as error:
        raise ConfigError(
            f"cannot clear the compile cache {directory}: {error.strerror}",
            hint="check the directory's permissions; a build running now may be writing to it",
        ) from None
