"""Root filesystems from Debian's packages: mmdebstrap for the system, the mirror's pool for pinned single files.

The mirror is sometimes mid-sync (an index with "unexpected size", a hash mismatch, a dropped connection). Those
failures are retried with backoff; anything else (a package that does not exist) fails at once, quoting apt.

mmdebstrap runs in its unshare mode, so the chroot's proc, sys and dev mounts live in a mount namespace of its own
and vanish with its processes: none is ever made on the host. As root, it runs as the init of a PID namespace of
its own that dies with xpcargo (SIGKILL included), and takes every process of the build with it.

Who touches what, for a user who is not root: mmdebstrap's own process runs as the user, and so does its hook
listener, which copies the .deb cache in and out and writes the tarball and the package list, all in the user's
cache. Its user namespace maps root to the user's first subordinate uid (and apt's `_apt` to another), not to the
user: that root fills the temporary root filesystem, so that directory must be one it can reach (``tmpdir_for``).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from xpcargo import files, interrupts
from xpcargo.errors import ImageBuildError
from xpcargo.hashing import file_sha256
from xpcargo.image import scratch as scratch_space
from xpcargo.image.lockfile import DPKG_QUERY_FORMAT, LOCK_FILE, REFRESH_HINT, Package, parse_dpkg_query
from xpcargo.image.plan import BasePlan

if TYPE_CHECKING:
    import tenacity

_T = TypeVar("_T")

# A mirror sync takes minutes; with waits of 4, 8, 16, 32 and 64 s, six tries span about two minutes.
ATTEMPTS = 6
MIRROR_TROUBLE = re.compile(
    r"Hash Sum mismatch|unexpected size|Mirror sync in progress|Failed to fetch|Temporary failure|"
    r"Could not (resolve|connect)|Connection (failed|timed out|reset|refused)|Unable to connect|"
    r"\b50[0-9] +[A-Z][a-z]+|Undetermined Error|Clearsigned file isn't valid|does not have a Release file"
)

# apt's words for a `name=version` that the mirror's index does not have.
VERSION_GONE = re.compile(r"Version '([^']+)' for '([^']+)' was not found")

# A path the system refused to mmdebstrap (its own "cannot create PATH: Permission denied", tar's and env's
# "PATH: Permission denied"): the failure is the file system's, not apt's.
REFUSED = re.compile(r"(/[^\s:;']*)'?: (Permission denied|Operation not permitted)")
# A special hook's copy (sync-in, sync-out, download) that failed on the outside, which mmdebstrap does not explain.
HOOK_FAILED = re.compile(r"hookhelper failed|special hook failed")

# Where a build that is not root puts mmdebstrap's temporary root, when TMPDIR is not such a place: shared
# temporary directories, which the subordinate uids reach as any user does. /var/tmp first: /tmp is often a tmpfs
# in memory, and the root filesystem takes 1 to 2 GB (Podman stages its images in /var/tmp too).
SHARED_TEMPORARY = (Path("/var/tmp"), Path("/tmp"))  # noqa: S108 - the build makes its own directory there (scratch.outside)


class TransientMirrorError(Exception):
    """A failure that another try may not meet."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def retrying(on_retry: Callable[[str], None], what: str, *, first_wait: float) -> tenacity.Retrying:
    import tenacity  # noqa: PLC0415

    def before_sleep(state: tenacity.RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        on_retry(f"{what}: {error}; trying again in {wait:.0f}s (attempt {state.attempt_number + 1}/{ATTEMPTS})")

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(ATTEMPTS),
        wait=tenacity.wait_exponential(multiplier=first_wait, max=120),
        retry=tenacity.retry_if_exception_type(TransientMirrorError),
        before_sleep=before_sleep,
        reraise=True,
    )


