"""What the integration tests share: the real CLI as a subprocess, the real Docker engine, real artifacts.

Nothing here is mocked. The fixtures that use these live in conftest.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"

X86_64 = "x86_64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"
AARCH64 = "aarch64-unknown-linux-gnu"
ARMV7 = "armv7-unknown-linux-gnueabihf"
RISCV64 = "riscv64gc-unknown-linux-gnu"
PPC64LE = "powerpc64le-unknown-linux-gnu"
S390X = "s390x-unknown-linux-gnu"
ARMV5TE = "armv5te-unknown-linux-gnueabi"
# The targets whose every feature is tested; the others (Debian's other architectures with a Rust std) build and run
# the seed C example and a -sys crate (test_matrix.py, through `--target all`).
CORE_TARGETS = (X86_64, I686, AARCH64)
TARGETS = (*CORE_TARGETS, ARMV7, RISCV64, PPC64LE, S390X, ARMV5TE)
# WebAssembly (WASI preview 1): no ELF file and no qemu, so it is tested on its own (test_wasm.py) and in
# `--target all` (test_matrix.py).
WASM32 = "wasm32-wasip1"
ALL_TARGETS = (*TARGETS, WASM32)
WASM_MAGIC = b"\0asm"
# The other targets whose Rust std the image builds from Debian's sources (armv5te's and wasm32's are in ALL_TARGETS,
# built with the first images, since tests without the std_images mark use them).
X86_64_MUSL = "x86_64-unknown-linux-musl"
I686_MUSL = "i686-unknown-linux-musl"
AARCH64_MUSL = "aarch64-unknown-linux-musl"
ARMV7_MUSL = "armv7-unknown-linux-musleabihf"
ARMV6_MUSL = "arm-unknown-linux-musleabihf"
RISCV64_MUSL = "riscv64gc-unknown-linux-musl"
WINDOWS = "x86_64-pc-windows-gnu"
# The order the session builds their images in, in the background from its start (the second test process from the
# other end): first the three of the longest test, ripgrep's release (test_real_release.py), which runs as soon as
# they exist. The tests marked std_images run in this order too, each once its own targets' images are built.
STD_BUILD_ORDER = (
    X86_64_MUSL,
    AARCH64_MUSL,
    WINDOWS,
    ARMV6_MUSL,
    I686_MUSL,
    ARMV7_MUSL,
    RISCV64_MUSL,
)

MANAGED_LABEL = "org.xpcargo.managed"
SESSION_LABEL = "org.xpcargo.session"
HOST_LABEL = "org.xpcargo.host"
SLOT_LABEL = "org.xpcargo.slot"
WORKSPACE_LABEL = "org.xpcargo.workspace"
VOLUME_KIND_LABEL = "org.xpcargo.volume-kind"
# Every xpcargo image carries its plan's content hash.
PLAN_LABEL = "org.xpcargo.plan-hash"
# How long the tests' warm containers wait idle: long enough to be reused from one test to the next, short enough
# that none outlives an interrupted test session by much.
TEST_KEEP_WARM = "120"

# What each target's binaries say about themselves: std's ARCH, the C compiler's arch, the ELF class and machine.
RUST_ARCH = {
    X86_64: "x86_64",
    I686: "x86",
    AARCH64: "aarch64",
    ARMV7: "arm",
    RISCV64: "riscv64",
    PPC64LE: "powerpc64",
    S390X: "s390x",
    ARMV5TE: "arm",
    WASM32: "wasm32",
    X86_64_MUSL: "x86_64",
    I686_MUSL: "x86",
    AARCH64_MUSL: "aarch64",
    ARMV7_MUSL: "arm",
    ARMV6_MUSL: "arm",
    RISCV64_MUSL: "riscv64",
    WINDOWS: "x86_64",
}
C_ARCH = {**RUST_ARCH, I686: "i686", PPC64LE: "powerpc64le", I686_MUSL: "i686"}
ELF_CLASS = {X86_64: 64, I686: 32, AARCH64: 64, ARMV7: 32, RISCV64: 64, PPC64LE: 64, S390X: 64, ARMV5TE: 32}
# e_machine: EM_X86_64, EM_386, EM_AARCH64, EM_ARM, EM_RISCV, EM_PPC64, EM_S390.
ELF_MACHINE = {X86_64: 62, I686: 3, AARCH64: 183, ARMV7: 40, RISCV64: 243, PPC64LE: 21, S390X: 22, ARMV5TE: 40}
# s390x is the one big-endian target: the header's EI_DATA says so.
ELF_BIG_ENDIAN = frozenset({S390X})

# Variables of the developer's shell that would move artifacts or change the toolchain behind the tests' back.
_SCRUBBED_PREFIXES = ("XPCARGO_",)
_SCRUBBED = frozenset(
    {
        "CARGO_HOME",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_TERM_COLOR",
        "CARGO_TERM_PROGRESS_WHEN",
        "RUSTFLAGS",
        "RUSTDOCFLAGS",
        "NO_COLOR",
    }
)

BUILD_TIMEOUT = 900
IMAGE_BUILD_TIMEOUT = 3600


# --- Running the CLI --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    cwd: Path
    code: int
    stdout: str
    stderr: str

    @property
    def stdout_lines(self) -> list[str]:
        return self.stdout.splitlines()

    @property
    def stderr_lines(self) -> list[str]:
        return self.stderr.splitlines()

    def __str__(self) -> str:
        """What an assertion message needs to explain a failure."""
        return (
            f"\n$ cd {self.cwd} && {' '.join(self.argv)}\nexit code: {self.code}\n"
            f"--- stdout ---\n{self.stdout}\n--- stderr ---\n{self.stderr}"
        )


def base_environment(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The host environment without what would change a build, plus ``overrides`` (None removes a variable)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in _SCRUBBED and not name.startswith(_SCRUBBED_PREFIXES)
    }
    env["CARGO_TERM_COLOR"] = "never"
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    timeout: float = BUILD_TIMEOUT,
    prefix: Sequence[str] = (),
) -> Result:
    """Run the real CLI (``python -m xpcargo``) as a subprocess; ``prefix`` wraps it (e.g. ``setpriv ...``)."""
    return run_argv((*prefix, sys.executable, "-m", "xpcargo", *args), cwd=cwd, env=env, timeout=timeout)


def run_argv(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str | None] | None = None, timeout: float = BUILD_TIMEOUT
) -> Result:
    """Run ``argv`` (a full command line running xpcargo) to its end, or fail the test after ``timeout``."""
    argv = tuple(argv)
    with start_cli(argv, cwd=cwd, env=env) as process:
        try:
            stdout, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
            pytest.fail(f"`{' '.join(argv)}` did not finish in {timeout}s:\n{stdout}\n{stderr}")
    return Result(argv=argv, cwd=cwd, code=process.returncode, stdout=stdout, stderr=stderr)


# The xpcargo processes this test session started: a container labelled with one of their pids is the session's.
STARTED_PIDS: set[int] = set()


def start_cli(
    argv: Sequence[str], *, cwd: Path, env: Mapping[str, str | None] | None = None, new_session: bool = False
) -> subprocess.Popen[str]:
    """Start ``argv`` (a full command line running xpcargo) with its output piped, and remember its pid."""
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=base_environment(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=new_session,
    )
    STARTED_PIDS.add(process.pid)
    return process


# Runs xpcargo (argv[2:]) as its only child: prints the child's pid at once, then, once it has ended, its exit code,
# its peak resident memory (RUSAGE_CHILDREN counts only waited-for children: xpcargo alone, not the containers, which
# the engine starts) and how many bytes it wrote to stdout, which is read as it comes and not kept. stderr goes to
# the file argv[1].
_MEASURE = """
import json, resource, subprocess, sys
with open(sys.argv[1], "wb") as errors:
    child = subprocess.Popen(sys.argv[2:], stdout=subprocess.PIPE, stderr=errors)
    print(json.dumps({"pid": child.pid}), flush=True)
    size = 0
    while chunk := child.stdout.read(1 << 20):
        size += len(chunk)
    code = child.wait()
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": code, "peak_rss_kib": peak, "stdout_bytes": size}), flush=True)
"""


@dataclass(frozen=True)
class Measured:
    code: int
    peak_rss_mib: float
    stdout_bytes: int
    stderr_file: Path
    seconds: float


def measure_cli(
    args: Sequence[str], *, cwd: Path, stderr_file: Path, env: Mapping[str, str | None], timeout: float = BUILD_TIMEOUT
) -> Measured:
    """Run the real CLI like ``run_cli``, for output too large to keep: measure it instead."""
    started = time.monotonic()
    argv = (sys.executable, "-c", _MEASURE, str(stderr_file), sys.executable, "-m", "xpcargo", *args)
    with start_cli(argv, cwd=cwd, env=env) as process:
        assert process.stdout is not None
        # The containers are labelled with xpcargo's own pid, which is the probe's child.
        STARTED_PIDS.add(json.loads(process.stdout.readline())["pid"])
        try:
            stdout, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            pytest.fail(f"`{' '.join(args)}` did not finish in {timeout}s; its stderr is in {stderr_file}")
    assert process.returncode == 0, f"the measuring process failed: {stdout}"
    result = json.loads(stdout)
    return Measured(
        code=result["code"],
        peak_rss_mib=result["peak_rss_kib"] / 1024,
        stdout_bytes=result["stdout_bytes"],
        stderr_file=stderr_file,
        seconds=time.monotonic() - started,
    )


# --- The engine ---------------------------------------------------------------------------------------------------


def docker(*args: str, check: bool = True, timeout: float = 120) -> str:
    completed = subprocess.run(
        ["docker", *args], capture_output=True, text=True, errors="replace", timeout=timeout, check=False
    )
    if check and completed.returncode != 0:
        pytest.fail(f"`docker {' '.join(args)}` failed ({completed.returncode}): {completed.stderr.strip()}")
    return completed.stdout


def managed_containers(label: str = f"{MANAGED_LABEL}=true") -> set[str]:
    return set(docker("ps", "-a", "--filter", f"label={label}", "-q", "--no-trunc").split())


def xpcargo_image_tags() -> set[str]:
    """Every `repository:tag` in the engine whose repository is xpcargo's."""
    listing = docker("images", "--format", "{{.Repository}}:{{.Tag}}")
    return {line for line in listing.split() if line.startswith("xpcargo/")}


