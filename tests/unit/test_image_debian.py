"""mmdebstrap's side of an image build without running it: where its temporary root goes for root and for other
users, and the hint of a failed bootstrap."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from xpcargo.context import Context
from xpcargo.errors import ImageBuildError
from xpcargo.image import debian

X86_64 = "x86_64-unknown-linux-gnu"
# The real bootstrap, which conftest replaces for every test.
_BOOTSTRAP = debian.bootstrap

# What mmdebstrap 1.3.5 said, as a user with subordinate ids whose ~/.cache is 0700, when its temporary root was
# under that cache (copied from a run on this machine; the home's path shortened).
REFUSED_OUTPUT = (
    "I: using /home/u/.cache/xpcargo/scratch/image-x/mmdebstrap.gv6mZ8EsO3 as tempdir\n"
    "E: cannot create /home/u/.cache: Permission denied; cannot create /home/u/.cache/xpcargo: Permission denied; "
    "cannot create /home/u/.cache/xpcargo/scratch/image-x/mmdebstrap.gv6mZ8EsO3//etc/apt: Permission denied\n"
    "I: removing tempdir /home/u/.cache/xpcargo/scratch/image-x/mmdebstrap.gv6mZ8EsO3...\n"
    "env: cannot change directory to '/home/u/.cache/xpcargo/scratch/image-x/mmdebstrap.gv6mZ8EsO3': "
    "Permission denied\n"
    "E: rm failed: 32000\n"
    "E: remove_tree failed"
)


def _shared(path: Path) -> bool:
    mode = path.stat().st_mode
    return stat.S_ISDIR(mode) and mode & 0o1777 == 0o1777


@pytest.fixture
def closed_home(tmp_path: Path) -> Path:
    """A home as most systems make it: the home and ~/.cache closed to others."""
    home = tmp_path / "home"
    (home / ".cache" / "xpcargo" / "scratch").mkdir(parents=True)
    (home / ".cache").chmod(0o700)
    home.chmod(0o700)
    return home


def test_a_build_as_root_keeps_its_temporary_root_in_its_scratch(closed_home: Path) -> None:
    scratch = closed_home / ".cache" / "xpcargo" / "scratch"
    assert debian.tmpdir_for(scratch, as_root=True, environ={"TMPDIR": "/tmp"}) == scratch


def test_another_user_s_build_puts_it_where_its_subordinate_ids_reach(closed_home: Path) -> None:
    scratch = closed_home / ".cache" / "xpcargo" / "scratch"
    # A sticky directory writable by all, but under the closed home: the namespace's root could not reach it.
    inside = closed_home / "tmp"
    inside.mkdir()
    inside.chmod(0o1777)
    shared = (inside, Path("/var/tmp"), Path("/tmp"))
    expected = next(path for path in shared[1:] if _shared(path))
    assert debian.tmpdir_for(scratch, as_root=False, environ={}, shared=shared) == expected
    # TMPDIR comes first when it is such a directory, and is passed over when it is a private one.
    assert debian.tmpdir_for(scratch, as_root=False, environ={"TMPDIR": str(expected)}, shared=shared) == expected
    private = closed_home / "private-tmp"
    private.mkdir(mode=0o700)
    assert debian.tmpdir_for(scratch, as_root=False, environ={"TMPDIR": str(private)}, shared=shared) == expected


def test_no_reachable_temporary_directory_is_one_line_naming_what_was_tried(closed_home: Path) -> None:
    inside = closed_home / "tmp"
    inside.mkdir()
    inside.chmod(0o1777)
    with pytest.raises(ImageBuildError) as caught:
        debian.tmpdir_for(closed_home / ".cache", as_root=False, environ={}, shared=(inside,))
    summary = caught.value.summary()
    assert "\n" not in summary
    assert summary.startswith("error: image build failed at step `bootstrap`: no temporary directory")
    assert f"(tried {inside})" in summary
    assert "(hint: mmdebstrap's unshared root is a subordinate uid of yours: point TMPDIR at" in summary


def _failing_mmdebstrap(monkeypatch: pytest.MonkeyPatch, output: str) -> list[dict[str, str]]:
    """mmdebstrap as a script that prints ``output`` and fails; returns the environments it was started with."""
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(debian, "_tether", list)
    environments: list[dict[str, str]] = []

    def start(argv: list[str], environment: dict[str, str]) -> subprocess.Popen[str]:
        environments.append(environment)
        return subprocess.Popen(
            ["sh", "-c", 'printf "%s\\n" "$1"; exit 25', "sh", output],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    monkeypatch.setattr(debian, "_start", start)
    return environments


def _bootstrap(tmp_path: Path) -> ImageBuildError:
    context = Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path)})
    plan = context.host.image_plan(context.host.toolchains.target(X86_64))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    with pytest.raises(ImageBuildError) as caught:
        _BOOTSTRAP(
            plan.base,
            scratch / "rootfs.tar",
            target=X86_64,
            scratch=scratch,
            deb_cache=tmp_path / "debs",
            on_line=lambda _: None,
            on_retry=lambda _: None,
        )
    return caught.value


def test_a_bootstrap_refused_a_path_is_not_blamed_on_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    environments = _failing_mmdebstrap(monkeypatch, REFUSED_OUTPUT)
    error = _bootstrap(tmp_path)
    summary = error.summary()
    assert "\n" not in summary
    assert summary.startswith(
        f"error: image build for {X86_64} failed at step `bootstrap` (mmdebstrap exit 25): "
        "E: cannot create /home/u/.cache: Permission denied;"
    )
    assert summary.endswith(
        "(hint: /home/u/.cache: Permission denied: a file permission problem, not apt's. mmdebstrap's unshared root "
        "is one of your subordinate uids and must reach its temporary root (TMPDIR); the .deb cache and the build's "
        "scratch in xpcargo's cache must be yours to write)"
    )
    assert "quotes apt" not in summary
    # Tried once: a permission problem is not the mirror's, and another try would meet it again.
    assert len(environments) == 1
    if os.geteuid() == 0:
        # As root, mmdebstrap's temporary root is in the build's scratch, which a later build sweeps.
        assert environments[0]["TMPDIR"] == str(tmp_path / "scratch")


def test_a_bootstrap_apt_failed_still_quotes_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _failing_mmdebstrap(monkeypatch, "E: Unable to locate package libfoo-dev\nE: apt-get install failed")
    summary = _bootstrap(tmp_path).summary()
    assert summary.endswith(
        "(hint: check the target's packages and the project's extra-packages; the message quotes apt)"
    ), summary


def test_a_bootstrap_whose_hook_failed_names_the_cache_not_apt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What mmdebstrap 1.3.5 said when its sync-out met a directory of root's in a user's .deb cache (copied from a
    # run on this machine): its hook listener dies without a word of why.
    _failing_mmdebstrap(
        monkeypatch,
        "I: installing remaining packages inside the chroot...\n"
        "E: setup failed: E: hookhelper failed: E: expected okthx but got: error\n"
        "W: umount /proc failed: 8192\n"
        "E: setup failed: E: special hook failed with exit code 6400\n"
        "E: mmdebstrap failed to run",
    )
    summary = _bootstrap(tmp_path).summary()
    assert "\n" not in summary
    assert summary.endswith(
        f"(hint: not apt's: mmdebstrap failed to copy the .deb cache ({tmp_path / 'debs'}) into or out of the build, "
        f"or the tarball and package list into {tmp_path / 'scratch'}; everything under them must be yours to read "
        "and write (a file left there by root is not))"
    ), summary
