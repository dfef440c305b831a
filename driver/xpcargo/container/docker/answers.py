"""The engine's JSON answers read into xpcargo's values (pure: the SDK hands over plain dicts)."""

from __future__ import annotations

from typing import Any

from xpcargo.container.engine import Engine, EngineKind
from xpcargo.container.runtime import ContainerInfo, EngineDetails, ImageDetails, ImageInfo, VolumeInfo


def short_name(reference: str, kind: EngineKind) -> str:
    """An image name as xpcargo gave it. Podman files a name without a registry under one: `localhost/` when
    loaded, `docker.io/` when tagged through its Docker-compatible API; it finds the image by the short name too,
    which is what xpcargo compares."""
    if kind is EngineKind.PODMAN:
        for registry in ("localhost/", "docker.io/"):
            if reference.startswith(registry) and not reference.startswith(f"{registry}library/"):
                return reference.removeprefix(registry)
    return reference


def engine_details(engine: Engine, info: dict[str, Any]) -> EngineDetails:
    """From Docker's `/info`."""
    return EngineDetails(
        engine=engine,
        rootless=any("name=rootless" in option for option in info.get("SecurityOptions") or ()),
        architecture=str(info.get("Architecture", "")),
        operating_system=str(info.get("OperatingSystem", "")),
        storage_driver=str(info.get("Driver", "")),
    )


def podman_engine_details(engine: Engine, info: dict[str, Any]) -> EngineDetails:
    """From Podman's own `/libpod/info`: its Docker-compatible `/info` does not say whether it runs rootless."""
    host, store = info.get("host") or {}, info.get("store") or {}
    return EngineDetails(
        engine=engine,
        rootless=bool((host.get("security") or {}).get("rootless")),
        architecture=str(host.get("arch", "")),
        operating_system=str((host.get("distribution") or {}).get("distribution", "")),
        storage_driver=str(store.get("graphDriverName", "")),
    )


def image_details(raw: dict[str, Any], kind: EngineKind) -> ImageDetails:
    """From an image's inspection."""
    return ImageDetails(
        id=str(raw["Id"]),
        tags=tuple(short_name(tag, kind) for tag in raw.get("RepoTags") or ()),
        labels=dict((raw.get("Config") or {}).get("Labels") or {}),
        layers=tuple(str(layer) for layer in (raw.get("RootFS") or {}).get("Layers") or ()),
    )


def image_infos(raw: list[dict[str, Any]], kind: EngineKind) -> list[ImageInfo]:
    """From the image list (an untagged image's `<none>:<none>` left out)."""
    return [
        ImageInfo(
            id=item["Id"],
            tags=tuple(short_name(tag, kind) for tag in item.get("RepoTags") or () if tag != "<none>:<none>"),
            labels=dict(item.get("Labels") or {}),
            size=int(item.get("Size", 0)),
            created=str(item.get("Created", "")),
        )
        for item in raw
    ]


def volume_infos(raw: list[dict[str, Any]], containers: list[dict[str, Any]]) -> list[VolumeInfo]:
    """From the volume list, each with the ``containers`` (the container list) that mount it."""
    users: dict[str, list[str]] = {}
    for container in containers:
        for mount in container.get("Mounts") or ():
            if mount.get("Type") == "volume":
                users.setdefault(str(mount.get("Name")), []).append(str(container["Id"]))
    return [
        VolumeInfo(
            name=str(item["Name"]),
            labels=dict(item.get("Labels") or {}),
            created=str(item.get("CreatedAt", "")),
            users=tuple(users.get(str(item["Name"]), ())),
        )
        for item in raw
    ]


def container_infos(raw: list[dict[str, Any]]) -> list[ContainerInfo]:
    """From the container list."""
    return [
        ContainerInfo(
            id=str(item["Id"]),
            labels=dict(item.get("Labels") or {}),
            running=item.get("State") == "running",
            image=str(item.get("Image", "")),
            created=float(item.get("Created") or 0),
        )
        for item in raw
    ]


def changes(raw: list[dict[str, Any]] | None) -> list[tuple[str, str]]:
    """From a container's diff: ``(kind, path)``, kind `C`, `A` or `D` (an unknown kind read as a change)."""
    kinds = {0: "C", 1: "A", 2: "D"}
    return [(kinds.get(int(entry["Kind"]), "C"), str(entry["Path"])) for entry in raw or []]
