"""Building, finding, listing and pruning toolchain images, over a ``Runtime``.

A missing image is built (mmdebstrap, then an import), checked in a container (rustc has the target's std, the
emulator runs), and only then tagged, so a failed build never leaves a tagged half-image. One lock per plan keeps
two processes from building the same image at once; the one that waits shows the other's progress (``lock``). Each
build has a scratch directory that a later build sweeps if this one is killed (``scratch``), and each image built
is recorded with its last use, which is all that `image prune` removes (``records``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from xpcargo import platforms
from xpcargo.config.targets import TargetSpec
from xpcargo.container.session import open_session
from xpcargo.container.spec import MANAGED_LABEL, ContainerRequest, ImageInfo, Runtime
from xpcargo.errors import ConfigError, EngineError, ImageBuildError, ProjectError
from xpcargo.image import lock, records, scratch
from xpcargo.image.lockfile import LOCK_FILE, ImageLocks, LockedImage, Package, differences
from xpcargo.image.lockfile import save as save_locks
from xpcargo.image.plan import LABEL_TARGET, ImagePlan
from xpcargo.ui import Reporter, Stopwatch, ago

if TYPE_CHECKING:
    from xpcargo.config.targets import ProjectConfig
    from xpcargo.context import Context


@dataclass(frozen=True, kw_only=True)
class Builder:
    runtime: Runtime
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
        if not self.runtime.image_exists(plan.reference):
            with lock.held(self.cache, plan.digest, reference=plan.reference, reporter=self.reporter) as progress:
                # Another xpcargo (a parallel CI job) may have built it while this one waited for the lock.
                if not self.runtime.image_exists(plan.reference):
                    self.build(plan, progress=progress)
        records.touch(self.cache, plan.digest)
        return plan.reference

    def build(self, plan: ImagePlan, *, progress: TextIO | None = None) -> None:
        """Build, check and tag ``plan``'s image; ``progress`` gets a copy of every line, for a waiting process."""
        reporter = replace(self.reporter, copy=progress) if progress is not None else self.reporter
        clock = Stopwatch()
        reporter.status("Building", f"image {plan.reference} for {plan.target} (first use; later runs reuse it)")
        image_id, packages = self._make(plan, reporter)
        # Recorded before it is named: killed in between, the record names an image without that name, which prune
        # forgets, rather than a named image that nothing says xpcargo built.
        records.save(
            self.cache,
            digest=plan.digest,
            reference=plan.reference,
            image_id=image_id,
            target=plan.target,
            packages=packages,
        )
        self.runtime.tag(image_id, plan.repository, plan.tag)
        reporter.status("Built", f"image {plan.reference} in {clock}")

    def rebuild(self, plan: ImagePlan) -> None:
        """Build ``plan``'s image anew from today's mirror, even though the engine has one; the old image goes
        unless a container still uses it."""
        with lock.held(self.cache, plan.digest, reference=plan.reference, reporter=self.reporter) as progress:
            old = self.runtime.inspect_image(plan.reference)
            self.build(plan, progress=progress)
            if old is not None and not self.runtime.containers_using(old.id):
                with suppress(EngineError):
                    self.runtime.remove_image(old.id)
        records.touch(self.cache, plan.digest)

    def verify(self, plan: ImagePlan) -> Verification:
        """Build locked ``plan``'s image again, untagged, compare its root file system layer with the image's, and
        remove the new one. The image must be there (``ensure`` it first)."""
        existing = self.runtime.inspect_image(plan.reference)
        assert existing is not None  # noqa: S101 - the caller ensured it
        clock = Stopwatch()
        self.reporter.status("Rebuilding", f"image {plan.reference} for {plan.target} from the lock, to compare")
        image_id, _ = self._make(plan, self.reporter)
        try:
            rebuilt = self.runtime.inspect_image(image_id)
        finally:
            # An identical config would be the same image: never remove the original.
            if image_id != existing.id:
                self.runtime.remove_image(image_id)
        self.reporter.status("Rebuilt", f"image {plan.reference} in {clock}, and removed the rebuild")
        return Verification(
            reference=plan.reference,
            image_layers=existing.layers,
            rebuilt_layers=rebuilt.layers if rebuilt is not None else (),
        )

    def _make(self, plan: ImagePlan, reporter: Reporter) -> tuple[str, tuple[Package, ...]]:
        """Bootstrap, import and check ``plan``'s image; return its id, untagged, and the packages installed."""
        from xpcargo.image import debian  # noqa: PLC0415 - urllib and subprocess plumbing only a build needs

        machine = self.runtime.architecture()
        engine = platforms.for_machine(machine)
        if engine is None or engine.debian_arch != plan.build_arch:
            raise ImageBuildError(
                f"cannot build {plan.reference}: it is planned for {plan.build_arch} and the engine at "
                f"{self.runtime.host} runs `{machine}`",
                hint="run xpcargo against an engine on this machine's architecture (DOCKER_HOST)",
            )
        scratch.sweep(self.cache / "scratch", reporter)
        with scratch.owned(self.cache / "scratch", reporter) as directory:
            std_file = None
            if plan.std_deb is not None:
                reporter.detail(f"[1/4] Rust std for {plan.target}: {plan.std_deb.filename}")
                std_file = debian.fetch_pool_file(
                    plan.std_deb.url,
                    plan.std_deb.sha256,
                    self.cache / "pool",
                    on_retry=reporter.warn,
                    first_wait=self.retry_wait,
                )
            else:
                reporter.detail("[1/4] Rust std: installed with the compiler")
            tarball = directory / "rootfs.tar"
            locked = f", locked at {LOCK_FILE}'s versions" if plan.lock else ""
            reporter.detail(
                f"[2/4] Debian {plan.suite} root filesystem with {len(plan.packages)} packages{locked} (mmdebstrap)"
            )
            packages = debian.bootstrap(
                plan,
                tarball,
                scratch=directory,
                std_deb=std_file,
                deb_cache=self.cache / "debs",
                on_line=lambda line: reporter.detail(f"      {line}"),
                on_retry=reporter.warn,
                first_wait=self.retry_wait,
            )
            reporter.detail(f"[3/4] importing {tarball.stat().st_size // 2**20} MiB into the engine")
            changes = [
                "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "ENV LANG=C.UTF-8",
                *(f"LABEL {name}={value}" for name, value in plan.labels.items()),
            ]
            image_id = self.runtime.import_rootfs(tarball, changes=changes)
        reporter.detail("[4/4] checking the toolchain in the new image")
        try:
            self._verify(image_id, plan)
        except BaseException:
            self.runtime.remove_image(image_id)
            raise
        return image_id, packages

    def _verify(self, image_id: str, plan: ImagePlan) -> None:
        """Prove the image can do its job before it gets a name: rustc has the target's std, the emulator runs."""
        checks = [f"test -d /usr/lib/rustlib/{plan.target}/lib", "rustc --version", "cargo --version"]
        if plan.emulator:
            checks.append(f"{plan.emulator} --version")
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
        images = self.runtime.list_images(f"{MANAGED_LABEL}=true")
        return sorted(images, key=lambda image: (image.labels.get(LABEL_TARGET, ""), image.created))

    def prune(self, *, keep: Sequence[ImagePlan], unused_for: float | None = None) -> Pruned:
        """Remove the images this xpcargo built (and recorded), except the plans in ``keep``, those used in the last
        ``unused_for`` seconds, and those a container uses; say why each other image of xpcargo's is kept.

        Removal untags the recorded reference: an image with other names or with children keeps them. An image
        that another xpcargo is still building holds its build lock, and is left alone.
        """
        scratch.sweep(self.cache / "scratch", self.reporter)
        kept_plans = {plan.reference: plan.target for plan in keep}
        images = self.runtime.list_images(f"{MANAGED_LABEL}=true")
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
        users = self.runtime.containers_using(image.id)
        if users:
            state = "running" if any(user.running for user in users) else "stopped"
            return f"used by {state} container {' '.join(user.id[:12] for user in users)}"
        if unused_for is not None and now - record.last_used < unused_for:
            return f"used {ago(now - record.last_used)} ago"
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


