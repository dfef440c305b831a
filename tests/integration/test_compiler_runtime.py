"""C code that needs the compiler's runtime functions links and runs on every target whose std xpcargo provides.

gcc compiles `__builtin_popcountll` into a call of `__popcountdi2` where the baseline CPU has no population-count
instruction (x86_64, i686, ARMv6/v7, riscv64gc): jemalloc does this, and ripgrep links jemalloc on musl. Rust's link
has no libgcc (`-nodefaultlibs`): the function must come from the std's `compiler_builtins`, which Rust's and
Debian's builds compile with LLVM's compiler-rt C sources. Debian's `rust-web-src` has no compiler-rt, so the stds
xpcargo builds from source lack it today: those targets are expected to fail (strictly: the day they link, this
test says so) until the layer builds compiler_builtins with its `c` feature. Windows links MinGW's libgcc itself."""

from __future__ import annotations

import pytest

from .helpers import (
    AARCH64,
    AARCH64_MUSL,
    ARMV6_MUSL,
    ARMV7_MUSL,
    I686_MUSL,
    RISCV64,
    WINDOWS,
    X86_64,
    X86_64_MUSL,
    Cli,
    copy_fixture,
)

pytestmark = pytest.mark.engine

NO_COMPILER_RT = pytest.mark.xfail(
    strict=True, reason="std built from Debian's sources: compiler_builtins without compiler-rt (no __popcountdi2)"
)
TARGETS = [
    X86_64,
    AARCH64,
    RISCV64,
    WINDOWS,
    # aarch64's gcc counts bits with a SIMD instruction: no runtime function is needed.
    AARCH64_MUSL,
    pytest.param(X86_64_MUSL, marks=NO_COMPILER_RT),
    pytest.param(I686_MUSL, marks=NO_COMPILER_RT),
    pytest.param(ARMV7_MUSL, marks=NO_COMPILER_RT),
    pytest.param(ARMV6_MUSL, marks=NO_COMPILER_RT),
]


@pytest.mark.parametrize("target", TARGETS)
def test_c_code_calling_a_compiler_runtime_function_links_and_runs(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, target: str
) -> None:
    project = copy_fixture(tmp_path_factory, "c-builtins")
    ran = xpcargo(["run", "--target", target], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines[-1] == "popcount(0xffffffffff) = 40", ran
