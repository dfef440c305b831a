"""What is in an image: its id, its plan, the digests of its layers, every Debian package with its version, and
(for provenance) the Rust it builds with.

The packages come from the record xpcargo wrote when it built the image (``records``); an image without one (built
by an older xpcargo, or with another cache) is asked in a container of its own, with ``dpkg-query -W``. A lock file
records them (``lockfile``); a provenance statement lists them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from xpcargo.container.runtime import Containers
from xpcargo.container.session import Session, invoking_user, open_session
from xpcargo.container.spec import ContainerRequest
from xpcargo.errors import ConfigError, EngineError, ImageBuildError
from xpcargo.image import records
from xpcargo.image.lockfile import DPKG_QUERY_FORMAT, Package, parse_dpkg_query
from xpcargo.image.plan import LABEL_LOCK, LABEL_PLAN, LABEL_TARGET


@dataclass(frozen=True, kw_only=True)
class ImageContents:
    reference: str
    image_id: str
    # The labels xpcargo gives its images; None on an image that xpcargo did not build.
    target: str | None
    plan: str | None
    lock: str | None
    # The digests of the image's layers (uncompressed tar, the engine's diff_ids), lowest first.
    layers: tuple[str, ...]
    packages: tuple[Package, ...]
    # Where ``packages`` came from: "build record" or "dpkg-query".
    packages_from: str


def contents(runtime: Containers, cache: Path, reference: str) -> ImageContents:
    """The image ``reference`` names: id, labels, layers and packages (see the module's docstring)."""
    details = runtime.inspect_image(reference)
    if details is None:
        raise ConfigError(
            f"image {reference} is not in the engine at {runtime.host}",
            hint="build it first (`xpcargo image build TARGET`)",
        )
    packages = _recorded_packages(cache, details.id)
    source = "build record"
    if packages is None:
        packages = installed_packages(runtime, details.id, name=reference)
        source = "dpkg-query"
    return ImageContents(
        reference=reference,
        image_id=details.id,
        target=details.labels.get(LABEL_TARGET),
        plan=details.labels.get(LABEL_PLAN),
        lock=details.labels.get(LABEL_LOCK),
        layers=details.layers,
        packages=packages,
        packages_from=source,
    )


def _recorded_packages(cache: Path, image_id: str) -> tuple[Package, ...] | None:
    for record in records.load_all(cache):
        if record.image_id == image_id and record.packages is not None:
            return record.packages
    return None


def installed_packages(runtime: Containers, image: str, *, name: str) -> tuple[Package, ...]:
    """Every package dpkg lists as installed in ``image``, asked in a container that lives for that one query."""
    stdout: list[bytes] = []
    stderr: list[bytes] = []
    request = ContainerRequest(image=image, user="0:0", workdir=Path("/"))
    with open_session(runtime, request, purpose="image-inventory") as session:
        code = session.run(
            ["dpkg-query", "-W", "-f", DPKG_QUERY_FORMAT], on_stdout=stdout.append, on_stderr=stderr.append
        )
    text = b"".join(stdout).decode(errors="replace")
    problem = b"".join(stderr).decode(errors="replace").strip().splitlines()
    try:
        packages = parse_dpkg_query(text) if code == 0 else ()
    except ValueError as exc:
        problem = [str(exc)]
        packages = ()
    if not packages:
        raise ImageBuildError(
            f"cannot list the Debian packages of image {name}: `dpkg-query -W` "
            + (f"failed: {problem[-1]}" if problem else f"exited with {code} and listed nothing"),
            hint="only an image with dpkg (a Debian or Ubuntu root file system) can be locked or described",
        )
    return packages


@dataclass(frozen=True, kw_only=True, order=True)
class DebianPackage:
    name: str
    version: str
    architecture: str

    @property
    def purl(self) -> str:
        """The package URL (purl) of the package, the form SBOM and provenance tools understand."""
        return f"pkg:deb/debian/{self.name}@{self.version}?arch={self.architecture}"


@dataclass(frozen=True, kw_only=True)
class ImageInventory:
    triple: str
    reference: str
    image_id: str
    # The content hash of the image's plan (its tag), or None for an image the project names itself.
    plan_hash: str | None
    layers: tuple[str, ...]
    # `rustc -vV`, as `key: value` lines (`release`, `commit-hash`, `host`, `LLVM version`, ...).
    rustc: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    packages: tuple[DebianPackage, ...] = ()


def inventory(
    runtime: Containers, cache: Path, *, triple: str, reference: str, plan_hash: str | None
) -> ImageInventory:
    """The image's contents, and its rustc asked in a container of it."""
    found = contents(runtime, cache, reference)
    request = ContainerRequest(image=reference, user=invoking_user(), workdir=Path("/"), network="none")
    with open_session(runtime, request, purpose="inventory") as session:
        rustc = parse_rustc_version(_output(session, ["rustc", "-vV"], reference))
    return ImageInventory(
        triple=triple,
        reference=reference,
        image_id=found.image_id,
        plan_hash=plan_hash,
        layers=found.layers,
        rustc=MappingProxyType(rustc),
        packages=tuple(
            sorted(DebianPackage(name=p.name, version=p.version, architecture=p.arch) for p in found.packages)
        ),
    )


def _output(session: Session, argv: Sequence[str], reference: str) -> str:
    out: list[bytes] = []
    err: list[bytes] = []
    code = session.run(argv, on_stdout=out.append, on_stderr=err.append)
    if code != 0:
        said = b"".join(err).decode(errors="replace").strip().splitlines()
        raise EngineError(
            f"`{' '.join(argv[:2])}` failed in {reference} ({code}): {said[-1] if said else 'no output'}",
            hint="check the image with `xpcargo shell`",
        )
    return b"".join(out).decode(errors="replace")


def parse_rustc_version(text: str) -> dict[str, str]:
    """`rustc -vV`: a first line `rustc 1.96.0 (...)`, then `key: value` lines."""
    lines = text.strip().splitlines()
    found = {"version": lines[0]} if lines else {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if colon:
            found[key.strip()] = value.strip()
    return found
