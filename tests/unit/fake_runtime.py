"""A ``Runtime`` that runs nothing: it records every request and plays back what Cargo would have printed.

The orchestration (fetch when due, the build, the refetch, the report, image ensure/build) is tested against it
without an engine; the integration tests run the same code against the real one.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from xpcargo.container import docker_archive, warm
from xpcargo.container.engine import Engine, EngineKind
from xpcargo.container.runtime import (
    ContainerInfo,
    EngineDetails,
    ImageDetails,
    ImageInfo,
    Output,
    RecordedExec,
    RecordedRequest,
    VolumeInfo,
)
from xpcargo.container.spec import ContainerRequest
from xpcargo.image import debian, layers
from xpcargo.image.layers import BuiltLayer
from xpcargo.image.lockfile import Package
from xpcargo.image.plan import BasePlan, Layer
from xpcargo.pipeline import compile_cache


@dataclass(frozen=True)
class Reply:
    """What one exec prints and how it ends."""

    code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    # Raised after the output is delivered: an engine fault or a signal in the middle of a command.
    error: BaseException | None = None
    # What sccache says of the command (`--show-stats --stats-format=json`), when it ran with the compile cache.
    cache_stats: bytes | None = None


@dataclass(frozen=True)
class Exec:
    container: str
    # The command, without the wrapper of a warm container's commands.
    argv: tuple[str, ...]
    env: Mapping[str, str]
    workdir: Path = Path("/")
    # The token of a warm container's wrapper, or None for a command run as it is.
    token: str | None = None
    # Who it runs as; None: the container's own user.
    user: str | None = None
    # Where the compile cache's wrapper writes sccache's statistics, when the command ran under it.
    cache_stats: Path | None = None

    @classmethod
    def of(
        cls, container: str, argv: Sequence[str], env: Mapping[str, str], workdir: Path, user: str | None = None
    ) -> Exec:
        command = warm.unwrapped(argv)
        token = command.token if command is not None else None
        argv = command.argv if command is not None else tuple(argv)
        # The compile cache's shell, which starts sccache's server, runs the command and writes the statistics.
        cached = compile_cache.unwrapped(argv)
        stats, argv = cached if cached is not None else (None, tuple(argv))
        return cls(
            container=container,
            argv=tuple(argv),
            env=dict(env),
            workdir=workdir,
            token=token,
            user=user,
            cache_stats=stats,
        )

    @property
    def warm_script(self) -> str | None:
        """`xpcargo-stop`, `xpcargo-retire`, ...: one of the warm containers' own scripts, or None."""
        return (
            self.argv[3]
            if self.argv[:1] == ("sh",) and len(self.argv) > 3 and self.argv[3].startswith("xpcargo-")
            else None
        )

    @property
    def command(self) -> str:
        """`cargo build` → `build`; anything else → its program."""
        return self.argv[1] if self.argv[0] == "cargo" and len(self.argv) > 1 else self.argv[0]


def cargo_message(reason: str, **fields: object) -> bytes:
    return json.dumps({"reason": reason, **fields}, separators=(",", ":")).encode() + b"\n"


def metadata(*packages: Mapping[str, object]) -> bytes:
    return json.dumps({"packages": list(packages), "workspace_members": [], "version": 1}).encode()


Script = Callable[[Exec], Reply]


def default_script(call: Exec) -> Reply:
    """Cargo as it answers a project with no dependencies: everything succeeds."""
    if call.command == "metadata":
        return Reply(stdout=metadata())
    if call.command in ("build", "check", "test", "run", "doc", "clippy", "bench"):
        return Reply(stdout=cargo_message("build-finished", success=True))
    return Reply()


def target_of(call: Exec) -> str:
    """The triple a Cargo command was given with `--target`."""
    return call.argv[call.argv.index("--target") + 1]


def app_built(binary: Path) -> bytes:
    """What Cargo says of a build that made the binary `app` at ``binary``: its artifact, then success."""
    artifact = cargo_message(
        "compiler-artifact",
        package_id="app 0.1.0",
        target={"kind": ["bin"], "name": "app"},
        filenames=[str(binary)],
        executable=str(binary),
    )
    return artifact + cargo_message("build-finished", success=True)


