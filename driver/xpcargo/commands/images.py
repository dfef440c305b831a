"""`xpcargo image build|lock|verify|list|key|save|load|prune`: xpcargo's toolchain images, for the targets a command
names (by default every target the shipped table and the working directory's project define)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from xpcargo.errors import ConfigError, ImageBuildError, ProjectError
from xpcargo.image import transfer
from xpcargo.image.lockfile import LOCK_FILE, ImageLocks, LockedImage, differences
from xpcargo.image.lockfile import load as load_locks
from xpcargo.image.lockfile import save as save_locks
from xpcargo.image.plan import LABEL_RECIPE, LABEL_TARGET, ImagePlan

if TYPE_CHECKING:
    from xpcargo.config.targets import ProjectConfig, TargetSpec
    from xpcargo.container.runtime import Runtime
    from xpcargo.context import Context
    from xpcargo.image.builder import Builder, Pruned, Verification


def _specs(context: Context, names: Sequence[str] = ()) -> tuple[ProjectConfig, list[TargetSpec]]:
    """The working directory's project configuration, and the targets ``names`` (default: all) as it configures
    them."""
    project_config = context.project_config_here()
    return project_config, [context.host.target(triple, project_config) for triple in context.named_targets(names)]


def _plans(context: Context, names: Sequence[str] = ()) -> list[ImagePlan]:
    """The image plans of ``names`` (default: all), locked as the project's lock file says; a target with an image
    of its own has none."""
    project_config, specs = _specs(context, names)
    return [context.host.image_plan(spec, project_config) for spec in specs if not spec.image]


def build(context: Context, runtime: Runtime, names: Sequence[str]) -> None:
    """`xpcargo image build`: build what the targets need unless the engine has it already."""
    reporter = context.host.reporter()
    project_config, specs = _specs(context, names)
    for spec in specs:
        reference = context.host.image_for(spec, runtime, reporter, project=project_config)
        reporter.status("Ready", f"{spec.triple}: {reference}")


def rows(context: Context, runtime: Runtime) -> list[tuple[str, str, str, str]]:
    """`xpcargo image list`: xpcargo's images, marking those that today's configuration would use."""
    current = {stage.reference for plan in _plans(context) for stage in plan.stages}
    found = [("IMAGE", "TARGET", "SIZE", "STATUS")]
    for image in context.host.image_builder(runtime).images():
        name = image.tags[0] if image.tags else image.id[7:19]
        status = "current" if current.intersection(image.tags) else "stale"
        target = image.labels.get(LABEL_TARGET) or f"base:{image.labels.get(LABEL_RECIPE, '?')}"
        # The engine counts shared layers in each image's size: a layer's own size is what it adds.
        found.append((name, target, f"{image.size / 2**30:.2f} GB", status))
    return found


def listing(context: Context, runtime: Runtime) -> str:
    """`xpcargo image list` as it is printed; recorded for a replay (``xpcargo.replay``) when the engine's answer
    did not change while the table was made from it."""
    from xpcargo import replay_listing  # noqa: PLC0415
    from xpcargo.image.builder import MANAGED_IMAGES  # noqa: PLC0415
    from xpcargo.ui import render_table  # noqa: PLC0415

    before = runtime.recorded_listing(MANAGED_IMAGES)
    output = render_table(rows(context, runtime))
    after = runtime.recorded_listing(MANAGED_IMAGES) if before is not None else None
    replay_listing.keep_listing(context.host, context.cwd, before if after == before else None, output)
    return output


def prune(context: Context, runtime: Runtime, *, everything: bool, unused_for: float | None = None) -> Pruned:
    """`xpcargo image prune`: remove the images xpcargo built, but the current plans of the shipped targets (wherever
    it runs: what is kept does not depend on the working directory) and those used in the last ``unused_for``
    seconds."""
    host = context.host
    keep = [] if everything else [host.image_plan(spec) for spec in host.toolchains.targets.values()]
    images = host.image_builder(runtime)
    pruned = images.prune(keep=keep, unused_for=unused_for)
    for reference, _ in pruned.removed:
        images.reporter.status("Removed", reference)
    for name, why in pruned.kept:
        images.reporter.status("Kept", f"{name}: {why}")
    size = sum(size for _, size in pruned.removed) / 2**30
    images.reporter.status("Pruned", f"{len(pruned.removed)} image(s), {size:.2f} GB; kept {len(pruned.kept)}")
    return pruned


def key(context: Context, names: Sequence[str]) -> str:
    """`xpcargo image key`: the CI cache key of the targets' images."""
    return transfer.key(_plans(context, names))


