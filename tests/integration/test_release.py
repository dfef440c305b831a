"""Reproducible releases against the real engine: `verify` passes for deterministic crates on every target and
names what differs for a planted non-reproducible one; `dist` from two checkouts gives the same bytes, checksums that
`sha256sum -c` accepts, and provenance that follows the in-toto and SLSA rules and matches the files."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from unit.slsa_rules import check_statement

from .helpers import (
    AARCH64,
    CORE_TARGETS,
    X86_64,
    Cli,
    assert_verified_same,
    copy_fixture,
    remove_kept_builds,
    single_error_line,
)

pytestmark = pytest.mark.engine

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}


@pytest.mark.parametrize("triple", CORE_TARGETS)
@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_verify_passes_for_deterministic_crates(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str, triple: str
) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    assert_verified_same(xpcargo(["verify", "--target", triple, "--release"], cwd=project, env=EPOCH))


def test_verify_names_a_planted_difference(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "non-reproducible")
    verified = xpcargo(["verify", "--target", AARCH64, "--release"], cwd=project, env=EPOCH)
    assert verified.code == 12, verified
    assert "release/stamped differs from byte " in verified.stdout, verified
    assert verified.stderr_lines[-1].startswith("error: 1 of 1 artifacts differ"), verified
    assert "release/stamped" in verified.stderr_lines[-1]
    # Both builds are kept, in directories of their own that the error names.
    remove_kept_builds(verified)


def test_verify_without_an_epoch_says_how_to_set_one(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    verified = xpcargo(["verify", "--target", AARCH64], cwd=project, env={"SOURCE_DATE_EPOCH": None})
    assert verified.code == 5, verified
    assert "SOURCE_DATE_EPOCH" in verified.stderr_lines[-1]


def test_a_release_without_a_lock_file_says_it_is_locked_and_how_to_make_one(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """Cargo would say "because --locked was passed", a flag the user never passed, about a copy's Cargo.lock."""
    project = copy_fixture(tmp_path_factory, "bin-exe")
    (project / "Cargo.lock").unlink()
    expected = (
        "error: release builds (dist, verify, --reproducible) are locked (Cargo's --locked, added by xpcargo), and "
        f"{project.resolve()} has no Cargo.lock (hint: create it with `xpcargo shell --target {X86_64} -- cargo "
        "generate-lockfile` (or `cargo generate-lockfile` on the host), commit it, and run again)"
    )
    for command in ("verify", "dist", "build --reproducible"):
        refused = xpcargo([*command.split(), "--target", X86_64, "--release"], cwd=project, env=EPOCH)
        assert refused.code == 5, refused
        assert single_error_line(refused) == expected, refused
        assert "--locked was passed" not in refused.stderr, refused
    assert not (project / "Cargo.lock").exists()
    # The hint's own command makes it, and the release builds.
    made = xpcargo(["shell", "--target", X86_64, "--", "cargo", "generate-lockfile"], cwd=project)
    assert made.code == 0, made
    assert (project / "Cargo.lock").is_file()
    assert_verified_same(xpcargo(["verify", "--target", X86_64, "--release"], cwd=project, env=EPOCH))


def _dist(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, name: str) -> Path:
    # Another directory name and depth each time: the checkout's path must not reach the archives.
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    moved = project.parent / name / "deeper" / "seed-c-lib"
    moved.parent.mkdir(parents=True)
    shutil.move(project, moved)
    built = xpcargo(["dist", "--target", X86_64, "--target", AARCH64], cwd=moved, env=EPOCH)
    assert built.code == 0, built
    return moved / "target" / "dist"


def test_dist_is_byte_reproducible_with_checksums_and_provenance(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    first, second = _dist(tmp_path_factory, xpcargo, "one"), _dist(tmp_path_factory, xpcargo, "checkout-two")
    archives = sorted(path.name for path in first.glob("*.tar.gz"))
    assert archives == [f"hello-world-from-c-{AARCH64}.tar.gz", f"hello-world-from-c-{X86_64}.tar.gz"]
    for name in [*archives, "sha256.sum", "dist-manifest.json"]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    checked = subprocess.run(["sha256sum", "-c", "sha256.sum"], cwd=first, capture_output=True, text=True, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    statement = json.loads((first / "provenance.intoto.json").read_text(encoding="utf-8"))
    check_statement(statement)
    subjects = {subject["name"]: subject["digest"]["sha256"] for subject in statement["subject"]}
    assert subjects == {name: hashlib.sha256((first / name).read_bytes()).hexdigest() for name in archives}
    definition = statement["predicate"]["buildDefinition"]
    assert definition["internalParameters"]["sourceDateEpoch"] == 1700000000
    dependencies = definition["resolvedDependencies"]
    lock = next(entry for entry in dependencies if entry["name"] == "Cargo.lock")
    assert lock["digest"]["sha256"] == hashlib.sha256((first.parents[1] / "Cargo.lock").read_bytes()).hexdigest()
    images = [entry for entry in dependencies if entry["name"].startswith("xpcargo/")]
    assert {entry["annotations"]["target"] for entry in images} == {X86_64, AARCH64}
    for entry in images:
        inspected = json.loads(
            subprocess.run(["docker", "image", "inspect", entry["name"]], capture_output=True, check=True).stdout
        )[0]
        assert entry["digest"]["sha256"] == inspected["Id"].removeprefix("sha256:")
        assert entry["annotations"]["rootfsLayers"] == inspected["RootFS"]["Layers"]
        assert entry["name"].endswith(":" + entry["annotations"]["planHash"][:16])
    packages = [entry for entry in dependencies if entry.get("uri", "").startswith("pkg:deb/debian/")]
    assert any(entry["name"] == "gcc-aarch64-linux-gnu" for entry in packages)
    assert any(entry.get("uri", "").startswith("pkg:generic/rustc@1.96.0") for entry in dependencies)
