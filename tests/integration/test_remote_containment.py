"""Remote mode against a hostile project (XPCARGO_REMOTE=1 on the local engine): what a build leaves in the engine's
copy of the workspace does not outlive it, and the way back writes nothing through a link the project ships.

- A build script writes a `.cargo/config.toml` into the workspace's volume (a `--cfg` for every later build) and
  rewrites a tracked source file there, with its size and mtime kept; then the project drops the build script. The
  next build sees the host's files only: the binary is the honest one, and the volume holds no planted file.
- A project ships `target` (or `target/xpcargo`) as a link to a directory outside its checkout (a canary directory
  of the test's own): refused in one line, and nothing is written there.
- A project ships a link inside its target dir, where a binary will come back: the binary comes back as a file, and
  the canary the link names is untouched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import (
    X86_64,
    Cli,
    docker,
    project_volume,
    remove_session_volumes,
    remove_workspace_containers_and_volumes,
)

pytestmark = pytest.mark.engine

REMOTE = {"XPCARGO_REMOTE": "1"}

_MAIN = """\
fn main() {
    let message = include_str!("message.txt").trim();
    if cfg!(planted) {
        println!("planted: {message}");
    } else {
        println!("clean: {message}");
    }
}
"""

# Writes into the engine's copy of the workspace, outside the target dir: a Cargo config that every later build
# reads, the tracked `src/message.txt` with the same length and the old mtime (a size-and-mtime check is blind
# to it), a directory made unreadable, a link to `/`, and its own line in Cargo.lock (which must not come back).
_PLANTING_BUILD_SCRIPT = """\
use std::fs;
use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    fs::create_dir_all(root.join(".cargo")).unwrap();
    fs::write(root.join(".cargo/config.toml"), "[build]\\nrustflags = [\\"--cfg\\", \\"planted\\"]\\n").unwrap();
    let message = root.join("src/message.txt");
    let stamp = root.join("stamp");
    fs::copy(&message, &stamp).unwrap();
    fs::write(&message, "EVIL!\\n").unwrap();
    // The old mtime back (std has no utimes on stable 1.85's MSRV path: touch does it).
    Command::new("touch").arg("-r").arg(&stamp).arg(&message).status().unwrap();
    fs::remove_file(&stamp).unwrap();
    // A directory its owner cannot read (what it holds cannot be listed), and a link out of the volume.
    let hidden = root.join("hidden");
    fs::create_dir_all(&hidden).unwrap();
    fs::write(hidden.join("payload"), "x").unwrap();
    Command::new("chmod").arg("000").arg(&hidden).status().unwrap();
    // A lock file of its own, which must not come back to the host's checkout.
    let mut lock = fs::read_to_string(root.join("Cargo.lock")).unwrap();
    lock.push_str("# rewritten by a build script\n");
    fs::write(root.join("Cargo.lock"), lock).unwrap();
    let _ = std::os::unix::fs::symlink("/", root.join("escape"));
    println!("cargo::rustc-check-cfg=cfg(planted)");
}
"""

_MANIFEST = """\
[package]
name = "planted"
version = "0.1.0"
edition = "2021"

[lints.rust]
unexpected_cfgs = { level = "allow" }
"""


def _project(root: Path) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text(_MANIFEST, encoding="utf-8")
    (root / "src" / "main.rs").write_text(_MAIN, encoding="utf-8")
    (root / "src" / "message.txt").write_text("hello\n", encoding="utf-8")
    return root.resolve()


def _volume_files(project: Path, kind: str) -> set[str]:
    """The paths in the project's volume of ``kind``, as the engine holds them (listed by a throwaway container)."""
    name = project_volume(project, kind)
    image = next(
        tag
        for tag in docker("images", "--format", "{{.Repository}}:{{.Tag}}").split()
        if tag.startswith(f"xpcargo/{X86_64}:")
    )
    listed = docker(
        "run", "--rm", "--network", "none", "--volume", f"{name}:/v:ro", image, "find", "/v", "-mindepth", "1"
    )
    return {line.removeprefix("/v/") for line in listed.split()}


