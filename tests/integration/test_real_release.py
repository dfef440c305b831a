"""A real release, as the release pipelines of popular CLIs make it: ripgrep, exactly as crates.io publishes it (with
its own Cargo.lock), built in one command for the triples those pipelines ship most: static musl for x86_64 (whose
ripgrep links jemalloc, C code built by its own configure and make) and aarch64. Each binary is static and prints its
version under its emulator, and `dist --no-verify` packs the same bytes twice (`verify` itself, the two builds
compared, is tested on smaller crates for every target: test_release, test_musl)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
from pathlib import Path

import pytest

from .helpers import Cli
from .test_musl import MUSL_TARGETS, static_elf_problems

pytestmark = pytest.mark.engine

RIPGREP = "15.2.0"
# The checksum crates.io's index records for the .crate (index.crates.io/ri/pg/ripgrep).
RIPGREP_SHA256 = "a30750b6d0743bfdd2656ebbaf4555aa278c43144b84bc389bcbfa399485ec71"
RELEASE_TARGETS = ("x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl")
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.fixture(scope="module")
def ripgrep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ripgrep's published crate, unpacked. Under a path without a space: jemalloc's configure, which ripgrep's
    musl builds run, refuses an installation prefix with one (`configure: error: Prefix should not contain spaces`),
    with plain Cargo too."""
    url = f"https://static.crates.io/crates/ripgrep/ripgrep-{RIPGREP}.crate"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    assert hashlib.sha256(data).hexdigest() == RIPGREP_SHA256, "crates.io served other bytes than its index names"
    where = tmp_path_factory.mktemp("real-release")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as crate:
        crate.extractall(where, filter="data")
    return where / f"ripgrep-{RIPGREP}"


def test_ripgrep_builds_for_the_release_triples_and_runs(ripgrep: Path, xpcargo: Cli) -> None:
    targets = [argument for triple in RELEASE_TARGETS for argument in ("--target", triple)]
    built = xpcargo(["build", "--release", "--locked", *targets], cwd=ripgrep, env=EPOCH)
    assert built.code == 0, built
    for triple in RELEASE_TARGETS:
        binary = ripgrep / "target" / triple / "release" / "rg"
        assert static_elf_problems(binary, MUSL_TARGETS[triple]) == [], binary
        ran = xpcargo(["run", "--release", "--locked", "--target", triple, "--", "--version"], cwd=ripgrep, env=EPOCH)
        assert ran.code == 0, ran
        assert ran.stdout_lines[0].startswith(f"ripgrep {RIPGREP}"), ran

    first = _dist(xpcargo, ripgrep, "first")
    second = _dist(xpcargo, ripgrep, "second")
    assert sorted(path.name for path in first.iterdir()) == sorted(path.name for path in second.iterdir())
    for triple in RELEASE_TARGETS:
        assert (first / f"rg-{triple}.tar.gz").is_file(), sorted(first.iterdir())
    for path in first.iterdir():
        assert path.read_bytes() == (second / path.name).read_bytes(), path.name


def _dist(xpcargo: Cli, project: Path, name: str) -> Path:
    out = project.parent / "dist" / name
    targets = [argument for triple in RELEASE_TARGETS for argument in ("--target", triple)]
    packed = xpcargo(["dist", "--no-verify", "--out-dir", str(out), *targets, "--locked"], cwd=project, env=EPOCH)
    assert packed.code == 0, packed
    return out
