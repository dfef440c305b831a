"""ARMv5TE with soft float (armv5te-unknown-linux-gnueabi, Debian's armel) against the real engine, on Rust 1.96 with
its std built in the image layer from Debian's sources of that rustc (Debian packages armel's std for 1.85.1 only).
The seed C example and a -sys crate (zlib through the cc crate) build and run under qemu-arm's ARM926 (ARMv5TEJ,
which faults on ARMv7 code: a program with one ARMv7 function does); the programs are ARMv5TE soft-float EABI
programs for armel's dynamic loader; current crates.io crates that 1.85 cannot build (globset,
url through ICU4X 2), locked by today's stable Cargo, build and run; unwinding works (EHABI, through glibc's
libgcc_s). A project pinned to 1.85 still gets Debian's 1.85.1 with its packaged std. A project cannot turn the std
build's linker into a command, and its own linker and flags never reach the std build (the image stays the same)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from .helpers import (
    ARMV5TE,
    RUNNABLE,
    Cli,
    assert_elf_for,
    assert_unwinding,
    assert_verified_same,
    copy_fixture,
    single_error_line,
)
from .test_armv6 import assert_an_armv7_instruction_faults, cpu_arch

pytestmark = pytest.mark.engine

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

# Tag_CPU_arch 4: ARMv5TE (the ARM ELF ABI's addenda; test_armv6.CPU_ARCH names the others).
V5TE = 4
# e_flags of an EABI version 5 object for the soft-float procedure call standard (EF_ARM_ABI_FLOAT_SOFT): armel's.
# armhf's say EF_ARM_ABI_FLOAT_HARD (0x400) instead.
EABI5_SOFT_FLOAT = 0x05000200
ARMEL_LOADER = "/lib/ld-linux.so.3"
_PT_INTERP = 3


def _interpreter(path: Path) -> str:
    data = path.read_bytes()
    (phoff,) = struct.unpack_from("<I", data, 0x1C)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x2A)
    for index in range(phnum):
        kind, offset, _, _, size = struct.unpack_from("<IIIII", data, phoff + index * phentsize)
        if kind == _PT_INTERP:
            return data[offset : offset + size].rstrip(b"\0").decode()
    return ""


def assert_armv5te_program(path: Path) -> None:
    """An ARM EABI5 soft-float program for ARMv5TE, which armel's dynamic loader loads."""
    assert_elf_for(path, ARMV5TE)
    (flags,) = struct.unpack_from("<I", path.read_bytes(), 0x24)
    assert flags == EABI5_SOFT_FLOAT, f"{path}: e_flags {flags:#010x}"
    assert cpu_arch(path) == V5TE, f"{path}: Tag_CPU_arch {cpu_arch(path)}, not ARMv5TE"
    assert _interpreter(path) == ARMEL_LOADER, path