def raise_mirror_failure(tail: Iterable[str], quoted: str, *, target: str, locked: bool, mirror: str | None) -> None:
    """Raise what a failed apt's last lines (mmdebstrap's, or a layer's) say beyond a plain failure: the mirror
    mid-sync (``TransientMirrorError``, which ``retried`` tries again), or a version the lock pins that the mirror
    no longer serves. Returns when they say neither; ``quoted`` is apt's words for the retry's message."""
    text = "\n".join(tail)
    if MIRROR_TROUBLE.search(text):
        raise TransientMirrorError(quoted)
    gone = VERSION_GONE.findall(text)
    if locked and gone:
        version, name = gone[0]
        more = f" (and {len(gone) - 1} more)" if len(gone) > 1 else ""
        where = f"the mirror {mirror}" if mirror else "the mirror"
        raise ImageBuildError(
            f"{LOCK_FILE} locks {name} at {version}{more} for {target}, and {where} no longer serves that version",
            hint=f"`{REFRESH_HINT} {target}` rewrites the lock from today's mirror; commit it",
        )


def retried(
    attempt: Callable[[], _T], *, step: str, target: str, on_retry: Callable[[str], None], first_wait: float
) -> _T:
    """``attempt``, tried again with backoff while the mirror is mid-sync; then one error naming ``step``."""
    try:
        return retrying(on_retry, step, first_wait=first_wait)(attempt)
    except TransientMirrorError as exc:
        raise ImageBuildError(
            f"image build for {target} failed at step `{step}` after {ATTEMPTS} tries; the mirror said: {exc.message}",
            hint="the Debian mirror is unreachable or mid-sync; try again later",
        ) from None


_RUST_GONE = "the pinned Rust version may have left the mirror: update rust.version and hashes in images/"


