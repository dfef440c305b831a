"""What xpcargo asks of the checkout's git, without running anything the checkout's git configuration names.

A build script can write `.git/config` (a previous build, a build outside xpcargo, or one before the `.git` mount
below existed): `core.fsmonitor`, `core.pager`, `gpg.program`, `filter.<x>.clean`, `diff.<x>.textconv`,
`core.hooksPath` and more name programs that an ordinary `git status` or `git log` runs on the host. Overriding
them one by one with `-c` cannot be complete (new keys come with every git release), so git here never reads that
file at all: HEAD and the refs are read directly, and git runs against a git dir of our own, made for the call,
whose config we write, and which borrows the checkout's objects (``GIT_OBJECT_DIRECTORY``) and, for the dirty
check, its index (``GIT_INDEX_FILE``). The system and global configs are off too; they are the user's, but
nothing here needs them. Submodules are ignored: git would run inside them with their own config.

The second half keeps the build from writing `.git` at all: every `.git` at or above the workspace root that a
writable mount would show to the container is mounted read-only over it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xpcargo.container.spec import Mount

_OBJECT_ID = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
# Plenty for a commit object's header; a ref chain longer than this is a loop.
_MAX_SYMREF_DEPTH = 10


@dataclass(frozen=True, kw_only=True)
class GitDir:
    """Where one checkout keeps its git data: its own dir (HEAD, index) and the common dir (objects, refs,
    config), which differ for a linked worktree."""

    git_dir: Path
    common_dir: Path
    work_tree: Path


@dataclass(frozen=True, kw_only=True)
class Checkout:
    commit: str | None
    commit_time: int | None
    dirty: bool
    remote_url: str | None


def find(start: Path) -> GitDir | None:
    """The git dir of the checkout holding ``start`` (`.git` as a directory, or as a `gitdir:` file)."""
    for directory in (start, *start.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir() or dot_git.is_file():
            return _at(dot_git)
    return None


def _at(dot_git: Path) -> GitDir | None:
    """The git dir that ``dot_git`` (an existing `.git`) is or names; None for a `.git` file that names none."""
    if dot_git.is_dir():
        return _git_dir(dot_git, dot_git.parent)
    line = (_read(dot_git) or "").strip()
    # A NUL cannot be in a path: open() and subprocess would raise on it rather than fail.
    if not line.startswith("gitdir:") or "\0" in line:
        return None
    target = Path(line.removeprefix("gitdir:").strip())
    return _git_dir(target if target.is_absolute() else dot_git.parent / target, dot_git.parent)


def _git_dir(git_dir: Path, work_tree: Path) -> GitDir | None:
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        named = (_read(commondir) or "").strip()
        if not named or "\0" in named:
            return None
        common = Path(named) if Path(named).is_absolute() else git_dir / named
    return GitDir(git_dir=git_dir, common_dir=common, work_tree=work_tree)


def _read(path: Path) -> str | None:
    # Only a regular file: a FIFO in a checkout's `.git` (a tarball can hold one) would block the read for good.
    try:
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else None
    except (OSError, ValueError):
        return None


def head_commit(repo: GitDir) -> str | None:
    """HEAD as an object id: a detached HEAD, or the branch it names (a loose ref, else `packed-refs`)."""
    content = _read(repo.git_dir / "HEAD")
    for _ in range(_MAX_SYMREF_DEPTH):
        if content is None:
            return None
        value = content.strip()
        if _OBJECT_ID.match(value):
            return value
        if not value.startswith("ref: "):
            return None
        ref = value.removeprefix("ref: ").strip()
        # A ref is a path under the git dir: refuse one that climbs out of it.
        if not ref.startswith("refs/") or ".." in ref.split("/"):
            return None
        content = _read(repo.git_dir / ref) if (repo.git_dir / ref).is_file() else _read(repo.common_dir / ref)
        if content is None:
            content = _packed_ref(repo.common_dir, ref)
    return None


def _packed_ref(common_dir: Path, ref: str) -> str | None:
    for line in (_read(common_dir / "packed-refs") or "").splitlines():
        object_id, _, name = line.partition(" ")
        if name.strip() == ref and _OBJECT_ID.match(object_id):
            return object_id
    return None


def _environment(environ: Mapping[str, str], own_git_dir: Path, repo: GitDir) -> dict[str, str]:
    # The user's GIT_* variables could point git anywhere (GIT_DIR, GIT_CONFIG_*, GIT_EXTERNAL_DIFF): none is kept.
    kept = {name: value for name, value in environ.items() if not name.startswith("GIT_")}
    return {
        **kept,
        "GIT_DIR": str(own_git_dir),
        "GIT_OBJECT_DIRECTORY": str(repo.common_dir / "objects"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        # Never take the index lock or refresh the index: the checkout is the user's, not ours to write.
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
    }


# Belt and braces on top of a config that names none of them.
_OVERRIDES = ("-c", "core.fsmonitor=false", "-c", f"core.hooksPath={os.devnull}", "-c", "core.untrackedCache=false")


def read(start: Path, environ: Mapping[str, str]) -> Checkout:
    """The commit, its committer time, whether tracked files differ from it, and the `origin` remote's URL."""
    repo = find(start)
    commit = head_commit(repo) if repo is not None else None
    git = shutil.which("git")
    if repo is None or commit is None:
        return Checkout(commit=None, commit_time=None, dirty=False, remote_url=None)
    if git is None:
        return Checkout(commit=commit, commit_time=None, dirty=True, remote_url=None)
    with tempfile.TemporaryDirectory(prefix="git-") as own:
        own_git_dir = Path(own)
        sha256 = len(commit) == 64
        (own_git_dir / "config").write_text(
            "[core]\n\trepositoryformatversion = 1\n\tbare = false\n"
            + ("[extensions]\n\tobjectFormat = sha256\n" if sha256 else ""),
            encoding="utf-8",
        )
        (own_git_dir / "HEAD").write_text(commit + "\n", encoding="utf-8")
        (own_git_dir / "refs").mkdir()
        (own_git_dir / "objects").mkdir()
        env = _environment(environ, own_git_dir, repo)

        def ask(*argv: str, extra: Mapping[str, str] | None = None) -> str | None:
            completed = subprocess.run(
                [git, "--no-pager", *_OVERRIDES, *argv],
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
                cwd=own_git_dir,
                env={**env, **(extra or {})},
                stdin=subprocess.DEVNULL,
            )
            return completed.stdout if completed.returncode == 0 else None

        body = ask("cat-file", "commit", commit)
        status = ask(
            "status",
            "--porcelain",
            "--untracked-files=no",
            "--ignore-submodules=all",
            "--no-renames",
            extra={"GIT_INDEX_FILE": str(repo.git_dir / "index"), "GIT_WORK_TREE": str(repo.work_tree)},
        )
        # `git config --file` reads that one file as data, with no includes and nothing run.
        remote = ask("config", "--file", str(repo.common_dir / "config"), "--get", "remote.origin.url")
    return Checkout(
        commit=commit,
        commit_time=_committer_time(body) if body is not None else None,
        # When git cannot say, the provenance must not claim a clean tree.
        dirty=status is None or bool(status.strip()),
        remote_url=(remote or "").strip() or None,
    )