def builds_a_binary(root: Path, failing: frozenset[str] = frozenset()) -> FakeRuntime:
    """Cargo that writes a binary `app` for each target under ``root``'s target dir (its bytes are the triple) and
    names it in a compiler-artifact message, or fails for the targets in ``failing``."""

    def script(call: Exec) -> Reply:
        if call.command != "build":
            return default_script(call)
        triple = target_of(call)
        if triple in failing:
            return Reply(code=101, stderr=b"error: could not compile `app`\n")
        binary = root.resolve() / "target" / triple / "debug" / "app"
        binary.parent.mkdir(parents=True, exist_ok=True)
        binary.write_bytes(triple.encode())
        return Reply(stdout=app_built(binary), stderr=b"   Compiling app\n")

    return FakeRuntime(script=script, every_image=True)


@dataclass
class FakeImages:
    """The ``Images`` of a fake engine: what was imported, loaded, tagged and removed, and each image's layers."""

    images: set[str] = field(default_factory=set)
    # Every image asked for is there: for tests about what happens before or after the image.
    every_image: bool = False
    machine: str = "x86_64"
    host: str = "fake:///engine"
    imported: list[tuple[Path, tuple[str, ...]]] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)
    removed_images: list[str] = field(default_factory=list)
    # Labels by reference, or by image id for an imported image.
    image_labels: dict[str, Mapping[str, str]] = field(default_factory=dict)
    # reference -> image id, for names given by `tag` (any other reference `r` is the image `sha256:r`).
    image_ids: dict[str, str] = field(default_factory=dict)
    # Image id -> its layer digests; an imported image's one layer is the sha256 of its tarball, as in Docker.
    image_layers: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Image id -> the engine's refusal to remove it.
    refuse_removal: dict[str, BaseException] = field(default_factory=dict)
    # Each layer's tar by its digest, as imported or loaded: what `save_chunks` sends; and every archive loaded
    # through `load_chunks`, with the digests of the layer tars it carried.
    blobs: dict[str, bytes] = field(default_factory=dict)
    streamed: list[tuple[str, ...]] = field(default_factory=list)

    def architecture(self) -> str:
        return self.machine

    def image_exists(self, reference: str) -> bool:
        return self.every_image or reference in self.images

    def image_id(self, reference: str) -> str:
        return reference if reference.startswith("sha256:") else self.image_ids.get(reference, f"sha256:{reference}")

    def inspect_image(self, reference: str) -> ImageDetails | None:
        if not self.image_exists(reference):
            return None
        image_id = self.image_id(reference)
        return ImageDetails(
            id=image_id,
            tags=tuple(name for name in sorted(self.images) if self.image_ids.get(name) == image_id),
            labels=self.image_labels.get(image_id) or self.image_labels.get(reference, {}),
            layers=self.image_layers.get(image_id, (f"sha256:layer-of-{reference}",)),
        )

    def recorded_listing(self, label: str) -> RecordedRequest | None:
        return None

    def list_images(self, label: str) -> list[ImageInfo]:
        name, _, value = label.partition("=")
        tags: dict[str, list[str]] = {}
        for reference in sorted(self.images):
            tags.setdefault(self.image_id(reference), [])
            if not reference.startswith("sha256:"):
                tags[self.image_id(reference)].append(reference)
        found = []
        for image_id, names in tags.items():
            labels = self.image_labels.get(image_id) or next(
                (self.image_labels[n] for n in names if n in self.image_labels), {}
            )
            if labels.get(name) == value:
                found.append(ImageInfo(id=image_id, tags=tuple(names), labels=labels, size=2**30, created="0"))
        return found

    def remove_image(self, image: str) -> None:
        refusal = self.refuse_removal.get(self.image_id(image))
        if refusal is not None:
            raise refusal
        self.removed_images.append(image)
        self.images.discard(image.removeprefix("sha256:"))
        self.images.discard(image)

    def import_rootfs(self, tarball: Path, *, changes: Sequence[str]) -> str:
        self.imported.append((tarball, tuple(changes)))
        image_id = f"sha256:imported{len(self.imported)}"
        self.images.add(image_id)
        content = tarball.read_bytes()
        self.image_layers[image_id] = (f"sha256:{hashlib.sha256(content).hexdigest()}",)
        self.blobs[self.image_layers[image_id][0]] = content
        labels = [change.removeprefix("LABEL ").split("=", 1) for change in changes if change.startswith("LABEL ")]
        self.image_labels[image_id] = dict(labels)
        return image_id

    def tag(self, image_id: str, repository: str, tag: str) -> None:
        self.images.add(f"{repository}:{tag}")
        self.image_ids[f"{repository}:{tag}"] = image_id

    def save_image(self, reference: str, destination: Path) -> None:
        assert self.image_exists(reference), f"save of {reference}, which is not there"
        labels = dict(self.image_labels.get(reference, {}))
        destination.write_text(json.dumps({"reference": reference, "labels": labels}), encoding="utf-8")

    def load_image(self, source: Path, *, base: str | None = None) -> list[str]:
        if tarfile.is_tarfile(source):
            return self._load_docker_archive(source)
        archive = json.loads(source.read_text(encoding="utf-8"))
        self.images.add(archive["reference"])
        self.image_labels[archive["reference"]] = archive["labels"]
        return [archive["reference"]]

    def _load_docker_archive(self, source: Path) -> list[str]:
        """An archive of ``docker_archive``: the engine must hold every layer whose tar it leaves out."""
        held = {layer for layers in self.image_layers.values() for layer in layers}
        with tarfile.open(source) as archive:
            (manifest,) = docker_archive.read_json(archive, "manifest.json")
            config_bytes = archive.extractfile(manifest["Config"]).read()  # type: ignore[union-attr]
            present = set(archive.getnames())
            layers = docker_archive.layers(archive)
            for name, diff_id in layers:
                assert name in present or diff_id in held, f"the archive lacks layer {diff_id}, which the engine lacks"
                if name in present:
                    self.blobs[diff_id] = archive.extractfile(name).read()  # type: ignore[union-attr]
        config = json.loads(config_bytes)
        image_id = docker_archive.image_id(config_bytes)
        self.loaded.append(image_id)
        self.images.add(image_id)
        self.image_layers[image_id] = tuple(diff_id for _, diff_id in layers)
        self.image_labels[image_id] = dict(config["config"]["Labels"])
        for reference in manifest.get("RepoTags") or ():
            self.images.add(reference)
            self.image_ids[reference] = image_id
        return list(manifest.get("RepoTags") or ())

    def save_chunks(self, reference: str) -> Iterator[bytes]:
        """A `docker save` archive as Docker 20.10 writes it: each layer's tar under a name that is not its digest,
        and the manifest last."""
        details = self.inspect_image(reference)
        assert details is not None, f"save of {reference}, which is not there"
        config = json.dumps(
            {"config": {"Labels": dict(details.labels)}, "rootfs": {"type": "layers", "diff_ids": list(details.layers)}}
        ).encode()
        names = [f"{hashlib.sha256(f'v1 {digest}'.encode()).hexdigest()}/layer.tar" for digest in details.layers]
        manifest = [{"Config": "config.json", "RepoTags": [reference], "Layers": names}]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
            for name, digest in sorted(zip(names, details.layers, strict=True)):
                _add(archive, name, self.blobs[digest])
            _add(archive, "config.json", config)
            _add(archive, "manifest.json", json.dumps(manifest).encode())
        data = buffer.getvalue()
        # In pieces that do not fall on the tar's blocks.
        return iter([data[offset : offset + 1000] for offset in range(0, len(data), 1000)])

    def load_chunks(self, chunks: Iterable[bytes]) -> list[str]:
        data = b"".join(chunks)
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            carried = tuple(
                f"sha256:{hashlib.sha256(archive.extractfile(member).read()).hexdigest()}"  # type: ignore[union-attr]
                for member in archive.getmembers()
                if member.name.endswith("/layer.tar")
            )
        self.streamed.append(carried)
        with tempfile.NamedTemporaryFile(suffix=".tar") as file:
            file.write(data)
            file.flush()
            return self._load_docker_archive(Path(file.name))


