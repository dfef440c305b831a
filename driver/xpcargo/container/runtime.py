"""What xpcargo asks of a container engine, split by what each user needs: images (``Images``: present, imported,
tagged, saved, loaded, listed, removed), containers and the commands run in them (``Containers``), and volumes
(``Volumes``); ``Runtime`` is all of it, with what the engine says about itself: the one connection a command makes
to an engine. Docker's implementation is ``container.docker``; the unit tests' fake records requests instead.

Every method raises xpcargo's own errors (``EngineUnavailableError``, ``EngineError``), never the engine library's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from xpcargo.container.engine import Engine
from xpcargo.container.spec import ContainerRequest

# Where a command's output goes, chunk by chunk, as the engine streams it.
Output = Callable[[bytes], None]


@dataclass(frozen=True, kw_only=True)
class ImageInfo:
    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    size: int
    created: str


@dataclass(frozen=True, kw_only=True)
class ImageDetails:
    """One image as the engine describes it."""

    id: str
    tags: tuple[str, ...]
    labels: Mapping[str, str]
    # The digest of each layer's uncompressed tar (the engine's RootFS diff_ids), lowest first. An imported root
    # file system is one layer, whose digest is the sha256 of the tarball imported.
    layers: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class VolumeInfo:
    name: str
    labels: Mapping[str, str]
    # When the engine made it, as it says it (an ISO 8601 time): a volume removed and made again differs.
    created: str
    # The containers, running or not, that mount it.
    users: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ContainerInfo:
    id: str
    labels: Mapping[str, str]
    running: bool
    image: str = ""
    # Seconds since the epoch.
    created: float = 0.0


@dataclass(frozen=True, kw_only=True)
class RecordedExec:
    """An exec's request as the engine's unix socket takes it: the socket, the API version, how long a request may
    go unanswered, and the request's body in two pieces around the place of the wrapper's token."""

    socket: str
    api: str
    timeout: float
    body_head: bytes
    body_tail: bytes


@dataclass(frozen=True, kw_only=True)
class RecordedRequest:
    """A request on the engine's unix socket whose answer ``xpcargo.replay`` compares: the socket, the API
    version, how long a request may go unanswered, the request's target, and the body of the answer it had."""

    socket: str
    api: str
    timeout: float
    target: str
    answer: bytes


@dataclass(frozen=True, kw_only=True)
class EngineDetails:
    """What `xpcargo info` says about the engine, beyond what connecting to it told (``Engine``)."""

    engine: Engine
    rootless: bool
    architecture: str
    operating_system: str
    storage_driver: str

    def fields(self) -> dict[str, str | bool]:
        """As `xpcargo info` shows them, in order."""
        return {
            "engine": self.engine.kind.value,
            "version": self.engine.version,
            "api-version": self.engine.api_version,
            "host": self.engine.host,
            "rootless": self.rootless,
            "architecture": self.architecture,
            "operating-system": self.operating_system,
            "storage-driver": self.storage_driver,
        }


class ImageLookup(Protocol):
    """Where the engine is, and what it holds of an image: what every user of the engine asks (a warm container
    must be of the image it was made from, an image that is there is not built again)."""

    @property
    def host(self) -> str:
        """Where the engine is, for messages: `unix:///var/run/docker.sock`."""

    def inspect_image(self, reference: str) -> ImageDetails | None:
        """The image's id, names, labels and layer digests; None when the engine has no such image."""


class Images(ImageLookup, Protocol):
    """An engine's images: found, imported, tagged, saved and loaded as `docker save` archives, listed, removed."""

    def architecture(self) -> str:
        """The machine the engine runs images for, as the kernel names it: `x86_64`, `aarch64`."""

    def image_exists(self, reference: str) -> bool: ...
    def recorded_listing(self, label: str) -> RecordedRequest | None:
        """The listing of the images with ``label`` as ``xpcargo.replay`` asks for it again, with what the engine
        answers now; None unless the engine is reached on a local unix socket, or when it does not answer."""

    def list_images(self, label: str) -> list[ImageInfo]: ...
    def remove_image(self, image: str) -> None: ...
    def import_rootfs(self, tarball: Path, *, changes: Sequence[str]) -> str: ...
    def tag(self, image_id: str, repository: str, tag: str) -> None: ...
    def save_image(self, reference: str, destination: Path) -> None:
        """Write the image as a `docker save` archive to ``destination``."""

    def load_image(self, source: Path, *, base: str | None = None) -> list[str]:
        """Load a `docker save` archive; return the references it named. An archive may leave out layers that the
        image ``base``, already in the engine, holds (an engine that needs them all gets them from it)."""

    def save_chunks(self, reference: str) -> Iterator[bytes]:
        """The image as a `docker save` archive, streamed: for another engine's ``load_chunks``."""

    def load_chunks(self, chunks: Iterable[bytes]) -> list[str]:
        """Load a `docker save` archive streamed in ``chunks``; return the references it named."""


