"""The fetch step runs none of the project's code: a rustc wrapper that a project names (in its `.cargo/config.toml`
or its xpcargo.toml's `env`) never runs where the network, the registry tokens and a writable CARGO_HOME are; in the
build step, where it may run (it is the project's own build), it sees no token and cannot write to CARGO_HOME. A
wrapper that the user sets (sccache's way) still runs in the build."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from .helpers import FIXTURES, X86_64, Cli, single_error_line

pytestmark = pytest.mark.engine

TOKEN = "canary-registry-token-4f1d"
CREDENTIAL = "canary-credentials-file-9b2e"


def _cargo_home(tmp_path: Path) -> Path:
    """A CARGO_HOME of the test's own, empty (so the fetch downloads) but for a credentials file with a canary."""
    home = tmp_path / "cargo-home"
    home.mkdir()
    (home / "credentials.toml").write_text(f'[registry]\ntoken = "{CREDENTIAL}"\n', encoding="utf-8")
    return home


def _project(tmp_path: Path, name: str, *, hostile_config: bool) -> Path:
    project = tmp_path / name
    shutil.copytree(FIXTURES / "fetch-hostile", project, symlinks=True)
    if not hostile_config:
        shutil.rmtree(project / ".cargo")
    return project


def _assert_wrapper_stayed_in_the_build(project: Path, home: Path) -> None:
    log = (project / "wrapper.log").read_text(encoding="utf-8") if (project / "wrapper.log").exists() else ""
    ran = [line for line in log.splitlines() if line.startswith("ran ")]
    # Only the build step has no network but loopback: any other line is the wrapper running in the fetch step.
    assert all(line.startswith(("ran net=lo, ", "ran preload net=lo, ")) for line in ran), log
    assert TOKEN not in log, log
    assert CREDENTIAL not in log, log
    assert "CARGO_HOME writable" not in log, log
    assert "planted" not in log, log
    assert not (home / "registry" / "canary").exists()
    planted = [path for path in home.glob("registry/src/*/*/src/lib.rs") if "planted" in path.read_text("utf-8")]
    assert not planted


def _build(xpcargo: Cli, project: Path, home: Path, **env: str) -> None:
    result = xpcargo(
        ["build", "--target", X86_64],
        cwd=project,
        env={"CARGO_HOME": str(home), "CARGO_REGISTRY_TOKEN": TOKEN, **env},
    )
    assert result.code == 0, result


@pytest.mark.parametrize("where", ["cargo-config", "xpcargo-env"])
def test_a_projects_rustc_wrapper_never_runs_in_the_fetch_step(tmp_path: Path, xpcargo: Cli, where: str) -> None:
    home = _cargo_home(tmp_path)
    project = _project(tmp_path, "hostile", hostile_config=where == "cargo-config")
    if where == "xpcargo-env":
        wrapper = project / "evil-wrapper.sh"
        (project / "xpcargo.toml").write_text(f'[build]\nenv = {{ RUSTC_WRAPPER = "{wrapper}" }}\n', encoding="utf-8")
    _build(xpcargo, project, home)
    # The crate was really fetched into this CARGO_HOME, by the fetch step.
    assert list(home.glob("registry/src/*/shlex-*/src/lib.rs"))
    _assert_wrapper_stayed_in_the_build(project, home)
    # The next, innocent project of the same user builds from the same CARGO_HOME.
    innocent = _project(tmp_path, "innocent", hostile_config=False)
    _build(xpcargo, innocent, home)


# Loaded into every process it is preloaded into: records what it could see, and whether CARGO_HOME is writable.
_PRELOAD = r"""
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
__attribute__((constructor)) static void hostile(void) {
    const char *token = getenv("CARGO_REGISTRY_TOKEN"), *home = getenv("CARGO_HOME");
    FILE *log = fopen(LOG, "a");
    if (!log) return;
    fputs("ran preload net=", log);
    DIR *interfaces = opendir("/sys/class/net");
    for (struct dirent *entry; interfaces && (entry = readdir(interfaces));)
        if (entry->d_name[0] != '.') fprintf(log, "%s,", entry->d_name);
    if (interfaces) closedir(interfaces);
    fprintf(log, " token=%s\n", token ? token : "");
    if (home) {
        char path[4096];
        snprintf(path, sizeof path, "%s/registry/canary", home);
        FILE *canary = fopen(path, "w");
        if (canary) { fputs("canary", canary); fclose(canary); fputs("CARGO_HOME writable\n", log); }
    }
    fclose(log);
}
"""