# --- ELF ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ElfHeader:
    bits: int  # 32 or 64, from EI_CLASS
    machine: int  # e_machine: 62 x86-64, 3 i386, 183 aarch64 (ELF_MACHINE)
    big_endian: bool = False  # EI_DATA


def read_elf_header(path: Path) -> ElfHeader:
    with path.open("rb") as stream:
        ident = stream.read(20)
    assert len(ident) == 20, f"{path}: too short for an ELF header"
    assert ident[:4] == b"\x7fELF", f"{path}: not an ELF file (magic {ident[:4]!r})"
    ei_class, ei_data = ident[4], ident[5]
    assert ei_class in (1, 2), f"{path}: bad EI_CLASS {ei_class}"
    assert ei_data in (1, 2), f"{path}: bad EI_DATA {ei_data}"
    (machine,) = struct.unpack("<H" if ei_data == 1 else ">H", ident[18:20])
    return ElfHeader(bits=32 if ei_class == 1 else 64, machine=machine, big_endian=ei_data == 2)


def assert_elf_for(path: Path, triple: str) -> None:
    assert path.is_file(), f"no artifact at {path}"
    header = read_elf_header(path)
    expected = ElfHeader(bits=ELF_CLASS[triple], machine=ELF_MACHINE[triple], big_endian=triple in ELF_BIG_ENDIAN)
    assert header == expected, f"{path}: {header}"


