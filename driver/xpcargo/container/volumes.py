"""xpcargo's volumes on an engine that cannot see this machine's files (remote mode): their names and labels, making
the ones a build needs, and `xpcargo volumes list|prune`.

A volume mirrors one host directory of one machine's user (the workspace, the target dir, CARGO_HOME, a path
dependency, another mount) and is mounted at that directory's own path. Its name is derived from the machine, the
user, its kind and the path, so that the same build finds the same volume again and two machines or users that share
an engine never share one. What it holds is xpcargo's to decide: it is labelled `org.xpcargo.managed=true`, and list
and prune see nothing else.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xpcargo.container.location import client_id
from xpcargo.container.runtime import VolumeInfo, Volumes
from xpcargo.container.spec import (
    MANAGED_LABEL,
    USER_LABEL,
    VOLUME_KIND_LABEL,
    VOLUME_PATH_LABEL,
    WORKSPACE_LABEL,
)

# The machine a volume's files came from: its path means something only there.
CLIENT_LABEL = "org.xpcargo.client"
# A random name given when the volume is made: a volume removed and made again under the same name holds nothing of
# what was sent to the first (the engine's CreatedAt cannot tell them apart: the local driver reports a directory's
# mtime, which moves).
INSTANCE_LABEL = "org.xpcargo.volume-instance"


@dataclass(frozen=True, kw_only=True)
class VolumeSpec:
    """One volume a build needs: its name, its labels, and where it is mounted (the host path it mirrors)."""

    name: str
    kind: str
    path: Path
    labels: Mapping[str, str]


def spec(kind: str, path: Path, *, workspace: Path | None) -> VolumeSpec:
    key = hashlib.sha256(f"{client_id()}\0{kind}\0{path}".encode()).hexdigest()[:24]
    labels = {
        MANAGED_LABEL: "true",
        VOLUME_KIND_LABEL: kind,
        VOLUME_PATH_LABEL: str(path),
        USER_LABEL: str(os.getuid()),
        CLIENT_LABEL: os.uname().nodename,
    }
    if workspace is not None:
        labels[WORKSPACE_LABEL] = str(workspace)
    return VolumeSpec(name=f"xpcargo-{kind}-{key}", kind=kind, path=path, labels=labels)


def ensure(runtime: Volumes, wanted: Iterable[VolumeSpec]) -> dict[str, VolumeInfo]:
    """Each wanted volume as the engine has it, made first when it is missing: one question when all are there."""
    wanted = list(wanted)
    found = {volume.name: volume for volume in runtime.list_volumes(f"{USER_LABEL}={os.getuid()}")}
    for volume in wanted:
        if volume.name not in found:
            found[volume.name] = _make(runtime, volume)
    return {volume.name: found[volume.name] for volume in wanted}


def _make(runtime: Volumes, volume: VolumeSpec) -> VolumeInfo:
    labels = {**volume.labels, INSTANCE_LABEL: uuid.uuid4().hex}
    made = runtime.create_volume(volume.name, labels=labels)
    if INSTANCE_LABEL not in made.labels and runtime.remove_volume(volume.name):
        # The engine answered with a volume of that name without labels: one it made itself for a container that
        # mounted the name after ours was removed. Nothing of what it holds is known, and list and prune would never
        # see it; made again, unless a container uses it (then it is sent everything each time).
        made = runtime.create_volume(volume.name, labels=labels)
    return made


def instance(volume: VolumeInfo) -> str:
    """Which making of the volume this is ("" for one xpcargo did not label: it is sent everything)."""
    return volume.labels.get(INSTANCE_LABEL, "")


def host_path(volume: VolumeInfo) -> str:
    return volume.labels.get(VOLUME_PATH_LABEL, "?")


def mine(runtime: Volumes) -> list[VolumeInfo]:
    """This user's volumes of this machine, by label: never one that xpcargo did not make."""
    return sorted(
        (
            volume
            for volume in runtime.list_volumes(f"{USER_LABEL}={os.getuid()}")
            if volume.labels.get(MANAGED_LABEL) == "true"
            and VOLUME_KIND_LABEL in volume.labels
            and volume.labels.get(CLIENT_LABEL) == os.uname().nodename
        ),
        key=lambda volume: (volume.labels.get(VOLUME_PATH_LABEL, ""), volume.name),
    )


@dataclass(frozen=True, kw_only=True)
class Pruned:
    removed: tuple[VolumeInfo, ...]
    # Volumes a container still mounts (a warm build container, say): never removed.
    in_use: tuple[VolumeInfo, ...]


def prune(runtime: Volumes, *, manifests: Path) -> Pruned:
    """Remove this user's volumes that no container uses, and what this machine remembers of their contents."""
    removed, in_use = [], []
    for volume in mine(runtime):
        # The engine refuses to remove a volume in use as well; asking first says why it stays.
        if volume.users or not runtime.remove_volume(volume.name):
            in_use.append(volume)
            continue
        removed.append(volume)
        (manifests / f"{volume.name}.json").unlink(missing_ok=True)
    return Pruned(removed=tuple(removed), in_use=tuple(in_use))


def rows(volumes: Iterable[VolumeInfo]) -> list[tuple[str, ...]]:
    found = [
        (
            volume.name,
            volume.labels.get(VOLUME_KIND_LABEL, "?"),
            f"{len(volume.users)} container(s)" if volume.users else "-",
            volume.labels.get(VOLUME_PATH_LABEL, "?"),
        )
        for volume in volumes
    ]
    return [("VOLUME", "KIND", "USED BY", "HOST PATH"), *found]
