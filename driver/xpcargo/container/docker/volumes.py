"""An engine's named volumes: made (or found), listed with the containers that mount them, removed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xpcargo.container.docker import answers
from xpcargo.container.docker.connection import Connection
from xpcargo.container.runtime import VolumeInfo


class DockerVolumes(Connection):
    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> VolumeInfo:
        # The engine answers a create of a volume that exists with that volume: two commands may ask at once.
        raw: dict[str, Any] = self._call(
            f"create volume {name}", lambda: self._client.api.create_volume(name, labels=dict(labels))
        )
        return VolumeInfo(name=str(raw["Name"]), labels=dict(raw.get("Labels") or {}), created=str(raw["CreatedAt"]))

    def list_volumes(self, label: str) -> list[VolumeInfo]:
        def volumes() -> list[VolumeInfo]:
            raw = self._client.api.volumes(filters={"label": label}).get("Volumes") or []
            # Who mounts them is asked only when there are any.
            containers = self._client.api.containers(all=True) if raw else []
            return answers.volume_infos(raw, containers)

        return self._call("list volumes", volumes)

    def remove_volume(self, name: str) -> bool:
        import docker.errors  # noqa: PLC0415

        def remove() -> bool:
            try:
                self._client.api.remove_volume(name)
            except docker.errors.NotFound:
                return True
            except docker.errors.APIError as exc:
                # 409: a container uses it; the engine never removes such a volume.
                if exc.status_code == 409:
                    return False
                raise
            return True

        return self._call(f"remove volume {name}", remove)
