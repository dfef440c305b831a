"""What xpcargo asks of a container engine, in its own terms: the request for a container, and the ``Runtime``
protocol that an engine implements (Docker's is ``docker_runtime``; a test's fake records requests instead).

Nothing here talks to an engine, so everything above this seam can be planned and tested without one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from xpcargo.container.engine import Engine

MANAGED_LABEL = "org.xpcargo.managed"
# Which xpcargo process started a container, and for what step: `<purpose>:<pid>`.
SESSION_LABEL = "org.xpcargo.session"
# A unique name for one request, so that a create whose answer was lost can be found instead of repeated.
REQUEST_LABEL = "org.xpcargo.request"
# The machine (host name and kernel boot) of the process in SESSION_LABEL: a pid means something only there.
HOST_LABEL = "org.xpcargo.host"
# A warm container's: what it is for (one per workspace, target and user, see ``warm.slot``), whether it still fits a
# request (``warm.key``), and, for `xpcargo ps` and `xpcargo down`, whose and which workspace and target it serves.
SLOT_LABEL = "org.xpcargo.slot"
WARM_KEY_LABEL = "org.xpcargo.warm-key"
KEEP_WARM_LABEL = "org.xpcargo.keep-warm"
USER_LABEL = "org.xpcargo.user"
WORKSPACE_LABEL = "org.xpcargo.workspace"
TARGET_LABEL = "org.xpcargo.target"
# A volume's: what it holds (`workspace`, `target-dir`, `cargo-home`, `path-dependency`, `mount`), the host path it
# mirrors, and which machine and user it belongs to (see ``container.volumes``).
VOLUME_KIND_LABEL = "org.xpcargo.volume-kind"
VOLUME_PATH_LABEL = "org.xpcargo.volume-path"

Output = Callable[[bytes], None]

# In a confined container (``ContainerRequest.confined``): the main process's directory, an empty file system that
# only its user (``keeper``) may write.
KEEPER_DIR = Path("/run/xpcargo")
# How long a warm container lives at most, by default (XPCARGO_WARM_LIFETIME).
WARM_LIFETIME = 3600
# The keeper of a container whose commands run as root: a user with nothing of its own.
_NOBODY = "65534:65534"


def keeper(user: str) -> str:
    """Who the main process of a confined container runs as: never the commands' user, so that they can neither
    signal it (they have no capabilities) nor write its files. Root, unless the commands run as root."""
    return _NOBODY if user.partition(":")[0] in ("0", "root") else "0:0"


@dataclass(frozen=True, kw_only=True)
class Mount:
    """A host directory or file, bind-mounted at the same absolute path inside the container (or, with ``source``,
    another host path mounted there: an empty file over a credentials file, say); or, with ``volume``, the engine's
    named volume of that name mounted at ``path`` (a remote engine sees no host path)."""

    path: Path
    read_only: bool = False
    source: Path | None = None
    volume: str | None = None


@dataclass(frozen=True, kw_only=True)
class ContainerRequest:
    """Everything a container is started with.

    Every container also drops all capabilities but ``capabilities`` and cannot gain privileges
    (`no-new-privileges`); a ``confined`` one, which runs a project's code, also keeps nothing of a command past its
    end (see ``confined`` below). One started without a main process of its own ends by itself when the xpcargo process
    that started it goes away, however it goes; a warm one ends by itself when idle, and each command run in it with
    the xpcargo process that waits on it (see ``docker_runtime`` and ``warm``).
    """

    image: str
    user: str
    # The working directory and the environment of every command run in the container (given per command, so that
    # a warm container serves commands that differ in them).
    workdir: Path
    mounts: tuple[Mount, ...] = ()
    env: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    labels: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # "none" for compiling (hermetic, reproducible), "host" for the step that downloads crates.
    network: str = "none"
    # Directories hidden behind an empty tmpfs: they exist on the host, but what they hold must not be used here.
    hidden: tuple[Path, ...] = ()
    # The capabilities kept (Linux names without CAP_): none, but for the root of an image layer's apt and dpkg.
    capabilities: tuple[str, ...] = ()
    # Seconds a container kept warm for later commands waits idle before it ends; 0: the container lives exactly
    # as long as the session that started it.
    keep_warm: int = 0
    # Seconds after which a warm container takes no more commands, however busy (it ends once none runs).
    warm_lifetime: int = WARM_LIFETIME
    # For a project's code: the container's own file system is read-only but for ``scratch`` (empty directories
    # writable by every user: /tmp and HOME) and ``KEEPER_DIR``; the main process runs as ``keeper(user)``; every
    # command runs as ``user`` under ``warm``'s wrapper, and nothing it started outlives it.
    confined: bool = False
    scratch: tuple[Path, ...] = ()


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


class Runtime(Protocol):
    """A container engine. Every method raises xpcargo's own errors (``EngineUnavailableError``,
    ``EngineError``), never the engine library's."""

    @property
    def host(self) -> str:
        """Where the engine is, for messages: `unix:///var/run/docker.sock`."""

    @property
    def engine(self) -> Engine:
        """Which engine this is (Docker, Podman), its version and API version: known from connecting, free."""

    def describe(self) -> EngineDetails:
        """Ask the engine about itself: rootless or not, its architecture, OS and storage (one request)."""

    def architecture(self) -> str: ...

    # Images.
    def image_exists(self, reference: str) -> bool: ...
    def inspect_image(self, reference: str) -> ImageDetails | None:
        """The image's id, names, labels and layer digests; None when the engine has no such image."""

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

    # Volumes.
    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> VolumeInfo:
        """Create the named volume (or find it, when it is there already: two commands may ask at once)."""

    def list_volumes(self, label: str) -> list[VolumeInfo]:
        """The volumes with ``label`` (`name=value`), each with the containers that use it."""

    def remove_volume(self, name: str) -> bool:
        """Remove the volume; False when a container still uses it (the engine refuses), True when it is gone."""

    def put_archive(self, container_id: str, directory: Path, archive: Path) -> None:
        """Unpack the tar file ``archive`` at ``directory`` in the container (into its volumes, if mounted there),
        with the owners and modes its entries name. The container need not run."""

    # Containers.
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
        and ``EngineUnavailableError`` when the engine stopped answering or the connection was lost."""

    def exec_interactive(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str | None = None
    ) -> int: ...
    def changes(self, container_id: str) -> list[tuple[str, str]]:
        """What the container changed in its image's file system: ``(kind, path)`` with kind ``A`` (added),
        ``C`` (changed) or ``D`` (deleted), bind mounts left out."""

    def remove(self, container_id: str) -> None:
        """Stop and remove the container; one that is already gone is fine. Bounded in time: an engine that does
        not answer within a few seconds raises ``EngineUnavailableError`` rather than hanging."""

    def release(self, container_id: str) -> None:
        """Stop following a container started with a ``main`` process of its own, and leave it running."""

    def list_containers(self, label: str) -> list[ContainerInfo]: ...
    def containers_using(self, image_id: str) -> list[ContainerInfo]:
        """Every container, running or not, made from ``image_id`` or from an image built on it."""
