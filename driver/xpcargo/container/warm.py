"""Warm containers, the half that runs inside them: the main process that ends the container after it has been idle,
the wrapper each command runs under, and the scripts that stop a command's processes or retire a container; and the
key that says whether a running container still fits a request.

No host daemon keeps time: the container's own main process counts idle seconds and exits, and the engine removes
the container (`auto_remove`). Every command runs under a wrapper that records its process group in a file named
after the group and a token of the host's choosing, so that the host can signal the whole group later (`docker exec`
without a terminal forwards no signal), and so that the main process knows a command is running.

A closing handshake rules out a command starting in a container that is about to end: the main process (or the
host, retiring the container) first creates its `closing.*` marker, then looks once more for running commands; a
wrapper first records itself, then looks for any `closing.*` and, if there is one, refuses to run (exit
``REFUSED``, and a `refused.<token>` file that says it was the wrapper, not the command). Whichever looks second sees
the other: either the container stays, or the command is refused before it started and the host runs it in a new
container. The two closers have a marker each, so that one giving up does not take back the other's.

The scripts need sh, `sleep` (with fractions of a second), `cat`, `mkdir` and `rm`: any Debian or busybox image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

from xpcargo.container.spec import HOST_LABEL, REQUEST_LABEL, SESSION_LABEL, ContainerRequest

# Docker and Podman give every container a /dev/shm writable by anyone; a build is less likely to clean it up than
# /tmp, which is where HOME points.
STATE_DIR = "/dev/shm/.xpcargo-warm"  # noqa: S108 - inside the container, private to it
# The wrapper's exit code when it refused to start the command (the container is closing).
REFUSED = 199
# How long a command has to end after its group got the user's signal, before it gets SIGKILL.
STOP_GRACE_TENTHS = 50

# True (0) when a command started by the wrapper still has a process; the files of finished ones are removed. The
# directory is writable by the build too, so a name counts only when it is a process group a wrapper could have
# recorded: a number above 1 (`kill -0 -1` would ask about every process) and not the main process's own group.
_BUSY = r"""
main=; [ -e "$d/main" ] && read -r main < "$d/main"
busy() {
  for f in "$d"/run.*; do
    [ -e "$f" ] || continue
    g=${f#"$d"/run.}; g=${g%%.*}
    case "$g" in ''|*[!0-9]*) rm -f "$f"; continue ;; esac
    if [ "$g" -gt 1 ] && [ "$g" != "$main" ] && kill -0 "-$g" 2>/dev/null; then return 0; fi
    rm -f "$f"
  done
  return 1
}
"""

_IDLE_WATCH = (
    'd="$1"; idle="$2"; waited=0\nmkdir -p "$d"; echo $$ > "$d/main"\n'
    + _BUSY
    + r"""
main=$$
while sleep 1; do
  [ -d "$d" ] || { mkdir -p "$d"; echo $$ > "$d/main"; }
  if busy; then waited=0; continue; fi
  waited=$((waited + 1))
  [ "$waited" -lt "$idle" ] && continue
  : > "$d/closing.idle"
  if busy; then rm -f "$d/closing.idle"; waited=0; continue; fi
  exit 0
done
"""
)

# With a tether, xpcargo holds the command's standard input open for as long as it waits on the command: when it
# goes, however it goes (SIGKILL, a cut connection to the engine), the input ends, and a watcher stops the group.
_WRAPPER = r"""d="$1"; t="$2"; tether="$3"; shift 3
[ -d "$d" ] || mkdir -p "$d"
: > "$d/run.$$.$t"
if [ -e "$d/closing.idle" ] || [ -e "$d/closing.retire" ]; then
  rm -f "$d/run.$$.$t"; : > "$d/refused.$t"; exit 199
fi
if [ "$tether" = 1 ]; then
  # A job in the background reads /dev/null unless told otherwise: its input is the tether, as descriptor 3.
  exec 3<&0
  ( cat <&3; kill -TERM "-$$"; sleep 5; kill -KILL "-$$" ) >/dev/null 2>&1 &
  exec "$@" </dev/null 3<&-
fi
exec "$@"
"""

# Signals the command's group, waits for the command to end, then kills what is left of the group (the tether's
# watcher, which ignores SIGINT as background jobs do, and anything the command left behind). A command whose
# wrapper has not yet recorded itself (the signal came right after it was started) is waited for, briefly.
_STOP = r"""d="$1"; t="$2"; sig="$3"; grace="$4"; n=0
while :; do
  for f in "$d"/run.*."$t"; do [ -e "$f" ] && break 2; done
  [ -e "$d/refused.$t" ] && exit 0
  [ "$n" -ge 20 ] && exit 0
  sleep 0.1; n=$((n + 1))
