"""The provenance of a release: an in-toto Statement v1 whose predicate is SLSA provenance v1.

The statement names every archive (``subject``, with its sha256) and says how they were made: xpcargo's build type,
what the user asked for (``externalParameters``), what xpcargo fixed on its own (``internalParameters``), and what
went in (``resolvedDependencies``: the source commit, Cargo.lock, each image with its id, plan hash and layers, its
Rust, and every Debian package in it). It is not signed here; README, "Reproducible releases", says how to attest it.

Everything here is pure: the document is built from values, so it is tested without an engine.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xpcargo.image.inventory import DebianPackage, ImageInventory

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
# xpcargo's own build type: what the parameters below mean (README, "Reproducible releases").
BUILD_TYPE = "https://xpcargo.dev/build-types/dist/v1"
# The builder when no CI names one: a developer's machine, which vouches for nothing beyond itself.
LOCAL_BUILDER = "https://xpcargo.dev/builders/local"


@dataclass(frozen=True, kw_only=True)
class Source:
    """The checkout a release was built from, as far as git knows it."""

    uri: str | None
    commit: str | None
    dirty: bool = False


@dataclass(frozen=True, kw_only=True)
class Release:
    """What the document is made of."""

    subjects: Mapping[str, str]  # archive name -> sha256
    command: Sequence[str]
    targets: Sequence[str]
    cargo_args: Sequence[str]
    source: Source
    source_date_epoch: int
    epoch_source: str
    remaps: Sequence[tuple[Path, str]]
    environment: Mapping[str, str]
    cargo_lock_sha256: str | None
    images: Sequence[ImageInventory]
    builder_id: str
    xpcargo_version: str
    started: datetime.datetime
    finished: datetime.datetime
    # Whether every archive holds what two builds, the second varied as `verify` varies it, made alike; False only
    # when the user opted out (`dist --no-verify`).
    verified: bool = True


def rfc3339(moment: datetime.datetime) -> str:
    return moment.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def builder_id(environ: Mapping[str, str]) -> str:
    """The workflow that ran xpcargo when it runs in GitHub Actions (`<server>/<owner>/<repo>/<path>@<ref>`),
    else the local builder."""
    server, workflow = environ.get("GITHUB_SERVER_URL"), environ.get("GITHUB_WORKFLOW_REF")
    return f"{server}/{workflow}" if server and workflow else LOCAL_BUILDER


def statement(release: Release) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": release.subjects[name]}} for name in sorted(release.subjects)],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": _external(release),
                "internalParameters": {
                    "sourceDateEpoch": release.source_date_epoch,
                    "sourceDateEpochFrom": release.epoch_source,
                    "pathRemapping": [{"from": str(path), "to": name} for path, name in release.remaps],
                    "environment": dict(sorted(release.environment.items())),
                    "verifiedByRebuild": release.verified,
                },
                "resolvedDependencies": _dependencies(release),
            },
            "runDetails": {
                "builder": {"id": release.builder_id, "version": {"xpcargo": release.xpcargo_version}},
                "metadata": {"startedOn": rfc3339(release.started), "finishedOn": rfc3339(release.finished)},
            },
        },
    }


def _external(release: Release) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "command": list(release.command),
        "targets": list(release.targets),
        "cargoArgs": list(release.cargo_args),
    }
    source: dict[str, Any] = {}
    if release.source.uri:
        source["uri"] = release.source.uri
    if release.source.commit:
        source["digest"] = {"gitCommit": release.source.commit}
        source["dirty"] = release.source.dirty
    if source:
        parameters["source"] = source
    return parameters


def _dependencies(release: Release) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if release.source.commit:
        source: dict[str, Any] = {"name": "source", "digest": {"gitCommit": release.source.commit}}
        if release.source.uri:
            source["uri"] = release.source.uri
        if release.source.dirty:
            source["annotations"] = {"dirty": True}
        found.append(source)
    if release.cargo_lock_sha256:
        found.append({"name": "Cargo.lock", "digest": {"sha256": release.cargo_lock_sha256}})
    packages: dict[DebianPackage, list[str]] = {}
    for image in release.images:
        annotations: dict[str, Any] = {"target": image.triple, "rootfsLayers": list(image.layers)}
        if image.plan_hash:
            annotations["planHash"] = image.plan_hash
        found.append(
            {
                "name": image.reference,
                "digest": {"sha256": image.image_id.removeprefix("sha256:")},
                "annotations": annotations,
            }
        )
        release_line = image.rustc.get("release")
        if release_line:
            rust: dict[str, Any] = {
                "name": f"rustc ({image.triple})",
                "uri": f"pkg:generic/rustc@{release_line}",
                "annotations": {"target": image.triple, "rustc -vV": dict(image.rustc)},
            }
            commit = image.rustc.get("commit-hash", "")
            if len(commit) == 40 and all(c in "0123456789abcdef" for c in commit):
                rust["digest"] = {"gitCommit": commit}
            found.append(rust)
        for package in image.packages:
            packages.setdefault(package, []).append(image.triple)
    found += [
        {"name": package.name, "uri": package.purl, "annotations": {"targets": triples}}
        for package, triples in sorted(packages.items())
    ]
    return found
