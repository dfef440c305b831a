"""Releases that a project cannot forge, against the real engine with hostile build scripts: configuration planted
for the host's git runs nothing, a release binary swapped for a link to the user's SSH key is never packed, a
build that is deterministic only when it thinks it is checked fails `dist` and `verify`, and overlapping `verify`
runs of one workspace each reach their own verdict."""

from __future__ import annotations

import json
import os
import sys
import tarfile
import time
from pathlib import Path

import pytest

from unit.git_repos import COMMIT_TIME, git, sign
from xpcargo import resources

from .helpers import X86_64, Cli, copy_fixture, remove_kept_builds, start_cli

pytestmark = pytest.mark.engine

# SOURCE_DATE_EPOCH as the environment spells it: the time of the commits the tests make.
_EPOCH = str(COMMIT_TIME)


def _home(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A home directory of the test's own with an SSH key in it (a canary), and the environment that names it."""
    home = tmp_path / "home"
    key = home / ".ssh" / "id_ed25519"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\ncanary key\n-----END OPENSSH PRIVATE KEY-----\n")
    key.chmod(0o600)
    # The images' records stay where the session's images were built.
    env = {"HOME": str(home), "XPCARGO_CACHE_DIR": str(resources.default_cache_dir(os.environ))}
    return env, key


def _commit(project: Path) -> str:
    (project / ".gitignore").write_text("/target\n")
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "release")
    return git(project, "rev-parse", "HEAD").strip()


def test_git_config_planted_by_a_build_runs_nothing_on_the_host(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "git-config-planter")
    commit = _commit(project)
    # Written after the commit: the fixture's own files are what the planted filter and diff drivers match.
    (project / ".gitattributes").write_text("*.rs filter=planted diff=planted\n")
    git(project, "add", ".gitattributes")
    git(project, "commit", "-q", "-m", "attributes")
    commit = sign(project)
    config = (project / ".git" / "config").read_bytes()
    canary = tmp_path / "canary"
    (project / "canary-path").write_text(str(canary))
    env, _ = _home(tmp_path)

    # An ordinary build, then each command that reads git on the host. No SOURCE_DATE_EPOCH: it comes from git.
    built = xpcargo(["build", "--release", "--target", X86_64], cwd=project, env=env)
    assert built.code == 0, built
    for command in (["dist"], ["verify", "--release"], ["dist", "--no-verify"]):
        ran = xpcargo([*command, "--target", X86_64], cwd=project, env=env)
        assert not canary.exists(), (command, canary.read_text())
        assert ran.code == 0, ran
    # The build could not write there in the first place.
    assert "could not plant in" in built.stderr, built
    assert (project / ".git" / "config").read_bytes() == config
    assert not (project / ".git" / "hooks" / "post-index-change").exists()

    statement = json.loads((project / "target" / "dist" / "provenance.intoto.json").read_text())
    source = statement["predicate"]["buildDefinition"]["externalParameters"]["source"]
    # canary-path and planted.sh are untracked: the tree is as committed.
    assert source == {"digest": {"gitCommit": commit}, "dirty": False}
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["sourceDateEpoch"] == int(_EPOCH)


def test_git_config_cannot_be_planted_through_a_git_link(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, xpcargo: Cli
) -> None:
    # `.git` a link to the real git dir in the workspace: the engine cannot mount over a link, so what it names.
    project = copy_fixture(tmp_path_factory, "git-config-planter")
    _commit(project)
    (project / ".git").rename(project / ".git-real")
    (project / ".git").symlink_to(".git-real")
    config = (project / ".git-real" / "config").read_bytes()
    (project / "canary-path").write_text(str(tmp_path / "canary"))
    env, _ = _home(tmp_path)

    built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert built.code == 0, built
    assert "could not plant in" in built.stderr, built
    assert (project / ".git-real" / "config").read_bytes() == config


@pytest.mark.parametrize("verified", [True, False], ids=["dist", "dist --no-verify"])
def test_a_release_binary_swapped_for_a_link_to_a_key_is_never_packed(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, xpcargo: Cli, verified: bool
) -> None:
    env, key = _home(tmp_path)
    args = ["dist", "--target", X86_64, *([] if verified else ["--no-verify"])]
    # The swap races the end of the build's container: on a loaded machine the swapper may not run between Cargo's
    # link and the container's removal, and the release is then the honest one. Tried again until the attack lands
    # (at once on a quiet machine; a full run with four other builds on the two cores saw four honest releases in a
    # row), checking each time that nothing of the key was packed. Swapping earlier, where the linker writes, fails
    # the link instead.
    for _ in range(_ATTEMPTS):
        project = copy_fixture(tmp_path_factory, "release-swapper")
        (project / "key-path").write_text(str(key))
        dist = xpcargo(args, cwd=project, env={**env, "SOURCE_DATE_EPOCH": _EPOCH})
        if dist.code != 0:
            break
        _assert_no_key_shipped(project, key.read_bytes())
    assert dist.code != 0, f"the swap never landed in {_ATTEMPTS} attempts: {dist}"
    assert "Traceback" not in dist.stderr
    last = dist.stderr_lines[-1]
    assert last.startswith("error: "), dist
    assert "release-swapper" in last, dist
    # Refused for the swap (the link itself, or a build whose binary the link made differ from the other's), and
    # nothing of the key left the home directory.
    assert "is a symbolic link" in last or "artifacts differ between the two builds" in last, dist
    if "differ" in last:
        remove_kept_builds(dist)
    shipped = _assert_no_key_shipped(project, key.read_bytes())
    assert not any(path.name.endswith(".tar.gz") for path in shipped), shipped