# --- The image commands, for the targets a context knows --------------------------------------------------------


def for_context(context: Context, runtime: Runtime, reporter: Reporter | None = None) -> Builder:
    return Builder(
        runtime=runtime,
        cache=context.settings.cache_dir,
        reporter=reporter or context.reporter(),
        retry_wait=context.settings.retry_wait,
    )


def image_for(context: Context, runtime: Runtime, spec: TargetSpec, reporter: Reporter | None = None) -> str:
    """The image reference to run ``spec`` in, built first if need be."""
    builder = for_context(context, runtime, reporter)
    return builder.image_for(spec, None if spec.image else context.image_plan(spec))


def known_targets(context: Context, names: Sequence[str] = ()) -> list[TargetSpec]:
    """``names`` (default: every target the shipped table and the working directory's project define), as the
    project configures them."""
    project_config = context.project_config_here()
    wanted = names or sorted({*context.toolchains.targets, *project_config.targets})
    return [context.target(name, project_config) for name in wanted]


def build_images(context: Context, runtime: Runtime, names: Sequence[str]) -> None:
    """`xpcargo image build`: build what the targets need unless the engine has it already."""
    reporter = context.reporter()
    for spec in known_targets(context, names):
        reference = image_for(context, runtime, spec, reporter)
        reporter.status("Ready", f"{spec.triple}: {reference}")


def image_rows(context: Context, runtime: Runtime) -> list[tuple[str, str, str, str]]:
    """`xpcargo image list`: xpcargo's images, marking those that today's configuration would use."""
    current = {context.image_plan(spec).reference for spec in known_targets(context) if not spec.image}
    rows = []
    for image in for_context(context, runtime).images():
        name = image.tags[0] if image.tags else image.id[7:19]
        status = "current" if current.intersection(image.tags) else "stale"
        rows.append((name, image.labels.get(LABEL_TARGET, "?"), f"{image.size / 2**30:.2f} GB", status))
    return rows


