"""Building, finding, listing and pruning toolchain images, over an engine's images and containers.

A missing image is built (mmdebstrap, then an import), checked in a container (rustc has the target's std, the
emulator runs), and only then tagged, so a failed build never leaves a tagged half-image. One lock per plan keeps
two processes from building the same image at once; the one that waits shows the other's progress (``lock``). Each
build has a scratch directory that a later build sweeps if this one is killed (``scratch``), and each image built
is recorded with its last use, which is all that `image prune` removes (``records``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from xpcargo import platforms
from xpcargo.config.targets import TargetSpec
from xpcargo.container import docker_archive
from xpcargo.container.runtime import ImageInfo, ImagesAndContainers
from xpcargo.container.session import open_session, without_idle_warm
from xpcargo.container.spec import MANAGED_LABEL, ContainerRequest
from xpcargo.errors import ConfigError, EngineError, ImageBuildError
from xpcargo.hashing import file_sha256
from xpcargo.image import lock, records, scratch
from xpcargo.image.lockfile import LOCK_FILE, Package
from xpcargo.image.plan import LABEL_TARGET, ImagePlan, Layer, Stage
from xpcargo.ui import Reporter, Stopwatch, ago

if TYPE_CHECKING:
    from xpcargo.image.layers import BuiltLayer

# The images xpcargo built: what `image list` and `image prune` ask the engine for.
MANAGED_IMAGES = f"{MANAGED_LABEL}=true"


@dataclass(frozen=True, kw_only=True)
class Builder:
    runtime: ImagesAndContainers
    cache: Path
    reporter: Reporter
    # The first wait before retrying a mirror that is mid-sync.
    retry_wait: float = 4

    def image_for(self, spec: TargetSpec, plan: ImagePlan | None) -> str:
        """The image to run ``spec`` in: the one it names, or its plan's, built first if the engine lacks it."""
        if spec.image:
            if not self.runtime.image_exists(spec.image):
                raise ConfigError(
                    f"image `{spec.image}` configured for {spec.triple} is not in the engine",
                    hint="there is no registry to pull from: build or load that image first, or drop the `image` "
                    "setting",
                )
            return spec.image
        assert plan is not None  # noqa: S101 - a target without its own image always has a plan
        return self.ensure(plan)

    def ensure(self, plan: ImagePlan) -> str:
        """``plan``'s image, each image of its chain built first if the engine lacks it. When the engine has the
        image itself, the images below it are not needed (nor asked for: one question to the engine)."""
        stages = plan.stages
        missing = not self.runtime.image_exists(plan.reference)
        for stage in stages:
            if missing and not self.runtime.image_exists(stage.reference):
                with lock.held(self.cache, stage.digest, reference=stage.reference, reporter=self.reporter) as progress:
                    # Another xpcargo (a parallel CI job) may have built it while this one waited for the lock.
                    if not self.runtime.image_exists(stage.reference):
                        self.build(plan, stage, progress=progress)
            records.touch(self.cache, stage.digest)
        return plan.reference

    def build(self, plan: ImagePlan, stage: Stage, *, progress: TextIO | None = None) -> None:
        """Build, check and tag ``stage`` of ``plan``'s chain (its parent is there); ``progress`` gets a copy of
        every line, for a waiting process."""
        reporter = replace(self.reporter, copy=progress) if progress is not None else self.reporter
        clock = Stopwatch()
        what = _describe(plan, stage)
        reporter.status("Building", f"image {stage.reference}, {what} (first use; later runs reuse it)")
        image_id, packages = self._make(plan, stage, reporter)
        # Recorded before it is named: killed in between, the record names an image without that name, which prune
        # forgets, rather than a named image that nothing says xpcargo built.
        records.save(
            self.cache,
            digest=stage.digest,
            reference=stage.reference,
            image_id=image_id,
            target=plan.target if stage.layer is not None else f"{plan.base.recipe} base",
            packages=packages,
        )
        self.runtime.tag(image_id, stage.repository, stage.tag)
        reporter.status("Built", f"image {stage.reference} in {clock}")

    def rebuild(self, plan: ImagePlan, *, done: set[str] | None = None) -> None:
        """Build every image of ``plan``'s chain anew from today's mirror, even though the engine has them, but those
        whose digests are in ``done`` (a base shared with a plan rebuilt before), to which it adds its own; an old
        image goes unless a container still uses it."""
        done = set() if done is None else done
        for stage in plan.stages:
            if stage.digest in done:
                continue
            done.add(stage.digest)
            with lock.held(self.cache, stage.digest, reference=stage.reference, reporter=self.reporter) as progress:
                old = self.runtime.inspect_image(stage.reference)
                self.build(plan, stage, progress=progress)
                if old is not None and not self.runtime.containers_using(old.id):
                    with suppress(EngineError):
                        self.runtime.remove_image(old.id)
            records.touch(self.cache, stage.digest)

    def verify(self, plan: ImagePlan) -> Verification:
        """Build locked ``plan``'s layers again (the base with mmdebstrap, each layer on the image's own parent) and
        compare their digests with the image's. Nothing is loaded into the engine. The image must be there (``ensure``
        it first)."""
        existing = self.runtime.inspect_image(plan.reference)
        assert existing is not None  # noqa: S101 - the caller ensured it
        clock = Stopwatch()
        self.reporter.status("Rebuilding", f"the layers of {plan.reference} from the lock, to compare")
        rebuilt: list[str] = []
        with self._scratch() as directory:
            for stage in plan.stages:
                if stage.layer is None:
                    tarball = directory / "rootfs.tar"
                    self._bootstrap(plan, tarball, directory, self.reporter)
                    rebuilt.append(f"sha256:{file_sha256(tarball)}")
                    tarball.unlink()
                else:
                    assert stage.parent is not None  # noqa: S101 - a layer always has a parent
                    built = self._layer(plan, stage.layer, stage.parent.reference, directory, self.reporter)
                    rebuilt.append(built.diff_id)
                    built.tar.unlink()
        self.reporter.status("Rebuilt", f"{len(rebuilt)} layer(s) of {plan.reference} in {clock}")
        return Verification(reference=plan.reference, image_layers=existing.layers, rebuilt_layers=tuple(rebuilt))

    def _make(self, plan: ImagePlan, stage: Stage, reporter: Reporter) -> tuple[str, tuple[Package, ...]]:
        """Build ``stage``'s image, untagged; return its id and the packages it holds."""
        machine = self.runtime.architecture()
        engine = platforms.for_machine(machine)
        if engine is None or engine.debian_arch != plan.build_arch:
            raise ImageBuildError(
                f"cannot build {stage.reference}: it is planned for {plan.build_arch} and the engine at "
                f"{self.runtime.host} runs `{machine}`",
                hint="run xpcargo against an engine on this machine's architecture (DOCKER_HOST)",
            )
        with self._scratch() as directory:
            if stage.layer is None:
                tarball = directory / "rootfs.tar"
                packages = self._bootstrap(plan, tarball, directory, reporter)
                reporter.detail(f"      [base] importing {tarball.stat().st_size // 2**20} MiB into the engine")
                changes = [
                    *(f"ENV {variable}" for variable in docker_archive.ENVIRONMENT),
                    *(f"LABEL {name}={value}" for name, value in stage.labels.items()),
                ]
                image_id = self.runtime.import_rootfs(tarball, changes=changes)
            else:
                image_id, packages = self._load_layer(plan, stage, directory, reporter)
        reporter.detail("      checking the toolchain in the new image")
        try:
            self._verify(image_id, plan, base=stage.layer is None)
        except BaseException:
            # What failed is the news, not a removal refused because the check's container is still going (Podman
            # removes it a moment after it says so): such an image stays behind, untagged.
            with suppress(EngineError):
                self.runtime.remove_image(image_id)
            raise
        return image_id, packages

    def _load_layer(
        self, plan: ImagePlan, stage: Stage, directory: Path, reporter: Reporter
    ) -> tuple[str, tuple[Package, ...]]:
        """Build ``stage``'s layer on the image below it and load the result, untagged; return its id and packages."""
        layer, below = stage.layer, stage.parent
        assert layer is not None  # noqa: S101 - called for a layer's stage
        assert below is not None  # noqa: S101 - a layer's stage always has a parent
        parent = self.runtime.inspect_image(below.reference)
        if parent is None:
            raise ImageBuildError(
                f"image {below.reference}, the parent of {stage.reference}, left the engine mid-build",
                hint="run the command again",
            )
        built = self._layer(plan, layer, below.reference, directory, reporter)
        reporter.detail(f"      loading the {built.tar.stat().st_size // 2**20} MiB layer into the engine")
        config = docker_archive.image_config(
            architecture=plan.build_arch,
            diff_ids=[*parent.layers, built.diff_id],
            labels=stage.labels,
            created=plan.source_date_epoch if plan.source_date_epoch is not None else time.time(),
            history=[*(f"xpcargo layer {n}" for n in range(len(parent.layers))), f"xpcargo {layer.purpose}"],
        )
        archive = directory / "image.tar"
        image_id = docker_archive.write(
            archive, config=config, layers=[*((digest, None) for digest in parent.layers), (built.diff_id, built.tar)]
        )
        built.tar.unlink()
        self.runtime.load_image(archive, base=below.reference)
        return image_id, built.packages

    def _scratch(self) -> AbstractContextManager[Path]:
        scratch.sweep(self.cache / "scratch", self.reporter)
        return scratch.owned(self.cache / "scratch", self.reporter)

    def _bootstrap(self, plan: ImagePlan, tarball: Path, directory: Path, reporter: Reporter) -> tuple[Package, ...]:
        from xpcargo.image import debian  # noqa: PLC0415 - urllib and subprocess plumbing only a build needs

        base = plan.base
        locked = f", locked at {LOCK_FILE}'s versions" if base.lock else ""
        reporter.detail(
            f"      [base] Debian {base.suite} root filesystem with {len(base.packages)} packages{locked} (mmdebstrap)"
        )
        return debian.bootstrap(
            base,
            tarball,
            target=plan.target,
            scratch=directory,
            deb_cache=self.cache / "debs",
            on_line=lambda line: reporter.detail(f"      {line}"),
            on_retry=reporter.warn,
            first_wait=self.retry_wait,
        )

    def _layer(self, plan: ImagePlan, layer: Layer, parent: str, directory: Path, reporter: Reporter) -> BuiltLayer:
        from xpcargo.image import debian, layers  # noqa: PLC0415 - urllib and subprocess plumbing only a build needs

        pool_files = []
        for deb in layer.pool_debs:
            reporter.detail(f"      {deb.filename} from the mirror's pool")
            pool_files.append(
                debian.fetch_pool_file(
                    deb.url, deb.sha256, self.cache / "pool", on_retry=reporter.warn, first_wait=self.retry_wait
                )
            )
        std_source = None
        if layer.std_build is not None:
            source = layer.std_build.source
            reporter.detail(f"      {source.filename} from the mirror's pool")
            std_source = debian.fetch_pool_file(
                source.url, source.sha256, self.cache / "pool", on_retry=reporter.warn, first_wait=self.retry_wait
            )
        source_files = []
        for file in layer.std_build.source_files if layer.std_build is not None else ():
            reporter.detail(f"      {file.filename} from the mirror's pool (sources of the std's C parts)")
            source_files.append(
                debian.fetch_pool_file(
                    file.url,
                    file.sha256,
                    self.cache / "pool",
                    on_retry=reporter.warn,
                    first_wait=self.retry_wait,
                    step="C sources download",
                    gone_hint="the pinned source package may have left the mirror: update c-runtime-sources in"
                    " the recipe (images/README.md)",
                )
            )
        locked = f", locked at {LOCK_FILE}'s versions" if plan.lock else ""
        reporter.detail(f"      [layer] {layer.purpose}: {len(layer.packages)} packages{locked} (apt in a container)")
        if layer.std_build is not None:
            reporter.detail(f"      [layer] the Rust std of {plan.target}, built from its sources (minutes, once)")
        return layers.build(
            self.runtime,
            parent=parent,
            layer=layer,
            target=plan.target,
            build_arch=plan.build_arch,
            locked=plan.lock is not None,
            source_date_epoch=plan.source_date_epoch,
            scratch=directory,
            deb_cache=self.cache / "debs",
            pool_files=pool_files,
            on_line=lambda line: reporter.detail(f"      {line}"),
            on_retry=reporter.warn,
            first_wait=self.retry_wait,
            std_source=std_source,
            source_files=source_files,
        )

    def _verify(self, image_id: str, plan: ImagePlan, *, base: bool) -> None:
        """Prove the image can do its job before it gets a name: rustc and cargo run, and, above the base, rustc has
        the target's std and the emulator runs."""
        checks = ["rustc --version", "cargo --version"]
        if not base:
            checks.insert(0, f"test -d /usr/lib/rustlib/{plan.target}/lib")
        if plan.emulator and not base:
            checks.append(f"{plan.emulator} --version")
        if plan.std_build is not None and not base:
            # The std built in the layer is one rustc takes: a crate that uses it compiles.
            checks.append(
                f"echo 'pub fn f() -> String {{ std::env::consts::OS.into() }}' | rustc --target {plan.target} "
                "--crate-type lib --emit metadata -o /tmp/xpcargo-std-check -"
            )
        script = " && ".join(checks)
        output: list[bytes] = []
        request = ContainerRequest(image=image_id, user="0:0", workdir=Path("/"))
        with open_session(self.runtime, request, purpose="image-check") as session:
            code = session.run(["sh", "-c", script], on_stdout=output.append, on_stderr=output.append)
        if code != 0:
            text = b"".join(output).decode(errors="replace").strip().splitlines()
            raise ImageBuildError(
                f"image for {plan.target} failed its check (`{script}`): {text[-1] if text else f'exit {code}'}",
                hint="the recipe or the target's packages miss part of the toolchain; fix them and build again",
            )

    def images(self) -> list[ImageInfo]:
        images = self.runtime.list_images(MANAGED_IMAGES)
        return sorted(images, key=lambda image: (image.labels.get(LABEL_TARGET, ""), image.created))

    def prune(self, *, keep: Sequence[ImagePlan], unused_for: float | None = None) -> Pruned:
        """Remove the images this xpcargo built (and recorded), except the plans in ``keep``, those used in the last
        ``unused_for`` seconds, and those a container uses; say why each other image of xpcargo's is kept.

        Removal untags the recorded reference: an image with other names or with children keeps them. An image
        that another xpcargo is still building holds its build lock, and is left alone.
        """
        scratch.sweep(self.cache / "scratch", self.reporter)
        # A plan keeps its whole chain: the base and the target's layer too, which other targets and projects share.
        kept_plans = {stage.reference: plan.target for plan in keep for stage in plan.stages}
        images = self.runtime.list_images(MANAGED_IMAGES)
        by_id = {image.id: image for image in images}
        result = Pruned()
        recorded: set[str] = set()
        now = time.time()
        for record in records.load_all(self.cache):
            image = by_id.get(record.image_id)
            if image is None or record.reference not in image.tags:
                # The image, or xpcargo's name for it, is gone: whatever has the name now is not xpcargo's build.
                records.forget(self.cache, record.digest)
                continue
            recorded.add(image.id)
            why = self._reason_to_keep(record, image, kept_plans, unused_for, now)
            if why is None:
                with lock.try_held(self.cache, record.digest) as idle:
                    why = self._remove(record, image, result) if idle else "another xpcargo is building it"
            if why is not None:
                result.kept.append((record.reference, why))
        for image in images:
            if image.id not in recorded:
                name = image.tags[0] if image.tags else image.id[7:19]
                result.kept.append((name, f"not built by xpcargo with this cache (no record in {self.cache}/images)"))
        return result

    def _reason_to_keep(
        self,
        record: records.Record,
        image: ImageInfo,
        kept_plans: dict[str, str],
        unused_for: float | None,
        now: float,
    ) -> str | None:
        if record.reference in kept_plans:
            return f"the current image of {kept_plans[record.reference]}"
        if unused_for is not None and now - record.last_used < unused_for:
            return f"used {ago(now - record.last_used)} ago"
        # A build's container kept warm would hold the image for nothing: it goes, unless a command runs in it.
        users = without_idle_warm(self.runtime, self.runtime.containers_using(image.id))
        if users:
            state = "running" if any(user.running for user in users) else "stopped"
            return f"used by {state} container {' '.join(user.id[:12] for user in users)}"
        return None

    def _remove(self, record: records.Record, image: ImageInfo, result: Pruned) -> str | None:
        """Remove ``record``'s image; return why the engine would not."""
        try:
            self.runtime.remove_image(record.reference)
        except EngineError as error:
            return f"the engine refused: {error.message}"
        records.forget(self.cache, record.digest)
        result.removed.append((record.reference, image.size))
        return None


@dataclass(frozen=True, kw_only=True)
class Verification:
    """`image verify`: the layers of the image and of its rebuild from the lock."""

    reference: str
    image_layers: tuple[str, ...]
    rebuilt_layers: tuple[str, ...]

    @property
    def same(self) -> bool:
        return bool(self.image_layers) and self.image_layers == self.rebuilt_layers


@dataclass
class Pruned:
    """What `image prune` did: the references removed with their sizes, and the images kept with the reason."""

    removed: list[tuple[str, int]] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)


def _describe(plan: ImagePlan, stage: Stage) -> str:
    if stage.layer is None:
        return f"the {plan.base.recipe} base that every target of the recipe shares"
    return f"the {stage.layer.purpose} layer of {plan.target}"
