"""Warm containers, the half that runs inside them: the main process that ends the container when it has been idle
or has lived its time, the wrapper each command runs under, and the scripts that stop a command or retire a
container; and the key that says whether a running container still fits a request.

No host daemon keeps time: the container's own main process counts idle seconds and exits, and the engine removes
the container (`auto_remove`). The main process runs as a user of its own (``spec.keeper``), which the commands can
neither signal nor write for, and keeps its state in a directory only it can write (``spec.KEEPER_DIR``): nothing a
command leaves there, or anywhere, keeps the container up.

Nothing of a command survives it. Every command runs under a wrapper, as the request's user: when the command ends
(or its tether does, or the host stops it), every process of that user in the container is killed, however it
detached (a new session, a double fork, a changed name), before the command's exit code reaches xpcargo. The
container runs one command at a time (the session holds the slot's lock for the whole xpcargo command, and the
wrapper refuses to start while another process of its user lives), so that this kills nothing of another command.

A command is busy while a process that is not the keeper's lives; the main process also sees short commands that
ran between two of its looks, by the last pid the kernel gave out. A closing handshake rules out a command starting
in a container that is about to end: the main process (or the host, retiring the container) first creates its
`closing.*` marker, then looks once more for a command; a wrapper, which is a command's process from its start,
looks for any `closing.*` and, if there is one, refuses to run (exit ``REFUSED``, and a file named after a token of
the host's choosing that says it was the wrapper, not the command). Whichever looks second sees the other. After its
lifetime, a container takes no command (`closing.expired` stays) and ends as soon as none runs.

The scripts need sh, `sleep` (with fractions of a second), `cat` and `rm`: any Debian or busybox image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from xpcargo.container.host_view import host_view
from xpcargo.container.spec import HOST_LABEL, KEEPER_DIR, REQUEST_LABEL, SESSION_LABEL, ContainerRequest

STATE_DIR = str(KEEPER_DIR)
# Where a command's wrapper, as the command's user, leaves what the host reads back: its pid (for a stop) and its
# refusal. A command can write there too: at worst it makes xpcargo stop or run again its own command.
COMMAND_DIR = "/dev/shm"  # noqa: S108 - inside the container; the scripts spell it out too
# The wrapper's exit code when it refused to start the command (the container is closing, or runs another command).
REFUSED = 199
# How long a command has to end after its group got the user's signal, before it gets SIGKILL.
STOP_GRACE_TENTHS = 50

# True (0) when a process of this shell's own user, other than the shell itself, is alive (zombies, which are
# already dead, aside). /proc/<pid> belongs to the process's user.
_OTHERS = r"""
others() {
  for p in /proc/[0-9]*; do
    [ "${p#/proc/}" != "$$" ] && [ -O "$p" ] || continue
    s=; { read -r s < "$p/stat"; } 2>/dev/null || continue
    case "${s##*) }" in Z*) continue ;; esac
    return 0
  done
  return 1
}
"""

# True (0) when a command runs: a live process that is not the keeper's.
_BUSY = r"""
busy() {
  for p in /proc/[0-9]*; do
    [ -O "$p" ] && continue
    s=; { read -r s < "$p/stat"; } 2>/dev/null || continue
    case "${s##*) }" in Z*) continue ;; esac
    return 0
  done
  return 1
}
"""

# The deadline is a sleep of the keeper's that the commands cannot signal. Between two looks the main process starts
# one process, its `sleep`: when the last pid given out in the container's pid namespace (the last field of
# /proc/loadavg) moved by more than one, something else was started in between: a command, however short.
_IDLE_WATCH = (
    'd="$1"; idle="$2"; life="$3"; waited=0; seen=\n'
    + _BUSY
    + r"""
