"""Remote mode against the real engine, forced with XPCARGO_REMOTE=1 on the local one: the seed C example and the
zlib -sys crate build and run for two targets with no bind mount in any container, `xpcargo report` agrees with a
local build of the same project, and a build after a one-file change sends only that file. Then a second engine on
this machine that cannot see its files (``second_engine``), reached over tcp:// on a loopback port, with no image:
the image is sent to it from this machine's engine, and the seed C example builds and runs through it.

Every test works in a project directory of its own, looks only at containers labelled with it, and removes the
volumes labelled with it (and its CARGO_HOME's) at the end.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from . import second_engine
from .helpers import (
    AARCH64,
    RUNNABLE,
    WORKSPACE_LABEL,
    X86_64,
    Cli,
    copy_fixture,
    docker,
    project_volume,
    remove_session_volumes,
    remove_workspace_containers_and_volumes,
)

pytestmark = pytest.mark.engine

REMOTE = {"XPCARGO_REMOTE": "1"}
_SYNCED = re.compile(r"Synced (\d+) file\(s\), (\d+) bytes sent")


class MountWatch:
    """Inspects, while a command runs, every container labelled with the workspace, and keeps their mounts."""

    def __init__(self, workspace: Path) -> None:
        self._label = f"{WORKSPACE_LABEL}={workspace}"
        self._stop = threading.Event()
        self.mounts: dict[str, list[dict[str, object]]] = {}
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            ids = docker("ps", "-aq", "--no-trunc", "--filter", f"label={self._label}", check=False).split()
            for container in ids:
                if container in self.mounts:
                    continue
                answer = docker("inspect", "--format", "{{json .Mounts}}", container, check=False).strip()
                if answer:
                    self.mounts[container] = json.loads(answer)

    def __enter__(self) -> MountWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def remote_volumes_removed(cli_env: dict[str, str]) -> Iterator[list[Path]]:
    """The workspaces a test adds are stopped and their volumes removed at its end (and the CARGO_HOME's)."""
    workspaces: list[Path] = []
    yield workspaces
    for workspace in workspaces:
        remove_workspace_containers_and_volumes(workspace)
    remove_session_volumes(cli_env["CARGO_HOME"])


@pytest.mark.parametrize("triple", [X86_64, AARCH64])
@pytest.mark.parametrize("name", ["seed-c-lib", "zlib-sys"])
def test_a_remote_build_runs_binds_nothing_and_reports_as_a_local_one(
    xpcargo: Cli,
    tmp_path_factory: pytest.TempPathFactory,
    remote_volumes_removed: list[Path],
    name: str,
    triple: str,
) -> None:
    crate = RUNNABLE[name]
    project = copy_fixture(tmp_path_factory, name).resolve()
    remote_volumes_removed.append(project)
    with MountWatch(project) as watch:
        built = xpcargo(["build", "--target", triple], cwd=project, env=REMOTE)
        assert built.code == 0, built
        ran = xpcargo(["run", "--target", triple], cwd=project, env=REMOTE)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-len(crate.expected_lines(triple)) :] == crate.expected_lines(triple)
    assert watch.mounts, "no container of the workspace was seen"
    for container, mounts in watch.mounts.items():
        assert mounts, container
        assert {mount["Type"] for mount in mounts} <= {"volume", "tmpfs"}, (container, mounts)
    # The artifact came back to the host.
    assert (project / "target" / triple / "debug" / crate.binary).is_file()
    remote = xpcargo(["report", "--target", triple, "--json"], cwd=project, env=REMOTE)
    assert remote.code == 0, remote
    local_build = xpcargo(["build", "--target", triple], cwd=project, env={"XPCARGO_REMOTE": "0"})
    assert local_build.code == 0, local_build
    local = xpcargo(["report", "--target", triple, "--json"], cwd=project)
    # The packages, their OUT_DIRs, linked libraries and where each came from: the same, byte for byte.
    assert json.loads(remote.stdout) == json.loads(local.stdout)


def test_a_second_build_sends_only_what_changed(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, remote_volumes_removed: list[Path]
) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib").resolve()
    remote_volumes_removed.append(project)
    first = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert first.code == 0, first
    (files, sent), *_ = _SYNCED.findall(first.stderr)
    assert int(files) >= 4
    again = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert again.code == 0, again
    assert not _SYNCED.findall(again.stderr), again
    main = project / "src" / "main.rs"
    main.write_text(main.read_text() + "// one more line\n")
    changed = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert changed.code == 0, changed
    ((files, sent),) = _SYNCED.findall(changed.stderr)
    # One file, in one tar record (10 KiB: Python's tarfile pads a tar to a multiple of that).
    assert (int(files), int(sent)) == (1, 10240), changed
    assert "Compiling hello-world-from-c" in changed.stderr
    listed = xpcargo(["volumes", "list"], cwd=project)
    assert str(project) in listed.stdout


