"""The build-script protocol across the container boundary: the report agrees with what Cargo did and with what
dependents received, `links` overrides with a prebuilt library outside the workspace, failed builds and missing
reports."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .helpers import AARCH64, FIXTURES, Cli, Workspace, copy_fixture, single_error_line

pytestmark = pytest.mark.engine


def report_json(xpcargo: Cli, cwd: Path, triple: str) -> dict[str, dict[str, Any]]:
    result = xpcargo(["report", "--target", triple, "--json"], cwd=cwd)
    assert result.code == 0, result
    return {entry["package"]: entry for entry in json.loads(result.stdout)}


def test_metadata_in_report_is_what_the_dependent_received(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.built("dep-metadata", AARCH64)
    packages = report_json(xpcargo, crate.project, AARCH64)

    provider, consumer = packages["provider"], packages["consumer"]
    assert provider["links"] == "provider"
    assert Path(provider["out_dir"]).is_dir()
    received = (Path(consumer["out_dir"]) / "dep-env.txt").read_text().splitlines()
    assert received == sorted(f"DEP_PROVIDER_{key}={value}" for key, value in provider["metadata"].items())
    assert provider["metadata"]["ANSWER"] == "42"
    assert provider["metadata"]["GREETING"] == "hello-from-provider"
    assert provider["metadata"]["INCLUDE"] == f"{provider['out_dir']}/include"
    # Metadata reaches dependents only from a package with `links`; the consumer has none.
    assert consumer["links"] is None
    assert consumer["metadata"] == {}


def test_report_agrees_with_cargos_own_messages(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "zlib-sys")
    checked = xpcargo(["check", "--target", AARCH64, "--message-format=json"], cwd=project)
    assert checked.code == 0, checked
    executed = [
        message
        for message in map(json.loads, checked.stdout.splitlines())
        if message["reason"] == "build-script-executed"
    ]
    packages = report_json(xpcargo, project, AARCH64)

    assert {message["package_id"].rsplit("#", 1)[1].split("@")[0] for message in executed} == set(packages)
    for message in executed:
        name = message["package_id"].rsplit("#", 1)[1].split("@")[0]
        entry = packages[name]
        assert entry["out_dir"] == message["out_dir"]
        assert entry["linked_libs"] == message["linked_libs"]
        assert entry["linked_paths"] == message["linked_paths"]
        assert entry["cfgs"] == message["cfgs"]
        assert entry["env"] == dict(message["env"])
        assert entry["overridden"] is False
        # rust-analyzer reads these paths on the host.
        assert Path(message["out_dir"]).is_dir()
    zlib = packages["libz-sys"]
    assert zlib["links"] == "z"
    assert zlib["linked_libs"] == ["static=z"]
    assert Path(zlib["metadata"]["INCLUDE"], "zlib.h").is_file()


def _image_of(xpcargo: Cli, cwd: Path, triple: str) -> str:
    listing = xpcargo(["targets", "--json", "--target", triple], cwd=cwd)
    assert listing.code == 0, listing
    (entry,) = json.loads(listing.stdout)
    return str(entry["image"])


@pytest.fixture(scope="module")
def prebuilt_library(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> Path:
    """libprebuilt.a for aarch64, compiled by the image's cross compiler into a directory outside any workspace."""
    directory = tmp_path_factory.mktemp("prebuilt-aarch64")
    (directory / "prebuilt.c").write_text((FIXTURES / "links-override-lib" / "prebuilt.c").read_text())
    image = _image_of(xpcargo, directory, AARCH64)
    script = (
        "aarch64-linux-gnu-gcc -c -fPIC prebuilt.c -o prebuilt.o && aarch64-linux-gnu-ar crs libprebuilt.a prebuilt.o"
    )
    subprocess.run(
        ["docker", "run", "--rm", "--user", f"{os.getuid()}:{os.getgid()}", "--network", "none",
         "-v", f"{directory}:/work", "-w", "/work", image, "sh", "-c", script],
        check=True,
        capture_output=True,
    )  # fmt: skip
    assert (directory / "libprebuilt.a").is_file()
    return directory


@pytest.mark.parametrize("where", ["cargo-config", "xpcargo-toml"])
def test_links_override_with_prebuilt_library_outside_workspace(
    where: str, prebuilt_library: Path, tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "links-override")
    override = (
        'rustc-link-lib = ["static=prebuilt"]\n'
        f'rustc-link-search = ["native={prebuilt_library}"]\n'
        f'root = "{prebuilt_library}"\n'
    )
    if where == "cargo-config":
        (project / ".cargo").mkdir()
        (project / ".cargo" / "config.toml").write_text(f"[target.{AARCH64}.prebuilt]\n{override}")
    else:
        (project / "xpcargo.toml").write_text(f"[target.{AARCH64}.links.prebuilt]\n{override}")

    # The library is outside the checkout: the user consents (config.trust).
    ran = xpcargo(["run", "-q", "--target", AARCH64], cwd=project, env={"XPCARGO_TRUST": "1"})

    # The fixture's build script panics if it runs: this output proves it was overridden.
    assert ran.code == 0, ran
    assert ran.stdout_lines == ["prebuilt value=7", "arch=aarch64"]
    entry = report_json(xpcargo, project, AARCH64)["prebuilt-user"]
    assert entry["overridden"] is True
    assert entry["out_dir"] is None
    assert entry["links"] == "prebuilt"
    assert entry["linked_libs"] == ["static=prebuilt"]
    assert entry["linked_paths"] == [f"native={prebuilt_library}"]
    assert entry["metadata"] == {"ROOT": str(prebuilt_library)}


def test_malformed_directive_fails_like_cargo_and_leaves_no_report(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "bad-directive")

    built = xpcargo(["build", "--target", AARCH64], cwd=project)

    assert built.code == 101, built
    assert "invalid output in build script" in built.stderr, built
    assert "Unknown key: `no-such-key`" in built.stderr, built
    reported = xpcargo(["report", "--target", AARCH64], cwd=project)
    assert reported.code == 9, reported
    assert "failed" in single_error_line(reported)


def test_report_before_any_build_says_to_build_first(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")

    reported = xpcargo(["report", "--target", AARCH64, "--json"], cwd=project)

    assert reported.code == 9, reported
    assert f"xpcargo build --target {AARCH64}" in single_error_line(reported)
    assert reported.stdout == ""
