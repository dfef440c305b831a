"""xpcargo against Podman, through its Docker-compatible API: rootful, and rootless as an ordinary user.

The tests start Podman's API service themselves, on sockets of their own (`podman system service`), and stop it at
the end. The rootful engine gets the toolchain images from Docker (`xpcargo image save`, then `image load`: 100 s
for two targets, once, as its image store persists like Docker's); the rootless engine builds its own as the user
(mmdebstrap's unshare mode), which is the test that image builds work without root.

The rootless user is as ordinary as a real one: made by useradd with a home (0700, as most systems make it now) and
the subordinate ids useradd gives, a 0700 ~/.cache (as Podman and most desktop tools make it), Podman's settings in
~/.config/containers, and xpcargo's cache and CARGO_HOME where they are by default.

Needs Podman, catatonit and uidmap (`scripts/install` installs them), and root, to start the rootful service and to
make the rootless user (removed at the end with its home and its /etc/subuid and /etc/subgid entries).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import (
    AARCH64,
    FIXTURES,
    REPO,
    RUNNABLE,
    X86_64,
    Result,
    command_processes,
    run_argv,
    run_cli,
    start_cli,
    warm_container_of,
)
from .test_image_interrupts import _RECIPE as TINY_RECIPE
from .test_image_interrupts import MID_BOOTSTRAP, Watched
from .test_image_interrupts import _toolchains as tiny_toolchains

TARGETS = (X86_64, AARCH64)
CRATES = ("seed-c-lib", "zlib-sys")
# One user per run (its pid), so that two runs of the suite on one machine never share one.
USER_PREFIX = "xpcargo-podman-"
# This sandbox's hard limits are below Podman's default nofile and nproc ("error setting rlimit type 7"); an
# ordinary machine needs none of this.
CONTAINERS_CONF = '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]\n'
# Podman 4.3 picks `vfs` for a rootless store here, which copies the whole image for each container; the kernel's
# own overlay works rootless (docs/engines.md, "Podman, rootless").
STORAGE_CONF = '[storage]\ndriver = "overlay"\n'

# Minutes (rootless images built in the tests): `-m "not slow"` leaves this file out of a quick run.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        shutil.which("podman") is None or os.getuid() != 0 or shutil.which("setpriv") is None,
        reason="needs podman (scripts/install installs it), root and setpriv",
    ),
]


@dataclass(frozen=True)
class Podman:
    """A Podman API service of the test's own, and how to run xpcargo against it."""

    host: str
    env: dict[str, str | None]
    # Runs xpcargo as the service's user (empty: as root).
    prefix: tuple[str, ...]
    python: tuple[str, ...]

    def __call__(self, args: list[str], *, cwd: Path, timeout: float = 900) -> Result:
        return run_argv((*self.prefix, *self.python, "xpcargo", *args), cwd=cwd, env=self.env, timeout=timeout)

    def cli(self, *args: str) -> str:
        """The docker CLI against this Podman (its Docker-compatible API)."""
        completed = subprocess.run(
            ["docker", "--host", self.host, *args], capture_output=True, text=True, timeout=120, check=False
        )
        return completed.stdout


def _wait_for_socket(path: Path, service: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while not path.is_socket():
        if service.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"podman system service did not start: {log.read_text(errors='replace')}")
        time.sleep(0.1)


def _stop(service: subprocess.Popen[bytes], pause_pid_file: Path | None = None) -> None:
    service.terminate()
    try:
        service.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.kill()
        service.wait()
    # A rootless Podman keeps its user namespace in a pause process of its own.
    if pause_pid_file is not None and pause_pid_file.is_file():
        pid = int(pause_pid_file.read_text().strip() or 0)
        if pid > 1:
            os.kill(pid, signal.SIGKILL)


def _down_all(podman: Podman, cwd: Path) -> None:
    podman(["down", "--all"], cwd=cwd, timeout=120)


def _image_references() -> list[str]:
    result = run_cli(["targets", "--json", *(f"--target={t}" for t in TARGETS)], cwd=REPO)
    assert result.code == 0, result
    return [entry["image"] for entry in json.loads(result.stdout)]