def fetch_pool_file(
    url: str,
    sha256: str,
    cache: Path,
    *,
    on_retry: Callable[[str], None],
    first_wait: float = 4,
    step: str = "Rust std download",
    gone_hint: str = _RUST_GONE,
) -> Path:
    """Download ``url`` into ``cache`` once, verified against its pinned hash; messages call it ``step``, and a file
    the mirror no longer serves gets ``gone_hint``."""
    cache.mkdir(parents=True, exist_ok=True)
    destination = cache / url.rsplit("/", 1)[-1]
    if destination.is_file() and file_sha256(destination) == sha256:
        return destination

    def download() -> None:
        # Written beside the destination under a name of its own (two builds may download the same file at once),
        # and renamed over it only once its hash is the pinned one.
        try:
            with urllib.request.urlopen(url, timeout=60) as response, files.replacing(destination) as out:  # noqa: S310
                digest = hashlib.sha256()
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                if digest.hexdigest() != sha256:
                    # A mirror mid-sync can serve a truncated or replaced file; another try usually fixes it.
                    raise TransientMirrorError(f"{url} has sha256 {digest.hexdigest()}, expected the pinned {sha256}")
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code >= 500 or exc.code == 429:
                raise TransientMirrorError(f"HTTP {exc.code} for {url}") from None
            raise ImageBuildError(
                f"image build failed at step `{step}`: the mirror answered HTTP {exc.code} {exc.reason} for {url}",
                hint=gone_hint,
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TransientMirrorError(f"cannot download {url}: {reason}") from None

    try:
        retrying(on_retry, step, first_wait=first_wait)(download)
    except TransientMirrorError as exc:
        raise ImageBuildError(
            f"image build failed at step `{step}` after {ATTEMPTS} tries: {exc.message}",
            hint="the Debian mirror is unreachable or mid-sync; try again later",
        ) from None
    return destination


def foreign_architectures(packages: Iterable[str], *, native: str) -> list[str]:
    """Architectures named by multiarch package specs such as `libssl-dev:arm64` or `zlib1g-dev:i386=1:1.3`."""
    found = {spec.split("=", 1)[0].partition(":")[2] for spec in packages}
    return sorted(arch for arch in found if arch and arch not in (native, "any", "native", "all"))


def tmpdir_for(
    scratch: Path,
    *,
    as_root: bool,
    environ: Mapping[str, str],
    shared: Iterable[Path] = SHARED_TEMPORARY,
) -> Path:
    """The TMPDIR for mmdebstrap, where it makes its temporary root filesystem.

    As root, the build's scratch directory, which a later build sweeps if this one is killed. Otherwise the
    namespace's root is a subordinate uid, and the scratch directory is in the user's cache, under a home and a
    ~/.cache that are usually closed to others (0700), as they should stay. So it is TMPDIR, or else the first of
    ``shared``, that is a shared temporary directory: sticky and writable by all, with every directory above it
    open to all; the build makes a directory of its own there (``scratch.outside``). mmdebstrap's root filesystem
    in it (0755, under a random name: apt's `_apt` downloads into it) holds nothing but Debian's packages.
    """
    if as_root:
        return scratch
    candidates = [Path(environ["TMPDIR"])] if environ.get("TMPDIR", "").startswith("/") else []
    for candidate in [*candidates, *shared]:
        if _shared_temporary(candidate):
            return candidate
    tried = ", ".join(str(path) for path in [*candidates, *shared])
    raise ImageBuildError(
        "image build failed at step `bootstrap`: no temporary directory that mmdebstrap's user namespace can reach "
        f"(tried {tried})",
        hint="mmdebstrap's unshared root is a subordinate uid of yours: point TMPDIR at a directory that is sticky "
        "and writable by all (mode 1777, as /var/tmp is), under directories open to all",
    )


def _shared_temporary(path: Path) -> bool:
    """Whether ``path`` is a directory that every user can reach and make a directory in, as /tmp is."""
    try:
        resolved = Path(os.path.realpath(path))
        mode = resolved.stat().st_mode
        above = [parent.stat().st_mode for parent in resolved.parents]
    except OSError:
        return False
    sticky_and_open = stat.S_ISVTX | stat.S_IWOTH | stat.S_IXOTH
    return (
        stat.S_ISDIR(mode)
        and mode & sticky_and_open == sticky_and_open
        and all(parent & stat.S_IXOTH for parent in above)
    )


def failure_hint(errors: Sequence[str], *, deb_cache: Path, scratch: Path) -> str:
    """What to do about a failed mmdebstrap, from its error lines; ``deb_cache`` and ``scratch`` are the directories
    of xpcargo's cache that its hooks copy into and out of."""
    text = "\n".join(errors)
    refused = REFUSED.search(text)
    if refused:
        return (
            f"{refused[1]}: {refused[2]}: a file permission problem, not apt's. mmdebstrap's unshared root is one of "
            "your subordinate uids and must reach its temporary root (TMPDIR); the .deb cache and the build's "
            "scratch in xpcargo's cache must be yours to write"
        )
    if HOOK_FAILED.search(text):
        # mmdebstrap's hook listener, which does these copies as the user, dies without saying why.
        return (
            f"not apt's: mmdebstrap failed to copy the .deb cache ({deb_cache}) into or out of the build, or the "
            f"tarball and package list into {scratch}; everything under them must be yours to read and write (a "
            "file left there by root is not)"
        )
    if "was not found" in text and "Version '" in text:
        return "the pinned Rust left the mirror: update rust.version and the std hashes (images/README.md)"
    return "check the target's packages and the project's extra-packages; the message quotes apt"


def mmdebstrap_command(plan: BasePlan, tarball: Path, *, deb_cache: Path, packages_file: Path) -> list[str]:
    """The mmdebstrap command line for ``plan``; it also writes every installed package's version to
    ``packages_file`` (``lockfile.DPKG_QUERY_FORMAT``), the record an image lock is made from."""
    command = [
        "mmdebstrap",
        # Never root mode, even as root: its mounts are made on the host, where a killed build would leave them.
        "--mode=unshare",
        "--variant=apt",
        f"--architectures={','.join([plan.build_arch, *foreign_architectures(plan.packages, native=plan.build_arch)])}",
        f"--include={','.join(plan.packages)}",
        '--aptopt=Acquire::Retries "3"',
        # The root filesystem is thrown away if anything fails, so dpkg's fsync after every file buys nothing.
        # These options stay in the image (/etc/dpkg/dpkg.cfg.d/99mmdebstrap), so every layer on it keeps them.
        "--dpkgopt=force-unsafe-io",
        *(f"--dpkgopt=path-exclude={pattern}" for pattern in plan.dpkg_exclude),
    ]
    cache = shlex.quote(str(deb_cache))
    command += [
        # Every image shares one cache of downloaded .debs, so the second image downloads little.
        '--setup-hook=mkdir -p "$1"/var/cache/apt/archives',
        f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
        f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
    ]
    query = f"dpkg-query -W -f {shlex.quote(DPKG_QUERY_FORMAT)}"
    command += [
        f'--customize-hook=chroot "$1" {query} > "$1"/tmp/xpcargo-packages',
        f"--customize-hook=download /tmp/xpcargo-packages {shlex.quote(str(packages_file))}",
        '--customize-hook=rm "$1"/tmp/xpcargo-packages',
    ]
    if plan.lock is not None:
        # mmdebstrap makes everything else reproducible under SOURCE_DATE_EPOCH (sorted tar, times clamped to it,
        # no logs, an empty machine-id), but copies these two from the host: the engine mounts its own over them.
        # apt's lock and partial/ come from the .deb cache with the cache's own (older, unclamped) times.
        archives = '"$1"/var/cache/apt/archives'
        command += [
            '--customize-hook=rm -f "$1"/etc/hostname "$1"/etc/resolv.conf',
            f"--customize-hook=touch -c -h -d @{plan.source_date_epoch} {archives}/lock {archives}/partial",
        ]
    command += [plan.suite, str(tarball), plan.mirror]
    return command


_PR_SET_PDEATHSIG = 1


def _tether() -> list[str]:
    """The wrapper that ties every process of the build to xpcargo's life.

    `unshare --pid --fork --kill-child` makes mmdebstrap the init of a new PID namespace: when it dies, the kernel
    kills everything left in the namespace (without it, apt's and tar's processes can outlive a killed mmdebstrap
    and deadlock on a pipe forever). Only root may create the namespace; an ordinary user's build runs without it.
    """
    if os.geteuid() == 0 and shutil.which("unshare") is not None:
        return ["unshare", "--pid", "--fork", "--kill-child=SIGKILL", "--"]
    return []


def _dies_with(parent: int, mask: set[int | signal.Signals]) -> Callable[[], None]:
    """What the child runs before exec: ask for SIGKILL when xpcargo dies, even by SIGKILL itself."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: no dlopen in the child

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:
            # xpcargo died before the request was in place: nobody will send the signal.
            os._exit(1)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    return preexec


def _start(argv: list[str], environment: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``argv`` with xpcargo's stop signals held back until the caller lets them through.

    A preexec function makes Python run its fork hooks in xpcargo too, and a signal whose handler raises there is
    printed and lost: Ctrl-C would be ignored. Held back, it is raised once the caller is ready to kill the build.
    """
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, interrupts.SIGNALS)
    try:
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=environment,
            # Its own process group, so that it can be killed as a whole, and so that a Ctrl-C at the terminal
            # reaches xpcargo alone, which decides.
            start_new_session=True,
            preexec_fn=_dies_with(os.getpid(), mask),  # noqa: PLW1509 - one prctl call, looked up before the fork
        )
    except BaseException:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        raise


