"""The request for a container, in xpcargo's own terms: its image, user, mounts, environment, labels and
confinement (what an engine is asked to do with it is ``container.runtime``'s).

Nothing here talks to an engine, so everything above this seam can be planned and tested without one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

MANAGED_LABEL = "org.xpcargo.managed"
# Which xpcargo process started a container, and for what step: `<purpose>:<pid>`.
SESSION_LABEL = "org.xpcargo.session"
# A unique name for one request, so that a create whose answer was lost can be found instead of repeated.
REQUEST_LABEL = "org.xpcargo.request"
# The machine (host name and kernel boot) of the process in SESSION_LABEL: a pid means something only there.
HOST_LABEL = "org.xpcargo.host"
# A warm container's: what it is for (one per workspace, target and user, see ``warm.slot``), whether it still fits a
# request (``warm.key``), and, for `xpcargo ps` and `xpcargo down`, whose and which workspace and target it serves.
SLOT_LABEL = "org.xpcargo.slot"
WARM_KEY_LABEL = "org.xpcargo.warm-key"
KEEP_WARM_LABEL = "org.xpcargo.keep-warm"
USER_LABEL = "org.xpcargo.user"
WORKSPACE_LABEL = "org.xpcargo.workspace"
TARGET_LABEL = "org.xpcargo.target"
# A volume's: what it holds (`workspace`, `target-dir`, `cargo-home`, `path-dependency`, `mount`), the host path it
# mirrors, and which machine and user it belongs to (see ``container.volumes``).
VOLUME_KIND_LABEL = "org.xpcargo.volume-kind"
VOLUME_PATH_LABEL = "org.xpcargo.volume-path"

# In a confined container (``ContainerRequest.confined``): the main process's directory, an empty file system that
# only its user (``keeper``) may write.
KEEPER_DIR = Path("/run/xpcargo")
# How long a warm container lives at most, by default (XPCARGO_WARM_LIFETIME).
WARM_LIFETIME = 3600
# The keeper of a container whose commands run as root: a user with nothing of its own.
_NOBODY = "65534:65534"


def keeper(user: str) -> str:
    """Who the main process of a confined container runs as: never the commands' user, so that they can neither
    signal it (they have no capabilities) nor write its files. Root, unless the commands run as root."""
    return _NOBODY if user.partition(":")[0] in ("0", "root") else "0:0"


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A host directory or file, bind-mounted at the same absolute path inside the container (or, with ``source``,
    another host path mounted there: an empty file over a credentials file, say); or, with ``volume``, the engine's
    named volume of that name mounted at ``path`` (a remote engine sees no host path)."""

    path: Path
    read_only: bool = False
    source: Path | None = None
    volume: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContainerRequest:
    """Everything a container is started with.

    Every container also drops all capabilities but ``capabilities`` and cannot gain privileges
    (`no-new-privileges`); a ``confined`` one, which runs a project's code, also keeps nothing of a command past its
    end (see ``confined`` below). One started without a main process of its own ends by itself when the xpcargo process
    that started it goes away, however it goes; a warm one ends by itself when idle, and each command run in it with
    the xpcargo process that waits on it (see ``container.docker`` and ``warm``).
    """

    image: str
    user: str
    # The working directory and the environment of every command run in the container (given per command, so that
    # a warm container serves commands that differ in them).
    workdir: Path
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # "none" for compiling (hermetic, reproducible), "host" for the step that downloads crates.
    network: str = "none"
    # Directories hidden behind an empty tmpfs: they exist on the host, but what they hold must not be used here.
    hidden: tuple[Path, ...] = ()
    # The capabilities kept (Linux names without CAP_): none, but for the root of an image layer's apt and dpkg.
    capabilities: tuple[str, ...] = ()
    # Seconds a container kept warm for later commands waits idle before it ends; 0: the container lives exactly
    # as long as the session that started it.
    keep_warm: int = 0
    # Seconds after which a warm container takes no more commands, however busy (it ends once none runs).
    warm_lifetime: int = WARM_LIFETIME
    # For a project's code: the container's own file system is read-only but for ``scratch`` (empty directories
    # writable by every user: /tmp and HOME) and ``KEEPER_DIR``; the main process runs as ``keeper(user)``; every
    # command runs as ``user`` under ``warm``'s wrapper, and nothing it started outlives it.
    confined: bool = False
    scratch: tuple[Path, ...] = ()