@pytest.fixture(scope="module")
def rootful(
    tmp_path_factory: pytest.TempPathFactory, cli_env: dict[str, str], toolchain_images: tuple[str, ...]
) -> Iterator[Podman]:
    directory = tmp_path_factory.mktemp("podman")
    (directory / "containers.conf").write_text(CONTAINERS_CONF)
    socket = directory / "podman.sock"
    log = directory / "service.log"
    with log.open("wb") as output:
        service = subprocess.Popen(
            ["podman", "system", "service", "--time=0", f"unix://{socket}"],
            env={**os.environ, "CONTAINERS_CONF": str(directory / "containers.conf")},
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    podman = Podman(
        host=f"unix://{socket}",
        env={**cli_env, "DOCKER_HOST": f"unix://{socket}"},
        prefix=(),
        python=(sys.executable, "-m"),
    )
    try:
        _wait_for_socket(socket, service, log)
        missing = [ref for ref in _image_references() if not podman.cli("image", "inspect", "--format", "x", ref)]
        if missing:
            # Docker's images, moved: the same plans, so the same tags (Docker is the engine the suite builds in).
            saved = directory / "images"
            saved.mkdir()
            result = run_cli(["image", "save", *TARGETS, "-o", str(saved)], cwd=REPO, env=cli_env, timeout=1800)
            assert result.code == 0, result
            result = podman(["image", "load", str(saved)], cwd=REPO, timeout=1800)
            assert result.code == 0, result
            shutil.rmtree(saved)
        yield podman
    finally:
        _down_all(podman, directory)
        _stop(service)


def _python_for_any_user() -> tuple[str, ...] | None:
    """An interpreter with xpcargo's packages that another user may run: this one, or the system's Python of the
    same version over this one's site-packages (a pyenv Python under /root is not for others)."""
    candidates = [sys.executable]
    system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
    if Path(system).is_file():
        candidates.append(system)
    site = [entry for entry in sys.path if entry.endswith("site-packages")]
    env = {"PYTHONPATH": os.pathsep.join([str(REPO / "driver"), *site])}
    for python in candidates:
        probe = subprocess.run(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-c", "import docker, xpcargo"],
            env={**os.environ, **env},
            capture_output=True,
            check=False,
        )
        if probe.returncode == 0:
            return (python, "-m")
    return None


def _leftover_users() -> list[str]:
    """Users of this test whose run is gone (killed before its cleanup)."""
    return [
        entry.pw_name
        for entry in pwd.getpwall()
        if entry.pw_name.startswith(USER_PREFIX)
        and entry.pw_name[len(USER_PREFIX) :].isdigit()
        and not Path(f"/proc/{entry.pw_name[len(USER_PREFIX) :]}").exists()
    ]


def _as_user(user: pwd.struct_passwd) -> tuple[str, ...]:
    return ("setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups")


@pytest.fixture(scope="module")
def rootless(cli_env: dict[str, str]) -> Iterator[Podman]:
    """A user of the test's own, with subordinate ids and an ordinary home, running its own Podman service."""
    python = _python_for_any_user()
    if python is None:
        pytest.skip("no Python with xpcargo's packages that another user may run")
    left = _leftover_users()
    if left:
        pytest.fail(f"user {left[0]} was left by a killed run: remove it with `userdel --remove {left[0]}`")
    name = f"{USER_PREFIX}{os.getpid()}"
    directory = Path(tempfile.mkdtemp(prefix="xpcargo-podman-"))
    directory.chmod(0o755)
    runtime = directory / "run"
    subprocess.run(["useradd", "--create-home", "--user-group", "--shell", "/bin/sh", name], check=True)
    service: subprocess.Popen[bytes] | None = None
    user = pwd.getpwnam(name)
    podman = None
    try:
        home = Path(user.pw_dir)
        if not _subordinate_range(name, "subuid") or not _subordinate_range(name, "subgid"):
            # useradd gives them where login.defs says so (SUB_UID_COUNT, Debian's default); else as the docs say.
            subprocess.run(
                ["usermod", "--add-subuids", "3000000-3065535", "--add-subgids", "3000000-3065535", name], check=True
            )
        # A user removed earlier may have had this uid (useradd gives the lowest free one) and left files in the
        # shared temporary directories: not this user's, and not this test's to judge.
        _NOT_OURS[name] = frozenset(_owned_in_shared_temporary(name))
        # Debian 12's adduser, Ubuntu since 21.04, Fedora and Arch make homes 0700; useradd follows the umask here.
        home.chmod(0o700)
        prefix = _as_user(user)
        config = home / ".config" / "containers"
        subprocess.run([*prefix, "mkdir", "-m", "0700", str(home / ".cache")], check=True)
        subprocess.run([*prefix, "mkdir", "-p", str(config)], check=True)
        for file, text in (("containers.conf", CONTAINERS_CONF), ("storage.conf", STORAGE_CONF)):
            (config / file).write_text(text)
            os.chown(config / file, user.pw_uid, user.pw_gid)
        # The .debs the suite's image builds downloaded, so that the user's build does not fetch them again: as a
        # user who built before would have them, in the default cache.
        shared = Path(cli_env.get("XPCARGO_CACHE_DIR", Path.home() / ".cache" / "xpcargo"))
        cache = home / ".cache" / "xpcargo"
        for part in ("debs", "pool"):
            if (shared / part).is_dir():
                shutil.copytree(shared / part, cache / part, symlinks=True)
        for path in [cache, *cache.rglob("*")] if cache.exists() else []:
            os.chown(path, user.pw_uid, user.pw_gid, follow_symlinks=False)
        (runtime / "podman").mkdir(parents=True)
        for path in (runtime, runtime / "podman"):
            os.chown(path, user.pw_uid, user.pw_gid)
        runtime.chmod(0o700)
        user_env = {"HOME": str(home), "USER": name, "LOGNAME": name, "XDG_RUNTIME_DIR": str(runtime)}
        socket = runtime / "podman" / "podman.sock"
        log = directory / "service.log"
        with log.open("wb") as output:
            service = subprocess.Popen(
                [*prefix, "podman", "system", "service", "--time=0", f"unix://{socket}"],
                env={"PATH": os.environ["PATH"], **user_env},
                cwd=home,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _wait_for_socket(socket, service, log)
        site = [entry for entry in sys.path if entry.endswith("site-packages")]
        podman = Podman(
            host=f"unix://{socket}",
            env={
                **user_env,
                # Found as the user's own rootless socket: no DOCKER_HOST. The cache, CARGO_HOME and Podman's
                # settings are where they are by default for the user, under the home.
                "DOCKER_HOST": None,
                "XDG_CACHE_HOME": None,
                "XDG_CONFIG_HOME": None,
                "XPCARGO_KEEP_WARM": cli_env["XPCARGO_KEEP_WARM"],
                "PYTHONPATH": os.pathsep.join([str(REPO / "driver"), *site]),
            },
            prefix=prefix,
            python=python,
        )
        result = podman(["image", "build", *TARGETS], cwd=home, timeout=3600)
        assert result.code == 0, result
        yield podman
    finally:
        if podman is not None:
            _down_all(podman, directory)
        if service is not None:
            _stop(service, runtime / "libpod" / "tmp" / "pause.pid")
        _remove_user(name, user.pw_uid)
        shutil.rmtree(directory, ignore_errors=True)


def _subordinate_range(name: str, table: str) -> range | None:
    """``name``'s subordinate ids in /etc/subuid or /etc/subgid (``table``)."""
    path = Path(f"/etc/{table}")
    for line in path.read_text().splitlines() if path.exists() else []:
        owner, _, rest = line.partition(":")
        start, _, count = rest.partition(":")
        if owner == name and start.isdigit() and count.isdigit():
            return range(int(start), int(start) + int(count))
    return None


def _remove_user(name: str, uid: int) -> None:
    """What the user's Podman left (a conmon stays 5 minutes after each exec) goes first: the user is the test's
    own, so every process of its uid and its subordinate uids is the test's, and userdel refuses a user with
    processes. userdel removes the home (files of subordinate uids too) and the user's lines in /etc/subuid and
    /etc/subgid."""
    subordinate = _subordinate_range(name, "subuid") or range(0)
    # A killed process is the user's until it is gone, and an image build killed mid-bootstrap (a test that failed
    # there) leaves mmdebstrap running as a subordinate uid: killed until none is left, and userdel, which refuses
    # while one is, tried again for a while.
    for _ in range(50):
        left = _processes_of(uid, subordinate)
        if not left:
            break
        for pid in left:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    for _ in range(10):
        if subprocess.run(["userdel", "--remove", name], check=False, capture_output=True).returncode in (0, 6):
            break
        time.sleep(0.5)


def _processes_of(uid: int, subordinate: range = range(0)) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        with suppress(OSError):
            uids = next(line for line in status.read_text().splitlines() if line.startswith("Uid:"))
            if int(uids.split()[1]) == uid or int(uids.split()[1]) in subordinate:
                found.append(int(status.parent.name))
    return found


def _project(directory: Path, crate: str, owner: int | None = None) -> Path:
    project = directory / crate
    shutil.copytree(FIXTURES / RUNNABLE[crate].copy, project, ignore=shutil.ignore_patterns("target"), symlinks=True)
    if owner is not None:
        for path in [directory, *directory.rglob("*")]:
            os.chown(path, owner, owner, follow_symlinks=False)
    return project


def _info(podman: Podman) -> dict[str, object]:
    result = podman(["info", "--json"], cwd=Path("/"))
    assert result.code == 0, result
    info: dict[str, object] = json.loads(result.stdout)
    return info


def _builds_and_runs(podman: Podman, directory: Path, owner: int | None = None) -> list[Path]:
    projects = []
    for crate in CRATES:
        project = _project(directory, crate, owner)
        projects.append(project)
        for triple in TARGETS:
            result = podman(["run", "--target", triple], cwd=project)
            assert result.code == 0, result
            assert result.stdout_lines[-len(RUNNABLE[crate].expected_lines(triple)) :] == RUNNABLE[
                crate
            ].expected_lines(triple), result
    return projects


def test_rootful_podman_builds_and_runs_for_two_targets(rootful: Podman, tmp_path: Path) -> None:
    info = _info(rootful)
    assert (info["engine"], info["rootless"], info["host"]) == ("Podman", False, rootful.host), info
    _builds_and_runs(rootful, tmp_path)


def test_rootless_podman_builds_as_the_user_and_every_file_is_the_users(rootless: Podman) -> None:
    info = _info(rootless)
    assert (info["engine"], info["rootless"], info["host"]) == ("Podman", True, rootless.host), info
    name = str(rootless.env["USER"])
    user = pwd.getpwnam(name)
    home = Path(user.pw_dir)
    directory = home / "projects"
    directory.mkdir()
    projects = _builds_and_runs(rootless, directory, owner=user.pw_uid)
    cargo_home = home / ".cargo"
    assert list((cargo_home / "registry" / "cache").glob("*/libz-sys-*.crate")), "nothing was fetched"
    # The .deb cache the image builds copied out and the layers' apt wrote to, and the rest of xpcargo's cache.
    cache = home / ".cache" / "xpcargo"
    walked = 0
    for root in [*(project / "target" for project in projects), cargo_home, cache]:
        for path in [root, *root.rglob("*")]:
            walked += 1
            status = path.lstat()
            assert status.st_uid == user.pw_uid, f"{path} belongs to uid {status.st_uid}, not {name} ({user.pw_uid})"
            if not stat.S_ISLNK(status.st_mode):
                assert not status.st_mode & stat.S_IWOTH, f"{path} is writable by every user"
    assert walked > 1000, "the walk found too little to mean anything"
    # The builds opened nothing of the user's to others: the home and ~/.cache are as the user had them.
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / ".cache").stat().st_mode) == 0o700
    # mmdebstrap's temporary root (its namespace's root owns it), in a shared temporary directory, went with the build.
    assert _left_in_shared_temporary(name) == []


