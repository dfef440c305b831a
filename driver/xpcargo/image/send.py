"""Sending an image from this machine's engine to a remote one (there is no registry between them): `docker save`
on one side streamed into `docker load` on the other, under the same content-hash tags, stage by stage of the
image's chain, and only the layers the remote engine lacks.

The chain is sent from its lowest missing stage up, each stage on its own, so that the remote engine gets every
stage's tag (the next target of the same recipe then finds the base there). A stage's archive carries the tar of
each of its layers but those the remote engine already holds: the engine's load skips a layer it holds without
reading it (as ``docker_archive`` relies on too). A `docker save` archive of Docker before 25 names a layer's tar by
a v1 id, not by its digest, and lists the order only at its end (manifest.json), so a layer's tar is hashed on its
way through (and kept aside while it is, in a temporary file) to tell whether the remote engine holds it; an OCI
archive names it by its digest, and a held one is skipped unread.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from xpcargo.container.spec import Runtime
from xpcargo.errors import EngineError, ImageBuildError
from xpcargo.image import lock
from xpcargo.image.plan import ImagePlan, Stage
from xpcargo.ui import Reporter, Stopwatch

_BLOCK = 512
_PIECE = 1 << 20
# Kept in memory below this, in a temporary file above it.
_SPOOL = 64 << 20


@dataclass(frozen=True, kw_only=True)
class Sent:
    stages: tuple[str, ...] = ()
    # What went to the remote engine: the archives' bytes, and how many layers' tars of how many.
    bytes: int = 0
    layers_sent: int = 0
    layers_held: int = 0


def missing_stages(plan: ImagePlan, remote: Runtime) -> tuple[Stage, ...]:
    """The stages of ``plan``'s chain the remote engine lacks, lowest first; none when it has the image itself (one
    question to the engine)."""
    stages = plan.stages
    if remote.image_exists(stages[-1].reference):
        return ()
    missing: list[Stage] = [stages[-1]]
    for stage in reversed(stages[:-1]):
        if remote.image_exists(stage.reference):
            break
        missing.insert(0, stage)
    return tuple(missing)


def send(plan: ImagePlan, *, local: Runtime, remote: Runtime, cache: Path, reporter: Reporter) -> Sent:
    """Send the stages of ``plan``'s chain that ``remote`` lacks from ``local``, which has them all; ``cache`` holds
    the locks that keep two senders of one stage to one engine apart."""
    stages = missing_stages(plan, remote)
    if not stages:
        return Sent()
    # An image runs on the machine it was planned for: this one's architecture.
    here, there = local.architecture(), remote.architecture()
    if here != there:
        raise ImageBuildError(
            f"the engine at {remote.host} runs `{there}`, and xpcargo's images are built for this machine's `{here}`",
            hint="build on an engine of this machine's architecture (a target's `engine`, or DOCKER_HOST)",
        )
    clock = Stopwatch()
    total = Sent()
    for stage in stages:
        # One sender per stage and engine: targets side by side (or two commands) that share a base wait for the
        # one that sends it, then find it there.
        name = hashlib.sha256(f"send\0{remote.host}\0{stage.digest}".encode()).hexdigest()
        what = f"{stage.reference} (sending it to {remote.host})"
        with lock.held(cache, name, reference=what, reporter=reporter) as progress:
            if remote.image_exists(stage.reference):
                continue
            counter = _send_stage(stage, local=local, remote=remote, reporter=replace(reporter, copy=progress))
        total = Sent(
            stages=(*total.stages, stage.reference),
            bytes=total.bytes + counter.bytes,
            layers_sent=total.layers_sent + counter.sent,
            layers_held=total.layers_held + counter.held,
        )
    if not total.stages:
        return total
    reporter.status(
        "Sent",
        f"{len(total.stages)} image(s), {total.bytes / 2**20:.1f} MiB ({total.layers_sent} layer(s); "
        f"{total.layers_held} the engine held) to the engine at {remote.host} in {clock}",
    )
    return total


def _send_stage(stage: Stage, *, local: Runtime, remote: Runtime, reporter: Reporter) -> _Counter:
    parent = stage.parent
    below = remote.inspect_image(parent.reference) if parent is not None else None
    held = frozenset(below.layers) if below is not None else frozenset()
    reporter.status(
        "Sending",
        f"image {stage.reference} from {local.host} to the engine at {remote.host}"
        + (f" (it holds {len(held)} of its layers)" if held else ""),
    )
    counter = _Counter()
    loaded = remote.load_chunks(_without_layers(local.save_chunks(stage.reference), held, counter))
    if stage.reference not in loaded and not remote.image_exists(stage.reference):
        raise EngineError(
            f"the engine at {remote.host} loaded the archive of {stage.reference} but does not name it "
            f"(it named {', '.join(loaded) or 'nothing'})",
            hint="run the command again; if it repeats, send it by hand with `xpcargo image save` and `image load`",
        )
    return counter


class _Counter:
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


def _without_layers(chunks: Iterable[bytes], held: frozenset[str], counter: _Counter) -> Iterator[bytes]:
    """The tar stream ``chunks`` with the layer tars whose digest is in ``held`` left out, headers and all; every
    other byte passes through as it is."""
    stream = _Stream(chunks)
    for piece in _entries(stream, held, counter):
        counter.bytes += len(piece)
        yield piece


def _entries(stream: _Stream, held: frozenset[str], counter: _Counter) -> Iterator[bytes]:
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
        yield from _entry(stream, headers, name=name, size=size, held=held, counter=counter)


def _entry(
    stream: _Stream, headers: list[bytes], *, name: str, size: int, held: frozenset[str], counter: _Counter
) -> Iterator[bytes]:
    padded = _padded(size)
    blob = name.removeprefix("blobs/sha256/")
    if blob != name and f"sha256:{blob}" in held:
        # An OCI archive: the name is the digest, and the remote engine holds that layer.
        counter.held += 1
        for _ in stream.pieces(padded):
            pass
        return
    if blob != name or not name.endswith("/layer.tar"):
        yield from headers
        yield from stream.pieces(padded)
        return
    if not held:
        counter.sent += 1
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
            counter.held += 1
            return
        counter.sent += 1
        yield from headers
        kept.seek(0)
        while piece := kept.read(_PIECE):
            yield piece
