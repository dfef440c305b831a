"""Warm containers against the real engine: reused by the next command, ended by their own idle timeout, replaced
when what they were started with changes, shared by two commands at once, listed by `xpcargo ps`, stopped by
`xpcargo down` and by `xpcargo image prune`.

Every test works in a project directory of its own, and looks only at containers labelled with it.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    FIXTURES,
    MANAGED_LABEL,
    X86_64,
    Cli,
    command_processes,
    container_gone,
    containers_of,
    copy_fixture,
    docker,
    run_argv,
    run_cli,
    start_cli,
    warm_container_of,
)

# The tests whose project names an `image` of its own: the user consents to it (config.trust).
CONSENTED = {"XPCARGO_TRUST": "1"}

pytestmark = pytest.mark.engine


@pytest.fixture
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_fixture(tmp_path_factory, "seed-c-lib")


def test_the_next_command_runs_in_the_warm_container(xpcargo: Cli, project: Path) -> None:
    first = xpcargo(["build", "--target", X86_64], cwd=project)
    assert first.code == 0, first
    warm = warm_container_of(project, X86_64)
    assert warm is not None, "the build left no warm container"
    # A no-op build, a test run and a shell command: none starts a container.
    for args in (["build"], ["test"], ["shell", "--"]):
        command = [*args[:1], "--target", X86_64, *args[1:]] + (["true"] if args[0] == "shell" else [])
        result = xpcargo(command, cwd=project)
        assert result.code == 0, result
        assert containers_of(project) == {warm}, result
    listed = xpcargo(["ps"], cwd=project)
    assert listed.code == 0, listed
    row = next(line for line in listed.stdout_lines if line.startswith(warm[:12]))
    assert X86_64 in row, listed
    assert "idle" in row, listed
    assert str(project.resolve()) in row, listed


def test_a_warm_no_op_build_and_image_list_ask_the_engine_without_the_docker_sdk(
    xpcargo: Cli, project: Path, tmp_path: Path
) -> None:
    """On the engine's unix socket, a warm build's requests (and `image list`'s) go through xpcargo's own client:
    the SDK, requests and urllib3 cost more to import than a whole `docker exec`."""
    first = xpcargo(["build", "--target", X86_64], cwd=project)
    assert first.code == 0, first
    warm = warm_container_of(project, X86_64)
    listing = tmp_path / "modules.json"
    # Written at exit: xpcargo ends by SystemExit.
    code = (
        "import atexit, json, sys\n"
        f"atexit.register(lambda: open({str(listing)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
        "from xpcargo.launch import main\n"
        "main()\n"
    )
    sdk = ("docker", "requests", "urllib3")
    for args in (["build", "--target", X86_64], ["image", "list"]):
        result = run_argv([sys.executable, "-c", code, *args], cwd=project, env=xpcargo.env)
        assert result.code == 0, result
        imported = json.loads(listing.read_text(encoding="utf-8"))
        assert [name for name in imported if name.split(".")[0] in sdk] == [], result
    assert containers_of(project) == {warm}


def test_a_warm_container_ends_itself_after_its_idle_time(xpcargo: Cli, project: Path) -> None:
    result = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_KEEP_WARM": "3"})
    assert result.code == 0, result
    warm = warm_container_of(project, X86_64)
    assert warm is not None
    # A command keeps it up however long it runs: three idle seconds count only after it ends.
    busy = xpcargo(["shell", "--target", X86_64, "--", "sleep", "6"], cwd=project, env={"XPCARGO_KEEP_WARM": "3"})
    assert busy.code == 0, busy
    assert warm_container_of(project, X86_64) == warm, "the container ended while a command ran in it"
    # No host process keeps time: the container's own main process ends it, and the engine removes it.
    assert container_gone(warm, within=15), f"{warm[:12]} outlived its idle time"
    assert not containers_of(project), "a labelled container was left after the idle timeout"


def test_short_commands_keep_a_warm_container_up_and_idle_counts_from_the_last(xpcargo: Cli, project: Path) -> None:
    """Idle means idle since the last command ended. Each command here is over long before the idle watch's next
    look (once a second), so only the pids the kernel gave out in between show that it ran: a watch that only
    looked for a running command ended (and the next command replaced) the container while it was in use."""
    idle = 5
    env = {"XPCARGO_KEEP_WARM": str(idle)}
    first = xpcargo(["shell", "--target", X86_64, "--", "true"], cwd=project, env=env)
    assert first.code == 0, first
    warm = warm_container_of(project, X86_64)
    assert warm is not None
    started = time.monotonic()
    # A short command every 1.6 s, for more than three idle times.
    while time.monotonic() - started < 3 * idle + 2:
        time.sleep(1.6)
        result = xpcargo(["shell", "--target", X86_64, "--", "true"], cwd=project, env=env)
        assert result.code == 0, result
        assert warm_container_of(project, X86_64) == warm, f"replaced after {time.monotonic() - started:.1f}s"
    last_ended = time.monotonic()
    # `docker ps`, not `docker exec`: looking must not start a process in the container.
    time.sleep(idle - 2)
    assert warm_container_of(project, X86_64) == warm, "ended before its idle time had passed since the last command"
    assert container_gone(warm, within=15), f"{warm[:12]} outlived its idle time"
    assert time.monotonic() - last_ended >= idle
    assert not containers_of(project)


def test_a_changed_image_or_recreated_target_dir_replaces_the_warm_container(xpcargo: Cli, project: Path) -> None:
    tag = f"xpcargo-test-warm-{uuid.uuid4().hex[:12]}:1"
    toolchain = next(
        line for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split() if f"/{X86_64}:" in line
    )
    # Two images under one name, in turn: the name stays, the image id changes.
    derived = _child_image(toolchain, f"xpcargo-test={tag}")
    (project / "xpcargo.toml").write_text(f'[target.{X86_64}]\nimage = "{tag}"\n', encoding="utf-8")
    try:
        docker("tag", toolchain, tag)
        assert xpcargo(["build", "--target", X86_64], cwd=project, env=CONSENTED).code == 0
        first = warm_container_of(project, X86_64)
        assert first is not None
        docker("tag", derived, tag)
        result = xpcargo(["build", "--target", X86_64], cwd=project, env=CONSENTED)
        assert result.code == 0, result
        second = warm_container_of(project, X86_64)
        assert second not in (None, first), "the image changed, the warm container did not"
        assert container_gone(first, within=10), "the container of the old image was not removed"

        # A target dir outside the workspace is a mount of its own. `cargo clean` removes it: the new one must be
        # mounted, not the deleted one that the warm container still holds.
        target_dir = project.parent / "outside-target"
        built = xpcargo(["build", "--target", X86_64, "--target-dir", str(target_dir)], cwd=project, env=CONSENTED)
        assert built.code == 0, built
        third = warm_container_of(project, X86_64)
        assert third not in (None, second)
        shutil.rmtree(target_dir)
        result = xpcargo(["build", "--target", X86_64, "--target-dir", str(target_dir)], cwd=project, env=CONSENTED)
        assert result.code == 0, result
        fourth = warm_container_of(project, X86_64)
        assert fourth not in (None, third)
        assert (target_dir / X86_64 / "debug" / "hello-world-from-c").is_file()
    finally:
        for container in containers_of(project):
            docker("rm", "--force", container, check=False)
        docker("rmi", tag, check=False)
        docker("rmi", derived, check=False)


def _child_image(image: str, label: str) -> str:
    """A new image on top of ``image`` with one more label, and no other difference: its id."""
    container = docker("create", image, "true").strip()
    try:
        return docker("commit", "--change", f"LABEL {label}", container).strip()
    finally:
        docker("rm", "--force", container, check=False)


def test_two_commands_at_once_run_in_two_containers_and_leave_one_warm(xpcargo: Cli, project: Path) -> None:
    """A warm container runs one command at a time (its commands' processes are all killed when each ends): started
    together, one command takes the warm container, the other gets one of its own, removed at its end; both builds
    succeed (Cargo's own lock on the target dir serialises what must be)."""
    env = {**xpcargo.env}
    argv = [sys.executable, "-m", "xpcargo", "build", "--target", X86_64]
    processes = [start_cli(argv, cwd=project, env=env) for _ in range(2)]
    results = [process.communicate(timeout=600) for process in processes]
    for process, (stdout, stderr) in zip(processes, results, strict=True):
        assert process.returncode == 0, f"{stdout}\n{stderr}"
    assert len(containers_of(project)) == 1, "two commands at once left two warm containers"
    warm = warm_container_of(project, X86_64)
    # And two at once while the warm container runs: one in it, the other in a container of its own (the end of
    # one kills every process of its container's commands, which must not be the other's).
    script = "sleep 3; cat /proc/sys/kernel/hostname"
    processes = [
        start_cli([*argv[:3], "shell", "--target", X86_64, "--", "sh", "-c", script], cwd=project, env=env)
        for _ in range(2)
    ]
    hosts = set()
    for process in processes:
        stdout, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, f"{stdout}\n{stderr}"
        hosts.add(stdout.split()[0])
    assert len(hosts) == 2, "two commands ran in one container at once"
    assert containers_of(project) == {warm}


def test_down_stops_this_workspaces_warm_containers(xpcargo: Cli, project: Path, tmp_path: Path) -> None:
    # Kept warm for longer than the other workspace's build can take on a loaded machine: the shell below must find
    # this workspace's container still up.
    kept = {"XPCARGO_KEEP_WARM": "900"}
    assert xpcargo(["build", "--target", X86_64], cwd=project, env=kept).code == 0
    other = tmp_path / "other"
    shutil.copytree(FIXTURES / "seed-c-lib", other, ignore=shutil.ignore_patterns("target"))
    assert xpcargo(["build", "--target", X86_64], cwd=other, env=kept).code == 0
    mine, theirs = warm_container_of(project, X86_64), warm_container_of(other, X86_64)
    assert mine is not None
    assert theirs is not None
    # Busy or not: `down` stops what runs in it too.
    running = start_cli(
        [sys.executable, "-m", "xpcargo", "shell", "--target", X86_64, "--", "sleep", "600"],
        cwd=project,
        env={**xpcargo.env, **kept},
    )
    deadline = time.monotonic() + 60
    while not command_processes(mine) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert command_processes(mine), "the shell did not run in the workspace's warm container"
    result = xpcargo(["down"], cwd=project / "src")
    assert result.code == 0, result
    assert f"     Stopped warm container {mine[:12]} of {X86_64} ({project.resolve()})" in result.stderr_lines, result
    assert container_gone(mine, within=10)
    assert warm_container_of(other, X86_64) == theirs, "down stopped another workspace's container"
    running.communicate(timeout=60)
    assert running.returncode != 0
    docker("rm", "--force", theirs, check=False)


DOCKER_SOCKET = Path("/var/run/docker.sock")


@pytest.fixture
def user_of_its_own() -> Iterator[tuple[tuple[str, ...], Path]]:
    """A uid of the test's own (so that `down --all` meets only its containers on a shared engine), with the
    engine's group, and a directory it can write."""
    if os.getuid() != 0 or not DOCKER_SOCKET.is_socket() or shutil.which("setpriv") is None:
        pytest.skip("needs root, setpriv and a local docker.sock to run xpcargo as a uid of the test's own")
    uid, gid = 20000 + os.getpid() % 20000, DOCKER_SOCKET.stat().st_gid
    directory = Path(tempfile.mkdtemp(prefix="xpcargo-warm-uid-"))
    try:
        yield ("setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups"), directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def test_down_all_stops_every_warm_container_of_the_user(user_of_its_own: tuple[tuple[str, ...], Path]) -> None:
    prefix, directory = user_of_its_own
    uid = int(prefix[1].split("=")[1])
    projects = [directory / "one", directory / "two"]
    for project in projects:
        shutil.copytree(FIXTURES / "seed-c-lib", project, ignore=shutil.ignore_patterns("target"))
    for path in [directory, *directory.rglob("*")]:
        os.chown(path, uid, int(prefix[2].split("=")[1]), follow_symlinks=False)
    env: dict[str, str | None] = {
        "HOME": str(directory),
        "CARGO_HOME": str(directory / ".cargo"),
        "XPCARGO_CACHE_DIR": str(directory / "cache"),
        "XPCARGO_KEEP_WARM": "120",
    }
    for project in projects:
        built = run_cli(["shell", "--target", X86_64, "--", "true"], cwd=project, env=env, prefix=prefix)
        assert built.code == 0, built
    warm = [warm_container_of(project, X86_64) for project in projects]
    assert None not in warm
    result = run_cli(["down", "--all"], cwd=directory, env=env, prefix=prefix)
    assert result.code == 0, result
    assert sum(line.startswith("     Stopped warm container") for line in result.stderr_lines) == 2, result
    assert all(container_gone(str(container), within=10) for container in warm)
    nothing = run_cli(["down"], cwd=directory, env=env, prefix=prefix)
    assert nothing.code == 5, nothing
    assert "pass --all" in nothing.stderr, nothing


def test_image_prune_stops_an_idle_warm_container_of_the_image(xpcargo: Cli, project: Path, tmp_path: Path) -> None:
    """An image that only warm containers hold is pruned, and they with it (an image of the test's own, recorded
    in a cache of its own, so that nothing shared is touched)."""
    tag = f"xpcargo-test-prune-{uuid.uuid4().hex[:12]}/x:1"
    toolchain = next(
        line for line in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split() if f"/{X86_64}:" in line
    )
    image_id = _child_image(toolchain, f"{MANAGED_LABEL}=true")
    cache = tmp_path / "cache"
    try:
        docker("tag", image_id, tag)
        (project / "xpcargo.toml").write_text(f'[target.{X86_64}]\nimage = "{tag}"\n', encoding="utf-8")
        assert (
            xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_CACHE_DIR": str(cache), **CONSENTED}).code
            == 0
        )
        warm = warm_container_of(project, X86_64)
        assert warm is not None
        records = cache / "images"
        records.mkdir(parents=True)
        (records / f"{'9' * 64}.json").write_text(
            f'{{"reference": "{tag}", "image_id": "{image_id}", "target": "{X86_64}", "built": 0}}', encoding="utf-8"
        )
        pruned = run_cli(
            ["image", "prune", "--all"], cwd=tmp_path, env={**xpcargo.env, "XPCARGO_CACHE_DIR": str(cache)}
        )
        assert pruned.code == 0, pruned
        assert f"     Removed {tag}" in pruned.stderr_lines, pruned
        assert container_gone(warm, within=10), pruned
    finally:
        for container in containers_of(project):
            docker("rm", "--force", container, check=False)
        docker("rmi", "--force", tag, check=False)
        docker("rmi", "--force", image_id, check=False)


def test_xpcargo_keep_warm_0_starts_a_container_per_command(xpcargo: Cli, project: Path) -> None:
    for _ in range(2):
        result = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_KEEP_WARM": "0"})
        assert result.code == 0, result
        assert not containers_of(project), "a container outlived its command"