# --- Warm containers under Podman ----------------------------------------------------------------------------------


def _warm_or_none(podman: Podman, project: Path) -> str | None:
    os.environ["DOCKER_HOST"] = podman.host  # the helpers' docker CLI, for the lines below only
    try:
        return warm_container_of(project, X86_64)
    finally:
        del os.environ["DOCKER_HOST"]


def _warm(podman: Podman, project: Path) -> str:
    container = _warm_or_none(podman, project)
    assert container is not None, "no warm container"
    return container


def _commands(podman: Podman, container: str) -> list[str]:
    os.environ["DOCKER_HOST"] = podman.host
    try:
        return command_processes(container)
    finally:
        del os.environ["DOCKER_HOST"]


def _start_shell(podman: Podman, project: Path, command: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = start_cli(
        [sys.executable, "-m", "xpcargo", "shell", "--target", X86_64, "--", *command],
        cwd=project,
        env=podman.env,
        new_session=True,
    )
    deadline = time.monotonic() + 60
    while (container := _warm_or_none(podman, project)) is None or not _commands(podman, container):
        assert process.poll() is None, "xpcargo ended before the command started"
        assert time.monotonic() < deadline, "the command did not start"
        time.sleep(0.2)
    return process, container


def _ends(podman: Podman, container: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while _commands(podman, container):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_warm_containers_are_reused_and_signals_and_sigkill_end_the_command(rootful: Podman, tmp_path: Path) -> None:
    project = _project(tmp_path, "seed-c-lib")
    assert rootful(["build", "--target", X86_64], cwd=project).code == 0
    container = _warm(rootful, project)
    again = rootful(["build", "--target", X86_64], cwd=project)
    assert again.code == 0, again
    assert _warm(rootful, project) == container, "the second build did not reuse the warm container"

    # Ctrl-C reaches the command's whole process group (a background job too); the container stays.
    process, container = _start_shell(rootful, project, ["sh", "-c", "sleep 600 & sleep 600"])
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert _ends(rootful, container, within=10), _commands(rootful, container)
    assert _warm(rootful, project) == container

    # SIGKILL of xpcargo: the tether ends the command.
    process, container = _start_shell(rootful, project, ["sleep", "600"])
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)
    assert _ends(rootful, container, within=10), _commands(rootful, container)
    assert _warm(rootful, project) == container


# --- An image build stopped as the rootless user ------------------------------------------------------------------


# What the shared temporary directories held of each test user's uids when the user was made (``rootless``).
_NOT_OURS: dict[str, frozenset[Path]] = {}


def _left_in_shared_temporary(name: str) -> list[Path]:
    """What the user and its subordinate uids own in the shared temporary directories: the directory each image build
    gives mmdebstrap there, and anything mmdebstrap made outside it; not what was there before the user was made."""
    return [entry for entry in _owned_in_shared_temporary(name) if entry not in _NOT_OURS.get(name, frozenset())]


def _owned_in_shared_temporary(name: str) -> list[Path]:
    uid = pwd.getpwnam(name).pw_uid
    subordinate = _subordinate_range(name, "subuid")
    assert subordinate is not None
    found = []
    for shared in (Path("/var/tmp"), Path("/tmp")):
        for entry in shared.iterdir():
            owner = entry.lstat().st_uid
            if owner in subordinate or (owner == uid and entry.name.startswith(("xpcargo-image-", "mmdebstrap"))):
                found.append(entry)
    return found


def _end_orphans(name: str, made: Path) -> None:
    """End what a build killed with SIGKILL leaves running (mmdebstrap's helpers, in its namespace: docs/limits.md),
    as a reboot would: the user's and its subordinate uids' processes that run mmdebstrap or work in ``made``."""
    uid = pwd.getpwnam(name).pw_uid
    subordinate = _subordinate_range(name, "subuid")
    assert subordinate is not None
    for process in Path("/proc").glob("[0-9]*"):
        with suppress(OSError, StopIteration):
            uids = next(line for line in (process / "status").read_text().splitlines() if line.startswith("Uid:"))
            if int(uids.split()[1]) != uid and int(uids.split()[1]) not in subordinate:
                continue
            places = [(process / "root").readlink(), (process / "cwd").readlink()]
            if b"mmdebstrap" in (process / "cmdline").read_bytes() or any(
                place == made or made in place.parents for place in places
            ):
                os.kill(int(process.name), signal.SIGKILL)


def _tiny(rootless: Podman) -> tuple[Path, dict[str, str | None]]:
    """A directory of the user's with test_image_interrupts' tiny recipe (a bootstrap of ~15 s, an image that never
    passes its check), and the environment that builds it."""
    user = pwd.getpwnam(str(rootless.env["USER"]))
    tiny = Path(user.pw_dir) / "tiny"
    if not tiny.is_dir():
        tiny.mkdir()
        (tiny / "tiny.yaml").write_text(TINY_RECIPE, encoding="utf-8")
        (tiny / "toolchains.yaml").write_text(tiny_toolchains(X86_64, recipe="tiny", packages="[]"), encoding="utf-8")
        for path in [tiny, *tiny.iterdir()]:
            os.chown(path, user.pw_uid, user.pw_gid)
    return tiny, {**rootless.env, "XPCARGO_TOOLCHAINS": str(tiny / "toolchains.yaml"), "XPCARGO_IMAGES": str(tiny)}


def test_a_rootless_bootstrap_that_cannot_write_the_cache_blames_the_cache_not_apt(rootless: Podman) -> None:
    """A directory of root's in the user's .deb cache (left by a build as root with the user's cache): mmdebstrap's
    copy out of the build fails without saying why, and the one line says where to look."""
    user = pwd.getpwnam(str(rootless.env["USER"]))
    tiny, env = _tiny(rootless)
    cache = Path(user.pw_dir) / "cache-touched-by-root"
    subprocess.run([*rootless.prefix, "mkdir", "-p", "-m", "0700", str(cache / "debs")], check=True)
    (cache / "debs" / "partial").mkdir(mode=0o700)
    result = run_argv(
        (*rootless.prefix, *rootless.python, "xpcargo", "image", "build", X86_64),
        cwd=tiny,
        env={**env, "XPCARGO_CACHE_DIR": str(cache)},
        timeout=600,
    )
    assert result.code == 8, result
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: image build for {X86_64} failed at step `bootstrap` (mmdebstrap exit "), result
    hint = (
        re.escape(
            f"(hint: not apt's: mmdebstrap failed to copy the .deb cache ({cache / 'debs'}) into or out of the build, "
            f"or the tarball and package list into {cache / 'scratch'}/"
        )
        + r"image-\w+"
        + re.escape("; everything under them must be yours to read and write (a file left there by root is not))")
    )
    assert re.search(f"{hint}$", line), result
    assert "quotes apt" not in line, result
    assert _left_in_shared_temporary(user.pw_name) == []


def test_a_stopped_rootless_image_build_leaves_nothing_in_the_shared_temporary_directory(rootless: Podman) -> None:
    """mmdebstrap's temporary root is outside the user's cache (in /var/tmp), owned by a subordinate uid: a build
    stopped by a signal removes it, and one killed outright leaves it for the next build to sweep."""
    name = str(rootless.env["USER"])
    user = pwd.getpwnam(name)
    home = Path(user.pw_dir)
    tiny, env = _tiny(rootless)
    scratch = home / ".cache" / "xpcargo" / "scratch"
    argv = [*rootless.prefix, *rootless.python, "xpcargo", "image", "build", X86_64]

    def start() -> Watched:
        return Watched(start_cli(argv, cwd=tiny, env=env))

    stopped = start()
    try:
        stopped.wait_for_line(MID_BOOTSTRAP)
        # The build's own directory, with mmdebstrap's root filesystem (a subordinate uid's) and its gpg home in it.
        (made,) = _left_in_shared_temporary(name)
        assert made.lstat().st_uid == user.pw_uid
        assert stat.S_IMODE(made.lstat().st_mode) == 0o1733
        subordinate = _subordinate_range(name, "subuid")
        assert subordinate is not None
        roots = [entry for entry in made.iterdir() if entry.lstat().st_uid == subordinate.start]
        assert [root.name.startswith("mmdebstrap.") for root in roots] == [True], list(made.iterdir())
        stopped.process.send_signal(signal.SIGINT)
        assert stopped.finish() == 130, stopped
    finally:
        stopped.process.kill()
    assert not [line for line in stopped.lines if line.startswith("warning")], stopped
    assert _left_in_shared_temporary(name) == []
    assert list(scratch.iterdir()) == [], "the build's scratch directory is still there"

    killed = start()
    try:
        killed.wait_for_line(MID_BOOTSTRAP)
        killed.process.kill()
        assert killed.finish() == -signal.SIGKILL
    finally:
        killed.process.kill()
    (made,) = _left_in_shared_temporary(name)
    _end_orphans(name, made)
    (stale,) = scratch.iterdir()
    following = start()
    try:
        following.wait_for_line("(mmdebstrap)")
        assert f"     Removed {stale}, left by an image build that was killed" in following.lines, following
        assert not made.exists()
        following.process.send_signal(signal.SIGINT)
        assert following.finish() == 130, following
    finally:
        following.process.kill()
    assert _left_in_shared_temporary(name) == []
    assert list(scratch.iterdir()) == []
