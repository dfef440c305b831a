"""What is in an image, for a lock file or a provenance statement: its id, its plan, the digest of its root file
system layer, and every Debian package with its version.

The packages come from the record xpcargo wrote when it built the image (``records``); an image without one (built
by an older xpcargo, or with another cache) is asked in a container of its own, with ``dpkg-query -W``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from xpcargo.container.session import open_session
from xpcargo.container.spec import ContainerRequest, Runtime
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.image import records
from xpcargo.image.lockfile import DPKG_QUERY_FORMAT, Package, parse_dpkg_query
from xpcargo.image.plan import LABEL_LOCK, LABEL_PLAN, LABEL_TARGET


@dataclass(frozen=True, kw_only=True)
class ImageInventory:
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

    @property
    def rootfs_layer(self) -> str | None:
        """The digest of the root file system: the one layer of an image xpcargo built (None for several)."""
        return self.layers[0] if len(self.layers) == 1 else None


def inventory(runtime: Runtime, cache: Path, reference: str) -> ImageInventory:
    """Describe the image ``reference`` names (see the module's docstring)."""
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
    return ImageInventory(
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


def installed_packages(runtime: Runtime, image: str, *, name: str) -> tuple[Package, ...]:
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