def prune_images(context: Context, runtime: Runtime, *, everything: bool, unused_for: float | None = None) -> Pruned:
    """`xpcargo image prune`: remove the images xpcargo built, but the current plans of the shipped targets (wherever
    it runs: what is kept does not depend on the working directory) and those used in the last ``unused_for``
    seconds."""
    keep = [] if everything else [context.image_plan(spec) for spec in context.toolchains.targets.values()]
    builder = for_context(context, runtime)
    pruned = builder.prune(keep=keep, unused_for=unused_for)
    for reference, _ in pruned.removed:
        builder.reporter.status("Removed", reference)
    for name, why in pruned.kept:
        builder.reporter.status("Kept", f"{name}: {why}")
    size = sum(size for _, size in pruned.removed) / 2**30
    builder.reporter.status("Pruned", f"{len(pruned.removed)} image(s), {size:.2f} GB; kept {len(pruned.kept)}")
    return pruned


def _project_locks(context: Context) -> tuple[ProjectConfig, ImageLocks]:
    project_config = context.project_config_here()
    if project_config.image_locks is None:
        raise ProjectError(
            f"image locks belong to a project ({LOCK_FILE} at its workspace root), and there is no Cargo project "
            f"in {context.cwd} or above",
            hint="run the command in the project, where its Cargo.toml is",
        )
    return project_config, project_config.image_locks


def lock_images(context: Context, runtime: Runtime, names: Sequence[str], *, refresh: bool) -> ImageLocks:
    """`xpcargo image lock`: record in the project's lock file the exact packages of each target's unlocked image
    (built first if the engine lacks it, or anew from today's mirror with ``refresh``). An entry whose plan and
    packages did not change is kept as it is, date included, so that its image keeps its tag."""
    from xpcargo.image.inventory import contents  # noqa: PLC0415

    project_config, locks = _project_locks(context)
    builder = for_context(context, runtime)
    for spec in (context.target(name, project_config) for name in names or sorted(context.toolchains.targets)):
        if spec.image:
            builder.reporter.status("Skipped", f"{spec.triple}: it uses the configured image {spec.image}")
            continue
        plan = context.image_plan(spec, locked=False)
        if refresh:
            builder.rebuild(plan)
        else:
            builder.ensure(plan)
        found = contents(runtime, builder.cache, plan.reference)
        old = locks.targets.get(spec.triple)
        if old is not None and old.plan == plan.digest and old.packages == found.packages:
            builder.reporter.status("Unchanged", f"{spec.triple}: {len(old.packages)} packages")
            continue
        entry = LockedImage(
            plan=plan.digest,
            build_arch=plan.build_arch,
            suite=plan.suite,
            mirror=plan.mirror,
            # Every file of the locked image gets at most this time: a moment before its first build.
            source_date_epoch=int(time.time()),
            packages=found.packages,
            std_deb=plan.std_deb.url if plan.std_deb else None,
            std_sha256=plan.std_deb.sha256 if plan.std_deb else None,
        )
        changes = differences(old.packages, found.packages) if old is not None else []
        summary = f"{len(changes)} changed" if old is not None else "new"
        builder.reporter.status(
            "Locked", f"{spec.triple}: {len(found.packages)} packages ({summary}) from {found.reference}"
        )
        for change in changes:
            builder.reporter.detail(f"      {change}")
        locks = locks.with_entry(spec.triple, entry)
    save_locks(locks)
    builder.reporter.status("Wrote", str(locks.path))
    return locks


def verify_image(context: Context, runtime: Runtime, name: str) -> Verification:
    """`xpcargo image verify`: build a locked target's image again and compare root file system layers."""
    project_config, locks = _project_locks(context)
    spec = context.target(name, project_config)
    if spec.image_lock is None:
        raise ConfigError(
            f"{name} has no entry in {locks.path}: there is nothing to verify its image against",
            hint=f"lock it first with `xpcargo image lock {name}`, and commit {LOCK_FILE}",
        )
    plan = context.image_plan(spec)
    builder = for_context(context, runtime)
    builder.ensure(plan)
    verification = builder.verify(plan)
    builder.reporter.status("Layer", f"{' '.join(verification.image_layers)} of {plan.reference}")
    builder.reporter.status("Layer", f"{' '.join(verification.rebuilt_layers) or 'none'} of the rebuild")
    if not verification.same:
        raise ImageBuildError(
            f"the rebuild of {plan.reference} from {LOCK_FILE} has another root file system layer than the image",
            hint="the image is not reproducible: compare the two root file systems (`docker export`) and report it",
        )
    builder.reporter.status("Verified", f"{plan.reference}: the rebuild has the same root file system layer")
    return verification