class Containers(ImageLookup, Protocol):
    """An engine's containers, and the commands run in them: what the session (the one owner of a container's
    life) and whatever runs a command through it need."""

    def start(self, request: ContainerRequest, *, main: Sequence[str] | None = None) -> str:
        """Create and start a container; return its id. A create is never repeated blindly: one whose answer was
        lost is looked up by its ``REQUEST_LABEL``.

        ``main`` is the container's main process, which ends the container when it exits (which the engine then
        removes); without one, the container is tied to this process and ends when it goes, however it goes."""

    def exec(
        self,
        container_id: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        workdir: Path,
        on_stdout: Output,
        on_stderr: Output,
        tether: bool = False,
        answer_within: float | None = None,
        user: str | None = None,
    ) -> int:
        """Run ``argv`` in the container (as ``user``, by default the container's own), stream its output to the
        callbacks, and return its exit code.

        With ``tether``, the command's standard input stays open, held by this process, until the command ends:
        if this process goes first, however it goes, the input ends (the command may watch for that).
        ``answer_within`` bounds the wait for the engine to take the command (not the command itself), and asks
        only once: for what must happen now or not at all, on the way out of an interrupt.

        Raises ``ContainerGoneError`` when the container was not running when asked (nothing ran),
        ``ContainerDiedError`` when the container (or the command, by the OOM killer) was killed under it,
        ``EngineUnavailableError`` when the engine could not be reached to start the command (nothing ran), and
        ``EngineLostError`` when it stopped answering or the connection was lost after that (the command may still
        be running)."""

    def exec_interactive(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str | None = None
    ) -> int: ...
    def recorded_exec(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str, token: str
    ) -> RecordedExec | None:
        """The tethered exec that ``exec`` would ask for, as ``xpcargo.replay`` sends it again: None unless the
        engine is reached on a local unix socket. ``token`` (once in ``argv``) is where the next one's goes."""

    def put_archive(self, container_id: str, directory: Path, archive: Path) -> None:
        """Unpack the tar file ``archive`` at ``directory`` in the container (into its volumes, if mounted there),
        with the owners and modes its entries name. The container need not run."""

    def changes(self, container_id: str) -> list[tuple[str, str]]:
        """What the container changed in its image's file system: ``(kind, path)`` with kind ``A`` (added),
        ``C`` (changed) or ``D`` (deleted), bind mounts left out."""

    def remove(self, container_id: str, *, unhurried: bool = False) -> None:
        """Stop and remove the container; one that is already gone is fine. Bounded in time: an engine that does
        not answer within a few seconds raises ``EngineUnavailableError`` rather than hanging. ``unhurried``: nobody
        waits on the way out (the container's work ended well), so the engine gets a minute, which removing a large
        container on a busy machine can take."""

    def release(self, container_id: str) -> None:
        """Stop following a container started with a ``main`` process of its own, and leave it running."""

    def list_containers(self, label: str) -> list[ContainerInfo]: ...
    def containers_using(self, image_id: str) -> list[ContainerInfo]:
        """Every container, running or not, made from ``image_id`` or from an image built on it."""


class Volumes(Protocol):
    """An engine's named volumes: remote mode's stand-ins for the host's directories."""

    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> VolumeInfo:
        """Create the named volume (or find it, when it is there already: two commands may ask at once)."""

    def list_volumes(self, label: str) -> list[VolumeInfo]:
        """The volumes with ``label`` (`name=value`), each with the containers that use it."""

    def remove_volume(self, name: str) -> bool:
        """Remove the volume; False when a container still uses it (the engine refuses), True when it is gone."""


class ImagesAndContainers(Images, Containers, Protocol):
    """What building and checking images takes: the images, and containers to build layers in and run checks."""


class ContainersAndVolumes(Containers, Volumes, Protocol):
    """What remote mode's file transfer takes: the volumes, and containers that mount them."""


class Runtime(Images, Containers, Volumes, Protocol):
    """A connection to one container engine: all of the above, and what the engine says about itself."""

    @property
    def engine(self) -> Engine:
        """Which engine this is (Docker, Podman), its version and API version: known from connecting, free."""

    def describe(self) -> EngineDetails:
        """Ask the engine about itself: rootless or not, its architecture, OS and storage (one request)."""
