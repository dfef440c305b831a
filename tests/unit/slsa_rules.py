"""The field rules of an in-toto Statement v1 with a SLSA provenance v1 predicate, as checks (there is no validator
to download): what each field must be, per the in-toto attestation spec (Statement, ResourceDescriptor) and the SLSA
v1.0 provenance spec. Used by the unit tests and the integration tests alike."""

from __future__ import annotations

import datetime
import re
from typing import Any
from urllib.parse import urlparse

_HEX = re.compile(r"^[0-9a-f]+$")
# Lengths of the hex digests the spec names.
_DIGEST_LENGTHS = {"sha256": 64, "sha512": 128, "sha1": 40, "gitCommit": (40, 64)}
_DESCRIPTOR_FIELDS = {"name", "uri", "digest", "content", "downloadLocation", "mediaType", "annotations"}


def _is_uri(text: object) -> bool:
    return isinstance(text, str) and bool(urlparse(text).scheme) and " " not in text


def _check_digest(digest: object, where: str) -> None:
    assert isinstance(digest, dict), f"{where}: digest must be a map"
    assert digest, f"{where}: digest must not be empty"
    for algorithm, value in digest.items():
        assert isinstance(algorithm, str), f"{where}: digest algorithm {algorithm!r}"
        assert isinstance(value, str), f"{where}: digest {algorithm!r}"
        expected = _DIGEST_LENGTHS.get(algorithm)
        if expected is not None:
            lengths = expected if isinstance(expected, tuple) else (expected,)
            assert len(value) in lengths, f"{where}: bad {algorithm} {value!r}"
            assert _HEX.match(value), f"{where}: bad {algorithm} {value!r}"


def check_resource_descriptor(descriptor: object, where: str) -> None:
    assert isinstance(descriptor, dict), f"{where}: a ResourceDescriptor is an object"
    unknown = set(descriptor) - _DESCRIPTOR_FIELDS
    assert not unknown, f"{where}: unknown fields {unknown}"
    assert {"uri", "digest", "content"} & set(descriptor), f"{where}: needs one of uri, digest, content"
    if "uri" in descriptor:
        assert _is_uri(descriptor["uri"]), f"{where}: uri {descriptor['uri']!r} is not a URI"
    if "digest" in descriptor:
        _check_digest(descriptor["digest"], where)
    if "name" in descriptor:
        assert isinstance(descriptor["name"], str), f"{where}: name"
        assert descriptor["name"], f"{where}: name"
    if "annotations" in descriptor:
        assert isinstance(descriptor["annotations"], dict), f"{where}: annotations must be a map"


def _check_timestamp(value: object, where: str) -> datetime.datetime:
    assert isinstance(value, str), f"{where}: a timestamp is a string"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$", value), f"{where}: not RFC 3339"
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def check_statement(statement: Any) -> None:
    """Raise AssertionError naming the first rule the statement breaks."""
    assert isinstance(statement, dict)
    assert set(statement) == {"_type", "subject", "predicateType", "predicate"}, sorted(statement)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    subjects = statement["subject"]
    assert isinstance(subjects, list), "subject must be a list"
    assert subjects, "subject must not be empty"
    for index, subject in enumerate(subjects):
        where = f"subject[{index}]"
        check_resource_descriptor(subject, where)
        assert "digest" in subject, f"{where}: a subject needs a digest"
        assert isinstance(subject.get("name"), str), f"{where}: a subject needs a name"
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    predicate = statement["predicate"]
    assert isinstance(predicate, dict)
    assert set(predicate) <= {"buildDefinition", "runDetails"}
    definition = predicate["buildDefinition"]
    assert set(definition) <= {"buildType", "externalParameters", "internalParameters", "resolvedDependencies"}
    assert _is_uri(definition["buildType"]), "buildType must be a TypeURI"
    assert isinstance(definition["externalParameters"], dict), "externalParameters is a required object"
    assert isinstance(definition.get("internalParameters", {}), dict)
    for index, dependency in enumerate(definition.get("resolvedDependencies", [])):
        check_resource_descriptor(dependency, f"resolvedDependencies[{index}]")
    details = predicate["runDetails"]
    assert set(details) <= {"builder", "metadata", "byproducts"}
    builder = details["builder"]
    assert set(builder) <= {"id", "version", "builderDependencies"}
    assert _is_uri(builder["id"]), "builder.id must be a TypeURI"
    version = builder.get("version", {})
    assert isinstance(version, dict), "builder.version is a map"
    assert all(isinstance(v, str) for v in version.values()), "builder.version: map of strings"
    metadata = details.get("metadata", {})
    assert set(metadata) <= {"invocationId", "startedOn", "finishedOn"}
    if "startedOn" in metadata and "finishedOn" in metadata:
        started = _check_timestamp(metadata["startedOn"], "startedOn")
        finished = _check_timestamp(metadata["finishedOn"], "finishedOn")
        assert started <= finished, "startedOn after finishedOn"
