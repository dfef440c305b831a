"""An image build stopped by a real signal while a real mmdebstrap runs, and two real processes that need the same
image at once.

The builds use a recipe of their own with a tiny package set (Debian's essential set, apt and `hostname`: ~35 MB
downloaded into the test's own cache), so the bootstrap takes ~15 s and is interrupted while dpkg installs the
essential packages. The image could never pass its check (it has no rustc), so nothing is ever tagged, and the
shared toolchain images are never touched. A layer's build is interrupted on the shared base (only read), while apt
installs a target's cross compiler in a cache of the test's own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .helpers import X86_64, docker, start_cli

pytestmark = pytest.mark.engine

# The moment to strike: dpkg is unpacking and configuring the essential packages in the chroot.
MID_BOOTSTRAP = "I: installing essential packages..."
# What "stops fast" means here, measured from the signal to the exit of xpcargo.
EXIT_WITHIN = 5.0
_RECIPE = """\
suite: trixie
mirror: http://deb.debian.org/debian
packages: []
rust:
  version: "*"
  packages: [hostname]
  std: {package: libstd-rust-web-dev, pool: pool/main/r/rustc-web, sha256: {}}
"""


def _toolchains(triple: str, *, recipe: str, packages: str) -> str:
    """A toolchains.yaml of one target of the test's own, native C tools, no runner."""
    return f"""\
version: 1
targets:
  {triple}:
    recipe: {recipe}
    debian-arch: amd64
    packages: {packages}
    cc: gcc
    cxx: g++
    ar: ar
    linker: gcc
    runner: []
    pkg-config-libdir: []
    env: {{}}
"""


@dataclass
class Tiny:
    """The environment of a build of the tiny image, with a cache of the test's own."""

    cache: Path
    env: dict[str, str | None] = field(default_factory=dict)

    @property
    def scratch(self) -> list[Path]:
        root = self.cache / "scratch"
        return sorted(root.iterdir()) if root.is_dir() else []


@pytest.fixture
def tiny(tmp_path: Path) -> Tiny:
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "tiny.yaml").write_text(_RECIPE, encoding="utf-8")
    (tmp_path / "toolchains.yaml").write_text(_toolchains(X86_64, recipe="tiny", packages="[]"), encoding="utf-8")
    cache = tmp_path / "cache"
    env: dict[str, str | None] = {
        "XPCARGO_TOOLCHAINS": str(tmp_path / "toolchains.yaml"),
        "XPCARGO_IMAGES": str(recipes),
        "XPCARGO_CACHE_DIR": str(cache),
    }
    return Tiny(cache=cache, env=env)


class Watched:
    """A running xpcargo whose stderr is read as it comes."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, seen: Callable[[list[str]], bool], what: str, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not seen(self.lines):
                left = deadline - time.monotonic()
                if left <= 0 or (not self._reader.is_alive() and not seen(self.lines)):
                    self.process.kill()
                    pytest.fail(f"never saw {what}:\n" + "\n".join(self.lines))
                self._changed.wait(min(left, 0.5))

    def wait_for_line(self, text: str, *, count: int = 1, timeout: float = 180) -> None:
        self.wait_for(lambda lines: sum(text in line for line in lines) >= count, f"{text!r} x{count}", timeout)

    def finish(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        return code

    def __repr__(self) -> str:
        """What an assertion message needs: the command's whole stderr so far."""
        return "\n" + "\n".join(self.lines)


@pytest.fixture
def started() -> Iterator[Callable[[Tiny], Watched]]:
    processes: list[Watched] = []

    def start(tiny: Tiny) -> Watched:
        argv = [sys.executable, "-m", "xpcargo", "image", "build", X86_64]
        watched = Watched(start_cli(argv, cwd=tiny.cache.parent, env=tiny.env))
        processes.append(watched)
        return watched

    yield start
    for watched in processes:
        if watched.process.poll() is None:
            watched.process.kill()
            watched.finish()


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of ``pid``, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text.rsplit(")", 1)[1].split()
    return (int(fields[1]), int(fields[2])) if fields[0] != "Z" else None


