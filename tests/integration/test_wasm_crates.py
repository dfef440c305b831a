"""Acceptance for wasm32-wasip1, as a new user would try it: the own test suites of crates.io's current releases of
itoa, semver, serde_json and zstd pass under `xpcargo test --target wasm32-wasip1` (unit, integration and doc tests,
under Node's WASI through xpcargo's runner). Each crate is the .crate from static.crates.io, checked against the
sha256 that crates.io's index gives for it (and pinned here: a new release is a change of this file), unpacked, with
the lock file it ships (each of the four ships one; a crate without would get one from the host's Cargo).

What cannot pass on this target is skipped by name, each with its reason: a test that needs a socket and a thread
(WASI preview 1 has neither), a test that catches a panic (wasm32-wasip1 aborts on panic), and zstd's unit tests that
read files its package leaves out. The expected counts make a run that skips more than that fail."""

from __future__ import annotations

import shutil
import subprocess
import tarfile

import pytest

from .helpers import WASM32, Cli, Release, Result, crates_io_crate, crates_io_release

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

ITOA = Release("itoa", "1.0.19", "3bd1574e617a9a6c1f8f8181bd7e841e1f20e4277607ef28945765188d6284d4")
SEMVER = Release("semver", "1.0.28", "8a7852d02fc848982e0c167ef163aaff9cd91dc640ba85e263cb1ce46fae51cd")
SERDE_JSON = Release("serde_json", "1.0.154", "e7e9cc8b1b85264074fbcc02a88680c4096b1e47df8f739dceb03bf482f04bd6")
ZSTD = Release("zstd", "0.14.5", "465cb081cac3a28a84ef547702dba1fe0f4a9f22e4e57a0b675ceee028c2af80")
# zstd's unit tests compress zstd-sys's bindings as "some long text"; the version and sha256 are zstd's Cargo.lock's.
ZSTD_SYS = Release("zstd-sys", "2.2.0+zstd.1.6.0", "c3f4089cda6dda4dc43c43dd9f8964140064fd2f752f3da46c3a483c3c175160")


def _counts(result: Result) -> tuple[int, int]:
    """How many test runs reported, and how many tests passed in all; asserts that none failed."""
    summaries = [line for line in result.stdout_lines if line.startswith("test result: ")]
    assert all(line.startswith("test result: ok.") for line in summaries), result
    return len(summaries), sum(int(line.split()[3]) for line in summaries)


# The test runs that report and the tests that pass: itoa's unit tests (none), tests/test.rs and its doc tests.
@pytest.mark.parametrize(("release", "counts"), [(ITOA, (3, 13)), (SEMVER, (6, 38))], ids=["itoa", "semver"])
def test_a_whole_suite_passes(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, release: Release, counts: tuple[int, int]
) -> None:
    project = crates_io_release(release, tmp_path_factory)
    result = xpcargo(["test", "--target", WASM32], cwd=project)
    assert result.code == 0, result
    assert _counts(result) == counts, result
    assert f"Doc-tests {release.name}" in result.stderr, result


def test_serde_json(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = crates_io_release(SERDE_JSON, tmp_path_factory)
    # test_deserialize_from_stream binds a TCP listener and serves it from a thread: WASI preview 1 has neither
    # (`TcpListener::bind` fails, and the test panics). Its compile tests (trybuild) are ignored off nightly.
    result = xpcargo(["test", "--target", WASM32, "--", "--skip", "test_deserialize_from_stream"], cwd=project)
    assert result.code == 0, result
    assert _counts(result) == (9, 239), result
    assert "1 filtered out" in result.stdout, result
    assert "Doc-tests serde_json" in result.stderr, result


def test_zstd(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = crates_io_release(ZSTD, tmp_path_factory)
    # zstd's C library is compiled by clang for wasm32 (zstd-sys through the cc crate), its own tests run as shipped.
    integration = xpcargo(["test", "--target", WASM32, "--test", "*"], cwd=project)
    assert integration.code == 0, integration
    assert _counts(integration) == (9, 20), integration
    doc = xpcargo(["test", "--target", WASM32, "--doc"], cwd=project)
    assert doc.code == 0, doc
    assert _counts(doc) == (1, 10), doc

    # The unit tests do not compile from the package, on any target: they include two files it leaves out.
    missing = xpcargo(["test", "--target", WASM32, "--lib", "--no-run"], cwd=project)
    assert missing.code == 101, missing
    assert "couldn't read `src/stream/../../assets/example.txt.zst`" in missing.stderr, missing
    # Put back as the repository has them: the CLI's compression of the example, zstd-sys's bindings (any long text).
    zstd_cli = shutil.which("zstd")
    assert zstd_cli is not None, "the host needs the zstd program to make assets/example.txt.zst"
    subprocess.run(
        [zstd_cli, "-q", "-f", "assets/example.txt", "-o", "assets/example.txt.zst"], cwd=project, check=True
    )
    crates_io_crate(ZSTD_SYS, project.parent)
    bindings = project / "zstd-safe" / "zstd-sys" / "src" / "bindings_zstd.rs"
    bindings.parent.mkdir(parents=True)
    with tarfile.open(project.parent / f"zstd-sys-{ZSTD_SYS.version}.crate", "r:gz") as archive:
        member = archive.extractfile(f"zstd-sys-{ZSTD_SYS.version}/src/bindings_zstd.rs")
        assert member is not None
        bindings.write_bytes(member.read())
    skipped = [
        # Reads assets/example.txt.v5.zst to .v8.zst (the legacy formats), which the package leaves out too.
        "test_legacy",
        # Each catches a panic (catch_unwind, or #[should_panic]): wasm32-wasip1 aborts on panic, which ends the run.
        "test_noop_reads_the_capacity_once",
        "test_auto_wrappers_panicking_writer",
        "test_auto_wrappers_panic_while_unwinding",
        "test_write_after_try_finish",
    ]
    args = [word for name in skipped for word in ("--skip", name)]
    unit = xpcargo(["test", "--target", WASM32, "--lib", "--", *args], cwd=project)
    assert unit.code == 0, unit
    assert _counts(unit) == (1, 63), unit
    assert "5 filtered out" in unit.stdout, unit