@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_c_code_builds_with_1_96_and_runs(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    ran = xpcargo(["run", "--target", ARMV5TE], cwd=project)
    assert ran.code == 0, ran
    for line in RUNNABLE[fixture].expected_lines(ARMV5TE):
        assert line in ran.stdout_lines, ran
    assert_armv5te_program(project / "target" / ARMV5TE / "debug" / RUNNABLE[fixture].binary)
    listed = xpcargo(["targets", "--target", ARMV5TE, "--json"], cwd=project)
    assert [(item["rust"], item["recipe"]) for item in json.loads(listed.stdout)] == [("1.96.0", "trixie-rust")]


CURRENT_CRATES = [
    "glob main.rs=true notes.txt=false",
    "url host=xn--bcher-kva.example path=/b",
    "arch=arm",
]


def test_current_crates_build_and_run_where_1_85_cannot(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "current-crates")
    ran = xpcargo(["run", "--target", ARMV5TE], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-3:] == CURRENT_CRATES, ran
    assert_armv5te_program(project / "target" / ARMV5TE / "debug" / "current-crates")
    # The control: the same lock on Debian's 1.85 (the Rust this target had before) is refused by Cargo.
    old = xpcargo(["build", "--target", ARMV5TE], cwd=project, env={"XPCARGO_TOOLCHAIN": "1.85"})
    assert old.code == 101, old
    assert "rustc 1.85.1 is not supported" in old.stderr, old


def test_unwinding_catches_panics_and_should_panic_passes(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = assert_unwinding(xpcargo, tmp_path_factory, ARMV5TE)
    assert_armv5te_program(project / "target" / ARMV5TE / "release" / "should-panic")


def test_an_armv7_object_faults_on_the_arm926_and_is_caught(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """The judge bites: one C function built for ARMv7 links into the program, its ELF then says ARMv7 (which the
    other tests' check refuses), and the runner's ARM926 faults on its instruction."""
    assert_an_armv7_instruction_faults(xpcargo, tmp_path_factory, ARMV5TE)


def test_verify_release_is_green(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    # The std built in the layer is one set of rlibs: two release builds of a program with C code are the same bytes.
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    assert_verified_same(xpcargo(["verify", "--target", ARMV5TE, "--release"], cwd=project, env=EPOCH))


def test_a_project_pinned_to_1_85_gets_debians_1_85_and_its_std(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "toolchain-pinned")
    ran = xpcargo(["run", "--target", ARMV5TE], cwd=project)
    assert ran.code == 0, ran
    assert [line for line in ran.stdout_lines if line.startswith("built-with=")] == [
        next(line for line in ran.stdout_lines if line.startswith("built-with=rustc 1.85.1 "))
    ], ran
    assert_armv5te_program(project / "target" / ARMV5TE / "debug" / "toolchain-pinned")
    listed = xpcargo(["targets", "--target", ARMV5TE, "--json"], cwd=project)
    assert [(item["rust"], item["recipe"]) for item in json.loads(listed.stdout)] == [("1.85.1", "trixie-rust-1.85")]
    # The override: the target's own Rust, whose std the layer built.
    own = xpcargo(["run", "--target", ARMV5TE], cwd=project, env={"XPCARGO_TOOLCHAIN": "default"})
    assert own.code == 0, own
    assert [line for line in own.stdout_lines if line.startswith("built-with=rustc 1.96.0 ")], own


# --- The std build belongs to the image, not to the project ---------------------------------------------------------

MARKER = Path("/tmp/xpcargo-armv5te-std-pwned")


@pytest.mark.parametrize(
    "settings",
    [
        # The linker of the std's dylib runs in the layer's container, as root, with the network: one program.
        f'std-linker = "arm-linux-gnueabi-gcc; touch {MARKER}"',
        f'std-linker = "$(touch {MARKER})"',
        'std-linker = "arm-linux-gnueabi-gcc -Wl,-rpath,/tmp/evil"',
        'std-linker = "-fuse-ld=/tmp/evil"',
    ],
)
def test_a_project_cannot_make_the_std_build_link_with_commands_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, settings: str
) -> None:
    project = copy_fixture(tmp_path_factory, "armv5te-std-hostile")
    config = project / "xpcargo.toml"
    config.write_text(config.read_text(encoding="utf-8") + settings + "\n", encoding="utf-8")
    result = cli(["build", "--target", ARMV5TE], cwd=project)
    assert result.code == 3, result
    line = single_error_line(result)
    assert "xpcargo.toml" in line, result
    assert "std-linker" in line, result
    assert "Building image" not in result.stderr, result
    assert not MARKER.exists()


def test_the_projects_own_linker_and_flags_never_reach_the_std_build(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    """The fixture sets the target's linker, C compiler, RUSTFLAGS and Cargo's own linker and rustflags to commands
    that would leave a marker: the image is the shipped one (the std build never saw them), and the build runs them
    in its own container only, where they fail the build."""
    project = copy_fixture(tmp_path_factory, "armv5te-std-hostile")
    shipped = xpcargo(["targets", "--target", ARMV5TE, "--json"], cwd=tmp_path_factory.mktemp("elsewhere"))
    hostile = xpcargo(["targets", "--target", ARMV5TE, "--json"], cwd=project)
    assert shipped.code == hostile.code == 0, hostile
    assert json.loads(hostile.stdout)[0]["image"] == json.loads(shipped.stdout)[0]["image"], hostile
    built = xpcargo(["build", "--target", ARMV5TE], cwd=project)
    # Its own build used its own linker, which does not exist.
    assert built.code == 101, built
    assert "/nonexistent/evil-linker" in built.stderr, built
    assert "Building image" not in built.stderr, built
