"""What a container is created with, from its request, and how a command is named in messages (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from xpcargo.container import warm
from xpcargo.container.spec import KEEPER_DIR, ContainerRequest, keeper

# The main process of every container: it ends, and with it the container, when xpcargo's end of the tether closes.
TETHERED_MAIN = ("sh", "-c", "cat >/dev/null")


def tmpfs(request: ContainerRequest, *, podman: bool) -> dict[str, str]:
    """Empty file systems: over each hidden path; and in a confined container, the scratch directories (programs
    run from there: doctests, configure checks) and the keeper's own directory, which only the keeper may write
    (the container's own user: Podman says so with `U`, and refuses Docker's `uid=`)."""
    mounts = {str(path): "" for path in request.hidden}
    if request.confined:
        mounts.update({str(path): "exec,mode=1777" for path in request.scratch})
        uid, _, gid = keeper(request.user).partition(":")
        mounts[str(KEEPER_DIR)] = "U,mode=0755" if podman else f"uid={uid},gid={gid},mode=0755"
    return mounts


def host_options(request: ContainerRequest, *, podman: bool) -> dict[str, Any]:
    """The host configuration, but the mounts: no network unless asked, an init, removed when it ends, every
    capability dropped but those asked, no new privileges, and a confined container's root read-only."""
    return {
        "network_mode": request.network,
        "init": True,
        "auto_remove": True,
        "cap_drop": ["ALL"],
        "cap_add": list(request.capabilities) or None,
        "security_opt": ["no-new-privileges"],
        "tmpfs": tmpfs(request, podman=podman),
        "read_only": request.confined,
    }


def create_options(request: ContainerRequest, main: Sequence[str] | None) -> dict[str, Any]:
    """The container's own options: its main process (``main``, else the tether's), user and labels."""
    return {
        "command": list(main) if main is not None else list(TETHERED_MAIN),
        # An open stdin that closes for good when its one attached client goes: the tether.
        "stdin_open": main is None,
        "detach": False,
        "user": keeper(request.user) if request.confined else request.user,
        "working_dir": str(request.workdir),
        # Each command gets the environment with its exec; the main process needs none.
        "labels": dict(request.labels),
    }


def shown(argv: Sequence[str]) -> str:
    """A command as messages name it: its first two words, those of the user's command under a warm container's
    wrapper."""
    command = warm.unwrapped(argv)
    return " ".join((command.argv if command is not None else argv)[:2])