( sleep "$life"; : > "$d/expired" ) </dev/null >/dev/null 2>&1 &
while :; do
  sleep 1 & wait "$!"
  last=; { read -r _ _ _ _ last < /proc/loadavg; } 2>/dev/null
  ran=
  case "$last" in
    ''|*[!0-9]*) ;;
    *) [ "$last" = "$((${seen:-0} + 1))" ] || ran=1; seen=$last ;;
  esac
  if [ -e "$d/expired" ]; then
    : > "$d/closing.expired"
    busy || exit 0
    continue
  fi
  if [ -n "$ran" ] || busy; then waited=0; continue; fi
  waited=$((waited + 1))
  [ "$waited" -lt "$idle" ] && continue
  : > "$d/closing.idle"
  if busy; then rm -f "$d/closing.idle"; waited=0; continue; fi
  exit 0
done
"""
)

# Runs the command as a child (with a tether, its input is /dev/null and a watcher kills everything when the tether
# ends: xpcargo went, however it went), then kills every process of the user but itself until none is left. A
# signal for the command's group (from the stop script) reaches the command; the wrapper waits for it, then cleans up.
_WRAPPER = (
    r"""d="$1"; t="$2"; tether="$3"; shift 3
c=/dev/shm/.xpcargo
"""
    + _OTHERS
    + r"""
for f in "$d"/closing.*; do [ -e "$f" ] && { : > "$c-refused.$t"; exit 199; }; done
others && { : > "$c-refused.$t"; exit 199; }
echo $$ > "$c-run.$t"
trap : INT TERM HUP
if [ "$tether" = 1 ]; then
  # A job in the background reads /dev/null unless told otherwise: its input is the tether, as descriptor 3.
  exec 3<&0
  ( cat <&3 >/dev/null; kill -KILL -1 ) >/dev/null 2>&1 &
  "$@" </dev/null 3<&-
else
  "$@"
fi
code=$?
# A killed process lives on for a moment (the tether's `cat` as a rule): looked for again at once, then every 10 ms.
n=0
while kill -KILL -1 2>/dev/null; others && [ "$n" -lt 500 ]; do
  [ "$n" -ge 50 ] && sleep 0.01
  n=$((n + 1))
done
rm -f "$c-run.$t"
exit "$code"
"""
)

# Signals the command's group, waits for the command to end, then kills every process of the user (the tether's
# watcher, which ignores SIGINT as background jobs do, and anything the command left behind). A command whose
# wrapper has not yet recorded itself (the signal came right after it was started) is waited for, briefly.
_STOP = r"""d="$1"; t="$2"; sig="$3"; grace="$4"; n=0; c=/dev/shm/.xpcargo
while :; do
  [ -e "$c-run.$t" ] && break
  [ -e "$c-refused.$t" ] && exit 0
  [ "$n" -ge 20 ] && break
  sleep 0.1; n=$((n + 1))
done
g=; { read -r g < "$c-run.$t"; } 2>/dev/null
case "$g" in ''|*[!0-9]*) g=0 ;; esac
if [ "$g" -gt 1 ]; then
  kill "-$sig" "-$g" 2>/dev/null
  n=0
  while kill -0 "$g" 2>/dev/null && [ "$n" -lt "$grace" ]; do sleep 0.1; n=$((n + 1)); done
fi
kill -KILL -1 2>/dev/null
exit 0
"""

# Exit 0 when the container was idle and now refuses new commands (it may be removed); 1 when a command runs in it.
_RETIRE = (
    'd="$1"\n'
    + _BUSY
    + r"""
