"""A project's files are untrusted input: what a hostile project or build script can reach, tried for real."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .helpers import FIXTURES, X86_64, Cli, copy_fixture, single_error_line

pytestmark = pytest.mark.engine

DOCKER_SOCKET = Path("/var/run/docker.sock")


def test_a_links_override_cannot_mount_the_engines_socket(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(
        f'[target.{X86_64}.sqlite]\nsocket = "{DOCKER_SOCKET}"\n', encoding="utf-8"
    )
    result = cli(["build", "--target", X86_64], cwd=project)
    line = single_error_line(result)
    assert result.code == 3, result
    # The refusal names the override and the file that set it (config.trust).
    assert (
        f"refusing to mount `{DOCKER_SOCKET}` (asked for by a `links` override `[target.{X86_64}.sqlite]` in " in line
    )
    assert str(project / ".cargo" / "config.toml") in line, result


@pytest.mark.parametrize("path", ["/", "/run", "/proc", "/dev/null", "/var"])
def test_mounts_that_reach_the_host_are_refused(tmp_path_factory: pytest.TempPathFactory, cli: Cli, path: str) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    (project / "xpcargo.toml").write_text(f'[build]\nmounts = ["{path}"]\n', encoding="utf-8")
    result = cli(["build", "--target", X86_64], cwd=project)
    assert result.code == 3, result
    assert "refusing to mount" in single_error_line(result), result


def test_a_project_cannot_bring_its_own_recipe(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    (project / "evil.yaml").write_text("suite: trixie\nmirror: http://127.0.0.1/evil [trusted=yes]\n", encoding="utf-8")
    (project / "xpcargo.toml").write_text(f'[target.{X86_64}]\nrecipe = "../../{project.name}/evil"\n')
    result = cli(["build", "--target", X86_64], cwd=project)
    assert result.code == 3, result
    assert "is not a recipe name" in single_error_line(result), result


def test_a_build_script_reaches_no_credentials_no_socket_and_no_privilege(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    root = tmp_path_factory.mktemp("probe")
    project = root / "hostile-probe"
    shutil.copytree(FIXTURES / "hostile-probe", project)
    outside = root / "outside"
    (outside / "src").mkdir(parents=True)
    (outside / "Cargo.toml").write_text('[package]\nname = "outside"\nversion = "0.1.0"\nedition = "2021"\n')
    (outside / "src" / "lib.rs").write_text("")
    manifest = project / "Cargo.toml"
    manifest.write_text(
        manifest.read_text().replace("[dependencies]", '[dependencies]\noutside = { path = "../outside" }')
    )
    (project / "Cargo.lock").unlink()
    (project / "xpcargo.toml").write_text(f'[build]\nenv = {{ PROBE_OUTSIDE = "{outside}" }}\n')
    home = Path(str(xpcargo.env["CARGO_HOME"]))
    credentials = home / "credentials.toml"
    credentials.write_text('[registry]\ntoken = "s3cret-token"\n', encoding="utf-8")
    try:
        # XPCARGO_TRUST: the user consents to the path dependency outside the checkout; it still stays read-only.
        result = xpcargo(
            ["run", "--target", X86_64], cwd=project, env={"CARGO_REGISTRY_TOKEN": "s3cret-env", "XPCARGO_TRUST": "1"}
        )
    finally:
        credentials.unlink()
    assert result.code == 0, result
    probe = dict(line.split("=", 1) for line in result.stdout.split())
    assert probe == {
        "credentials_file_has_token": "false",
        "token_in_env": "false",
        "cargo_home_writable": "false",
        "outside_writable": "false",
        "docker_socket_visible": "false",
        "CapEff": "0000000000000000",
        "NoNewPrivs": "1",
    }, result
    assert not (home / "probe-was-here").exists()
    assert not (outside / "probe-was-here").exists()


_LINKING_BUILD_SCRIPT = r"""
use std::{env, fs, os::unix::fs::symlink, path::PathBuf};

fn main() {
    // Where this machine writes the report after the build: swapped for a link to a place of the attacker's choice.
    let own = PathBuf::from(env::var("CARGO_TARGET_DIR").unwrap()).join("xpcargo");
    let _ = fs::remove_dir_all(&own);
    symlink(env::var("CANARY").unwrap(), &own).unwrap();
    println!("cargo:rerun-if-changed=build.rs");
}
"""


def test_a_build_that_links_xpcargos_directory_elsewhere_gets_no_report_written_there(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    root = tmp_path_factory.mktemp("relink")
    canary = root / "canary"
    canary.mkdir()
    project = root / "relink"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text('[package]\nname = "relink"\nversion = "0.1.0"\nedition = "2021"\n')
    (project / "src" / "main.rs").write_text("fn main() {}\n")
    (project / "build.rs").write_text(_LINKING_BUILD_SCRIPT)
    (project / "xpcargo.toml").write_text(f'[build]\nenv = {{ CANARY = "{canary}" }}\n')

    result = xpcargo(["build", "--target", X86_64], cwd=project)

    line = single_error_line(result)
    assert result.code == 5, result
    assert "is a symbolic link in the project" in line, result
    assert list(canary.iterdir()) == [], "this machine wrote the build's report through the build's link"
