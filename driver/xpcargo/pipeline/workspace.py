"""Where a build's files are for the engine, and how they get there and back: one seam with two sides, chosen once
by ``plan``.

- ``LocalWorkspace`` (here): the engine sees this machine's files. Each directory is bind-mounted at its own path;
  the steps that run the project's code read CARGO_HOME read-only, with an empty file over each credentials file and
  its `bin` hidden; the fetch step gets the host's CA bundle mounted at its own path. Nothing travels.
- ``remote.RemoteWorkspace``: the engine cannot see them. Volumes stand in for the mounts: pushed before the first
  step, checked at the start of each, the lock file brought back after the fetch and the files the host needs after
  the build; the host's CA bundle is a volume of its own.

Either side gets the target's image onto its engine, too: a remote engine gets it built on this machine's engine
and sent.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from xpcargo.config.targets import TargetSpec
from xpcargo.container.location import Engines
from xpcargo.container.runtime import ContainersAndVolumes
from xpcargo.container.session import Cancellation, Session
from xpcargo.container.spec import Mount
from xpcargo.image.builder import Builder
from xpcargo.image.plan import ImagePlan
from xpcargo.ui import Reporter

# What Cargo keeps registry tokens in, under CARGO_HOME (the old name without extension, too).
_CREDENTIALS_FILES = ("credentials.toml", "credentials")


class Step(enum.Enum):
    FETCH = "fetch"  # `cargo fetch` and `cargo metadata`, on the host network
    BUILD = "build"  # the Cargo command itself, with no network
    SHELL = "shell"  # `xpcargo shell`: a build's container, with a command of the user's


@dataclass(frozen=True, kw_only=True)
class Venue:
    """Where a command's steps run: the engine, the image, as whom, reporting to whom, cancelled by what."""

    runtime: ContainersAndVolumes
    image: str
    user: str
    reporter: Reporter
    cancellation: Cancellation | None = None


class Workspace(Protocol):
    """The build's files as the engine sees them, and their way there and back."""

    @property
    def binds(self) -> tuple[Mount, ...]:
        """The host's directories (and files) the build sees, each at its own path: bind-mounted by a local engine,
        copied into volumes for a remote one."""

    @property
    def ca_bundle(self) -> Path | None:
        """Where the fetch step finds the certificates the host trusts, if the host has a bundle."""

    @property
    def fetch_record(self) -> Path:
        """What the last fetch into this workspace's CARGO_HOME saw (``fetch.FetchRecord``)."""

    def mounts(self, step: Step) -> tuple[Mount, ...]:
        """What ``step``'s container mounts."""

    def hidden(self) -> tuple[Path, ...]:
        """Directories the container must not see."""

    def image(self, builder: Builder, spec: TargetSpec, plan: ImagePlan | None, engines: Engines | None) -> str:
        """The target's image on the engine of ``builder``, built first if the engine lacks it; ``engines`` gives
        this machine's engine, where an image is built for an engine that cannot build one."""

    def push(self, venue: Venue) -> None:
        """Before the first step: the engine's copy of the files made the host's."""

    def entered(self, session: Session, venue: Venue) -> None:
        """Before a step runs anything in ``session``."""

    def fetched(self, session: Session, venue: Venue) -> None:
        """After `cargo fetch` succeeded in ``session``."""

    def built(self, session: Session, venue: Venue, messages: Sequence[Mapping[str, Any]]) -> None:
        """After the Cargo command ran in ``session`` and said ``messages``, before the host reads what it made."""


def fetch_record(cache_dir: Path, identity: str) -> Path:
    """Where the fetch record of the CARGO_HOME that ``identity`` names is kept."""
    key = hashlib.sha256(identity.encode()).hexdigest()
    return cache_dir / "fetched" / f"{key[:32]}.json"


@dataclass(frozen=True, kw_only=True)
class LocalWorkspace:
    """The build's files for an engine that sees this machine's: bind mounts."""

    binds: tuple[Mount, ...]
    cargo_home: Path
    ca_bundle: Path | None
    fetch_record: Path

    def mounts(self, step: Step) -> tuple[Mount, ...]:
        """Only the fetch step trusts the host's CAs, may write to CARGO_HOME and sees its credentials files; the
        others read the crates it fetched and nothing else there."""
        if step is Step.FETCH:
            return self.binds if self.ca_bundle is None else (*self.binds, Mount(path=self.ca_bundle, read_only=True))
        home, mounts = self.cargo_home, self.binds
        if home.is_dir():
            mounts = tuple(replace(m, read_only=True) if m.path == home else m for m in mounts)
            if not any(m.path == home for m in mounts):
                # Folded into a writable mount above it (a CARGO_HOME inside the workspace): read-only all the same.
                mounts = (*mounts, Mount(path=home, read_only=True))
        # An empty file over each credentials file: a build script must not read the user's registry tokens.
        return mounts + tuple(
            Mount(path=home / name, source=Path("/dev/null"), read_only=True)
            for name in _CREDENTIALS_FILES
            if (home / name).is_file()
        )

    def hidden(self) -> tuple[Path, ...]:
        # CARGO_HOME/bin holds rustup's proxies and host-built tools; Cargo looks there first for `cargo-clippy`
        # and other subcommands, and would run the host's rustup instead of the image's clippy.
        bin_dir = self.cargo_home / "bin"
        return (bin_dir,) if bin_dir.is_dir() else ()

    def image(self, builder: Builder, spec: TargetSpec, plan: ImagePlan | None, engines: Engines | None) -> str:
        return builder.image_for(spec, plan)

    def push(self, venue: Venue) -> None:
        pass

    def entered(self, session: Session, venue: Venue) -> None:
        pass

    def fetched(self, session: Session, venue: Venue) -> None:
        pass

    def built(self, session: Session, venue: Venue, messages: Sequence[Mapping[str, Any]]) -> None:
        pass
