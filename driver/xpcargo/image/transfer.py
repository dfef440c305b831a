"""Images as files, for CI caches: a CI runner starts with an empty engine, and building an image costs about a
minute per target. `image save` writes each target's image to `<dir>/<plan digest>.tar`; `image load` loads those
files back, and only those whose plan is one that the current configuration would build; `image key` prints the
cache key that names exactly that set of plans."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xpcargo.container.runtime import Images
from xpcargo.errors import ImageBuildError
from xpcargo.files import replacing_path
from xpcargo.image import records
from xpcargo.image.builder import Builder
from xpcargo.image.plan import LABEL_PLAN, LABEL_TARGET, ImagePlan

_ARCHIVE = re.compile(r"[0-9a-f]{64}\.tar")


@dataclass(frozen=True, kw_only=True)
class Loaded:
    loaded: tuple[str, ...]
    present: tuple[str, ...]
    skipped: tuple[str, ...]


def key(plans: Sequence[ImagePlan]) -> str:
    """One line for a CI cache key: it changes exactly when one of the images of ``plans`` would."""
    digests = sorted(plan.digest for plan in plans)
    combined = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    return f"xpcargo-images-{combined[:32]}"


def save(builder: Builder, plans: Sequence[ImagePlan], directory: Path) -> list[Path]:
    """Build what is missing of ``plans``, then write each image to ``<directory>/<plan digest>.tar``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ImageBuildError(
            f"cannot save images to {directory}: {error.strerror}", hint="name a directory that can be written"
        ) from None
    runtime, reporter = builder.runtime, builder.reporter
    saved = []
    for plan in plans:
        archive = directory / f"{plan.digest}.tar"
        if archive.is_file():
            reporter.status("Fresh", f"{plan.reference} ({archive.name})")
            saved.append(archive)
            continue
        builder.ensure(plan)
        try:
            # Under a name of its own until it is whole: two saves to one directory never share a partial file.
            with replacing_path(archive) as partial:
                runtime.save_image(plan.reference, partial)
        except OSError as error:
            raise ImageBuildError(
                f"cannot save {plan.reference} to {archive}: {error.strerror}",
                hint="check the free space and the permissions of the directory",
            ) from None
        reporter.status("Saved", f"{plan.reference} to {archive} ({archive.stat().st_size / 2**30:.2f} GB)")
        saved.append(archive)
    return saved


def load(builder: Builder, plans: Sequence[ImagePlan], directory: Path) -> Loaded:
    """Load the archives in ``directory`` whose plan is one of ``plans`` (those the known targets have now). One whose
    content is not the image its name says is refused: it is removed again, and the load fails."""
    if not directory.is_dir():
        raise ImageBuildError(
            f"there is no directory {directory} to load images from",
            hint="name the directory `xpcargo image save -o DIR` wrote (a CI cache that was not restored has none)",
        )
    runtime, reporter = builder.runtime, builder.reporter
    wanted = {plan.digest: plan for plan in plans}
    loaded, present, skipped = [], [], []
    archives = sorted(path for path in directory.glob("*.tar") if _ARCHIVE.fullmatch(path.name))
    for archive in archives:
        plan = wanted.get(archive.name.removesuffix(".tar"))
        if plan is None:
            reporter.status("Skipped", f"{archive.name}: no target's image plan now (a stale cache entry)")
            skipped.append(archive.name)
            continue
        if runtime.image_exists(plan.reference):
            present.append(plan.reference)
            continue
        references = runtime.load_image(archive)
        _check(runtime, plan, archive, references)
        records.save(
            builder.cache,
            digest=plan.digest,
            reference=plan.reference,
            image_id=_image_id(runtime, plan),
            target=plan.target,
        )
        reporter.status("Loaded", f"{plan.reference} from {archive.name}")
        loaded.append(plan.reference)
    return Loaded(loaded=tuple(loaded), present=tuple(present), skipped=tuple(skipped))


def _image_id(runtime: Images, plan: ImagePlan) -> str:
    found = [image for image in runtime.list_images(f"{LABEL_PLAN}={plan.digest}") if plan.reference in image.tags]
    return found[0].id if found else ""


def _check(runtime: Images, plan: ImagePlan, archive: Path, references: Sequence[str]) -> None:
    """The archive must hold the image its name says: the plan's tag, with the plan's own labels."""
    image = next(
        (i for i in runtime.list_images(f"{LABEL_PLAN}={plan.digest}") if plan.reference in i.tags),
        None,
    )
    if image is not None and image.labels.get(LABEL_TARGET) == plan.target and plan.reference in references:
        return
    for reference in references:
        # Only what this load brought: an image that was there before is not this archive's.
        runtime.remove_image(reference)
    raise ImageBuildError(
        f"refusing {archive}: it does not hold the image of plan {plan.digest[:16]} for {plan.target} "
        f"(it holds {', '.join(references) or 'no named image'})",
        hint="delete the file (a corrupt or tampered cache entry); the image is built again on first use",
    )