_ATTEMPTS = 10


def _assert_no_key_shipped(project: Path, secret: bytes) -> list[Path]:
    """Nothing in the project's dist directory holds ``secret``, as a file or in an archive; what is there."""
    shipped = list((project / "target" / "dist").glob("*")) if (project / "target" / "dist").exists() else []
    for path in shipped:
        assert secret not in path.read_bytes(), path
        if path.name.endswith(".tar.gz"):
            with tarfile.open(path) as opened:
                for member in opened.getmembers():
                    extracted = opened.extractfile(member)
                    assert extracted is None or extracted.read() != secret, path
    return shipped


@pytest.mark.parametrize("verified", [True, False], ids=["dist", "dist --no-verify"])
def test_a_target_dir_swapped_for_a_link_to_another_tree_is_never_packed(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, xpcargo: Cli, verified: bool
) -> None:
    """The whole target dir (the project's own, in the workspace: `--no-verify`) replaced by a link to a tree on the
    host laid out like one: every directory below it is real, so only a walk from the workspace root, which the
    build cannot replace, refuses it."""
    project = copy_fixture(tmp_path_factory, "release-dir-swapper")
    env, _ = _home(tmp_path)
    decoy = tmp_path / "home" / "other-project" / "target"
    secret = decoy / X86_64 / "release" / "release-dir-swapper"
    secret.parent.mkdir(parents=True)
    secret.write_bytes(Path("/bin/true").read_bytes() + b"canary other project's binary\n")
    (project / "decoy-path").write_text(str(decoy))

    args = ["dist", "--target", X86_64, *([] if verified else ["--no-verify"])]
    dist = xpcargo(args, cwd=project, env={**env, "SOURCE_DATE_EPOCH": _EPOCH})

    packed = b"".join(path.read_bytes() for path in (project / "target.moved").glob("dist/*.tar.gz"))
    packed += b"".join(path.read_bytes() for path in decoy.glob("dist/*.tar.gz"))
    assert b"canary" not in packed
    if verified:
        # Both builds' target dirs are mounts of their own (beside the copies): the build cannot rename one.
        assert "could not swap the target dir: Device or resource busy" in dist.stderr, dist
        assert dist.code == 0, dist
        return
    # The swap happened (else the test proves nothing).
    assert "swapped the target dir for a link" in dist.stderr, dist
    assert dist.code != 0, dist
    assert "Traceback" not in dist.stderr
    # Refused as soon as the build ends (the target dir is checked again before this machine writes into it: the
    # target's line in the summary says so), and were it not, by the packing's own walk from the workspace root.
    assert "target` is a symbolic link in the project" in dist.stderr, dist
    assert "failed (5)" in dist.stderr, dist
    assert b"canary" not in packed


def test_a_build_deterministic_only_when_checked_fails_dist_and_verify(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "checked-only-determinism")
    env = {"SOURCE_DATE_EPOCH": _EPOCH}

    verified = xpcargo(["verify", "--target", X86_64, "--release"], cwd=project, env=env)
    assert verified.code == 12, verified
    assert "release/checked-only-determinism differs" in verified.stdout, verified
    assert verified.stderr_lines[-1].startswith("error: 1 of 1 artifacts differ"), verified

    dist = xpcargo(["dist", "--target", X86_64], cwd=project, env=env)
    assert dist.code == 12, dist
    assert "release/checked-only-determinism" in dist.stderr_lines[-1], dist
    assert not (project / "target" / "dist").exists(), "nothing is packed when the builds differ"
    # Both builds are kept for the user to look at, and the message names them; the user removes them.
    for path in [*remove_kept_builds(verified), *remove_kept_builds(dist)]:
        assert "verify" not in str(path), path
        assert "xpcargo" not in str(path), path


def _slow_crate(directory: Path) -> Path:
    """A deterministic crate whose build script takes a few seconds: time for other runs to start meanwhile."""
    (directory / "src").mkdir(parents=True)
    (directory / "Cargo.toml").write_text(
        '[package]\nname = "slow"\nversion = "0.1.0"\nedition = "2021"\npublish = false\n'
    )
    (directory / "Cargo.lock").write_text('version = 4\n\n[[package]]\nname = "slow"\nversion = "0.1.0"\n')
    (directory / "build.rs").write_text("fn main() { std::thread::sleep(std::time::Duration::from_secs(4)); }\n")
    (directory / "src" / "main.rs").write_text('fn main() { println!("slow"); }\n')
    return directory


def test_three_verify_runs_of_one_workspace_at_once_each_reach_a_verdict(tmp_path: Path, xpcargo: Cli) -> None:
    project = _slow_crate(tmp_path / "slow")
    env = {**xpcargo.env, "SOURCE_DATE_EPOCH": _EPOCH}
    argv = [sys.executable, "-m", "xpcargo", "verify", "--target", X86_64, "--release"]
    processes = []
    for _ in range(3):
        # Staggered, so that each run starts while another is building (in its build script's sleep).
        processes.append(start_cli(argv, cwd=project, env=env))
        time.sleep(2.5)
    results = [(process, *process.communicate(timeout=900)) for process in processes]
    for process, stdout, stderr in results:
        assert process.returncode == 0, f"{stdout}\n{stderr}"
        rows = [line.split() for line in stdout.splitlines()[1:]]
        assert rows, stdout
        assert all(row[-1] == "same" for row in rows), stdout
    assert len({stdout for _, stdout, _ in results}) == 1, "the three runs built the same bytes"