@pytest.fixture
def volumes_removed(cli_env: dict[str, str]) -> Iterator[list[Path]]:
    """The workspaces a test adds: their containers and volumes removed at its end, and the session's CARGO_HOME's."""
    workspaces: list[Path] = []
    yield workspaces
    for workspace in workspaces:
        remove_workspace_containers_and_volumes(workspace)
    remove_session_volumes(cli_env["CARGO_HOME"])


def _run(binary: Path) -> str:
    return subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout.strip()


def test_what_a_removed_build_script_left_in_the_workspace_volume_does_not_reach_the_next_build(
    xpcargo: Cli, tmp_path: Path, volumes_removed: list[Path]
) -> None:
    project = _project(tmp_path / "planted")
    volumes_removed.append(project)
    (project / "build.rs").write_text(_PLANTING_BUILD_SCRIPT, encoding="utf-8")
    binary = project / "target" / X86_64 / "debug" / "planted"
    planting = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert planting.code == 0, planting
    # The build that ran the build script is what it is; the host's own files are untouched.
    assert (project / "src" / "message.txt").read_text(encoding="utf-8") == "hello\n"
    assert not (project / ".cargo").exists()
    assert "rewritten by a build script" not in (project / "Cargo.lock").read_text(encoding="utf-8")
    # The engine's copy holds what it planted (listed as root: `hidden` is unreadable to its owner).
    assert {".cargo/config.toml", "hidden/payload", "escape"} <= _volume_files(project, "workspace")
    # The project drops its build script: nothing of what it wrote may reach this build.
    (project / "build.rs").unlink()
    honest = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert honest.code == 0, honest
    assert _run(binary) == "clean: hello", honest
    held = _volume_files(project, "workspace")
    assert not {".cargo", "hidden", "escape"} & held, held
    assert "build.rs" not in held, held
    assert {"Cargo.toml", "Cargo.lock", "src", "src/main.rs", "src/message.txt"} <= held, held
    # And a no-op build after that sends nothing and resets nothing.
    again = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert again.code == 0, again
    assert "Synced" not in again.stderr, again


@pytest.mark.parametrize("remote", ["1", "0"], ids=["remote", "local"])
@pytest.mark.parametrize("link", ["target", "target/xpcargo"])
def test_a_target_dir_the_project_ships_as_a_link_is_refused(
    xpcargo: Cli, tmp_path: Path, volumes_removed: list[Path], link: str, remote: str
) -> None:
    """The target dir itself, or xpcargo's own directory in it (where this machine writes the report): through a
    remote engine's copy-back, and, locally, through the report this machine writes."""
    project = _project(tmp_path / "checkout" / "linked")
    volumes_removed.append(project)
    canary = tmp_path / "canary"
    canary.mkdir()
    (project / link).parent.mkdir(parents=True, exist_ok=True)
    (project / link).symlink_to(canary)
    built = xpcargo(["build", "--target", X86_64], cwd=project, env={"XPCARGO_REMOTE": remote})
    assert built.code == 5, built
    (line,) = [line for line in built.stderr_lines if line.startswith("error:")]
    assert "is a symbolic link in the project" in line, built.stderr
    assert "Traceback" not in built.stderr
    assert list(canary.iterdir()) == []


def test_a_link_inside_the_target_dir_is_not_followed_on_the_way_back(
    xpcargo: Cli, tmp_path: Path, volumes_removed: list[Path]
) -> None:
    project = _project(tmp_path / "checkout" / "inner")
    volumes_removed.append(project)
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("canary\n", encoding="utf-8")
    # Where the binary comes back: a link to the canary file, and a link to the canary directory beside it.
    debug = project / "target" / X86_64 / "debug"
    debug.mkdir(parents=True)
    (debug / "planted").symlink_to(canary / "keep")
    (debug / "deps").symlink_to(canary)
    (debug / "build").symlink_to(canary)
    built = xpcargo(["build", "--target", X86_64], cwd=project, env=REMOTE)
    assert built.code == 0, built
    assert sorted(path.name for path in canary.iterdir()) == ["keep"]
    assert (canary / "keep").read_text(encoding="utf-8") == "canary\n"
    assert not (debug / "planted").is_symlink()
    assert _run(debug / "planted") == "clean: hello"