def _committer_time(body: str) -> int | None:
    for line in body.splitlines():
        if not line:
            return None  # the header ends at the first empty line
        if line.startswith("committer "):
            words = line.split()
            if len(words) >= 3 and words[-2].isdigit():
                return int(words[-2])
    return None


def read_only_git(mounts: Iterable[Mount], workspace_root: Path) -> tuple[Mount, ...]:
    """``mounts`` with every git dir of a checkout at or above ``workspace_root`` that a writable mount shows to
    the container mounted read-only over it, so that a build cannot plant configuration for the host's git to run
    later: `.git` itself, and what a `.git` link or `gitdir:` file names (and its common dir), wherever it is."""
    chosen = tuple(mounts)
    writable = [mount.path for mount in chosen if not mount.read_only and mount.volume is None]
    protected: list[Mount] = []
    for directory in (workspace_root, *workspace_root.parents):
        dot_git = directory / ".git"
        repo = _at(dot_git) if dot_git.is_dir() or dot_git.is_file() else None
        # A link is not mounted over (the engine would mount over what it names): what it names is.
        data = [] if dot_git.is_symlink() or not dot_git.exists() else [dot_git]
        data += [repo.git_dir, repo.common_dir] if repo is not None else []
        for path in data:
            seen = _in_container(path, writable)
            if seen is not None and all(seen != mount.path for mount in protected):
                protected.append(Mount(path=seen, read_only=True))
    return (*chosen, *protected)


def _in_container(path: Path, writable: Iterable[Path]) -> Path | None:
    """Where the container sees ``path`` through one of the ``writable`` mounts (each at its own host path), if it
    does. Compared resolved: a link or `..` on the way leads a build to the same place."""
    if not path.exists():
        return None  # nothing to write to, and a link loop that resolve() would raise on
    resolved = path.resolve()
    for mount in writable:
        if resolved.is_relative_to(mount.resolve()):
            return mount / resolved.relative_to(mount.resolve())
    return None