done
g=${f#"$d"/run.}; g=${g%%.*}
case "$g" in ''|*[!0-9]*) exit 0 ;; esac
[ "$g" -gt 1 ] || exit 0
kill "-$sig" "-$g" 2>/dev/null
n=0
while kill -0 "$g" 2>/dev/null && [ "$n" -lt "$grace" ]; do sleep 0.1; n=$((n + 1)); done
kill -KILL "-$g" 2>/dev/null
rm -f "$f"
exit 0
"""

# Exit 0 when the container was idle and now refuses new commands (it may be removed); 1 when a command runs in it.
_RETIRE = (
    'd="$1"\n'
    + _BUSY
    + r"""
[ -d "$d" ] || mkdir -p "$d"
: > "$d/closing.retire"
if busy; then rm -f "$d/closing.retire"; exit 1; fi
exit 0
"""
)

# Exit 0 when a command runs in the container.
_IS_BUSY = 'd="$1"\n' + _BUSY + "busy\n"


def main_argv(idle_seconds: int) -> list[str]:
    """The container's main process: it exits after ``idle_seconds`` with no command running."""
    return ["sh", "-c", _IDLE_WATCH, "xpcargo-keep-warm", STATE_DIR, str(idle_seconds)]


def wrapped(token: str, argv: Sequence[str], *, tether: bool) -> list[str]:
    """``argv`` under the wrapper; its process group is found later by ``token``. With ``tether``, the command ends
    when its standard input does (see ``Runtime.exec``); an interactive command's input is the terminal's."""
    return ["sh", "-c", _WRAPPER, "xpcargo-run", STATE_DIR, token, "1" if tether else "0", *argv]


def stop_argv(token: str, signal_name: str) -> list[str]:
    """Send ``signal_name`` (`INT`, `TERM`, `HUP`) to the whole process group of the command run as ``token``."""
    return ["sh", "-c", _STOP, "xpcargo-stop", STATE_DIR, token, signal_name, str(STOP_GRACE_TENTHS)]


def refused_argv(token: str) -> list[str]:
    """Exit 0 when the wrapper of ``token`` refused to run its command."""
    return ["test", "-e", f"{STATE_DIR}/refused.{token}"]


def retire_argv() -> list[str]:
    return ["sh", "-c", _RETIRE, "xpcargo-retire", STATE_DIR]


def busy_argv() -> list[str]:
    return ["sh", "-c", _IS_BUSY, "xpcargo-busy", STATE_DIR]


# Labels that differ between two requests for the same container: who asked, and when.
_PER_COMMAND_LABELS = frozenset({SESSION_LABEL, REQUEST_LABEL, HOST_LABEL})


def key(request: ContainerRequest, image_id: str) -> str:
    """What a warm container must match to run ``request``'s commands: the image (by id: a tag may move), the mounts
    (by the identity of their sources, so that a directory deleted and made again is not the one still mounted; a
    volume by its name),
    the user, the network, the capabilities, the hidden paths, the idle timeout and the labels. Not the environment
    or the working directory: each command gets its own."""
    mounts = []
    for mount in request.mounts:
        if mount.volume is not None:
            # A volume is its name: the engine refuses to remove one that a container (this one) uses.
            mounts.append([str(mount.path), f"volume:{mount.volume}", mount.read_only, []])
            continue
        source = mount.source or mount.path
        try:
            status = source.stat()
            identity = [status.st_dev, status.st_ino]
        except OSError:
            identity = []
        mounts.append([str(mount.path), str(source), mount.read_only, identity])
    fields = {
        "image": image_id,
        "user": request.user,
        "network": request.network,
        "capabilities": sorted(request.capabilities),
        "hidden": sorted(str(path) for path in request.hidden),
        "keep_warm": request.keep_warm,
        "mounts": sorted(mounts),
        "labels": sorted((k, v) for k, v in request.labels.items() if k not in _PER_COMMAND_LABELS),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def slot(workspace: str, target: str, user: str) -> str:
    """Which warm container a request would use, whatever its key: one per workspace, target and user. A request
    whose key differs replaces the container of its slot."""
    return hashlib.sha256(f"{workspace}\0{target}\0{user}".encode()).hexdigest()[:32]