def _kill(process: subprocess.Popen[str]) -> None:
    """Kill the whole build at once: its root filesystem is thrown away anyway, so there is nothing to wait for."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@contextlib.contextmanager
def deb_cache_held(deb_cache: Path, on_line: Callable[[str], None]) -> Iterator[None]:
    """One image build at a time in a .deb cache: mmdebstrap's hooks copy the whole cache in and out, and a layer's
    apt locks the cache at once or fails; two of them side by side (a multi-target build on an empty engine) broke
    each other. The kernel releases the lock of a process that dies."""
    fd = os.open(deb_cache / ".mmdebstrap.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_line("      waiting for another image build to finish with the .deb cache")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def bootstrap(
    plan: BasePlan,
    tarball: Path,
    *,
    target: str,
    scratch: Path,
    deb_cache: Path,
    on_line: Callable[[str], None],
    on_retry: Callable[[str], None],
    first_wait: float = 4,
) -> tuple[Package, ...]:
    """Bootstrap ``plan``'s root file system into ``tarball`` (for ``target``, which messages name); return every
    package installed, at its version."""
    if shutil.which("mmdebstrap") is None:
        raise ImageBuildError(
            "image build failed at step `bootstrap`: mmdebstrap is not installed",
            hint="install it (Debian/Ubuntu: `sudo apt-get install mmdebstrap`), or run scripts/install",
        )
    deb_cache.mkdir(parents=True, exist_ok=True)
    tmpdir = tmpdir_for(scratch, as_root=os.geteuid() == 0, environ=os.environ)
    if tmpdir != scratch:
        # Removed with the scratch directory, whatever mmdebstrap leaves there if it is killed.
        tmpdir = scratch_space.outside(scratch, tmpdir)
    packages_file = scratch / "packages.txt"
    command = mmdebstrap_command(plan, tarball, deb_cache=deb_cache, packages_file=packages_file)

    def run() -> None:
        tarball.unlink(missing_ok=True)
        tail: deque[str] = deque(maxlen=40)
        environment = {**os.environ, "LC_ALL": "C.UTF-8", "TMPDIR": str(tmpdir)}
        # A locked image is reproducible: mmdebstrap clamps every time to SOURCE_DATE_EPOCH and sorts the tar. An
        # unlocked one takes no date from the user's shell.
        environment.pop("SOURCE_DATE_EPOCH", None)
        if plan.source_date_epoch is not None:
            environment["SOURCE_DATE_EPOCH"] = str(plan.source_date_epoch)
        process = _start([*_tether(), *command], environment)
        # Not `with process`: its exit waits for the process before any handler here could kill it.
        try:
            # A signal held back while it started is raised here, where it kills the build.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, interrupts.SIGNALS)
            for raw in process.stdout or ():
                line = raw.rstrip()
                if not line:
                    continue
                tail.append(line)
                # mmdebstrap's own stage lines are the progress worth showing; apt's chatter is kept for errors.
                if line.startswith(("I: ", "W: ", "E: ")):
                    on_line(line)
            process.wait()
        except BaseException:
            # Interrupted: kill the whole build now rather than wait for mmdebstrap's own cleanup (20 s and more).
            # Its mounts go with its mount namespace, and what it wrote is in the scratch directory, removed next.
            _kill(process)
            raise
        finally:
            if process.stdout is not None:
                process.stdout.close()
        if process.returncode == 0:
            return
        tarball.unlink(missing_ok=True)
        errors = [line for line in tail if line.startswith(("E:", "Err:", "W: Failed"))] or list(tail)[-3:]
        quoted = " | ".join(errors[-3:])
        raise_mirror_failure(tail, quoted, target=target, locked=plan.lock is not None, mirror=plan.mirror)
        raise ImageBuildError(
            f"image build for {target} failed at step `bootstrap` (mmdebstrap exit {process.returncode}): {quoted}",
            hint=failure_hint(errors[-3:], deb_cache=deb_cache, scratch=scratch),
        )

    with deb_cache_held(deb_cache, on_line):
        retried(run, step="bootstrap", target=target, on_retry=on_retry, first_wait=first_wait)
    try:
        return parse_dpkg_query(packages_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ImageBuildError(
            f"image build for {target}: mmdebstrap succeeded but the list of installed packages is unreadable: {exc}",
            hint="this is a bug in xpcargo; run again with XPCARGO_DEBUG=1 and report it",
        ) from None
