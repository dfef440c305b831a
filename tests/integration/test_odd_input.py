"""Odd input that used to end in an internal error: each is one `error: ... (hint: ...)` line with its exit code,
and no traceback. Deep nesting in the project's TOML files, a project directory whose name is not UTF-8, a
malformed registry login in Docker's client config."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .helpers import FIXTURES, X86_64, Cli, Result, single_error_line

pytestmark = pytest.mark.engine


def _only_error_line(result: Result) -> str:
    line = single_error_line(result)
    assert [text for text in result.stderr_lines if not text.startswith(" ")] == [line], result
    assert "internal error" not in line, result
    return line


def _project(tmp_path: Path, name: str = "odd") -> Path:
    project = tmp_path / name
    shutil.copytree(FIXTURES / "fetch-hostile", project)
    shutil.rmtree(project / ".cargo")
    return project


def test_a_5000_deep_array_in_cargo_toml(tmp_path: Path, cli: Cli) -> None:
    project = _project(tmp_path)
    with (project / "Cargo.toml").open("a", encoding="utf-8") as manifest:
        manifest.write("\n[package.metadata]\na = " + "[" * 5000 + "]" * 5000 + "\n")
    result = cli(["build", "--target", X86_64], cwd=project)
    line = _only_error_line(result)
    assert result.code == 3, result
    assert f"{project / 'Cargo.toml'}: nested too deeply" in line


def test_a_3000_deep_inline_table_in_xpcargo_toml(tmp_path: Path, cli: Cli) -> None:
    project = _project(tmp_path)
    (project / "xpcargo.toml").write_text("[build]\nenv = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n", "utf-8")
    result = cli(["build", "--target", X86_64], cwd=project)
    line = _only_error_line(result)
    assert result.code == 3, result
    assert f"{project / 'xpcargo.toml'}: nested too deeply" in line


def test_a_project_directory_whose_name_is_not_utf8(tmp_path: Path, cli: Cli) -> None:
    project = Path(os.fsdecode(os.fsencode(tmp_path) + b"/proj-\xff"))
    shutil.copytree(FIXTURES / "fetch-hostile", project)
    shutil.rmtree(project / ".cargo")
    result = cli(["build", "--target", X86_64], cwd=project)
    line = _only_error_line(result)
    assert result.code == 5, result
    assert "proj-\\xff` has a name that is not UTF-8" in line


@pytest.mark.parametrize("auth", ["!!notbase64", "bm9jb2xvbg=="])  # the second decodes, to no `user:password`
def test_a_malformed_login_in_dockers_client_config(tmp_path: Path, cli: Cli, auth: str) -> None:
    project = _project(tmp_path)
    config = tmp_path / "docker-config"
    config.mkdir()
    (config / "config.json").write_text(f'{{"auths": {{"registry.example": {{"auth": "{auth}"}}}}}}', "utf-8")
    result = cli(["build", "--target", X86_64], cwd=project, env={"DOCKER_CONFIG": str(config)})
    line = _only_error_line(result)
    assert result.code == 3, result
    assert f"{config / 'config.json'}: the `auth` of `auths.registry.example` is malformed" in line
    assert "start Docker" not in line


def test_a_fifo_and_a_socket_in_the_workspace_do_not_stop_verify(tmp_path: Path, xpcargo: Cli) -> None:
    """verify and dist build in copies of the workspace; copying a FIFO was an internal error (and reading one would
    block). Neither is anything a build reads: left out of the copies, as a remote engine is never sent one."""
    import socket  # noqa: PLC0415

    project = _project(tmp_path, "special")
    os.mkfifo(project / "pipe")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(project / "agent.sock"))
        result = xpcargo(["verify", "--target", X86_64], cwd=project, env={"SOURCE_DATE_EPOCH": "1700000000"})
    assert "internal error" not in result.stderr, result
    assert result.code == 0, result