def _all_pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def build_group(xpcargo: int) -> int:
    """The process group of the mmdebstrap that ``xpcargo`` started: its child leads one of its own."""
    children = [pid for pid in _all_pids() if (_stat(pid) or (0, 0))[0] == xpcargo]
    groups = {pid for pid in children if (_stat(pid) or (0, 0))[1] == pid}
    assert len(groups) == 1, f"xpcargo {xpcargo} runs {children}, expected one process group leader"
    return groups.pop()


def group_members(group: int) -> list[int]:
    return [pid for pid in _all_pids() if (_stat(pid) or (0, 0))[1] == group]


def mounts_under(*roots: Path | str) -> list[str]:
    """Mount points at or under ``roots`` in the host's mount namespace (as the test process sees it)."""
    points = [line.split(" ")[4] for line in Path("/proc/self/mountinfo").read_text(encoding="utf-8").splitlines()]
    return [point for point in points for root in map(str, roots) if point == root or point.startswith(f"{root}/")]


def images_of_the_tiny_plan() -> set[str]:
    """Every image, tagged or not, built from this module's recipe (no other build uses a recipe named `tiny`)."""
    return set(docker("images", "-a", "--no-trunc", "-q", "--filter", "label=org.xpcargo.recipe=tiny").split())


def _tree_size(path: Path) -> int:
    total = 0
    for directory, _, files in os.walk(path):
        for name in files:
            total += (Path(directory) / name).lstat().st_size
    return total


def _assert_nothing_left(group: int, tiny: Tiny) -> None:
    deadline = time.monotonic() + 2
    while group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert group_members(group) == [], "processes of the image build outlived xpcargo"
    assert mounts_under(tiny.cache, "/tmp/mmdebstrap") == []
    assert not [point for point in mounts_under("/") if "/mmdebstrap." in point]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_stops_the_build_at_once_and_leaves_nothing(
    tiny: Tiny, started: Callable[[Tiny], Watched], signum: signal.Signals
) -> None:
    images_before = images_of_the_tiny_plan()
    build = started(tiny)
    build.wait_for_line(MID_BOOTSTRAP)
    group = build_group(build.process.pid)
    assert len(group_members(group)) > 2, "mmdebstrap is not running"
    # unshare mode: the chroot's proc, sys and dev are mounted in mmdebstrap's own namespace, never on the host.
    assert mounts_under(tiny.cache) == []

    sent = time.monotonic()
    build.process.send_signal(signum)
    code = build.finish()
    elapsed = time.monotonic() - sent
    sys.stderr.write(f"\n[{signum.name}] exit {elapsed:.2f}s after the signal\n")

    assert code == 130, build
    expected = "error: interrupted" if signum == signal.SIGINT else f"error: terminated by {signum.name}"
    errors = [line for line in build.lines if line.startswith("error")]
    assert errors == [f"{expected}; nothing was left running"], build
    assert build.lines[-1] == errors[0], build
    assert not [line for line in build.lines if "Traceback" in line], build
    assert elapsed < EXIT_WITHIN, f"{elapsed:.1f}s from {signum.name} to exit"
    _assert_nothing_left(group, tiny)
    assert tiny.scratch == [], "the build's scratch directory is still there"
    assert images_of_the_tiny_plan() == images_before


def test_after_a_sigkill_the_next_build_sweeps_what_is_left(tiny: Tiny, started: Callable[[Tiny], Watched]) -> None:
    images_before = images_of_the_tiny_plan()
    killed = started(tiny)
    killed.wait_for_line(MID_BOOTSTRAP)
    group = build_group(killed.process.pid)
    killed.process.kill()
    assert killed.finish() == -signal.SIGKILL
    # No process and no mount: they die with xpcargo (PID namespace, PR_SET_PDEATHSIG, unshare mode).
    _assert_nothing_left(group, tiny)
    # What is left is the scratch directory with mmdebstrap's partial root filesystem, and nothing else.
    (stale,) = tiny.scratch
    left = _tree_size(stale)
    sys.stderr.write(f"\n[SIGKILL] left {stale.name}: {left / 2**20:.0f} MiB, no process, no mount\n")
    assert left > 2**20

    following = started(tiny)
    following.wait_for_line("(mmdebstrap)")
    assert f"     Removed {stale}, left by an image build that was killed" in following.lines, following
    assert not stale.exists()
    following.process.send_signal(signal.SIGINT)
    assert following.finish() == 130, following
    assert tiny.scratch == []
    assert images_of_the_tiny_plan() == images_before


