"""Git repositories the tests make: git run with a fixed identity and date and none of the machine's configuration,
and a commit that carries a (bogus) signature."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

# The author and committer time of every commit the tests make.
COMMIT_TIME = 1600000000


def git(repo: Path, *argv: str) -> str:
    """``git -C repo argv``'s stdout; neither the system's nor the user's git configuration is read."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(repo),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_DATE": f"@{COMMIT_TIME} +0000",
        "GIT_COMMITTER_DATE": f"@{COMMIT_TIME} +0000",
    }
    command = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *argv]
    return subprocess.run(command, check=True, env=env, capture_output=True, text=True).stdout


def sign(repo: Path) -> str:
    """HEAD again, as a commit that carries a (bogus) signature: `git log` with `log.showSignature` runs
    `gpg.program` for it."""
    tree = git(repo, "rev-parse", "HEAD^{tree}").strip()
    parent = git(repo, "rev-parse", "HEAD").strip()
    body = (
        f"tree {tree}\nparent {parent}\nauthor t <t@t> {COMMIT_TIME} +0000\ncommitter t <t@t> {COMMIT_TIME} +0000\n"
        "gpgsig -----BEGIN PGP SIGNATURE-----\n \n -----END PGP SIGNATURE-----\n\nsigned\n"
    )
    (repo / ".git" / "signed-commit").write_text(body, encoding="utf-8")
    commit = git(repo, "hash-object", "-t", "commit", "-w", str(repo / ".git" / "signed-commit")).strip()
    (repo / ".git" / "signed-commit").unlink()
    git(repo, "update-ref", "HEAD", commit)
    return commit
