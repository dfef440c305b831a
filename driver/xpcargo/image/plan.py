"""What goes into a target's image, decided on the host without the engine: the plan and its content-hash tag.

An image is planned from the target's recipe, the target's own packages and Rust std, and the project's extra
packages. The tag is the hash of that plan, so an unchanged plan never rebuilds and a changed one can never be
mistaken for the old image.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from xpcargo.config.targets import TargetSpec
from xpcargo.container.spec import MANAGED_LABEL
from xpcargo.errors import ConfigError
from xpcargo.image.lockfile import LOCK_FILE, LockedImage
from xpcargo.image.recipe import ImageRecipe, load_recipe

# Bump when the way an image is built changes, so that every tag changes with it.
BUILDER_REVISION = 1

LABEL_TARGET = "org.xpcargo.target"
LABEL_PLAN = "org.xpcargo.plan-hash"
LABEL_RECIPE = "org.xpcargo.recipe"
LABEL_RUST = "org.xpcargo.rust-version"
LABEL_LOCK = "org.xpcargo.lock-hash"


@dataclass(frozen=True, kw_only=True)
class StdDeb:
    """The Rust std of a foreign architecture, one pinned .deb taken straight from the mirror's pool."""

    url: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


@dataclass(frozen=True, kw_only=True)
class ImagePlan:
    target: str
    recipe: str
    # The architecture of the root file system: the engine's, which runs the image.
    build_arch: str
    suite: str
    mirror: str
    packages: tuple[str, ...]
    std_deb: StdDeb | None
    emulator: str | None
    dpkg_exclude: tuple[str, ...]
    rust_version: str
    # A locked image (the project's xpcargo-images.lock has an entry for the target): the entry's content hash,
    # and the modification time every file is clamped to. ``packages`` then names every package at its version.
    lock: str | None = None
    source_date_epoch: int | None = None

    @property
    def digest(self) -> str:
        plan = asdict(self)
        # amd64 was the only build architecture before it was part of the plan; keep those tags unchanged.
        if plan["build_arch"] == "amd64":
            del plan["build_arch"]
        # Nor did an unlocked plan change when locks came.
        for name in ("lock", "source_date_epoch"):
            if plan[name] is None:
                del plan[name]
        canonical = json.dumps({"builder": BUILDER_REVISION, **plan}, sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def repository(self) -> str:
        return f"xpcargo/{self.target}"

    @property
    def tag(self) -> str:
        return self.digest[:16]

    @property
    def reference(self) -> str:
        return f"{self.repository}:{self.tag}"

    @property
    def labels(self) -> Mapping[str, str]:
        return {
            MANAGED_LABEL: "true",
            LABEL_TARGET: self.target,
            LABEL_PLAN: self.digest,
            LABEL_RECIPE: self.recipe,
            LABEL_RUST: self.rust_version,
            **({LABEL_LOCK: self.lock} if self.lock else {}),
        }


def plan_image(spec: TargetSpec, recipe: ImageRecipe, *, build_arch: str, lock: LockedImage | None = None) -> ImagePlan:
    """The image for ``spec``: from the recipe and the target's settings, or, with ``lock``, from exactly the
    packages that the lock recorded of that same plan."""
    unlocked = _unlocked_plan(spec, recipe, build_arch=build_arch)
    if lock is None:
        return unlocked
    if lock.plan != unlocked.digest:
        raise ConfigError(
            f"{LOCK_FILE} locks {spec.triple} for another image plan than today's: the recipe, the target's packages "
            "or the project's extra-packages changed since it was written"
            + (f", or it was written on a {lock.build_arch} machine" if lock.build_arch != build_arch else ""),
            hint=f"run `xpcargo image lock {spec.triple}` and commit {LOCK_FILE}",
        )
    return replace(
        unlocked,
        packages=lock.include_specs(),
        lock=lock.digest,
        source_date_epoch=lock.source_date_epoch,
    )


def _unlocked_plan(spec: TargetSpec, recipe: ImageRecipe, *, build_arch: str) -> ImagePlan:
    rust = recipe.rust
    std_deb: StdDeb | None = None
    if spec.debian_arch != build_arch:
        digest = rust.std_sha256.get(spec.debian_arch)
        if digest is None:
            raise ConfigError(
                f"{recipe.source}: rust.std.sha256: has no entry for `{spec.debian_arch}`, "
                f"the debian-arch of target {spec.triple}",
                hint=f"add the sha256 of {rust.std_package}_{rust.version}_{spec.debian_arch}.deb (images/README.md)",
            )
        filename = f"{rust.std_package}_{rust.version}_{spec.debian_arch}.deb"
        std_deb = StdDeb(url=f"{recipe.mirror}/{rust.std_pool}/{filename}", sha256=digest)
    pinned = tuple(f"{name}={rust.version}" for name in rust.packages)
    # apt does not care about order, and neither must the hash.
    packages = tuple(sorted({*recipe.packages, *pinned, *spec.packages, *spec.extra_packages}))
    return ImagePlan(
        target=spec.triple,
        recipe=recipe.name,
        build_arch=build_arch,
        suite=recipe.suite,
        mirror=recipe.mirror,
        packages=packages,
        std_deb=std_deb,
        emulator=spec.emulator,
        dpkg_exclude=recipe.dpkg_exclude,
        rust_version=rust.version,
    )


def plan_for(spec: TargetSpec, *, recipes: Path, build_arch: str, locked: bool = True) -> ImagePlan:
    """``spec``'s image plan: locked when the project's lock file has an entry for it, unless ``locked`` is false."""
    return plan_image(
        spec,
        load_recipe(spec.recipe, directory=recipes, referenced_from=f"target {spec.triple}"),
        build_arch=build_arch,
        lock=spec.image_lock if locked else None,
    )