def test_a_second_build_of_the_same_image_says_whom_it_waits_for_and_shows_its_progress(
    tiny: Tiny, started: Callable[[Tiny], Watched]
) -> None:
    first = started(tiny)
    first.wait_for_line("(mmdebstrap)")
    second = started(tiny)
    reference = next(line for line in first.lines if "Building image" in line).split()[2].rstrip(",")
    second.wait_for_line(f"Waiting for process {first.process.pid} to finish building image {reference}")
    # The first build's progress, as it goes: its mmdebstrap lines, relayed by the second process.
    second.wait_for_line(MID_BOOTSTRAP)
    first.wait_for_line(MID_BOOTSTRAP)
    waiting = second.lines.index(next(line for line in second.lines if "Waiting for process" in line))
    assert second.lines[waiting + 1 :] == first.lines[: len(second.lines) - waiting - 1], second

    # The first one is stopped: the second takes the lock and builds the image itself.
    first.process.send_signal(signal.SIGINT)
    assert first.finish() == 130, first
    second.wait_for_line("Building image", count=2)
    second.process.send_signal(signal.SIGTERM)
    assert second.finish() == 130, second
    assert tiny.scratch == []


# A target of the test's own: its layer installs a cross compiler (a download of some 40 MB into the test's own
# cache, then dpkg) on the shared base. It has no Rust std, so its image could never pass its check: whatever
# happens, no image of it is ever tagged.
_LAYER_TOOLCHAINS = _toolchains("riscv64gc-unknown-linux-gnu", recipe="trixie-rust", packages="[gcc-riscv64-linux-gnu]")


def test_a_signal_during_a_layer_removes_its_container_and_leaves_nothing(
    tmp_path: Path, toolchain_images: tuple[str, ...]
) -> None:
    """The target's layer (apt in a container of the shared base) is stopped mid-install: the container goes, no
    image is loaded or tagged, the scratch directory goes, and the base is still there."""
    (tmp_path / "toolchains.yaml").write_text(_LAYER_TOOLCHAINS, encoding="utf-8")
    cache = tmp_path / "cache"
    env: dict[str, str | None] = {
        "XPCARGO_TOOLCHAINS": str(tmp_path / "toolchains.yaml"),
        "XPCARGO_CACHE_DIR": str(cache),
    }
    bases = set(docker("images", "-q", "--no-trunc", "--filter", "label=org.xpcargo.recipe=trixie-rust").split())

    def layered() -> set[str]:
        """Layered images (tagged or not) of this target: none is ever made of this test's plan."""
        filters = ["--filter", "label=org.xpcargo.target=riscv64gc-unknown-linux-gnu"]
        return set(
            docker(
                "images", "-a", "-q", "--no-trunc", *filters, "--filter", "label=org.xpcargo.parent-plan-hash"
            ).split()
        )

    layered_before = layered()
    argv = [sys.executable, "-m", "xpcargo", "image", "build", "riscv64gc-unknown-linux-gnu"]
    build = Watched(start_cli(argv, cwd=tmp_path, env=env))
    try:
        build.wait_for_line("(apt in a container)", timeout=600)
        label = f"label=org.xpcargo.session=image-layer:{build.process.pid}"
        deadline = time.monotonic() + 60
        while not docker("ps", "-q", "--filter", label).split():
            assert time.monotonic() < deadline, f"no layer container appeared{build!r}"
            time.sleep(0.2)
        time.sleep(2)  # apt is updating its indexes or installing
        build.process.send_signal(signal.SIGINT)
        code = build.finish()
    finally:
        if build.process.poll() is None:
            build.process.kill()
    assert code == 130, build
    errors = [line for line in build.lines if line.startswith("error")]
    assert errors == ["error: interrupted; nothing was left running"], build
    assert docker("ps", "-a", "-q", "--filter", label).split() == []
    assert sorted((cache / "scratch").iterdir()) == []
    assert layered() == layered_before, "an image of the interrupted layer was left in the engine"
    assert bases <= set(
        docker("images", "-q", "--no-trunc", "--filter", "label=org.xpcargo.recipe=trixie-rust").split()
    )