def assert_wasm_module(path: Path) -> None:
    """A WebAssembly module (the magic and binary format version 1), which is what wasm32-wasip1 builds."""
    assert path.is_file(), f"no artifact at {path}"
    assert path.read_bytes()[:8] == WASM_MAGIC + b"\x01\0\0\0", f"{path}: not a WebAssembly module"


# --- Fixture crates ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FixtureCrate:
    """A fixture crate: which directory to copy, where inside the copy to run, and what it builds."""

    name: str
    copy: str  # directory under tests/fixtures copied as a whole (path-dep keeps its sibling layout)
    project: str  # where to run xpcargo, relative to the copy
    binary: str
    target_root: str  # where Cargo's target dir is, relative to the copy
    cargo_args: tuple[str, ...] = ()

    def expected_lines(self, triple: str) -> list[str]:
        arch = f"arch={RUST_ARCH[triple]}"
        return {
            "seed-c-lib": ["found 42 from C!", f"c-arch={C_ARCH[triple]}", arch],
            "seed-codegen": [f"hello world, generated for {triple}", arch],
            "dep-metadata": ["provider answer=42 greeting=hello-from-provider", arch],
            "zlib-sys": ["zlib 1.3.2 roundtrip ok", arch],
            "path-dep": [f"outside says hello from outside the workspace, built for {triple}", arch],
        }[self.name]