@dataclass
class FakeContainers(FakeImages):
    """The ``Containers`` of a fake engine, over its images: every request started, every command run (played back
    by ``script``), every container removed."""

    script: Script = default_script
    # Raised by `start`, to fail a container's creation.
    start_error: BaseException | None = None
    started: list[ContainerRequest] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    # Every container ever started, by id: its request and its main process (None: tied to xpcargo).
    containers: dict[str, tuple[ContainerRequest, tuple[str, ...] | None]] = field(default_factory=dict)
    # When each was started, in seconds since the epoch (the engine's `Created`).
    created: dict[str, float] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    execs: list[Exec] = field(default_factory=list)
    # Every tar put into a container (the directory it was unpacked at, its member names, its size in bytes).
    archives: list[tuple[Path, tuple[str, ...], int]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, request: ContainerRequest, *, main: Sequence[str] | None = None) -> str:
        if self.start_error is not None:
            raise self.start_error
        with self._lock:
            self.started.append(request)
            container_id = f"container-{len(self.containers) + 1}"
            self.containers[container_id] = (request, tuple(main) if main is not None else None)
            self.created[container_id] = time.time()
            return container_id

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
        assert container_id in self.running, f"exec into {container_id}, which is not running"
        call = Exec.of(container_id, argv, env, workdir, user)
        self.execs.append(call)
        reply = self.script(call)
        if call.cache_stats is not None and reply.cache_stats is not None:
            call.cache_stats.parent.mkdir(parents=True, exist_ok=True)
            call.cache_stats.write_bytes(reply.cache_stats)
        if reply.stdout:
            on_stdout(reply.stdout)
        if reply.stderr:
            on_stderr(reply.stderr)
        if reply.error is not None:
            raise reply.error
        return reply.code

    def exec_interactive(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str | None = None
    ) -> int:
        self.execs.append(Exec.of(container_id, argv, env, workdir, user))
        return 0

    def recorded_exec(
        self, container_id: str, argv: Sequence[str], *, env: Mapping[str, str], workdir: Path, user: str, token: str
    ) -> RecordedExec | None:
        # No unix socket: a replay has nothing to send a fake's commands to.
        return None

    def put_archive(self, container_id: str, directory: Path, archive: Path) -> None:
        assert container_id in self.containers, f"put into {container_id}, which was never made"
        with tarfile.open(archive) as opened:
            names = tuple(opened.getnames())
        self.archives.append((directory, names, archive.stat().st_size))

    def changes(self, container_id: str) -> list[tuple[str, str]]:
        return [("A", "/usr/bin/new-tool")]

    def remove(self, container_id: str, *, unhurried: bool = False) -> None:
        self.removed.append(container_id)

    def release(self, container_id: str) -> None:
        self.released.append(container_id)

    def list_containers(self, label: str) -> list[ContainerInfo]:
        name, _, value = label.partition("=")
        found = []
        for container in sorted(self.running):
            request = self.containers[container][0]
            if not name or request.labels.get(name) == value:
                found.append(
                    ContainerInfo(
                        id=container,
                        labels=request.labels,
                        running=True,
                        image=self.image_id(request.image),
                        created=self.created.get(container, 0.0),
                    )
                )
        return found

    def containers_using(self, image_id: str) -> list[ContainerInfo]:
        return [
            info for info in self.list_containers("") if self.image_id(self.containers[info.id][0].image) == image_id
        ]

    # --- What the tests ask ------------------------------------------------------------------------------------

    @property
    def running(self) -> set[str]:
        return set(self.containers) - set(self.removed)

    @property
    def cold_running(self) -> set[str]:
        """Running containers tied to xpcargo: none may be left after a command."""
        return {container for container in self.running if self.containers[container][1] is None}

    @property
    def warm_running(self) -> set[str]:
        return self.running - self.cold_running

    def commands(self) -> list[str]:
        return [call.command for call in self.execs]

    def purposes(self) -> list[str]:
        return [request.labels["org.xpcargo.session"].split(":")[0] for request in self.started]


