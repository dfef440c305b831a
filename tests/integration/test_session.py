"""The container session around a Cargo command: who owns what it writes, the fetch step and CARGO_HOME, where
artifacts go, what the project's xpcargo.toml adds, and other Cargo commands. (Signals and engine faults:
test_faults.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    AARCH64,
    FIXTURES,
    X86_64,
    Cli,
    Result,
    Workspace,
    assert_elf_for,
    copy_fixture,
    run_cli,
)

pytestmark = pytest.mark.engine

UNPRIVILEGED_UID = 4242
DOCKER_SOCKET = Path("/var/run/docker.sock")


# --- Ownership ----------------------------------------------------------------------------------------------------


def _owners(*roots: Path) -> dict[Path, int]:
    found: dict[Path, int] = {}
    for root in roots:
        found[root] = root.lstat().st_uid
        for directory, names, files in os.walk(root):
            for name in [*names, *files]:
                path = Path(directory) / name
                found[path] = path.lstat().st_uid
    return found


@pytest.fixture
def unprivileged_dir() -> Iterator[Path]:
    """A directory the unprivileged uid can reach: pytest's own tmp dirs are private to the user running pytest."""
    path = Path(tempfile.mkdtemp(prefix="xpcargo-uid-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_container_runs_as_the_invoking_user(xpcargo: Cli, unprivileged_dir: Path) -> None:
    """Nothing the build writes (target dir, CARGO_HOME) belongs to root when an ordinary user builds."""
    if os.getuid() == 0:
        if not DOCKER_SOCKET.is_socket() or shutil.which("setpriv") is None:
            pytest.skip("running as root needs setpriv and a local docker.sock to build as an unprivileged user")
        uid, gid = UNPRIVILEGED_UID, DOCKER_SOCKET.stat().st_gid
        prefix: tuple[str, ...] = ("setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups")
    else:
        uid, gid, prefix = os.getuid(), os.getgid(), ()

    home, cache = unprivileged_dir / "home", unprivileged_dir / "cache"
    cargo_home = home / ".cargo"
    cargo_home.mkdir(parents=True)
    cache.mkdir()
    project = unprivileged_dir / "zlib-sys"
    shutil.copytree(FIXTURES / "zlib-sys", project, ignore=shutil.ignore_patterns("target"))
    env: dict[str, str | None] = {
        "HOME": str(home),
        "XPCARGO_CACHE_DIR": str(cache),
        "CARGO_HOME": None,  # the default, $HOME/.cargo
        "USER": "xpcargo-test",
    }
    for path in _owners(unprivileged_dir):
        os.chown(path, uid, gid, follow_symlinks=False)

    result = run_cli(["build", "--target", X86_64], cwd=project, env=env, prefix=prefix)
    assert result.code == 0, result
    assert_elf_for(project / "target" / X86_64 / "debug" / "zlib-roundtrip", X86_64)
    assert list((cargo_home / "registry" / "cache").glob("*/libz-sys-*.crate")), "nothing was fetched"

    owners = _owners(project / "target", cargo_home)
    assert len(owners) > 100, "the walk found too little to mean anything"
    by_root = sorted(str(path) for path, owner in owners.items() if owner == 0)
    assert not by_root, f"{len(by_root)} files owned by root, e.g. {by_root[:5]}"
    others = sorted(str(path) for path, owner in owners.items() if owner != uid)
    assert not others, f"files not owned by uid {uid}: {others[:5]}"


# --- Fetch step and CARGO_HOME ------------------------------------------------------------------------------------


def test_warm_build_skips_the_fetch_step(workspace: Workspace, xpcargo: Cli, cargo_home: Path) -> None:
    crate = workspace.crate("zlib-sys")
    first_time = X86_64 not in crate.builds
    workspace.built("zlib-sys", X86_64)
    if first_time:
        assert "Fetching" in crate.builds[X86_64].stderr, crate.builds[X86_64]

    again = xpcargo(["build", "--target", X86_64], cwd=crate.project)
    assert again.code == 0, again
    assert "Fetching" not in again.stderr, again
    assert "Downloaded" not in again.stderr, again
    # The crates were downloaded into the host's CARGO_HOME, which the container mounts at the same path.
    crates = sorted(path.name for path in (cargo_home / "registry" / "cache").glob("*/*.crate"))
    assert "libz-sys-1.1.31.crate" in crates, crates
    assert any(name.startswith("cc-") for name in crates), crates


def test_changed_manifest_fetches_again(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    first = xpcargo(["build", "--target", X86_64], cwd=project)
    assert first.code == 0, first
    assert "Fetching" in first.stderr, first
    manifest = project / "Cargo.toml"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "\n[features]\nextra = []\n", encoding="utf-8")
    changed = xpcargo(["build", "--target", X86_64], cwd=project)
    assert changed.code == 0, changed
    assert "Fetching" in changed.stderr, changed


def test_switching_targets_does_not_rebuild(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    for triple in (X86_64, AARCH64):
        first = xpcargo(["build", "--target", triple], cwd=project)
        assert first.code == 0, first
    again = xpcargo(["build", "--target", X86_64], cwd=project)
    assert again.code == 0, again
    assert "Compiling" not in again.stderr, f"nothing changed, yet Cargo rebuilt:{again}"


# --- Where artifacts go -------------------------------------------------------------------------------------------


def _assert_built_into(result: Result, target_dir: Path, project: Path) -> None:
    assert result.code == 0, result
    assert_elf_for(target_dir / X86_64 / "debug" / "hello-generated", X86_64)
    assert not (project / "target").exists(), f"{project / 'target'} was created as well"


def test_cargo_target_dir_variable(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    target_dir = tmp_path / "elsewhere" / "env-target"
    result = xpcargo(["build", "--target", X86_64], cwd=project, env={"CARGO_TARGET_DIR": str(target_dir)})
    _assert_built_into(result, target_dir, project)


def test_target_dir_option(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    result = xpcargo(["build", "--target", X86_64, "--target-dir", "option-target"], cwd=project)
    _assert_built_into(result, project / "option-target", project)


def test_target_dir_in_cargo_config(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text('[build]\ntarget-dir = "../config-target"\n', encoding="utf-8")
    # The project's own config puts the target dir outside the checkout: the user consents (config.trust).
    result = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_TRUST": "1"})
    _assert_built_into(result, project.parent / "config-target", project)


def test_path_dependency_outside_the_workspace(workspace: Workspace) -> None:
    crate = workspace.built("path-dep", X86_64)
    assert_elf_for(crate.artifact(X86_64), X86_64)
    generated = list((crate.target_dir / X86_64 / "debug" / "build").glob("outside-*/out/generated.rs"))
    assert len(generated) == 1, generated
    assert f"built for {X86_64}" in generated[0].read_text(encoding="utf-8")
    assert not (crate.root / "outside" / "target").exists()


# --- The project's xpcargo.toml -----------------------------------------------------------------------------------


def test_project_env_passthrough_and_mounts(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-codegen")
    shared = tmp_path / "shared data"
    shared.mkdir()
    (shared / "note.txt").write_text("a file from the host\n", encoding="utf-8")
    (project / "xpcargo.toml").write_text(
        f'[target.{X86_64}]\nenv = {{ GREETING = "hi" }}\npassthrough = ["MY_VAR"]\nmounts = ["{shared}"]\n',
        encoding="utf-8",
    )
    script = (
        'echo $GREETING $MY_VAR; echo "${NOT_PASSED:-unset}"; cat "$1"/note.txt; touch "$1"/x 2>/dev/null || echo ro'
    )
    result = xpcargo(
        ["shell", "--target", X86_64, "--", "sh", "-c", script, "sh", str(shared)],
        cwd=project,
        # `passthrough` and a mount outside the checkout: the user consents (config.trust).
        env={"MY_VAR": "from-host", "NOT_PASSED": "secret", "XPCARGO_TRUST": "1"},
    )
    assert result.code == 0, result
    assert result.stdout_lines == ["hi from-host", "unset", "a file from the host", "ro"], result
    assert not (shared / "x").exists()


# --- Other Cargo commands -----------------------------------------------------------------------------------------


def test_clippy_for_aarch64(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.crate("seed-codegen")
    result = xpcargo(["clippy", "--target", AARCH64, "--", "-D", "warnings"], cwd=crate.project)
    assert result.code == 0, result
    assert "Finished" in result.stderr, result
    assert list((crate.target_dir / AARCH64 / "debug").glob("**/*.rmeta")), "clippy checked nothing"


def test_doc_for_aarch64(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.crate("seed-codegen")
    result = xpcargo(["doc", "--target", AARCH64, "--no-deps"], cwd=crate.project)
    assert result.code == 0, result
    index = crate.target_dir / AARCH64 / "doc" / "hello_generated" / "index.html"
    assert index.is_file(), result
    assert "hello_generated" in index.read_text(encoding="utf-8")


def test_shell_passes_the_exit_code_through(xpcargo: Cli, workspace: Workspace) -> None:
    crate = workspace.crate("seed-codegen")
    script = "echo out; echo err >&2; exit 3"
    result = xpcargo(["shell", "--target", X86_64, "--", "sh", "-c", script], cwd=crate.project)
    assert result.code == 3, result
    assert result.stdout == "out\n", result
    assert result.stderr == "err\n", result


# --- A container of the command's own ------------------------------------------------------------------------------

# A session in a confined container of its own as UNPRIVILEGED_UID (argv[1]: the image), run in a process of its own
# as xpcargo runs it: a first command, then a `docker exec` of that user's that stays, then a second command. Prints
# the second's exit code, or its error's exit code and message.
_INTRUDED_SESSION = """
import json, os, subprocess, sys, time
from pathlib import Path
from xpcargo.container.docker.runtime import DockerRuntime
from xpcargo.container.session import open_session
from xpcargo.container.spec import ContainerRequest
from xpcargo.errors import XpcargoError

user = sys.argv[2]
request = ContainerRequest(image=sys.argv[1], user=user, workdir=Path("/"), confined=True, scratch=(Path("/tmp"),))
with open_session(DockerRuntime.connect(os.environ), request, purpose="test") as session:
    assert session.run(["true"]) == 0
    intruder = subprocess.Popen(["docker", "exec", "--user", user, session.container_id, "sleep", "60"])
    try:
        deadline = time.monotonic() + 30
        while "sleep 60" not in subprocess.run(
            ["docker", "top", session.container_id], capture_output=True, text=True, check=False
        ).stdout:
            assert time.monotonic() < deadline, "the exec'd process never started"
            time.sleep(0.2)
        try:
            said = {"code": session.run(["true"])}
        except XpcargoError as error:
            said = {"error": error.exit_code, "message": str(error)}
    finally:
        intruder.kill()
        intruder.wait()
print(json.dumps(said))
"""


def test_a_process_exec_d_into_the_commands_container_is_named_not_a_silent_exit_code(
    xpcargo: Cli, tmp_path: Path
) -> None:
    """A `docker exec` into a command's own container as the command's user, still running when xpcargo's next
    command there starts: the wrapper refuses to start it beside a process it did not start, and the refusal is one
    error that says so (it used to be exit code 199, silently, as if the command had returned it)."""
    listed = xpcargo(["targets", "--json"], cwd=tmp_path)
    assert listed.code == 0, listed
    (image,) = [str(entry["image"]) for entry in json.loads(listed.stdout) if entry["target"] == X86_64]
    user = f"{UNPRIVILEGED_UID}:{UNPRIVILEGED_UID}"
    completed = subprocess.run(
        [sys.executable, "-c", _INTRUDED_SESSION, image, user], capture_output=True, text=True, timeout=300, check=False
    )
    assert completed.returncode == 0, completed
    said = json.loads(completed.stdout.splitlines()[-1])
    assert said["error"] == 11, said
    assert "a process that xpcargo did not start runs as its user" in said["message"], said