RUNNABLE = {
    crate.name: crate
    for crate in (
        FixtureCrate(name="seed-c-lib", copy="seed-c-lib", project=".", binary="hello-world-from-c", target_root="."),
        FixtureCrate(name="seed-codegen", copy="seed-codegen", project=".", binary="hello-generated", target_root="."),
        FixtureCrate(
            name="dep-metadata",
            copy="dep-metadata",
            project=".",
            binary="consumer",
            target_root=".",
            cargo_args=("-p", "consumer"),
        ),
        FixtureCrate(name="zlib-sys", copy="zlib-sys", project=".", binary="zlib-roundtrip", target_root="."),
        FixtureCrate(name="path-dep", copy="path-dep", project="app", binary="app", target_root="app"),
    )
}


def copy_fixture(factory: pytest.TempPathFactory, name: str) -> Path:
    """A private copy of tests/fixtures/<name> (without any target dir), so the fixture itself stays clean."""
    destination = factory.mktemp(name) / name
    shutil.copytree(FIXTURES / name, destination, ignore=shutil.ignore_patterns("target"), symlinks=True)
    return destination


def remove_kept_builds(result: Result) -> list[Path]:
    """The two build directories that a `verify` or `dist` whose builds differed names in its error (and keeps for
    the user), removed, so that a test leaves nothing in the temporary directory."""
    kept = [Path(word.strip(",;()")) for word in result.stderr_lines[-1].split() if word.startswith("/")]
    assert len(kept) == 2, result
    for path in kept:
        assert path.is_dir(), result
        shutil.rmtree(path)
    return kept


@dataclass
class BuiltCrate:
    crate: FixtureCrate
    root: Path  # the copy
    builds: dict[str, Result] = field(default_factory=dict)

    @property
    def project(self) -> Path:
        return (self.root / self.crate.project).resolve()

    @property
    def target_dir(self) -> Path:
        return (self.root / self.crate.target_root / "target").resolve()

    def artifact(self, triple: str, profile_dir: str = "debug") -> Path:
        return self.target_dir / triple / profile_dir / self.crate.binary


class Workspace:
    """One copy of each runnable fixture, shared by every test of the session, built once per target on demand."""

    def __init__(self, factory: pytest.TempPathFactory, cli: Cli) -> None:
        self._factory = factory
        self._cli = cli
        self._crates: dict[str, BuiltCrate] = {}

    def crate(self, name: str) -> BuiltCrate:
        if name not in self._crates:
            crate = RUNNABLE[name]
            root = copy_fixture(self._factory, crate.copy)
            if crate.project != ".":
                # A workspace in a subdirectory of a git checkout (a monorepo): its path dependencies elsewhere in the
                # checkout are the project's own and need no consent (config.trust).
                subprocess.run(["git", "init", "-q", str(root)], check=True)
            self._crates[name] = BuiltCrate(crate=crate, root=root)
        return self._crates[name]

    def built(self, name: str, triple: str) -> BuiltCrate:
        """The shared copy of ``name`` after `xpcargo build --target triple` (run the first time only)."""
        crate = self.crate(name)
        if triple not in crate.builds:
            crate.builds[triple] = self._cli(["build", "--target", triple, *crate.crate.cargo_args], cwd=crate.project)
        result = crate.builds[triple]
        assert result.code == 0, f"the build of {name} for {triple} failed:{result}"
        return crate


class Cli:
    """Runs xpcargo with the session's CARGO_HOME (so the user's own ~/.cargo is left alone)."""

    def __init__(self, env: Mapping[str, str | None]) -> None:
        self.env = dict(env)

    def __call__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str | None] | None = None,
        timeout: float = BUILD_TIMEOUT,
    ) -> Result:
        return run_cli(args, cwd=cwd, env={**self.env, **(env or {})}, timeout=timeout)


# --- Image builds, leaks, errors -----------------------------------------------------------------------------------


def image_build_output(command: list[str], env: Mapping[str, str]) -> tuple[int, str]:
    """Run ``command``, echoing its output as it comes and keeping it for the failure message."""
    kept: list[str] = []
    with subprocess.Popen(
        command, cwd=REPO, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
    ) as process:
        STARTED_PIDS.add(process.pid)
        assert process.stdout is not None
        for line in process.stdout:
            kept.append(line)
            sys.stderr.write(line)
            sys.stderr.flush()
        code = process.wait(timeout=IMAGE_BUILD_TIMEOUT)
    return code, "".join(kept)


