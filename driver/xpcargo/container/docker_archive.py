"""The `docker save` archive, the one format in which images travel between xpcargo and an engine (there is no
registry between them): a tar of manifest.json (each image's configuration file, its tags, its layers' tars, lowest
first), the configurations, and the layers' tars. Written here for an image built here, read here for what an
engine saved, and filtered here on its way from one engine to another.

An image built here is a configuration and a list of layers, each named by the sha256 of its uncompressed tar (its
diff_id). The configuration is written from the plan alone, with keys sorted, so the image id (the sha256 of the
configuration) follows from the layers and the labels: a locked image rebuilt elsewhere has the same id. An engine
skips a layer it already holds without reading it, so an archive may leave out the tar of a layer the engine holds
(the shared base's; a stage another engine already has): Docker loads it as it is, Podman needs it filled in
(``fill_layers``).

A `docker save` archive of Docker before 25 names a layer's tar by a v1 id, not by its digest, and lists the order
only at its end (manifest.json), so ``without_layers`` hashes a layer's tar on its way through (and keeps it aside
while it does, in a temporary file) to tell whether the receiving engine holds it; an OCI archive names it by its
digest, and a held one is skipped unread.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from xpcargo.errors import EngineError

_BLOCK = 512
_PIECE = 1 << 20
# Kept in memory below this, in a temporary file above it.
_SPOOL = 64 << 20

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


def read_json(archive: tarfile.TarFile, name: str) -> Any:
    """The JSON file ``name`` of an open archive: its manifest.json, or a configuration the manifest names."""
    member = archive.extractfile(name)
    if member is None:
        raise EngineError(f"`{name}` in an image archive is not a file")
    return json.load(member)


def layers(archive: tarfile.TarFile) -> list[tuple[str, str]]:
    """The layers of the (first) image in an open archive, lowest first: each layer tar's name in the archive
    (which the archive may leave out) and its diff_id."""
    manifest = read_json(archive, "manifest.json")[0]
    diff_ids = read_json(archive, manifest["Config"])["rootfs"]["diff_ids"]
    return list(zip(manifest["Layers"], diff_ids, strict=True))


def fill_layers(partial: Path, donor: Path, destination: Path) -> None:
    """Write ``partial`` (an archive that leaves out layers) to ``destination`` with the layers it leaves out taken
    from ``donor`` (a saved image that holds them), matched by diff_id."""
    with tarfile.open(partial) as archive, tarfile.open(donor) as giver:
        layer_of = {diff_id: name for name, diff_id in layers(giver)}
        present = set(archive.getnames())
        with tarfile.open(destination, "w", format=tarfile.PAX_FORMAT) as out:
            for member in archive.getmembers():
                out.addfile(member, archive.extractfile(member) if member.isfile() else None)
            for name, diff_id in layers(archive):
                if name in present:
                    continue
                if diff_id not in layer_of:
                    raise EngineError(f"the engine's copy of the base image has no layer {diff_id[:19]}")
                member = giver.getmember(layer_of[diff_id])
                copy = tarfile.TarInfo(name)
                copy.size, copy.mode = member.size, 0o644
                out.addfile(copy, giver.extractfile(member))


def _add_bytes(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    archive.addfile(info, io.BytesIO(content))


class Tally:
    """What passed through ``without_layers``: the bytes, and how many layers' tars were sent and left out."""

    def __init__(self) -> None:
        self.bytes = 0
        self.sent = 0
        self.held = 0


class _Stream:
    """A byte stream over an iterable of chunks, read in exact sizes."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = b""

    def read(self, size: int) -> bytes:
        """Up to ``size`` bytes: fewer only at the end of the stream."""
        while len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def pieces(self, size: int) -> Iterator[bytes]:
        """Exactly ``size`` bytes, in pieces; a stream that ends first is a broken archive."""
        left = size
        while left:
            piece = self.read(min(left, _PIECE))
            if not piece:
                raise EngineError("the image's archive from the engine ended in the middle of a file")
            left -= len(piece)
            yield piece

    def rest(self) -> Iterator[bytes]:
        if self._buffer:
            yield self._buffer
            self._buffer = b""
        yield from self._chunks


def _padded(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _number(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:
        # GNU's base-256 form, for sizes of 8 GiB and more.
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.rstrip(b"\0 ").strip()
    return int(text, 8) if text else 0


def _name(header: bytes) -> str:
    name = header[:100].split(b"\0", 1)[0]
    prefix = header[345:500].split(b"\0", 1)[0] if header[257:262] == b"ustar" else b""
    return (prefix + b"/" + name if prefix else name).decode(errors="replace")


def _pax(data: bytes) -> dict[str, str]:
    records: dict[str, str] = {}
    while data:
        length = data.partition(b" ")[0]
        if not length.isdigit():
            break
        record, data = data[: int(length)], data[int(length) :]
        key, _, value = record[len(length) + 1 :].rstrip(b"\n").partition(b"=")
        records[key.decode(errors="replace")] = value.decode(errors="replace")
    return records


def without_layers(chunks: Iterable[bytes], held: frozenset[str], tally: Tally) -> Iterator[bytes]:
    """The tar stream ``chunks`` with the layer tars whose digest is in ``held`` left out, headers and all; every
    other byte passes through as it is."""
    stream = _Stream(chunks)
    for piece in _entries(stream, held, tally):
        tally.bytes += len(piece)
        yield piece


def _entries(stream: _Stream, held: frozenset[str], tally: Tally) -> Iterator[bytes]:
    while True:
        headers: list[bytes] = []
        name = size = None
        while True:
            header = stream.read(_BLOCK)
            if len(header) < _BLOCK or not header.strip(b"\0"):
                # The end of the archive (two zero blocks): the rest passes as it is.
                yield from headers
                yield header
                yield from stream.rest()
                return
            headers.append(header)
            kind = header[156:157]
            length = _number(header[124:136])
            if kind in (b"x", b"g", b"L", b"K"):
                data = b"".join(stream.pieces(_padded(length)))
                headers.append(data)
                if kind == b"x":
                    pax = _pax(data[:length])
                    name = pax.get("path", name)
                    size = int(pax["size"]) if "size" in pax else size
                elif kind == b"L":
                    name = data[:length].rstrip(b"\0").decode(errors="replace")
                continue
            name = name if name is not None else _name(header)
            size = size if size is not None else length
            break
        yield from _entry(stream, headers, name=name, size=size, held=held, tally=tally)


def _entry(
    stream: _Stream, headers: list[bytes], *, name: str, size: int, held: frozenset[str], tally: Tally
) -> Iterator[bytes]:
    padded = _padded(size)
    blob = name.removeprefix("blobs/sha256/")
    if blob != name and f"sha256:{blob}" in held:
        # An OCI archive: the name is the digest, and the remote engine holds that layer.
        tally.held += 1
        for _ in stream.pieces(padded):
            pass
        return
    if blob != name or not name.endswith("/layer.tar"):
        yield from headers
        yield from stream.pieces(padded)
        return
    if not held:
        tally.sent += 1
        yield from headers
        yield from stream.pieces(padded)
        return
    digest = hashlib.sha256()
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as kept:
        left = size
        for piece in stream.pieces(padded):
            data = piece[:left]
            left -= len(data)
            digest.update(data)
            kept.write(piece)
        if f"sha256:{digest.hexdigest()}" in held:
            tally.held += 1
            return
        tally.sent += 1
        yield from headers
        kept.seek(0)
        while piece := kept.read(_PIECE):
            yield piece