: > "$d/closing.retire"
if busy; then rm -f "$d/closing.retire"; exit 1; fi
exit 0
"""
)

# Exit 0 when a command runs in the container.
_IS_BUSY = 'd="$1"\n' + _BUSY + "busy\n"


def main_argv(idle_seconds: int, lifetime: int) -> list[str]:
    """The container's main process: it exits after ``idle_seconds`` with no command, and takes no command after
    ``lifetime`` seconds (then it exits as soon as none runs)."""
    return ["sh", "-c", _IDLE_WATCH, "xpcargo-keep-warm", STATE_DIR, str(idle_seconds), str(lifetime)]


# What every command under the wrapper starts with; then its token, its tether, and the command itself.
_WRAPPER_HEAD = ("sh", "-c", _WRAPPER, "xpcargo-run", STATE_DIR)


@dataclass(frozen=True, kw_only=True)
class Wrapped:
    """A command as ``wrapped`` was given it."""

    token: str
    tether: bool
    argv: tuple[str, ...]


def wrapped(token: str, argv: Sequence[str], *, tether: bool) -> list[str]:
    """``argv`` under the wrapper, run as the request's user; the host finds it later by ``token``. With ``tether``,
    the command ends when its standard input does (see ``Containers.exec``); an interactive command's input is the
    terminal's."""
    return [*_WRAPPER_HEAD, token, "1" if tether else "0", *argv]


def unwrapped(argv: Sequence[str]) -> Wrapped | None:
    """What ``wrapped`` was given to make ``argv`` (for messages, which name the user's command, not the wrapper);
    None for a command run as it is."""
    head = len(_WRAPPER_HEAD)
    if tuple(argv[:head]) != _WRAPPER_HEAD or len(argv) < head + 2:
        return None
    return Wrapped(token=argv[head], tether=argv[head + 1] == "1", argv=tuple(argv[head + 2 :]))


def stop_argv(token: str, signal_name: str) -> list[str]:
    """Run as the command's user: send ``signal_name`` (`INT`, `TERM`, `HUP`) to the process group of the command
    run as ``token``, then kill whatever of that user is left."""
    return ["sh", "-c", _STOP, "xpcargo-stop", STATE_DIR, token, signal_name, str(STOP_GRACE_TENTHS)]


def refused_argv(token: str) -> list[str]:
    """Exit 0 when the wrapper of ``token`` refused to run its command."""
    return ["test", "-e", f"{COMMAND_DIR}/.xpcargo-refused.{token}"]


def retire_argv() -> list[str]:
    return ["sh", "-c", _RETIRE, "xpcargo-retire", STATE_DIR]


def busy_argv() -> list[str]:
    return ["sh", "-c", _IS_BUSY, "xpcargo-busy", STATE_DIR]


# Labels that differ between two requests for the same container: who asked, and when.
_PER_COMMAND_LABELS = frozenset({SESSION_LABEL, REQUEST_LABEL, HOST_LABEL})


def key(request: ContainerRequest, image_id: str, *, mount_table: str | None = None) -> str:
    """What a warm container must match to run ``request``'s commands: the image (by id: a tag may move), the mounts
    as the host shows them now (see ``host_view``; a volume by its name), the user, the network, the capabilities,
    the hidden paths, the idle time and lifetime and the labels. Not the environment or the working directory: each
    command gets its own."""
    mounts = []
    for mount in request.mounts:
        if mount.volume is not None:
            # A volume is its name: the engine refuses to remove one that a container (this one) uses.
            mounts.append([str(mount.path), f"volume:{mount.volume}", mount.read_only, []])
            continue
        source = mount.source or mount.path
        mounts.append([str(mount.path), str(source), mount.read_only, host_view(str(source), mount_table)])
    fields = {
        "image": image_id,
        "user": request.user,
        "network": request.network,
        "capabilities": sorted(request.capabilities),
        "hidden": sorted(str(path) for path in request.hidden),
        "scratch": sorted(str(path) for path in request.scratch),
        "confined": request.confined,
        "keep_warm": request.keep_warm,
        "lifetime": request.warm_lifetime,
        "mounts": sorted(mounts),
        "labels": sorted((k, v) for k, v in request.labels.items() if k not in _PER_COMMAND_LABELS),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def slot(workspace: str, target: str, user: str) -> str:
    """Which warm container a request would use, whatever its key: one per workspace, target and user. A request
    whose key differs replaces the container of its slot."""
    return hashlib.sha256(f"{workspace}\0{target}\0{user}".encode()).hexdigest()[:32]
