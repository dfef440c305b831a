"""What is in an image, for provenance: its id, the digests of its root file system's layers, the Debian packages
installed in it, and the Rust it builds with.

This is the one seam through which the release code learns about an image. It asks the engine and looks inside a
container; a recorded image lock can answer the same questions without a container, and this module is where to
plug it in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from xpcargo.container.session import Session, invoking_user, open_session
from xpcargo.container.spec import ContainerRequest, Runtime
from xpcargo.errors import EngineError

# Architecture too: a multiarch image holds `libc6` for amd64 and for arm64, at the same version or not.
_DPKG_FORMAT = "${Package}\t${Version}\t${Architecture}\n"


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


def inventory(runtime: Runtime, *, triple: str, reference: str, plan_hash: str | None) -> ImageInventory:
    """Ask the engine for the image's identity, and a container of it for its packages and its rustc."""
    details = runtime.inspect_image(reference)
    if details is None:
        raise EngineError(f"image {reference} is not in the engine", hint="build it first (`xpcargo image build`)")
    request = ContainerRequest(image=reference, user=invoking_user(), workdir=Path("/"), network="none")
    with open_session(runtime, request, purpose="inventory") as session:
        packages = parse_packages(_output(session, ["dpkg-query", "-W", "-f", _DPKG_FORMAT], reference))
        rustc = parse_rustc_version(_output(session, ["rustc", "-vV"], reference))
    return ImageInventory(
        triple=triple,
        reference=reference,
        image_id=details.id,
        plan_hash=plan_hash,
        layers=details.layers,
        rustc=MappingProxyType(rustc),
        packages=packages,
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


def parse_packages(text: str) -> tuple[DebianPackage, ...]:
    packages = set()
    for line in text.splitlines():
        name, _, rest = line.partition("\t")
        version, _, architecture = rest.partition("\t")
        if name and version:
            packages.add(DebianPackage(name=name, version=version, architecture=architecture or "all"))
    return tuple(sorted(packages))


def parse_rustc_version(text: str) -> dict[str, str]:
    """`rustc -vV`: a first line `rustc 1.96.0 (...)`, then `key: value` lines."""
    lines = text.strip().splitlines()
    found = {"version": lines[0]} if lines else {}
    for line in lines[1:]:
        key, colon, value = line.partition(":")
        if colon:
            found[key.strip()] = value.strip()
    return found
