"""A real release, as the release pipelines of popular CLIs make it: ripgrep, exactly as crates.io publishes it (with
its own Cargo.lock), built in one command for the three triples such pipelines ship most (x86_64 and aarch64 musl,
static, and Windows): each binary prints its version under its emulator (none, qemu, wine), and `dist --no-verify`
packs the same archives twice (`verify` itself, the two builds compared, is tested on smaller crates for every
target: test_release, test_windows, test_musl).

ripgrep links jemalloc on musl, whose C code needs `__popcountdi2` (compiler-rt in the std, test_compiler_runtime)
and whose configure links C programs dynamically with aarch64's musl compiler (libgcc's outline atomics need a
`__getauxval` that musl's libc.so does not export: the target's CFLAGS turn them off)."""

from __future__ import annotations

import hashlib
import io
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .helpers import AARCH64_MUSL, WINDOWS, X86_64_MUSL, Cli
from .test_musl import MUSL_TARGETS, static_elf_problems

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.std_images(X86_64_MUSL, AARCH64_MUSL, WINDOWS)]

RIPGREP = "15.2.0"
# The checksum crates.io's index records for the .crate (index.crates.io/ri/pg/ripgrep).
RIPGREP_SHA256 = "a30750b6d0743bfdd2656ebbaf4555aa278c43144b84bc389bcbfa399485ec71"

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
# PE: the "MZ" stub points at "PE\0\0", then the COFF machine (0x8664: AMD64).
_PE_AMD64 = 0x8664


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


RELEASE_TARGETS = (X86_64_MUSL, AARCH64_MUSL, WINDOWS)
ARCHIVES = sorted([f"rg-{X86_64_MUSL}.tar.gz", f"rg-{AARCH64_MUSL}.tar.gz", f"rg-{WINDOWS}.zip"])
# As a release pipeline builds: reproducibly, which is how `dist` builds too, so that its build finds everything done
# (a build with other flags would rebuild all three).
RELEASE = ["--release", "--locked", "--reproducible"]


def test_ripgrep_for_the_three_release_triples_prints_its_version_and_packs_reproducibly(
    ripgrep: Path, xpcargo: Cli
) -> None:
    targets = [word for target in RELEASE_TARGETS for word in ("--target", target)]
    # Three release builds one after another (they share the target dir's build lock): 5 to 10 min on two cores,
    # more when the other test process compiles too; the timeout only guards against a hang.
    built = xpcargo(["build", *RELEASE, *targets], cwd=ripgrep, env=EPOCH, timeout=2400)
    assert built.code == 0, built
    for target in (X86_64_MUSL, AARCH64_MUSL):
        assert static_elf_problems(ripgrep / "target" / target / "release" / "rg", MUSL_TARGETS[target]) == []
    assert_amd64_program((ripgrep / "target" / WINDOWS / "release" / "rg.exe").read_bytes())
    for target in RELEASE_TARGETS:
        ran = xpcargo(["run", *RELEASE, "--target", target, "--", "--version"], cwd=ripgrep, env=EPOCH)
        assert ran.code == 0, ran
        assert ran.stdout_lines[0].startswith(f"ripgrep {RIPGREP}"), ran

    first, second = (_dist(xpcargo, ripgrep, name, targets) for name in ("first", "second"))
    assert sorted(path.name for path in first.glob("rg-*")) == ARCHIVES, sorted(first.iterdir())
    # The provenance records each run's own invocation (its --out-dir): the rest is the same bytes.
    for name in [*ARCHIVES, "sha256.sum", "dist-manifest.json"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    with zipfile.ZipFile(first / f"rg-{WINDOWS}.zip") as archive:
        assert archive.namelist() == ["rg.exe"]
        assert_amd64_program(archive.read("rg.exe"))


def assert_amd64_program(data: bytes) -> None:
    pe_offset = int.from_bytes(data[0x3C:0x40], "little")
    assert data[:2] == b"MZ"
    assert data[pe_offset : pe_offset + 4] == b"PE\0\0"
    assert int.from_bytes(data[pe_offset + 4 : pe_offset + 6], "little") == _PE_AMD64


def _dist(xpcargo: Cli, project: Path, name: str, targets: list[str]) -> Path:
    out = project.parent / "dist" / name
    packed = xpcargo(["dist", "--no-verify", "--out-dir", str(out), *targets, "--locked"], cwd=project, env=EPOCH)
    assert packed.code == 0, packed
    return out
