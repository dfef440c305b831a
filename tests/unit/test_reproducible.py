"""Reproducible mode: the flags join the user's own, the epoch comes from the environment or git, and a planned
reproducible build carries its environment, its --locked and its umask."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import tomllib

from xpcargo.context import Context
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.pipeline import compile_cache, reproducible
from xpcargo.pipeline.reproducible import FIXED, Reproducibility
from xpcargo.pipeline.workspace import Step

from .projects import app_project, plan_in

AARCH64 = "aarch64-unknown-linux-gnu"
OURS = ["--remap-path-prefix=/w=/xpcargo/source"]


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_encoded_rustflags_keep_the_users_and_add_ours() -> None:
    flags = reproducible.merge_rustflags(
        OURS, environ={"CARGO_ENCODED_RUSTFLAGS": "-Copt-level=s\x1f--cfg=x"}, config_files=[], triple=AARCH64
    )
    assert flags.env == {"CARGO_ENCODED_RUSTFLAGS": f"-Copt-level=s\x1f--cfg=x\x1f{OURS[0]}"}
    assert flags.config is None


def test_rustflags_become_the_encoded_form() -> None:
    flags = reproducible.merge_rustflags(
        OURS, environ={"RUSTFLAGS": " -C  target-cpu=native "}, config_files=[], triple=AARCH64
    )
    assert flags.env == {"CARGO_ENCODED_RUSTFLAGS": f"-C\x1ftarget-cpu=native\x1f{OURS[0]}"}
    assert flags.removed == ("RUSTFLAGS",)


def test_without_any_rustflags_ours_go_to_build_rustflags() -> None:
    flags = reproducible.merge_rustflags(OURS, environ={}, config_files=[], triple=AARCH64)
    assert flags.env == {}
    assert flags.config == f'[build]\nrustflags = ["{OURS[0]}"]\n'


def test_a_target_table_of_the_users_is_joined_not_shadowed(tmp_path: Path) -> None:
    config = _config(tmp_path, f'[target.{AARCH64}]\nrustflags = ["-Ctarget-cpu=cortex-a72"]\n')
    flags = reproducible.merge_rustflags(OURS, environ={}, config_files=[config], triple=AARCH64)
    # A list given with --config is appended to the file's list by Cargo.
    assert flags.config == f'[target.{AARCH64}]\nrustflags = ["{OURS[0]}"]\n'


def test_a_cfg_table_also_means_the_target_table(tmp_path: Path) -> None:
    config = _config(tmp_path, "[target.'cfg(unix)']\nrustflags = ['--cfg=u']\n[build]\nrustflags = ['-g']\n")
    flags = reproducible.merge_rustflags(OURS, environ={}, config_files=[config], triple=AARCH64)
    assert flags.config is not None
    assert flags.config.startswith(f"[target.{AARCH64}]")


def test_a_string_in_the_users_config_is_carried_into_ours(tmp_path: Path) -> None:
    config = _config(tmp_path, '[build]\nrustflags = "-C debuginfo=1"\n')
    flags = reproducible.merge_rustflags(OURS, environ={}, config_files=[config], triple=AARCH64)
    assert flags.config == f'[build]\nrustflags = "-C debuginfo=1 {OURS[0]}"\n'


def test_the_config_file_is_what_it_was_and_reads_back(tmp_path: Path) -> None:
    """Byte for byte the text the writer before files.py wrote; and a path with a newline, which that one wrote as
    invalid TOML, reads back as it is."""
    config = _config(tmp_path, f'[target.{AARCH64}]\nrustflags = ["-C", "x"]\n')
    flags = reproducible.merge_rustflags(
        ["--remap-path-prefix=/a=/b", 'q"\\x'], environ={}, config_files=[config], triple=AARCH64
    )
    assert flags.config == f'[target.{AARCH64}]\nrustflags = ["--remap-path-prefix=/a=/b", "q\\"\\\\x"]\n'
    config = _config(tmp_path, '[target."weird.triple"]\nrustflags = "-C x"\n')
    flags = reproducible.merge_rustflags(
        ["--remap-path-prefix=/a=/b"], environ={}, config_files=[config], triple="weird.triple"
    )
    assert flags.config == '[target."weird.triple"]\nrustflags = "-C x --remap-path-prefix=/a=/b"\n'
    flags = reproducible.merge_rustflags(["--remap-path-prefix=/a\nb=/x"], environ={}, config_files=[], triple=AARCH64)
    assert flags.config is not None
    assert tomllib.loads(flags.config) == {"build": {"rustflags": ["--remap-path-prefix=/a\nb=/x"]}}


def test_a_string_config_and_a_path_with_a_space_is_an_error(tmp_path: Path) -> None:
    config = _config(tmp_path, '[build]\nrustflags = "-g"\n')
    with pytest.raises(ConfigError, match="string"):
        reproducible.merge_rustflags(["--remap-path-prefix=/a b=/x"], environ={}, config_files=[config], triple=AARCH64)


def test_c_flags_start_from_what_the_cc_crate_would_have_read() -> None:
    env = reproducible.merge_c_flags(
        ["-ffile-prefix-map=/w=/x"], environ={"TARGET_CFLAGS": "-O2", "CFLAGS": "-O0"}, triple=AARCH64
    )
    assert env["CFLAGS_aarch64_unknown_linux_gnu"] == "-O2 -ffile-prefix-map=/w=/x"
    assert env["CXXFLAGS_aarch64_unknown_linux_gnu"] == "-ffile-prefix-map=/w=/x"
    dashed = reproducible.merge_c_flags(["-f"], environ={f"CFLAGS_{AARCH64}": "-g"}, triple=AARCH64)
    assert dashed["CFLAGS_aarch64_unknown_linux_gnu"] == "-g -f"


def test_the_most_specific_path_is_remapped_last() -> None:
    remaps = reproducible.remapping(
        workspace_root=Path("/src/app"), target_dir=Path("/src/app/target"), cargo_home=Path("/home/u/.cargo")
    )
    names = [name for _, name in remaps]
    assert names.index(reproducible.TARGET_NAME) > names.index(reproducible.SOURCE_NAME)
    flags = reproducible.c_remap_flags(remaps)
    assert flags.index("-ffile-prefix-map=/src/app/target=/xpcargo/target") > flags.index(
        "-ffile-prefix-map=/src/app=/xpcargo/source"
    )


def test_the_epoch_comes_from_the_environment_first(tmp_path: Path) -> None:
    assert reproducible.source_date_epoch({"SOURCE_DATE_EPOCH": "1700000000"}, tmp_path) == (1700000000, "environment")
    with pytest.raises(ConfigError, match="not a number"):
        reproducible.source_date_epoch({"SOURCE_DATE_EPOCH": "yesterday"}, tmp_path)


def test_the_epoch_comes_from_the_last_commit(tmp_path: Path) -> None:
    env = {"GIT_AUTHOR_DATE": "@1600000000 +0000", "GIT_COMMITTER_DATE": "@1600000000 +0000", "HOME": str(tmp_path)}
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True, env=env)
    subprocess.run(
        [
            "git",
            "-C",
            str(tmp_path),
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            "x",
        ],
        check=True,
        env=env,
    )
    assert reproducible.source_date_epoch({}, tmp_path) == (1600000000, "git")


def test_no_repository_says_how_to_set_the_epoch(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match="not in a git repository") as caught:
        reproducible.source_date_epoch({}, tmp_path)
    assert "SOURCE_DATE_EPOCH" in (caught.value.hint or "")


def test_no_git_says_how_to_set_the_epoch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("xpcargo.pipeline.reproducible.shutil.which", lambda _: None)
    with pytest.raises(ProjectError, match="git is not installed"):
        reproducible.source_date_epoch({}, tmp_path)


def test_a_reproducible_plan(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    context = Context.create(
        cwd=root, environ={"HOME": str(tmp_path / "home"), "RUSTFLAGS": "-g", "XPCARGO_CACHE_DIR": str(tmp_path)}
    )
    settings = Reproducibility(source_date_epoch=1700000000, epoch_source="environment")
    planned = plan_in(context, "build", AARCH64, ["--release"], reproducible_settings=settings)
    env = planned.request(Step.BUILD, "image").env
    assert env["SOURCE_DATE_EPOCH"] == "1700000000"
    assert env["CARGO_INCREMENTAL"] == "0"
    assert (env["TZ"], env["LANG"], env["LC_ALL"], env["USER"], env["HOME"]) == (
        "UTC",
        "C.UTF-8",
        "C.UTF-8",
        "xpcargo",
        FIXED.home,
    )
    assert "RUSTFLAGS" not in env
    assert env["CARGO_ENCODED_RUSTFLAGS"].startswith(f"-g\x1f--remap-path-prefix={root}=/xpcargo/source")
    assert f"-ffile-prefix-map={root}=/xpcargo/source" in env["CFLAGS_aarch64_unknown_linux_gnu"]
    assert "--locked" in planned.cargo_argv()
    assert planned.invocation.manifest_args()[-1] == "--locked"
    assert planned.command_argv()[:4] == ["sh", "-c", 'umask "$0" && exec "$@"', "0022"]
    assert planned.command_argv()[4:] == planned.cargo_argv()


def test_a_plain_plan_is_untouched(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    context = Context.create(cwd=root, environ={"HOME": str(tmp_path / "home"), "XPCARGO_CACHE_DIR": str(tmp_path)})
    planned = plan_in(context, "build", AARCH64, [])
    assert "--locked" not in planned.cargo_argv()
    # No umask: Cargo runs as it is, under the compile cache's shell alone.
    assert compile_cache.unwrapped(planned.command_argv()) == (
        planned.flags.state_dir / "compile-cache-stats.json",
        tuple(planned.cargo_argv()),
    )
    assert "SOURCE_DATE_EPOCH" not in planned.variables.env
    assert planned.flags.rustflags_file is None
