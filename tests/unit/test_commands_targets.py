"""`xpcargo targets`: the table, the JSON for scripts, and the matrix that GitHub Actions reads with fromJSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpcargo.commands import targets
from xpcargo.context import Context
from xpcargo.errors import UnknownTargetError

AARCH64 = "aarch64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"
ARMV7 = "armv7-unknown-linux-gnueabihf"
RISCV64 = "riscv64gc-unknown-linux-gnu"
PPC64LE = "powerpc64le-unknown-linux-gnu"
S390X = "s390x-unknown-linux-gnu"
ARMV5TE = "armv5te-unknown-linux-gnueabi"
WASM32 = "wasm32-wasip1"
X86_64_MUSL = "x86_64-unknown-linux-musl"
AARCH64_MUSL = "aarch64-unknown-linux-musl"
ARMV6_MUSL = "arm-unknown-linux-musleabihf"
SHIPPED = sorted(
    [AARCH64, I686, X86_64, ARMV7, RISCV64, PPC64LE, S390X, ARMV5TE, WASM32, X86_64_MUSL, AARCH64_MUSL, ARMV6_MUSL]
)


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path)})


def test_every_shipped_target_is_described(context: Context) -> None:
    infos = targets.describe(context)
    assert [info.target for info in infos] == SHIPPED
    by_target = {info.target: info for info in infos}
    assert by_target[AARCH64].runner[0] == "qemu-aarch64"
    assert by_target[AARCH64].image == context.host.image_plan(context.host.toolchains.target(AARCH64)).reference
    assert all(
        info.glibc == "2.41" for info in infos if info.target not in (WASM32, X86_64_MUSL, AARCH64_MUSL, ARMV6_MUSL)
    )
    # A WebAssembly module links no glibc, nor does a static musl program: they have no floor at all.
    assert by_target[WASM32].glibc is None
    assert by_target[X86_64_MUSL].glibc is None
    assert by_target[AARCH64_MUSL].glibc is None
    # Static programs: qemu runs them without a library prefix.
    assert by_target[AARCH64_MUSL].runner == ("qemu-aarch64",)
    assert by_target[WASM32].runner[0] == "node"
    assert by_target[X86_64].native is (context.host.platform is not None and context.host.platform.machine == "x86_64")
    assert not by_target[AARCH64].native or context.host.platform is not None


def test_json_has_every_field(context: Context) -> None:
    document = json.loads(targets.as_json(targets.describe(context)))
    assert {item["target"] for item in document} == set(SHIPPED)
    assert set(document[0]) == {
        "target",
        "image",
        "plan",
        "debian_arch",
        "runner",
        "glibc",
        "native",
        "engine",
        "remote",
    }


def test_github_matrix_is_one_line_of_include(context: Context) -> None:
    text = targets.github_matrix(targets.describe(context, [I686, AARCH64]))
    assert "\n" not in text
    assert json.loads(text) == {"include": [{"target": I686}, {"target": AARCH64}]}
    everything = json.loads(targets.github_matrix(targets.describe(context, ["all"])))
    assert [entry["target"] for entry in everything["include"]] == SHIPPED


def test_an_unknown_target_is_refused(context: Context) -> None:
    with pytest.raises(UnknownTargetError):
        targets.describe(context, ["sparc-unknown-linux-gnu"])


def test_the_table(context: Context) -> None:
    rows = targets.rows(targets.describe(context))
    assert rows[0] == ("TARGET", "DEBIAN ARCH", "RUNS WITH", "GLIBC", "IMAGE", "ENGINE")
    assert next(row for row in rows if row[0] == X86_64)[:4] == (X86_64, "amd64", "native", "2.41")
    assert rows[-1][:4] == (X86_64_MUSL, "amd64", "native", "none")
    assert next(row for row in rows if row[0] == WASM32)[:4] == (WASM32, "all", "node", "none")