def _session_containers() -> list[tuple[str, str, bool, str]]:
    """Containers that an xpcargo process of this test session started: (id, session label, warm and running,
    description).

    Other xpcargo commands may share this engine while the tests run (another developer's, another CI job's):
    a container is looked at only when its session label names a process that this test session started.
    """
    listing = docker(
        "ps",
        "-a",
        "--no-trunc",
        "--filter",
        f"label={MANAGED_LABEL}=true",
        "--format",
        f'{{{{.ID}}}}\t{{{{.Label "{SESSION_LABEL}"}}}}\t{{{{.Label "{SLOT_LABEL}"}}}}\t{{{{.State}}}}\t'
        "{{.Image}} {{.Status}}",
    )
    found = []
    for line in listing.splitlines():
        container, session, slot, state, description = line.split("\t")
        owner = session.rpartition(":")[2].removeprefix("warm-")
        if owner.isdigit() and int(owner) in STARTED_PIDS:
            found.append((container, session, bool(slot) and state == "running", description))
    return found


def leaked_containers(ignore: set[str]) -> dict[str, str]:
    """Containers of this test session's xpcargo processes that outlived them: id -> description. A running warm
    container is no leak: it is meant to wait for the next command (``warm_containers`` finds those)."""
    return {
        container: f"{container[:12]} {session} {description}"
        for container, session, warm, description in _session_containers()
        if container not in ignore and not warm
    }


def warm_container_of(workspace: Path, triple: str) -> str | None:
    """The running warm container of ``workspace`` (a test's own directory) and ``triple``, if there is one."""
    found = docker(
        "ps",
        "--no-trunc",
        "-q",
        "--filter",
        f"label={WORKSPACE_LABEL}={workspace.resolve()}",
        "--filter",
        f"label=org.xpcargo.target={triple}",
    ).split()
    assert len(found) <= 1, f"two warm containers for one workspace and target: {found}"
    return found[0] if found else None


def containers_of(workspace: Path) -> set[str]:
    """Every container, running or not, labelled with ``workspace`` (a test's own directory)."""
    return set(
        docker("ps", "-a", "-q", "--no-trunc", "--filter", f"label={WORKSPACE_LABEL}={workspace.resolve()}").split()
    )


def container_gone(container: str, within: float) -> bool:
    """Whether ``container`` is gone from the engine within ``within`` seconds."""
    deadline = time.monotonic() + within
    while docker("ps", "-a", "-q", "--no-trunc", "--filter", f"id={container}").strip():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def remove_workspace_containers_and_volumes(workspace: Path) -> None:
    """The containers and volumes labelled with ``workspace`` (a test's own directory), removed."""
    label = f"label={WORKSPACE_LABEL}={workspace}"
    containers = docker("ps", "-aq", "--filter", label, check=False).split()
    if containers:
        docker("rm", "--force", *containers, check=False)
    _remove_volumes(label)


def remove_session_volumes(cargo_home: str) -> None:
    """The remote-mode volume of the test session's own CARGO_HOME, removed. The CA bundle's volume stays, as the
    images do: it is this machine's, shared by every remote build on it, the other test process's too, whose next
    no-op build would find it made again and send it again."""
    _remove_volumes(f"label=org.xpcargo.volume-path={cargo_home}")


def _remove_volumes(label: str) -> None:
    """The volumes with ``label`` (a `docker volume ls` filter), removed; one that a command of someone else's still
    uses is kept (`docker volume rm` refuses it)."""
    names = docker("volume", "ls", "-q", "--filter", label, check=False).split()
    if names:
        docker("volume", "rm", *names, check=False)


def project_volume(project: Path, kind: str) -> str:
    """The name of the project's remote-mode volume of ``kind`` (workspace, target-dir, ...): exactly one."""
    workspace, of_kind = f"label={WORKSPACE_LABEL}={project}", f"label={VOLUME_KIND_LABEL}={kind}"
    (name,) = docker("volume", "ls", "-q", "--filter", workspace, "--filter", of_kind).split()
    return name


