"""Images written as `docker save` archives, to be loaded into the engine (there is no registry to push to).

An image built here is a configuration and a list of layers, each named by the sha256 of its uncompressed tar (its
diff_id). The configuration is written from the plan alone, with keys sorted, so the image id (the sha256 of the
configuration) follows from the layers and the labels: a locked image rebuilt elsewhere has the same id. The engine
skips a layer it already holds without reading it, so an archive carries only the new layer's tar, never the
shared base's.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path

# Each image runs with these, as the base's import gives it.
ENVIRONMENT = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")


def image_config(
    *, architecture: str, diff_ids: Sequence[str], labels: Mapping[str, str], created: float, history: Sequence[str]
) -> bytes:
    """The image's configuration, canonical JSON; ``history`` says what made each layer."""
    moment = datetime.fromtimestamp(created, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    config = {
        "architecture": architecture,
        "os": "linux",
        "created": moment,
        "config": {"Env": list(ENVIRONMENT), "Labels": dict(labels)},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": moment, "created_by": line} for line in history],
    }
    return json.dumps(config, sort_keys=True, separators=(",", ":")).encode()


def image_id(config: bytes) -> str:
    return f"sha256:{hashlib.sha256(config).hexdigest()}"


def write(destination: Path, *, config: bytes, layers: Sequence[tuple[str, Path | None]]) -> str:
    """Write an archive of the image ``config`` describes, untagged; ``layers`` pairs each diff_id with its tar, or
    with None for a layer the engine already holds. Returns the image id."""
    digest = image_id(config)
    names = [f"{diff_id.removeprefix('sha256:')}/layer.tar" for diff_id, _ in layers]
    manifest = [{"Config": f"{digest.removeprefix('sha256:')}.json", "RepoTags": None, "Layers": names}]
    with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as archive:
        _add_bytes(archive, manifest[0]["Config"], config)  # type: ignore[arg-type]
        for name, (_, tar) in zip(names, layers, strict=True):
            if tar is not None:
                archive.add(tar, arcname=name, recursive=False)
        _add_bytes(archive, "manifest.json", json.dumps(manifest).encode())
    return digest


def _add_bytes(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(content))
