"""Building, finding, listing and pruning toolchain images, over a ``Runtime``.

A missing image is built (mmdebstrap, then an import), checked in a container (rustc has the target's std, the
emulator runs), and only then tagged, so a failed build never leaves a tagged half-image. One lock per plan keeps
two processes from building the same image at once.
"""

from __future__ import annotations

import fcntl
import re
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from xpcargo import platforms
from xpcargo.config.targets import TargetSpec
from xpcargo.container.session import open_session
from xpcargo.container.spec import MANAGED_LABEL, ContainerRequest, ImageInfo, Runtime
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.image.plan import LABEL_PLAN, LABEL_TARGET, ImagePlan
from xpcargo.ui import Reporter, Stopwatch

if TYPE_CHECKING:
    from xpcargo.context import Context

_DIGEST = re.compile(r"[0-9a-f]{64}")


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
        if self.runtime.image_exists(plan.reference):
            return plan.reference
        with _lock(self.cache, plan.digest, blocking=True):
            # Another xpcargo (a parallel CI job) may have built it while this one waited for the lock.
            if not self.runtime.image_exists(plan.reference):
                self.build(plan)
        return plan.reference

    def build(self, plan: ImagePlan) -> None:
        from xpcargo.image import debian  # noqa: PLC0415 - urllib and subprocess plumbing only a build needs

        machine = self.runtime.architecture()
        engine = platforms.for_machine(machine)
        if engine is None or engine.debian_arch != plan.build_arch:
            raise ImageBuildError(
                f"cannot build {plan.reference}: it is planned for {plan.build_arch} and the engine at "
                f"{self.runtime.host} runs `{machine}`",
                hint="run xpcargo against an engine on this machine's architecture (DOCKER_HOST)",
            )
        reporter = self.reporter
        clock = Stopwatch()
        reporter.status("Building", f"image {plan.reference} for {plan.target} (first use; later runs reuse it)")
        scratch_root = self.cache / "scratch"
        scratch_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="image-", dir=scratch_root) as scratch:
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
            tarball = Path(scratch) / "rootfs.tar"
            reporter.detail(
                f"[2/4] Debian {plan.suite} root filesystem with {len(plan.packages)} packages (mmdebstrap)"
            )
            debian.bootstrap(
                plan,
                tarball,
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
        self.runtime.tag(image_id, plan.repository, plan.tag)
        reporter.status("Built", f"image {plan.reference} in {clock}")

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

    def prune(self, *, keep: Sequence[ImagePlan]) -> list[ImageInfo]:
        """Remove xpcargo's own images except the plans in ``keep``; return what was removed.

        An image that another xpcargo is still building (imported, not yet checked and tagged) holds its build
        lock, and is left alone.
        """
        kept = {plan.reference for plan in keep}
        removed = []
        for image in self.runtime.list_images(f"{MANAGED_LABEL}=true"):
            if kept.intersection(image.tags):
                continue
            digest = image.labels.get(LABEL_PLAN, "")
            # The label names the lock file: a label that is no digest (an image built FROM ours) gets none.
            with _lock(self.cache, digest if _DIGEST.fullmatch(digest) else "unlabelled", blocking=False) as idle:
                if not idle:
                    continue
                self.runtime.remove_image(image.id)
            removed.append(image)
        return removed


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


def prune_images(context: Context, runtime: Runtime, *, everything: bool) -> list[ImageInfo]:
    """`xpcargo image prune`: remove xpcargo's images but the current plans of the shipped targets (wherever it
    runs: what is kept does not depend on the working directory)."""
    keep = [] if everything else [context.image_plan(spec) for spec in context.toolchains.targets.values()]
    builder = for_context(context, runtime)
    removed = builder.prune(keep=keep)
    for image in removed:
        builder.reporter.status("Removed", image.tags[0] if image.tags else image.id)
    builder.reporter.status("Pruned", f"{len(removed)} image(s), {sum(i.size for i in removed) / 2**30:.2f} GB")
    return removed
