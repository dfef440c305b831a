"""What xpcargo remembers of the images it built: one record per plan in ``<cache>/images``, and when each image was
last used (the record's modification time, touched by every command that runs in the image).

`image prune` removes an image only through its record. The label ``org.xpcargo.managed`` is no proof of that: an
image built ``FROM`` one of xpcargo's, or committed from one of its containers, inherits every label.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from xpcargo.files import write_atomically
from xpcargo.image.lockfile import Package

_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, kw_only=True)
class Record:
    digest: str
    reference: str
    image_id: str
    target: str
    # Seconds since the epoch.
    built: float
    last_used: float
    # Every Debian package the build installed, at its version (None for a record of an older xpcargo).
    packages: tuple[Package, ...] | None = None


def _directory(cache: Path) -> Path:
    return cache / "images"


def save(
    cache: Path, *, digest: str, reference: str, image_id: str, target: str, packages: Sequence[Package] | None = None
) -> None:
    """Record that this xpcargo built ``image_id`` and named it ``reference``, with the packages it installed."""
    directory = _directory(cache)
    directory.mkdir(parents=True, exist_ok=True)
    record: dict[str, object] = {"reference": reference, "image_id": image_id, "target": target, "built": time.time()}
    if packages is not None:
        record["packages"] = [str(package) for package in packages]
    write_atomically(directory / f"{digest}.json", json.dumps(record, indent=1) + "\n")


def touch(cache: Path, digest: str) -> None:
    """Note a use of the image built for ``digest``; an image xpcargo did not build has no record to touch."""
    with suppress(FileNotFoundError):
        os.utime(_directory(cache) / f"{digest}.json")


def forget(cache: Path, digest: str) -> None:
    (_directory(cache) / f"{digest}.json").unlink(missing_ok=True)


def load_all(cache: Path) -> list[Record]:
    """Every readable record; one that is not a record xpcargo wrote is no record (and proves nothing)."""
    records = []
    directory = _directory(cache)
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else ():
        digest = path.stem
        if not _DIGEST.fullmatch(digest):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            records.append(
                Record(
                    digest=digest,
                    reference=str(data["reference"]),
                    image_id=str(data["image_id"]),
                    target=str(data["target"]),
                    built=float(data["built"]),
                    last_used=path.stat().st_mtime,
                    packages=(
                        tuple(Package.parse(str(text)) for text in data["packages"]) if "packages" in data else None
                    ),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return records
