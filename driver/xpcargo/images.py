"""Toolchain images: what goes into each, its content-hash tag, and building it when the engine lacks it.

An image is planned from the target's recipe (``images/<recipe>.yaml``), the target's own packages and Rust std,
and the project's extra packages. The tag is the hash of that plan, so an unchanged plan never rebuilds and a changed
one can never be mistaken for the old image. A build is checked before it is tagged, so a failed build leaves no
half-tagged image behind.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

from xpcargo.config import ImageRecipe, TargetSpec, load_recipe
from xpcargo.engine import MANAGED_LABEL, ContainerSpec, Engine, ImageInfo
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.ui import Reporter, Stopwatch

# Bump when the way an image is built changes, so that every tag changes with it.
BUILDER_REVISION = 1
# Images are root filesystems of the engine's own architecture; the recipes are written for amd64 engines.
ENGINE_ARCHES = {"x86_64": "amd64", "amd64": "amd64"}

LABEL_TARGET = "org.xpcargo.target"
LABEL_PLAN = "org.xpcargo.plan-hash"
LABEL_RECIPE = "org.xpcargo.recipe"
LABEL_RUST = "org.xpcargo.rust-version"


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
    suite: str
    mirror: str
    packages: tuple[str, ...]
    std_deb: StdDeb | None
    emulator: str | None
    dpkg_exclude: tuple[str, ...]
    rust_version: str

    @property
    def digest(self) -> str:
        canonical = json.dumps({"builder": BUILDER_REVISION, **asdict(self)}, sort_keys=True)
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
        }


def plan_image(spec: TargetSpec, recipe: ImageRecipe, *, engine_arch: str = "amd64") -> ImagePlan:
    rust = recipe.rust
    std_deb: StdDeb | None = None
    if spec.debian_arch != engine_arch:
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
        suite=recipe.suite,
        mirror=recipe.mirror,
        packages=packages,
        std_deb=std_deb,
        emulator=spec.emulator,
        dpkg_exclude=recipe.dpkg_exclude,
        rust_version=rust.version,
    )


def plan_for(spec: TargetSpec) -> ImagePlan:
    return plan_image(spec, load_recipe(spec.recipe, referenced_from=f"target {spec.triple}"))


def ensure_image(engine: Engine, spec: TargetSpec, *, cache: Path, reporter: Reporter) -> str:
    """The image reference to run ``spec`` in, built first if the engine does not have it."""
    if spec.image:
        if not engine.image_exists(spec.image):
            raise ConfigError(
                f"image `{spec.image}` configured for {spec.triple} is not in the Docker engine",
                hint="there is no registry to pull from: build or load that image first, or drop the `image` setting",
            )
        return spec.image
    plan = plan_for(spec)
    if engine.image_exists(plan.reference):
        return plan.reference
    with _lock(cache, plan.digest, blocking=True):
        # Another xpcargo (a parallel CI job) may have built it while this one waited for the lock.
        if not engine.image_exists(plan.reference):
            build_image(engine, plan, cache=cache, reporter=reporter)
    return plan.reference


@contextmanager
def _lock(cache: Path, digest: str, *, blocking: bool) -> Iterator[bool]:
    """The lock an image build holds from its first download until its image is tagged; yields whether it got it."""
    locks = cache / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with (locks / f"{digest}.lock").open("w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_image(engine: Engine, plan: ImagePlan, *, cache: Path, reporter: Reporter) -> None:
    from xpcargo import debian  # noqa: PLC0415 - urllib and subprocess plumbing only an image build needs

    arch = engine.architecture()
    if ENGINE_ARCHES.get(arch) != "amd64":
        raise ImageBuildError(
            f"cannot build {plan.reference}: the recipes are for amd64 engines and this engine is `{arch}`",
            hint="run xpcargo against an x86_64 Docker engine (DOCKER_HOST)",
        )
    clock = Stopwatch()
    reporter.status("Building", f"image {plan.reference} for {plan.target} (first use; later runs reuse it)")
    scratch_root = cache / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="image-", dir=scratch_root) as scratch:
        std_file = None
        if plan.std_deb is not None:
            reporter.detail(f"[1/4] Rust std for {plan.target}: {plan.std_deb.filename}")
            std_file = debian.fetch_pool_file(
                plan.std_deb.url, plan.std_deb.sha256, cache / "pool", on_retry=reporter.warn
            )
        else:
            reporter.detail("[1/4] Rust std: installed with the compiler")
        tarball = Path(scratch) / "rootfs.tar"
        reporter.detail(f"[2/4] Debian {plan.suite} root filesystem with {len(plan.packages)} packages (mmdebstrap)")
        debian.bootstrap(
            plan,
            tarball,
            std_deb=std_file,
            deb_cache=cache / "debs",
            on_line=lambda line: reporter.detail(f"      {line}"),
            on_retry=reporter.warn,
        )
        reporter.detail(f"[3/4] importing {tarball.stat().st_size // 2**20} MiB into the engine")
        changes = [
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "ENV LANG=C.UTF-8",
            *(f"LABEL {name}={value}" for name, value in plan.labels.items()),
        ]
        image_id = engine.import_rootfs(tarball, changes=changes)
    reporter.detail("[4/4] checking the toolchain in the new image")
    try:
        _verify(engine, image_id, plan)
    except BaseException:
        engine.remove_image(image_id)
        raise
    engine.tag(image_id, plan.repository, plan.tag)
    reporter.status("Built", f"image {plan.reference} in {clock}")


def _verify(engine: Engine, image_id: str, plan: ImagePlan) -> None:
    """Prove the image can do its job before it gets a name: rustc has the target's std, the emulator runs."""
    checks = [f"test -d /usr/lib/rustlib/{plan.target}/lib", "rustc --version", "cargo --version"]
    if plan.emulator:
        checks.append(f"{plan.emulator} --version")
    script = " && ".join(checks)
    output: list[bytes] = []
    spec = ContainerSpec(image=image_id, user="0:0", workdir=Path("/"), mounts=(), env={}, labels={})
    with engine.container(spec) as container:
        code = engine.exec(container, ["sh", "-c", script], on_stdout=output.append, on_stderr=output.append)
    if code != 0:
        text = b"".join(output).decode(errors="replace").strip().splitlines()
        raise ImageBuildError(
            f"image for {plan.target} failed its check (`{script}`): {text[-1] if text else f'exit {code}'}",
            hint="the recipe or the target's packages miss part of the toolchain; fix them and build again",
        )


def list_images(engine: Engine) -> list[ImageInfo]:
    return sorted(engine.list_images(), key=lambda image: (image.labels.get(LABEL_TARGET, ""), image.created))


def prune_images(engine: Engine, *, keep: set[str], cache: Path) -> list[ImageInfo]:
    """Remove xpcargo's own images except those whose reference is in ``keep``; return what was removed.

    An image that another xpcargo is still building (imported, not yet checked and tagged) holds its build lock,
    and is left alone.
    """
    removed = []
    for image in engine.list_images():
        if keep.intersection(image.tags):
            continue
        with _lock(cache, image.labels.get(LABEL_PLAN, "unlabelled"), blocking=False) as idle:
            if not idle:
                continue
            engine.remove_image(image.id)
        removed.append(image)
    return removed
