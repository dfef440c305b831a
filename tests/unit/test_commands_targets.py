"""`xpcargo targets`: the table, the JSON for scripts, and the matrix that GitHub Actions reads with fromJSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpcargo.artifacts import libc_of
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
WINDOWS = "x86_64-pc-windows-gnu"
MORE_MUSL = [
    "i686-unknown-linux-musl",
    "armv7-unknown-linux-musleabihf",
    "arm-unknown-linux-musleabihf",
    "riscv64gc-unknown-linux-musl",
]
SHIPPED = sorted(
    [
        AARCH64,
        I686,
        X86_64,
        ARMV7,
        RISCV64,
        PPC64LE,
        S390X,
        ARMV5TE,
        WASM32,
        X86_64_MUSL,
        AARCH64_MUSL,
        *MORE_MUSL,
        WINDOWS,
    ]
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
    no_glibc = (WASM32, X86_64_MUSL, AARCH64_MUSL, *MORE_MUSL, WINDOWS)
    assert all(info.glibc == "2.41" for info in infos if info.target not in no_glibc)
    # A WebAssembly module links no glibc, nor does a static musl program: they have no floor at all.
    assert by_target[WASM32].glibc is None
    assert by_target[X86_64_MUSL].glibc is None
    assert by_target[AARCH64_MUSL].glibc is None
    assert all(by_target[triple].glibc is None for triple in MORE_MUSL)
    # Nor does a Windows program, which wine runs through xpcargo's runner.
    assert by_target[WINDOWS].glibc is None
    assert targets.rows([by_target[WINDOWS]])[1][1:4] == ("mingw", "dynamic", "wine")
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
        "libc",
        "runs",
        "linking",
        "rust",
        "recipe",
    }
    musl = next(item for item in document if item["target"] == X86_64_MUSL)
    assert (musl["libc"], musl["linking"], musl["runs"], musl["rust"]) == ("musl", "static", "native", "1.96.0")


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
    assert rows[0] == ("TARGET", "LIBC", "LINKING", "RUNS WITH", "RUST", "DEBIAN ARCH", "IMAGE", "ENGINE")
    by_target = {row[0]: row[1:6] for row in rows[1:]}
    assert by_target[X86_64] == ("glibc 2.41", "dynamic", "native", "1.96.0", "amd64")
    assert by_target[AARCH64] == ("glibc 2.41", "dynamic", "qemu-aarch64", "1.96.0", "arm64")
    # armel's std is built from source for 1.96 (Debian packages it for 1.85 only).
    assert by_target[ARMV5TE] == ("glibc 2.41", "dynamic", "qemu-arm", "1.96.0", "armel")
    assert by_target[X86_64_MUSL] == ("musl", "static", "native", "1.96.0", "amd64")
    assert by_target[AARCH64_MUSL] == ("musl", "static", "qemu-aarch64", "1.96.0", "arm64")
    assert by_target[WASM32] == ("wasi", "n/a", "node", "1.96.0", "all")
    # Rust's riscv64 musl target links dynamically by default; its `target-features` make it static.
    assert by_target["riscv64gc-unknown-linux-musl"] == ("musl", "static", "qemu-riscv64", "1.96.0", "riscv64")


def test_the_columns_follow_from_the_settings_and_the_triple(tmp_path: Path) -> None:
    """A target toolchains.yaml does not know, added by a project: a Windows triple with wine as its runner shows
    as MinGW, run by wine, linked dynamically (no table of triples to extend); one with an image of the user's says
    so for its Rust."""
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    windows = "x86_64-pc-windows-gnu"
    fields = 'debian-arch = "amd64"\ncc = "x86_64-w64-mingw32-gcc"\ncxx = "x86_64-w64-mingw32-g++"\n'
    fields += 'ar = "x86_64-w64-mingw32-ar"\nlinker = "x86_64-w64-mingw32-gcc"\n'
    (tmp_path / "xpcargo.toml").write_text(
        f'[target.{windows}]\nrecipe = "trixie-rust"\nrunner = ["/usr/bin/wine"]\n{fields}'
        f'[target.{I686}]\nimage = "mine:1"\n',
        encoding="utf-8",
    )
    context = Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path)})
    info = targets.describe(context, [windows, I686])
    assert (info[0].libc, info[0].runs, info[0].linking, info[0].rust) == ("mingw", "wine", "dynamic", "1.96.0")
    assert targets.rows(info)[2][4] == "(its image's)"
    (tmp_path / "xpcargo.toml").write_text(
        f'[target.{windows}]\nrecipe = "trixie-rust"\n{fields}target-features = ["+crt-static", "-crt-static"]\n'
        f'[target.{X86_64}]\ntarget-features = ["+crt-static"]\n',
        encoding="utf-8",
    )
    context = Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path)})
    assert [info.linking for info in targets.describe(context, [windows, X86_64])] == ["dynamic", "static"]
    assert libc_of("riscv64gc-unknown-none-elf") == "unknown"


def test_a_project_pinned_to_a_rust_shows_it(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    (tmp_path / "rust-toolchain").write_text("1.85\n", encoding="utf-8")
    context = Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path)})
    pinned = targets.describe(context, [X86_64, AARCH64])
    assert [(info.rust, info.recipe) for info in pinned] == [("1.85.1", "trixie-rust-1.85")] * 2
    # The shipped table as shipped: without names, the project is not read.
    assert {info.rust for info in targets.describe(context) if info.target == X86_64} == {"1.96.0"}