def save(context: Context, runtime: Runtime, names: Sequence[str], directory: Path) -> list[Path]:
    """`xpcargo image save`: the targets' images (built first if missing) as files, for a CI cache."""
    return transfer.save(context.host.image_builder(runtime), _plans(context, names), directory)


def load(context: Context, runtime: Runtime, directory: Path) -> transfer.Loaded:
    """`xpcargo image load`: the saved images whose plan a target has now."""
    return transfer.load(context.host.image_builder(runtime), _plans(context), directory)


def _project_locks(context: Context) -> tuple[ProjectConfig, ImageLocks]:
    project_config = context.project_config_here()
    if project_config.root is None:
        raise ProjectError(
            f"image locks belong to a project ({LOCK_FILE} at its workspace root), and there is no Cargo project "
            f"in {context.cwd} or above",
            hint="run the command in the project, where its Cargo.toml is",
        )
    return project_config, load_locks(project_config.root)


def lock(context: Context, runtime: Runtime, names: Sequence[str], *, refresh: bool) -> ImageLocks:
    """`xpcargo image lock`: record in the project's lock file the exact packages of each target's unlocked image
    (built first if the engine lacks it, or anew from today's mirror with ``refresh``); by default the shipped
    targets'."""
    project_config, locks = _project_locks(context)
    images = context.host.image_builder(runtime)
    # Refreshed once per run: the base every target shares.
    refreshed: set[str] = set()
    for triple in context.named_targets(names, default="shipped"):
        spec = context.host.target(triple, project_config)
        if spec.image:
            images.reporter.status("Skipped", f"{spec.triple}: it uses the configured image {spec.image}")
            continue
        # Without the project's locks: the unlocked plan, which the entry records.
        plan = context.host.image_plan(spec)
        if refresh:
            images.rebuild(plan, done=refreshed)
        else:
            images.ensure(plan)
        locks = _locked(images, locks, plan)
    save_locks(locks)
    images.reporter.status("Wrote", str(locks.path))
    return locks


def _locked(images: Builder, locks: ImageLocks, plan: ImagePlan) -> ImageLocks:
    """``locks`` with the exact packages of ``plan``'s image. An entry whose plan and packages did not change is kept
    as it is, date included, so that its image keeps its tag."""
    from xpcargo.image.inventory import contents  # noqa: PLC0415

    found = contents(images.runtime, images.cache, plan.reference)
    base = contents(images.runtime, images.cache, plan.base.reference)
    old = locks.targets.get(plan.target)
    if (
        old is not None
        and old.plan == plan.digest
        and old.packages == found.packages
        and old.base_packages == base.packages
    ):
        images.reporter.status("Unchanged", f"{plan.target}: {len(old.packages)} packages")
        return locks
    entry = LockedImage(
        plan=plan.digest,
        build_arch=plan.build_arch,
        suite=plan.suite,
        mirror=plan.mirror,
        # Every file of the locked image gets at most this time: a moment before its first build.
        source_date_epoch=int(time.time()),
        packages=found.packages,
        base_packages=base.packages,
        std_deb=plan.std_deb.url if plan.std_deb else None,
        std_sha256=plan.std_deb.sha256 if plan.std_deb else None,
    )
    changes = differences(old.packages, found.packages) if old is not None else []
    summary = f"{len(changes)} changed" if old is not None else "new"
    images.reporter.status(
        "Locked", f"{plan.target}: {len(found.packages)} packages ({summary}) from {found.reference}"
    )
    for change in changes:
        images.reporter.detail(f"      {change}")
    return locks.with_entry(plan.target, entry)


def verify(context: Context, runtime: Runtime, name: str) -> Verification:
    """`xpcargo image verify`: build a locked target's layers again and compare them."""
    project_config, locks = _project_locks(context)
    spec = context.host.target(name, project_config)
    if spec.triple not in locks.targets:
        raise ConfigError(
            f"{name} has no entry in {locks.path}: there is nothing to verify its image against",
            hint=f"lock it first with `xpcargo image lock {name}`, and commit {LOCK_FILE}",
        )
    plan = context.host.image_plan(spec, project_config)
    images = context.host.image_builder(runtime)
    images.ensure(plan)
    verification = images.verify(plan)
    images.reporter.status("Layers", f"{' '.join(verification.image_layers)} of {plan.reference}")
    images.reporter.status("Layers", f"{' '.join(verification.rebuilt_layers) or 'none'} of the rebuild")
    if not verification.same:
        raise ImageBuildError(
            f"the rebuild of {plan.reference} from {LOCK_FILE} has other layers than the image",
            hint="the image is not reproducible: compare the two root file systems (`docker export`) and report it",
        )
    images.reporter.status("Verified", f"{plan.reference}: the rebuild has the same layers")
    return verification
