"""An engine's images: inspected, listed, imported, tagged, saved and loaded as `docker save` archives, removed."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

from xpcargo.container import docker_archive
from xpcargo.container.docker import answers, socket_api
from xpcargo.container.docker.connection import Connection
from xpcargo.container.docker.errors import describe
from xpcargo.container.engine import EngineKind
from xpcargo.container.runtime import ImageDetails, ImageInfo, RecordedRequest
from xpcargo.errors import EngineError, XpcargoError


class DockerImages(Connection):
    def architecture(self) -> str:
        info: dict[str, Any] = self._call("report its architecture", self._client.info)
        return str(info.get("Architecture", ""))

    def image_exists(self, reference: str) -> bool:
        return self._call(f"inspect image {reference}", lambda: self._raw_image(reference) is not None)

    def inspect_image(self, reference: str) -> ImageDetails | None:
        def inspect() -> ImageDetails | None:
            raw = self._raw_image(reference)
            return None if raw is None else answers.image_details(raw, self._engine.kind)

        return self._call(f"inspect image {reference}", inspect)

    def _raw_image(self, reference: str) -> dict[str, Any] | None:
        """The image's inspection, or None when the engine has no such image."""
        if self._local is not None:
            return self._local.inspect_image(reference, timeout=self._engine_timeout)
        import docker.errors  # noqa: PLC0415

        try:
            raw: dict[str, Any] = self._client.api.inspect_image(reference)  # type: ignore[no-untyped-call]
        except docker.errors.ImageNotFound:
            return None
        return raw

    def list_images(self, label: str) -> list[ImageInfo]:
        def images() -> list[dict[str, Any]]:
            if self._local is not None:
                return self._local.images(label, timeout=self._engine_timeout)
            found: list[dict[str, Any]] = self._client.api.images(filters={"label": label})
            return found

        return answers.image_infos(self._call("list images", images), self._engine.kind)

    def recorded_listing(self, label: str) -> RecordedRequest | None:
        local = self._local
        if local is None:
            return None
        target = local.images_target(label)
        try:
            answer = local.request("GET", target, timeout=self._engine_timeout)
        except socket_api.SocketAPIError:
            return None
        if answer.status != 200:
            return None
        return RecordedRequest(
            socket=local.path,
            api=local.version,
            timeout=self._engine_timeout,
            target=target,
            answer=answer.body,
        )

    def remove_image(self, image: str) -> None:
        self._call(f"remove image {image}", lambda: self._client.api.remove_image(image, noprune=False))

    def import_rootfs(self, tarball: Path, *, changes: Sequence[str]) -> str:
        """Import a root filesystem tarball as an untagged image and return its id."""

        def run() -> str:
            answer = self._stream.import_image_from_file(str(tarball), changes=list(changes))
            # The engine answers with one JSON object per line; the last names the new image.
            for line in reversed(str(answer).strip().splitlines()):
                status = json.loads(line)
                if "error" in status:
                    raise EngineError(f"{self._engine.name} could not import {tarball.name}: {status['error']}")
                if str(status.get("status", "")).startswith("sha256:"):
                    return str(status["status"])
            raise EngineError(f"{self._engine.name} imported {tarball.name} but named no image: {answer!r}")

        # An import is not idempotent (a retry would leave a second copy behind), so it is tried once.
        try:
            return run()
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own error right here
            raise EngineError(f"{self._engine.name} could not import {tarball.name}: {describe(exc)}") from None

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self._call(f"tag {image_id} as {repository}:{tag}", lambda: self._client.api.tag(image_id, repository, tag))

    def save_image(self, reference: str, destination: Path) -> None:
        def save() -> None:
            with destination.open("wb") as stream:
                for chunk in self._stream.get_image(reference):
                    stream.write(chunk)

        self._call(f"save image {reference}", save)

    def load_image(self, source: Path, *, base: str | None = None) -> list[str]:
        if base is None or self._engine.kind is not EngineKind.PODMAN:
            # Docker skips a layer it holds without reading it, so an archive may leave it out.
            return self._load(source)
        # Podman refuses an archive without every layer's tar ("Some layer tarfiles are missing"): the ones left
        # out come from `base`, saved for the purpose.
        donor, complete = source.with_name(f"{source.name}.base"), source.with_name(f"{source.name}.complete")
        try:
            self.save_image(base, donor)
            docker_archive.fill_layers(source, donor, complete)
            donor.unlink()
            return self._load(complete)
        finally:
            donor.unlink(missing_ok=True)
            complete.unlink(missing_ok=True)

    def _load(self, source: Path) -> list[str]:
        with source.open("rb") as stream:
            return self._load_stream(stream, what=source.name)

    def save_chunks(self, reference: str) -> Iterator[bytes]:
        # The request is made here, so that an engine that lacks the image says so before anything is sent.
        chunks = self._call(f"save image {reference}", lambda: self._stream.get_image(reference, chunk_size=1 << 20))

        def stream() -> Iterator[bytes]:
            try:
                yield from chunks
            except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own errors
                raise self._translate(f"save image {reference}", exc) from None

        return stream()

    def load_chunks(self, chunks: Iterable[bytes]) -> list[str]:
        # A generator is sent with chunked transfer encoding, as it comes: nothing is held in memory or on disk.
        return self._load_stream(chunks, what="an image")

    def _load_stream(self, data: Iterable[bytes] | IO[bytes], *, what: str) -> list[str]:
        """Load a `docker save` archive from a file or a stream of chunks; return the names it gave (as xpcargo
        named them: see ``answers.short_name``)."""

        def load() -> list[str]:
            loaded: list[str] = []
            for status in self._stream.load_image(data):  # type: ignore[no-untyped-call]
                if "error" in status:
                    raise EngineError(f"{self._engine.name} could not load {what}: {status['error']}")
                text = str(status.get("stream", ""))
                if text.startswith("Loaded image: "):
                    loaded.append(self._name(text.removeprefix("Loaded image: ").strip()))
            return loaded

        # A load is not idempotent in what it reports, and the archive can be read once: tried once.
        try:
            return load()
        except XpcargoError:
            raise
        except Exception as exc:  # noqa: BLE001 - translated into xpcargo's own error right here
            raise self._translate(f"load {what}", exc) from None