@pytest.mark.parametrize("included", [False, True], ids=["config.toml", "included file"])
def test_a_projects_cargo_env_table_reaches_no_process_of_the_fetch_step(
    tmp_path: Path, xpcargo: Cli, included: bool
) -> None:
    """`[env]` in the project's Cargo config, with `force`, puts an LD_PRELOAD of the project's into the rustc that
    `cargo metadata` asks for the target's cfg; the fetch step blanks it."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler on this machine to build the hostile preload library")
    home = _cargo_home(tmp_path)
    (home / "registry").mkdir()
    project = _project(tmp_path, "hostile-env", hostile_config=True)
    source = tmp_path / "preload.c"
    source.write_text(_PRELOAD, encoding="utf-8")
    library = project / "evil-preload.so"
    log = project / "wrapper.log"
    subprocess.run(
        [compiler, "-shared", "-fPIC", f'-DLOG="{log}"', "-o", str(library), str(source)], check=True, timeout=60
    )
    table = '[env]\nLD_PRELOAD = { value = "evil-preload.so", force = true, relative = true }\n'
    if included:
        # Cargo reads a file that the config `include`s as part of it; xpcargo must blank its [env] as well.
        (project / ".cargo" / "config.toml").write_text('include = [{ path = "env.toml" }]\n', encoding="utf-8")
        (project / ".cargo" / "env.toml").write_text(table, encoding="utf-8")
    else:
        (project / ".cargo" / "config.toml").write_text(table, encoding="utf-8")
    _build(xpcargo, project, home)
    # The library is loaded in the build step (the project's own build): the attack is real, and stays there.
    assert "ran preload net=lo, " in log.read_text(encoding="utf-8")
    _assert_wrapper_stayed_in_the_build(project, home)


def test_a_wrapper_the_user_sets_still_runs_in_the_build(tmp_path: Path, xpcargo: Cli) -> None:
    """sccache's way: RUSTC_WRAPPER set by the user (XPCARGO_BUILD_ENV, trusted) to a program in a directory the
    user mounts (XPCARGO_BUILD_MOUNTS, trusted)."""
    home = _cargo_home(tmp_path)
    project = _project(tmp_path, "user-wrapper", hostile_config=False)
    tools = tmp_path / "tools"
    tools.mkdir()
    wrapper = tools / "cache-wrapper.sh"
    # Writes where a build may write (the target dir): the tools' directory is mounted read-only.
    wrapper.write_text(
        '#!/bin/sh\necho "ran net=$(ls /sys/class/net | tr \'\\n\' ,) $*" >> "$CARGO_TARGET_DIR/user-wrapper.log"\n'
        'exec "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    _build(xpcargo, project, home, XPCARGO_BUILD_ENV=f"RUSTC_WRAPPER={wrapper}", XPCARGO_BUILD_MOUNTS=str(tools))
    log = (project / "target" / "user-wrapper.log").read_text(encoding="utf-8")
    compiled = [line for line in log.splitlines() if "--crate-name fetch_hostile" in line]
    assert compiled, log
    assert all(line.startswith("ran net=lo, ") for line in log.splitlines()), log


@pytest.mark.parametrize("included", [False, True], ids=["config.toml", "included file"])
def test_a_projects_credential_provider_is_refused(tmp_path: Path, cli: Cli, included: bool) -> None:
    """Cargo would run it in the fetch step, with the user's tokens and the network: one line, before any
    container. Also from a file that the project's config `include`s."""
    project = _project(tmp_path, "provider", hostile_config=False)
    (project / ".cargo").mkdir()
    named = project / ".cargo" / ("provider.toml" if included else "config.toml")
    named.write_text('[registry]\nglobal-credential-providers = ["cargo:token", "./evil-wrapper.sh"]\n', "utf-8")
    if included:
        (project / ".cargo" / "config.toml").write_text('include = ["provider.toml"]\n', encoding="utf-8")
    result = cli(["build", "--target", X86_64], cwd=project, env={"CARGO_HOME": str(_cargo_home(tmp_path))})
    line = single_error_line(result)
    assert result.code == 3, result
    assert str(named) in line
    assert "registry.global-credential-providers" in line
    assert not (project / "wrapper.log").exists()
