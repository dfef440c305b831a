"""The glibc floor, for real: the report and the multi-target summary state each artifact's GLIBC need; a
`glibc = "2.36"` floor links against bookworm's libc, so that the artifact needs no newer symbol and runs on glibc
2.36 itself (its own loader natively, qemu with the old libc for i686 and aarch64), while build scripts still link
against the image's own glibc.

The fixture (tests/fixtures/glibc-floor) calls strtol from C with _GNU_SOURCE: trixie's glibc 2.41 headers turn it
into __isoc23_strtol (GLIBC_2.38), bookworm's leave strtol (GLIBC_2.17); its `strlcpy` feature calls a function glibc
has only from 2.38 on, which a link against 2.36 cannot resolve."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.elf import inspect_file, version_key

from .helpers import AARCH64, I686, X86_64, Cli, base_environment, copy_fixture, single_error_line

pytestmark = pytest.mark.engine

_SYSROOT = resources.default_cache_dir(base_environment()) / "sysroots" / "glibc-2.36"
_ARCH = {X86_64: "amd64", I686: "i386", AARCH64: "arm64"}


def _readelf_glibc(path: Path) -> str | None:
    """binutils' answer, where the host has it: the newest GLIBC_ among the version needs."""
    if shutil.which("readelf") is None:
        return inspect_file(path).glibc
    output = subprocess.run(["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    versions = re.findall(r"Name: GLIBC_([0-9.]+)", output.partition("Version needs section")[2])
    return max(versions, key=version_key, default=None)


def _floor_env(triple: str, version: str) -> dict[str, str | None]:
    return {f"XPCARGO_TARGET_{triple.replace('-', '_').upper()}_GLIBC": version}


def test_the_report_and_the_summary_state_each_artifacts_glibc_need(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "glibc-floor")
    built = xpcargo(["build", "--target", X86_64, "--target", AARCH64], cwd=project)
    assert built.code == 0, built
    for triple in (X86_64, AARCH64):
        artifact = project / "target" / triple / "debug" / "glibc-probe"
        # The image's glibc 2.41 headers: strtol is the C23 one.
        assert _readelf_glibc(artifact) == "2.38"
        row = next(line for line in built.stderr_lines if f"target/{triple}/debug/glibc-probe" in line)
        assert "2.38 (floor 2.41)" in row, built
        reported = xpcargo(["report", "--target", triple, "--artifacts", "--json"], cwd=project)
        assert reported.code == 0, reported
        assert json.loads(reported.stdout) == [
            {
                "path": str(artifact),
                "kinds": ["bin"],
                "package_id": json.loads(reported.stdout)[0]["package_id"],
                "machine": {X86_64: "x86_64", AARCH64: "aarch64"}[triple],
                "glibc": "2.38",
                "static": False,
                "glibc_floor": "2.41",
            }
        ]
        table = xpcargo(["report", "--target", triple], cwd=project)
        assert table.stdout.splitlines()[-1].split() == [str(artifact), "2.38", "(floor", "2.41)"], table


@pytest.mark.parametrize("triple", [X86_64, I686, AARCH64])
def test_a_glibc_2_36_floor_needs_no_newer_symbol_and_runs_on_glibc_2_36(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, triple: str
) -> None:
    project = copy_fixture(tmp_path_factory, "glibc-floor")
    (project / "xpcargo.toml").write_text(f'[target.{triple}]\nglibc = "2.36"\n', encoding="utf-8")
    targets = xpcargo(["targets", "--target", triple, "--json"], cwd=project)
    assert json.loads(targets.stdout)[0]["glibc"] == "2.36", targets

    built = xpcargo(["build", "--target", triple], cwd=project)
    assert built.code == 0, built
    artifact = project / "target" / triple / "debug" / "glibc-probe"
    need = _readelf_glibc(artifact)
    assert need is not None
    assert version_key(need) <= (2, 36)
    assert inspect_file(artifact).glibc == need
    reported = xpcargo(["report", "--target", triple, "--artifacts", "--json"], cwd=project)
    assert [(entry["glibc"], entry["glibc_floor"]) for entry in json.loads(reported.stdout)] == [(need, "2.36")]

    # It runs on glibc 2.36 itself: the old loader and libc, not the image's.
    sysroot = _SYSROOT / _ARCH[triple]
    if triple == X86_64:
        command = [f"{sysroot}/lib64/ld-linux-x86-64.so.2", "--library-path", f"{sysroot}/lib/x86_64-linux-gnu"]
    else:
        command = [{I686: "qemu-i386", AARCH64: "qemu-aarch64"}[triple], "-L", str(sysroot)]
    ran = xpcargo(["shell", "--target", triple, "--", *command, str(artifact)], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout.splitlines() == ["strtol=42", "runs-on-glibc=2.36"]

    # Build scripts run on the image and are linked against its glibc: the floor's flags did not reach them,
    # even where the host and the target are one triple.
    scripts = list((project / "target" / "debug" / "build").glob("glibc-probe-*/build-script-build"))
    assert scripts
    for script in scripts:
        script_need = inspect_file(script).glibc
        assert script_need is not None
        assert version_key(script_need) > (2, 36), script

    # The link really is against 2.36: a function of glibc 2.38 is not there.
    newer = xpcargo(["build", "--target", triple, "--features", "strlcpy"], cwd=project)
    assert newer.code != 0, newer
    assert "undefined reference to `strlcpy'" in newer.stderr, newer


def test_without_the_floor_the_newer_function_links(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "glibc-floor")
    built = xpcargo(["run", "--target", AARCH64, "--features", "strlcpy"], cwd=project)
    assert built.code == 0, built
    assert "strlcpy=6" in built.stdout_lines, built


@pytest.mark.parametrize("version", ["2.17", "2.42"])
def test_a_floor_the_recipe_cannot_meet_is_refused_before_anything_runs(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, version: str
) -> None:
    project = copy_fixture(tmp_path_factory, "glibc-floor")
    result = cli(["build", "--target", AARCH64], cwd=project, env=_floor_env(AARCH64, version))
    assert result.code == 3, result
    assert single_error_line(result) == (
        f"error: glibc {version} for {AARCH64}: the recipe `trixie-rust` has no such floor for arm64 (hint: "
        f"supported floors for {AARCH64}: 2.36, 2.41 (the image's own); set `glibc` to one of them or remove it)"
    )
    assert not (project / "target").exists()