@dataclass
class FakeRuntime(FakeContainers):
    """A whole ``Runtime``: the fake engine's images and containers, its volumes, and what it says of itself."""

    # Volumes by name, with their labels.
    volumes: dict[str, VolumeInfo] = field(default_factory=dict)

    @property
    def engine(self) -> Engine:
        return Engine(kind=EngineKind.DOCKER, version="20.10.24", api_version="1.41", host=self.host)

    def describe(self) -> EngineDetails:
        return EngineDetails(
            engine=self.engine,
            rootless=False,
            architecture=self.machine,
            operating_system="Fake OS",
            storage_driver="fake",
        )

    def create_volume(self, name: str, *, labels: Mapping[str, str]) -> VolumeInfo:
        return self.volumes.setdefault(
            name, VolumeInfo(name=name, labels=dict(labels), created=f"2026-11-25T00:00:{len(self.volumes):02}Z")
        )

    def list_volumes(self, label: str) -> list[VolumeInfo]:
        name, _, value = label.partition("=")
        users = {
            volume: tuple(
                c for c in sorted(self.running) if any(m.volume == volume for m in self.containers[c][0].mounts)
            )
            for volume in self.volumes
        }
        return [
            VolumeInfo(name=v.name, labels=v.labels, created=v.created, users=users[v.name])
            for v in self.volumes.values()
            if v.labels.get(name) == value
        ]

    def remove_volume(self, name: str) -> bool:
        if any(v.users for v in self.list_volumes("") if v.name == name):
            return False
        self.volumes.pop(name, None)
        return True