def test_a_volume_the_engine_made_without_labels_is_made_again_and_sent_once(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, remote_volumes_removed: list[Path]
) -> None:
    """A container that mounts the name of a removed volume has the engine make one, without xpcargo's labels (a
    run of this suite had it happen to the CA bundle's volume, whose every no-op build then sent it again). The
    next build makes it again and sends it all once; the one after sends nothing."""
    project = copy_fixture(tmp_path_factory, "seed-c-lib").resolve()
    remote_volumes_removed.append(project)
    sources = str(sum(1 for path in project.rglob("*") if path.is_file()))
    # No warm container, which would keep the volume in use.
    env = {**REMOTE, "XPCARGO_KEEP_WARM": "0"}
    assert xpcargo(["build", "--target", X86_64], cwd=project, env=env).code == 0
    name = project_volume(project, "workspace")
    try:
        docker("volume", "rm", name)
        docker("volume", "create", name)
        rebuilt = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
        assert rebuilt.code == 0, rebuilt
        assert [files for files, _ in _SYNCED.findall(rebuilt.stderr)] == [sources], rebuilt
        labels = json.loads(docker("volume", "inspect", "--format", "{{json .Labels}}", name))
        assert (labels or {}).get("org.xpcargo.volume-instance"), labels
        again = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
        assert again.code == 0, again
        assert not _SYNCED.findall(again.stderr), again
    finally:
        docker("volume", "rm", name, check=False)


@pytest.fixture(scope="module")
def isolated_engine() -> Iterator[second_engine.SecondEngine]:
    """A second engine that cannot see this machine's files, stopped (and its root removed) at the module's end."""
    why = second_engine.missing()
    if why is not None:
        pytest.skip(why)
    host_bridge = second_engine.host_bridge_exists()
    engine = second_engine.SecondEngine()
    try:
        engine.start()
        yield engine
    finally:
        engine.stop()
    # The host engine's default network outlives it (a dockerd with --bridge=none deletes docker0).
    assert second_engine.host_bridge_exists() == host_bridge


_SENT = re.compile(r"Sent (\d+) image\(s\), ([0-9.]+) MiB \((\d+) layer\(s\); (\d+) the engine held\)")


def test_a_build_through_an_engine_that_cannot_see_this_machines_files(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, isolated_engine: second_engine.SecondEngine
) -> None:
    """The engine starts with no image: the target's chain (the base, then the target's layer) is sent from this
    machine's engine, each stage once; then the seed C example builds and runs there, and its binary comes back.
    Slow for a test (sending a 1.1 GB chain into a fuse-overlayfs engine takes about half a minute here)."""
    crate = RUNNABLE["seed-c-lib"]
    project = copy_fixture(tmp_path_factory, "seed-c-lib").resolve()
    env = {"DOCKER_HOST": isolated_engine.url, "XPCARGO_KEEP_WARM": "0"}
    started = time.monotonic()
    built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    seconds = time.monotonic() - started
    assert built.code == 0, built
    ((images, mebibytes, layers, held),) = _SENT.findall(built.stderr)
    assert (int(images), int(layers), int(held)) == (2, 2, 1), built.stderr
    print(f"sent {mebibytes} MiB; the first build took {seconds:.1f}s")
    # The engine holds the chain under the same content-hash tags as this machine's.
    tags = set(isolated_engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split())
    local = set(docker("images", "--format", "{{.Repository}}:{{.Tag}}").split())
    assert tags, tags
    assert tags <= local, tags
    ran = xpcargo(["run", "--target", X86_64], cwd=project, env=env)
    assert ran.code == 0, ran
    assert "Sending" not in ran.stderr
    assert ran.stdout_lines[-len(crate.expected_lines(X86_64)) :] == crate.expected_lines(X86_64)
    assert (project / "target" / X86_64 / "debug" / crate.binary).is_file()
    # It truly cannot see this machine's files: a bind mount of the project finds an empty directory there.
    (image,) = (tag for tag in tags if X86_64 in tag)
    seen = isolated_engine.docker(
        "run", "--rm", "--network", "none", "--volume", f"{project}:/seen:ro", image, "ls", "-A", "/seen"
    )
    assert seen.stdout.strip() == "", seen.stdout


def test_targets_spread_over_two_engines(
    xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, isolated_engine: second_engine.SecondEngine
) -> None:
    """`engine` in `[target.T]`: x86_64 builds on the second engine (remote: volumes, its image sent if it lacks
    it), aarch64 on this machine's (local: bind mounts), side by side in one command."""
    crate = RUNNABLE["seed-c-lib"]
    project = copy_fixture(tmp_path_factory, "seed-c-lib").resolve()
    (project / "xpcargo.toml").write_text(f'[target.{X86_64}]\nengine = "{isolated_engine.url}"\n', encoding="utf-8")
    # The project names an engine: the user consents (config.trust).
    env = {"XPCARGO_KEEP_WARM": "0", "XPCARGO_TRUST": "1"}
    listed = xpcargo(["targets", "--target", X86_64, "--target", AARCH64], cwd=project, env=env)
    assert f"{isolated_engine.url} (remote)" in listed.stdout
    built = xpcargo(["build", "--target", X86_64, "--target", AARCH64], cwd=project, env=env)
    assert built.code == 0, built
    synced = [line for line in built.stderr.splitlines() if "Synced" in line]
    assert synced, built.stderr
    assert all(line.startswith(X86_64) and isolated_engine.url in line for line in synced), synced
    label = f"label={WORKSPACE_LABEL}={project}"
    assert isolated_engine.docker("volume", "ls", "-q", "--filter", label).stdout.split()
    assert not docker("volume", "ls", "-q", "--filter", label).split()
    for triple in (X86_64, AARCH64):
        assert (project / "target" / triple / "debug" / crate.binary).is_file()
    ran = xpcargo(["run", "--target", X86_64], cwd=project, env=env)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-len(crate.expected_lines(X86_64)) :] == crate.expected_lines(X86_64)