def command_processes(container: str) -> list[str]:
    """The processes of the commands running in a warm container, as `pid pgid args` lines: all but its init, its
    idle watch (the main process and its `sleep`) and this `ps`; none when the container is gone."""
    listing = docker("exec", container, "ps", "-eo", "pid=,pgid=,args=", check=False)
    rows = [line.split(None, 2) for line in listing.splitlines() if len(line.split(None, 2)) == 3]
    watch = {pgid for _, pgid, args in rows if "xpcargo-keep-warm" in args}
    return [" ".join(row) for row in rows if row[0] != "1" and row[1] not in watch and not row[2].startswith("ps -eo")]


def warm_containers() -> set[str]:
    """The running warm containers that this test session's xpcargo processes started."""
    return {container for container, _, warm, _ in _session_containers() if warm}


def assert_verified_same(verified: Result) -> None:
    """`verify --release` succeeded, and found every release artifact the same in both builds."""
    assert verified.code == 0, verified
    rows = [line.split() for line in verified.stdout_lines[1:]]
    assert rows, verified
    for name, first, second, result in rows:
        assert (first, result) == (second, "same"), verified
        assert name.startswith("release/")


def single_error_line(result: Result) -> str:
    """Assert the failure xpcargo reports is one `error: ` line, without a traceback; return it."""
    assert result.code != 0, result
    assert "Traceback" not in result.stderr, result
    errors = [line for line in result.stderr_lines if line.startswith("error")]
    assert len(errors) == 1, result
    assert errors[0].startswith("error: "), result
    return errors[0]


def assert_unwinding(xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, target: str) -> Path:
    """The should-panic fixture on ``target``: a release run catches a panic, and the `#[should_panic]` test passes
    (unwinding works, in the std the target has). The project, whose release binary the caller checks."""
    project = copy_fixture(tmp_path_factory, "should-panic")
    ran = xpcargo(["run", "--release", "--target", target], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-2:] == ["caught a panic: true", "half of 42 is 21"], ran
    tested = xpcargo(["test", "--target", target], cwd=project)
    assert tested.code == 0, tested
    assert "test tests::panics_on_odd_numbers - should panic ... ok" in tested.stdout, tested
    assert "test result: ok. 2 passed" in tested.stdout, tested
    return project


# crates.io releases, as a new user gets them: the .crate, checked against the index's sha256 and a pin.
DOWNLOAD_TIMEOUT = 60


@dataclass(frozen=True)
class Release:
    """A crates.io release, pinned by its .crate's sha256."""

    name: str
    version: str
    # The .crate's sha256, as crates.io's index has it (its `cksum`).
    sha256: str


def _index_path(name: str) -> str:
    """Where crates.io's sparse index keeps a crate's entries."""
    name = name.lower()
    if len(name) <= 2:
        return f"{len(name)}/{name}"
    if len(name) == 3:
        return f"3/{name[0]}/{name}"
    return f"{name[:2]}/{name[2:4]}/{name}"


def _fetch(url: str) -> bytes:
    assert url.startswith("https://"), url
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:  # noqa: S310 (https only, above)
        data: bytes = response.read()
    return data


def crates_io_crate(release: Release, into: Path) -> bytes:
    """The release's .crate, its sha256 checked against the index and against the pin."""
    entries = [json.loads(line) for line in _fetch(f"https://index.crates.io/{_index_path(release.name)}").splitlines()]
    (entry,) = [entry for entry in entries if entry["vers"] == release.version]
    assert entry["cksum"] == release.sha256, f"crates.io's index has another sha256 for {release}: {entry['cksum']}"
    assert not entry["yanked"], release
    version = release.version.replace("+", "%2B")
    data = _fetch(f"https://static.crates.io/crates/{release.name}/{release.name}-{version}.crate")
    assert hashlib.sha256(data).hexdigest() == release.sha256, f"{release}'s .crate does not match its sha256"
    (into / f"{release.name}-{release.version}.crate").write_bytes(data)
    return data


def crates_io_release(release: Release, factory: pytest.TempPathFactory) -> Path:
    into = factory.mktemp(release.name)
    crates_io_crate(release, into)
    with tarfile.open(into / f"{release.name}-{release.version}.crate", "r:gz") as archive:
        archive.extractall(into, filter="data")
    project = into / f"{release.name}-{release.version}"
    if not (project / "Cargo.lock").exists():
        cargo = shutil.which("cargo")
        assert cargo is not None, f"{release} ships no Cargo.lock and the host has no cargo to make one"
        subprocess.run([cargo, "generate-lockfile"], cwd=project, check=True, timeout=300)
    return project