def _add(archive: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    archive.addfile(info, io.BytesIO(content))


# The packages a fake bootstrap says it installed.
INSTALLED = (
    Package(name="base-files", arch="amd64", version="13.8+deb13u8"),
    Package(name="ca-certificates", arch="all", version="20250419"),
    Package(name="libc6", arch="amd64", version="2.41-12"),
)


class FakeBootstrap:
    """Stands in for the mirror, mmdebstrap and apt in a layer's container, which a unit test must not use: writes
    small tarballs, whose content (and so their layer digests in the fake runtime) is ``content``, and says the
    image holds ``packages`` (the base, ``packages`` without its last)."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        *,
        error: BaseException | None = None,
        packages: tuple[Package, ...] = INSTALLED,
    ) -> None:
        self.calls: list[str] = []
        self.plans: list[BasePlan] = []
        self.layers: list[Layer] = []
        self.error = error
        self.packages = packages
        self.content = b"\0" * 1024
        monkeypatch.setattr(debian, "bootstrap", self.bootstrap)
        monkeypatch.setattr(debian, "fetch_pool_file", self.fetch_pool_file)
        monkeypatch.setattr(layers, "build", self.layer)

    def fetch_pool_file(self, url: str, sha256: str, cache: Path, **_: Any) -> Path:
        self.calls.append(f"std {url.rsplit('/', 1)[-1]}")
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "std.deb").write_bytes(b"deb")
        return cache / "std.deb"

    def bootstrap(self, plan: BasePlan, tarball: Path, **kwargs: Any) -> tuple[Package, ...]:
        self.calls.append(f"bootstrap {kwargs['target']}")
        self.plans.append(plan)
        if self.error is not None:
            raise self.error
        tarball.write_bytes(self.content)
        return self.packages[:-1]

    def layer(self, runtime: Any, *, layer: Layer, target: str, scratch: Path, **kwargs: Any) -> BuiltLayer:
        self.calls.append(f"layer {layer.purpose} {target} std={bool(kwargs['pool_files'])}")
        self.layers.append(layer)
        if self.error is not None:
            raise self.error
        tar = scratch / "layer.tar"
        tar.write_bytes(self.content + layer.purpose.encode())
        return BuiltLayer(
            tar=tar, diff_id=f"sha256:{hashlib.sha256(tar.read_bytes()).hexdigest()}", packages=self.packages
        )
