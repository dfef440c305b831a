"""What xpcargo reads of a checkout's git, with the checkout's own `.git/config` hostile: every program it names
(fsmonitor, hooks, pager, gpg, a clean filter, a textconv) would write a canary, and none may run."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from xpcargo.container.spec import Mount
from xpcargo.pipeline import git_checkout, reproducible
from xpcargo.release import dist

from .git_repos import COMMIT_TIME, git, sign


def _repository(tmp_path: Path) -> Path:
    repo = tmp_path / "project"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "src.txt").write_text("hello\n", encoding="utf-8")
    (repo / ".gitattributes").write_text("*.txt filter=evil diff=evil\n", encoding="utf-8")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "x")
    sign(repo)
    git(repo, "remote", "add", "origin", "https://user:token@example.com/o/r.git")
    return repo


def _plant(repo: Path, canary: Path) -> None:
    """What a build script writes into `.git`: every key it can find that names a program."""
    script = repo.parent / "evil.sh"
    script.write_text(f'#!/bin/sh\necho "$0 $*" >> {canary}\ncat\n', encoding="utf-8")
    script.chmod(0o755)
    with (repo / ".git" / "config").open("a", encoding="utf-8") as config:
        config.write(
            f"[core]\n\tfsmonitor = {script}\n\tpager = {script}\n\thooksPath = {repo.parent}\n"
            f"\tsshCommand = {script}\n\taskPass = {script}\n"
            f"[gpg]\n\tprogram = {script}\n[log]\n\tshowSignature = true\n"
            f'[filter "evil"]\n\tclean = {script}\n\tsmudge = {script}\n\tprocess = {script}\n\trequired = true\n'
            f'[diff "evil"]\n\ttextconv = {script}\n\tcommand = {script}\n'
            f"[include]\n\tpath = {repo.parent / 'more.config'}\n"
        )
    for hook in ("post-index-change", "reference-transaction", "fsmonitor-watchman"):
        (repo.parent / hook).write_text(script.read_text(encoding="utf-8"), encoding="utf-8")
        (repo.parent / hook).chmod(stat.S_IRWXU)
    # A touched file that git must look at the content of (and so would filter) to say whether it changed.
    os.utime(repo / "src.txt", (0, 0))


def test_a_planted_git_config_runs_nothing(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    canary = tmp_path / "canary"
    _plant(repo, canary)
    # The config as planted does run the programs: the attack is real.
    subprocess.run(["git", "-C", str(repo), "status"], capture_output=True, check=False)
    assert canary.exists()
    canary.unlink()

    found = git_checkout.read(repo, {"PATH": os.environ["PATH"], "HOME": str(tmp_path)})
    epoch = reproducible.source_date_epoch({"PATH": os.environ["PATH"]}, repo)
    source = dist.git_source(repo, {"PATH": os.environ["PATH"]})
    assert not canary.exists()
    assert found.commit == git(repo, "rev-parse", "HEAD").strip()
    assert found.commit_time == COMMIT_TIME
    assert epoch == (COMMIT_TIME, "git")
    assert found.dirty is False
    assert source.uri == "git+https://example.com/o/r.git"


def test_the_dirty_state_branches_and_packed_refs(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    commit = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "pack-refs", "--all")
    git(repo, "gc", "-q")  # the commit now lives in a pack, its ref in packed-refs
    assert not any((repo / ".git" / "refs" / "heads").iterdir())
    assert git_checkout.read(repo / "src", {"PATH": os.environ["PATH"]}).commit == commit
    (repo / "src.txt").write_text("changed\n", encoding="utf-8")
    found = git_checkout.read(repo, {"PATH": os.environ["PATH"]})
    assert (found.commit, found.commit_time, found.dirty) == (commit, COMMIT_TIME, True)
    # Reading changed nothing in the checkout: no index refresh, no lock.
    assert not (repo / ".git" / "index.lock").exists()


def test_a_linked_worktree_is_read_through_its_gitdir_file(tmp_path: Path) -> None:
    repo = _repository(tmp_path)
    git(repo, "worktree", "add", "-q", str(tmp_path / "other"), "-b", "other")
    found = git_checkout.read(tmp_path / "other", {"PATH": os.environ["PATH"]})
    assert found.commit == git(repo, "rev-parse", "HEAD").strip()
    assert found.dirty is False


def test_no_repository(tmp_path: Path) -> None:
    found = git_checkout.read(tmp_path, {"PATH": os.environ["PATH"]})
    assert (found.commit, found.commit_time, found.dirty, found.remote_url) == (None, None, False, None)


@pytest.mark.parametrize("head", ["ref: refs/../../../etc/passwd", "ref: refs/heads/loop", "garbage"])
def test_a_hostile_head_names_no_commit(tmp_path: Path, head: str) -> None:
    git_dir = tmp_path / ".git"
    (git_dir / "refs" / "heads").mkdir(parents=True)
    (git_dir / "HEAD").write_text(head, encoding="utf-8")
    (git_dir / "refs" / "heads" / "loop").write_text("ref: refs/heads/loop", encoding="utf-8")
    assert git_checkout.read(tmp_path, {"PATH": os.environ["PATH"]}).commit is None


def test_every_git_dir_a_writable_mount_shows_is_mounted_read_only(tmp_path: Path) -> None:
    outer = tmp_path / "mono"
    workspace = outer / "crates" / "app"
    (outer / ".git").mkdir(parents=True)
    workspace.mkdir(parents=True)
    (workspace / ".git").write_text("gitdir: /elsewhere\n", encoding="utf-8")
    (outer / "crates" / ".git").symlink_to(tmp_path)
    writable_workspace = (Mount(path=workspace), Mount(path=tmp_path / "target"))
    assert git_checkout.read_only_git(writable_workspace, workspace) == (
        *writable_workspace,
        Mount(path=workspace / ".git", read_only=True),
    )
    # A monorepo's root mounted for a path dependency: its .git too. A read-only mount needs nothing more.
    writable_root = (Mount(path=workspace), Mount(path=outer))
    assert git_checkout.read_only_git(writable_root, workspace)[2:] == (
        Mount(path=workspace / ".git", read_only=True),
        Mount(path=outer / ".git", read_only=True),
    )
    read_only = (Mount(path=outer, read_only=True),)
    assert git_checkout.read_only_git(read_only, workspace) == read_only


@pytest.mark.parametrize(
    ("dot_git", "commondir"),
    [("gitdir: a\0b\n", None), ("gitdir: gitdata\n", "common\0dir\n")],
    ids=["NUL in .git", "NUL in commondir"],
)
def test_a_git_file_naming_no_usable_git_dir_names_no_commit(
    tmp_path: Path, dot_git: str, commondir: str | None
) -> None:
    # Untrusted input (a checkout unpacked from anywhere), once a traceback: no commit, no internal error.
    # A detached HEAD, so that only the path's own oddity could stop git from being asked.
    (tmp_path / "gitdata").mkdir()
    (tmp_path / "gitdata" / "HEAD").write_text("0" * 40 + "\n", encoding="utf-8")
    if commondir is not None:
        (tmp_path / "gitdata" / "commondir").write_text(commondir, encoding="utf-8")
    (tmp_path / ".git").write_text(dot_git, encoding="utf-8")
    found = git_checkout.read(tmp_path, {"PATH": os.environ["PATH"]})
    assert (found.commit, found.dirty) == (None, False)


def test_a_git_dir_reached_through_a_link_or_a_gitdir_file_is_mounted_read_only(tmp_path: Path) -> None:
    # `.git` a link to a directory in the workspace: the engine cannot mount over the link, so its target.
    linked = tmp_path / "linked"
    (linked / ".git-real").mkdir(parents=True)
    (linked / ".git").symlink_to(".git-real")
    assert git_checkout.read_only_git((Mount(path=linked),), linked)[1:] == (
        Mount(path=linked / ".git-real", read_only=True),
    )
    # `.git` a file naming a git dir in the workspace whose common dir is elsewhere in it.
    separate = tmp_path / "separate"
    (separate / "data" / "worktrees" / "w").mkdir(parents=True)
    (separate / "data" / "worktrees" / "w" / "commondir").write_text("../..\n", encoding="utf-8")
    (separate / ".git").write_text("gitdir: data/worktrees/w\n", encoding="utf-8")
    assert git_checkout.read_only_git((Mount(path=separate),), separate)[1:] == (
        Mount(path=separate / ".git", read_only=True),
        Mount(path=separate / "data" / "worktrees" / "w", read_only=True),
        Mount(path=separate / "data", read_only=True),
    )


def test_a_gitdir_file_naming_a_link_loop_protects_nothing_more(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / ".git").write_text("gitdir: loop\n", encoding="utf-8")
    assert git_checkout.read_only_git((Mount(path=tmp_path),), tmp_path)[1:] == (
        Mount(path=tmp_path / ".git", read_only=True),
    )
    assert git_checkout.read(tmp_path, {"PATH": os.environ["PATH"]}).commit is None


def test_a_fifo_for_head_names_no_commit_and_does_not_block(tmp_path: Path) -> None:
    (tmp_path / ".git").mkdir()
    os.mkfifo(tmp_path / ".git" / "HEAD")
    assert git_checkout.read(tmp_path, {"PATH": os.environ["PATH"]}).commit is None
