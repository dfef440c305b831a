"""The fetch step: ``cargo fetch`` and ``cargo metadata`` in a container on the host network, filling the shared
``CARGO_HOME`` so that the build itself runs offline with no network at all.

It runs only when the manifests, the lock file or the Cargo config changed since the last fetch (the fetch record, in
xpcargo's cache so that it outlives `cargo clean`, keeps their fingerprint, and ``cargo metadata``'s answer beside
it, since the report needs that answer).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcargo.container.runtime import Output
from xpcargo.container.session import Session, open_session
from xpcargo.files import write_atomically
from xpcargo.pipeline import environment
from xpcargo.pipeline.plan import BuildPlan
from xpcargo.pipeline.workspace import Step, Venue

Metadata = dict[str, Any]


@dataclass(frozen=True)
class FetchRecord:
    """What the last fetch saw: the project's fingerprint and ``cargo metadata``'s answer for it."""

    path: Path

    @classmethod
    def of(cls, plan: BuildPlan) -> FetchRecord:
        return cls(plan.workspace.fetch_record)

    def load(self, fingerprint: str) -> Metadata | None:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(state, dict) or state.get("fingerprint") != fingerprint:
            return None
        metadata = state.get("metadata")
        return metadata if isinstance(metadata, dict) else None

    def save(self, fingerprint: str, metadata: Metadata) -> None:
        """Atomically, under a name of its own: two xpcargo processes may save at once. A record that cannot be
        written is no error: the next command fetches again."""
        document = json.dumps({"fingerprint": fingerprint, "metadata": metadata})
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(self.path, document, mode=0o600)

    def forget(self) -> None:
        self.path.unlink(missing_ok=True)


def fingerprint(plan: BuildPlan, image: str) -> str:
    return plan.project.fingerprint(image, plan.invocation.parsed.manifest_path or "")


def read_metadata(
    session: Session, plan: BuildPlan, image: str, *, stderr: Output | None = None
) -> tuple[int, Metadata | None]:
    """`cargo metadata`, recorded beside the fingerprint of what it was read from, so unchanged projects skip it."""
    captured: list[bytes] = []
    # Every feature, so that the packages of any feature a build turns on (`--features vendored` brings openssl-src)
    # are listed for the report; `cargo fetch` has fetched every package of the lock file, optional ones included.
    code = session.run(
        [
            "cargo",
            "metadata",
            *plan.variables.fetch_config,
            "--format-version",
            "1",
            "--offline",
            "--all-features",
            *plan.invocation.manifest_args(),
        ],
        env={"CARGO_NET_OFFLINE": "true"},
        on_stdout=captured.append,
        on_stderr=stderr,
    )
    if code != 0:
        return code, None
    try:
        metadata = json.loads(b"".join(captured))
    except ValueError:
        return 1, None
    if not isinstance(metadata, dict):
        return 1, None
    # Fingerprinted after `cargo fetch` ran: it may have just written Cargo.lock.
    FetchRecord.of(plan).save(fingerprint(plan, image), metadata)
    return 0, metadata


def fetch(
    venue: Venue, plan: BuildPlan, *, stdout: Output | None = None, stderr: Output | None = None
) -> tuple[int, Metadata | None]:
    """Download what the build needs into CARGO_HOME, in a container that may use the network."""
    venue.reporter.status("Fetching", f"dependencies for {plan.project.workspace_root.name} (network step)")
    request = plan.request(Step.FETCH, venue.image)
    with open_session(venue.runtime, request, purpose="fetch", cancellation=venue.cancellation) as session:
        plan.workspace.entered(session, venue)
        # Credentials reach this one command, never the container's own environment.
        code = session.run(
            ["cargo", "fetch", *plan.variables.fetch_config, *plan.invocation.manifest_args()],
            env=environment.fetch_credentials(plan.variables.credentials),
            on_stdout=stdout,
            on_stderr=stderr,
        )
        if code != 0:
            return code, None
        plan.workspace.fetched(session, venue)
        return read_metadata(session, plan, venue.image, stderr=stderr)
