"""Wrong input gets one line: `error: ` with what was wrong and what to do, a non-zero exit code, no traceback."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from .helpers import (
    AARCH64,
    PLAN_LABEL,
    REPO,
    X86_64,
    Cli,
    Result,
    copy_fixture,
    docker,
    run_cli,
    single_error_line,
    xpcargo_image_tags,
)

# These fail before any toolchain image is needed (the last one builds a broken image of its own), so they take
# the `cli` fixture and do not wait for the images.
pytestmark = pytest.mark.engine


def only_error_line(result: Result) -> str:
    """The whole of stderr is a single `error: ` line."""
    line = single_error_line(result)
    assert result.stderr_lines == [line], result
    return line


def test_unknown_target_suggests_the_closest(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    result = cli(["build", "--target", "aarch64-unknown-linux-gnux"], cwd=project)
    line = only_error_line(result)
    assert result.code == 4, result
    assert "`aarch64-unknown-linux-gnux`" in line
    assert "did you mean `aarch64-unknown-linux-gnu`?" in line


def test_missing_target_option(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    result = cli(["build"], cwd=project)
    line = only_error_line(result)
    assert "--target" in line


@pytest.mark.parametrize(
    ("original", "broken", "field", "problem"),
    [
        pytest.param(
            "    cc: aarch64-linux-gnu-gcc\n",
            "    cc: [aarch64-linux-gnu-gcc]\n",
            f"targets.{AARCH64}.cc",
            "expected a non-empty string",
            id="wrong-type",
        ),
        pytest.param(
            "    linker: aarch64-linux-gnu-gcc\n",
            "    linkr: aarch64-linux-gnu-gcc\n",
            # Either the misspelt key or the missing one it stands for is named, as long as `linker` is mentioned.
            f"targets.{AARCH64}.link",
            "linker",
            id="misspelt-key",
        ),
        pytest.param(
            "    debian-arch: arm64\n",
            "    debian-arch: arm64\n    emulator: qemu-aarch64\n",
            f"targets.{AARCH64}.emulator",
            "unknown field",
            id="unknown-key",
        ),
    ],
)
def test_malformed_toolchains_file(
    tmp_path_factory: pytest.TempPathFactory,
    cli: Cli,
    tmp_path: Path,
    *,
    original: str,
    broken: str,
    field: str,
    problem: str,
) -> None:
    text = (REPO / "toolchains.yaml").read_text(encoding="utf-8")
    # Only the aarch64 entry is changed: the other targets' identical lines must stay as they are.
    head, entry = text.split(f"  {AARCH64}:\n", 1)
    assert original in entry, f"toolchains.yaml changed: {original!r} is not in the {AARCH64} entry"
    toolchains = tmp_path / "broken-toolchains.yaml"
    toolchains.write_text(f"{head}  {AARCH64}:\n" + entry.replace(original, broken, 1), encoding="utf-8")

    project = copy_fixture(tmp_path_factory, "seed-codegen")
    result = cli(["build", "--target", AARCH64], cwd=project, env={"XPCARGO_TOOLCHAINS": str(toolchains)})
    line = only_error_line(result)
    assert result.code == 3, result
    assert str(toolchains) in line, "the message must name the file"
    assert field in line, "the message must name the target and the field"
    assert problem in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param(f"[target.{X86_64}\nenv = {{}}\n", "not valid TOML", id="not-toml"),
        pytest.param(
            f'[target.{X86_64}]\nextra-package = ["make"]\n',
            f"target.{X86_64}.extra-package: unknown field (did you mean `extra-packages`?)",
            id="misspelt-key",
        ),
        pytest.param(
            f'[target.{X86_64}]\nenv = "GREETING=hi"\n', f"target.{X86_64}.env: expected a table", id="wrong-type"
        ),
        pytest.param(
            f'[target.{X86_64}]\nmounts = ["relative/dir"]\n', "`relative/dir` is not an absolute path", id="mount"
        ),
    ],
)
def test_malformed_project_config(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, content: str, expected: str
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    (project / "xpcargo.toml").write_text(content, encoding="utf-8")
    result = cli(["build", "--target", X86_64], cwd=project)
    line = only_error_line(result)
    assert result.code == 3, result
    assert str(project / "xpcargo.toml") in line
    assert expected in line


def test_no_cargo_manifest(tmp_path: Path, cli: Cli) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = cli(["build", "--target", X86_64], cwd=empty)
    line = only_error_line(result)
    assert result.code == 5, result
    assert "could not find `Cargo.toml`" in line
    assert str(empty) in line


def test_legacy_build_command(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "legacy-build-command")
    result = cli(["build", "--target", X86_64], cwd=project)
    line = only_error_line(result)
    assert result.code == 5, result
    assert 'build = "make"' in line
    assert "build script" in line


def test_engine_unreachable(tmp_path_factory: pytest.TempPathFactory, cli: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    result = cli(["build", "--target", X86_64], cwd=project, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    line = only_error_line(result)
    assert result.code == 6, result
    assert "unix:///nonexistent/docker.sock" in line
    assert "start Docker" in line
    assert "or Podman" in line
    assert "DOCKER_HOST" in line


def _images_of_plan(plan: str) -> set[str]:
    """The images in the engine, tagged or not, built for ``plan`` (the plan label of every xpcargo image)."""
    return set(docker("images", "-a", "--filter", f"label={PLAN_LABEL}={plan}", "-q", "--no-trunc").split())


def test_image_build_failure_quotes_apt_and_tags_nothing(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """Once the shared images exist (the ``xpcargo`` fixture): on an empty engine, the command would build and tag
    the base and the target's layer itself, which is right, and not what this test is about."""
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    (project / "xpcargo.toml").write_text(
        f'[target.{X86_64}]\nextra-packages = ["xpcargo-no-such-package"]\n', encoding="utf-8"
    )
    # The image the project's plan names, and its plan: what the failed build must not leave (the engine may be
    # building other images meanwhile, the std-from-source ones among them, which are not this test's to count).
    planned = xpcargo(["targets", "--target", X86_64, "--json"], cwd=project)
    assert planned.code == 0, planned
    (plan,) = json.loads(planned.stdout)
    result = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_RETRY_WAIT": "0"})
    line = single_error_line(result)
    # The image build's progress comes first; the error is the last line.
    assert result.stderr_lines[-1] == line, result
    assert result.code == 8, result
    # Only the project's own layer is built (and fails): the base and the target's layer are the shared ones.
    assert "step `extra-packages layer`" in line, result
    # A package that does not exist is no mirror trouble: it fails at once, without retries.
    assert "trying again" not in result.stderr, result
    assert "Unable to locate package xpcargo-no-such-package" in line, result
    assert result.stdout == "", result
    assert plan["image"] not in xpcargo_image_tags(), "a failed build left a tagged image"
    assert _images_of_plan(plan["plan"]) == set(), "a failed build left an image behind"
    assert not (project / "target" / X86_64).exists(), "Cargo ran although there was no image"


def test_a_new_target_dir_on_a_read_only_file_system(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    """A read-only file system for real: a tmpfs mounted read-only in a mount namespace of xpcargo's own."""
    if os.getuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to mount a read-only file system")
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    read_only = project.parent / "read-only"
    read_only.mkdir()
    mount_then_run = f'mount -t tmpfs -o ro tmpfs "{read_only}" && exec "$@"'
    result = run_cli(
        ["build", "--target", X86_64, "--target-dir", str(read_only / "new")],
        cwd=project,
        env=xpcargo.env,
        prefix=("unshare", "--mount", "sh", "-c", mount_then_run, "sh"),
    )
    line = single_error_line(result)
    assert result.code == 5, result
    assert f"cannot create {read_only / 'new'}: Read-only file system" in line, result
