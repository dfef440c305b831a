"""C code that needs the compiler's runtime functions links and runs on every target whose std xpcargo provides.

gcc compiles `__builtin_popcountll` into a call of `__popcountdi2` where the baseline CPU has no population-count
instruction (x86_64, i686, ARMv5TE, ARMv6/v7, riscv64gc): jemalloc does this, and ripgrep links jemalloc on musl.
Rust's link of a musl program has no libgcc (`-nodefaultlibs`): the function must come from the std's
`compiler_builtins`, which Rust's and Debian's builds compile with LLVM's compiler-rt C sources (a glibc program, such
as ARMv5TE's, whose std is built from source too, has libgcc_s as well). Debian's `rust-web-src` has no
compiler-rt: a std that xpcargo builds from source gets it from the recipe's pinned LLVM sources, compiled with the
target's `std-cc`.
Before that, the four 32- and 64-bit musl targets below failed to link. Windows links MinGW's libgcc as well."""

from __future__ import annotations

import pytest

from .helpers import (
    AARCH64,
    AARCH64_MUSL,
    ARMV5TE,
    ARMV6_MUSL,
    ARMV7_MUSL,
    I686_MUSL,
    RISCV64,
    RISCV64_MUSL,
    WINDOWS,
    X86_64,
    X86_64_MUSL,
    Cli,
    copy_fixture,
)

pytestmark = [pytest.mark.engine, pytest.mark.std_images]

TARGETS = [
    X86_64,
    AARCH64,
    RISCV64,
    WINDOWS,
    # glibc's, with its std built from source: ARMv5TE has no population-count instruction.
    ARMV5TE,
    # aarch64's gcc counts bits with a SIMD instruction: no runtime function is needed.
    AARCH64_MUSL,
    X86_64_MUSL,
    I686_MUSL,
    ARMV7_MUSL,
    ARMV6_MUSL,
    RISCV64_MUSL,
]


@pytest.mark.parametrize("target", TARGETS)
def test_c_code_calling_a_compiler_runtime_function_links_and_runs(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, "c-builtins")
    ran = xpcargo(["run", "--target", target], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-1] == "popcount(0xffffffffff) = 40", ran
