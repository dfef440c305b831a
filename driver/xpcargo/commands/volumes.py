"""`xpcargo volumes list|prune`: the volumes that stand in for the user's files on a remote engine."""

from __future__ import annotations

from typing import TYPE_CHECKING

from xpcargo.commands import Answer
from xpcargo.container import volumes

if TYPE_CHECKING:
    from xpcargo.container.runtime import Runtime
    from xpcargo.context import Context


def rows(runtime: Runtime) -> list[tuple[str, ...]]:
    """`xpcargo volumes list`: this user's volumes, what each mirrors, and which containers use it."""
    return volumes.rows(volumes.mine(runtime))


def prune(context: Context, runtime: Runtime) -> Answer:
    """`xpcargo volumes prune`: remove this user's volumes that no container uses, and say which went and which
    stayed."""
    pruned = volumes.prune(runtime, manifests=context.host.settings.cache_dir / "volumes")
    statuses = [("Removed", f"volume {volume.name} ({volumes.host_path(volume)})") for volume in pruned.removed]
    statuses += [
        ("Kept", f"volume {volume.name}: used by {len(volume.users) or 'a'} container(s)") for volume in pruned.in_use
    ]
    if not pruned.removed and not pruned.in_use:
        statuses.append(("Removed", "nothing: no volume of yours"))
    return Answer(statuses=tuple(statuses))
