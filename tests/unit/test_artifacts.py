"""The final artifacts of a build, the one filter over Cargo's messages (the report, the summary, verify, dist and
remote mode's way back all use it), and what each file needs from glibc (ELF files built byte by byte, see
test_elf.py)."""

from __future__ import annotations

from pathlib import Path

from xpcargo.artifacts import final_artifacts, glibc_need, libc_of, links_glibc, named

from .test_elf import build_elf

AARCH64 = "aarch64-unknown-linux-gnu"


def artifact_tree(tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    """A target dir with a binary needing GLIBC_2.34, a cdylib needing 2.38, a static library (no ELF file) and
    an rlib (no final artifact), with the messages Cargo prints for them."""
    tree = tmp_path / "target" / AARCH64 / "release"
    tree.mkdir(parents=True)
    (tree / "app").write_bytes(build_elf(bits=64, big_endian=False, machine=183, needs={"libc.so.6": ["GLIBC_2.34"]}))
    (tree / "libplug.so").write_bytes(
        build_elf(bits=64, big_endian=False, machine=183, needs={"libc.so.6": ["GLIBC_2.17", "GLIBC_2.38"]})
    )
    (tree / "libplug.a").write_bytes(b"!<arch>\n")
    (tree / "libdep.rlib").write_bytes(b"!<arch>\n")
    messages: list[dict[str, object]] = [
        {
            "reason": "compiler-artifact",
            "package_id": "dep 0.1.0",
            "target": {"kind": ["lib"]},
            "filenames": [str(tree / "libdep.rlib")],
        },
        {
            "reason": "compiler-artifact",
            "package_id": "plug 0.1.0",
            "target": {"kind": ["cdylib", "staticlib"]},
            "filenames": [str(tree / "libplug.so"), str(tree / "libplug.a")],
        },
        {
            "reason": "compiler-artifact",
            "package_id": "app 0.1.0",
            "target": {"kind": ["bin"]},
            "filenames": [str(tree / "app")],
            "executable": str(tree / "app"),
        },
    ]
    return tmp_path / "target", messages


def test_the_final_artifacts_and_their_needs(tmp_path: Path) -> None:
    target_dir, messages = artifact_tree(tmp_path)
    found = final_artifacts(messages, target_dir / AARCH64)
    assert [item.path.name for item in found] == ["libplug.so", "libplug.a", "app"]
    needs = [glibc_need(item.path) for item in found]
    assert [(need.machine, need.glibc) for need in needs] == [("aarch64", "2.38"), (None, None), ("aarch64", "2.34")]
    assert [need.describe("2.36") for need in needs] == ["2.38 (ABOVE the floor 2.36)", "-", "2.34 (floor 2.36)"]


def test_final_artifacts_read_the_glibc_need_and_with_digests_size_and_sha256(tmp_path: Path) -> None:
    target_dir, messages = artifact_tree(tmp_path)
    found = final_artifacts(messages, target_dir / AARCH64)
    assert [item.glibc for item in found] == [glibc_need(item.path) for item in found]
    assert [(item.size, item.sha256) for item in found] == [(None, None)] * 3
    measured = final_artifacts(messages, target_dir / AARCH64, digests=True)
    assert [item.size for item in measured] == [item.path.stat().st_size for item in found]
    assert measured[2].package_id == "app 0.1.0"
    assert measured[2].kinds == frozenset({"bin"})
    assert all(item.sha256 is not None and len(item.sha256) == 64 for item in measured)
    # Only under the target's own tree: the same messages name nothing for another target.
    assert final_artifacts(messages, target_dir / "x86_64-unknown-linux-gnu") == ()


def test_named_reads_no_file_and_skips_rusts_intermediate_files(tmp_path: Path) -> None:
    """What remote mode brings back: the files need not exist on this machine yet."""
    message = {
        "reason": "compiler-artifact",
        "package_id": "plug 0.1.0",
        "target": {"kind": ["cdylib", "rlib"]},
        "filenames": ["/gone/libplug.so", "/gone/libplug.rlib", "/gone/libplug.rmeta", "/gone/plug.d", 7],
    }
    assert [str(item.path) for item in named(message)] == ["/gone/libplug.so"]
    # A test executable: its kind ships nothing, its executable is final.
    test = {"reason": "compiler-artifact", "target": {"kind": ["lib"]}, "executable": "/gone/deps/app-1a2b"}
    assert [(str(item.path), item.package_id) for item in named(test)] == [("/gone/deps/app-1a2b", "")]
    assert named({"reason": "build-script-executed", "out_dir": "/gone/out"}) == []


def test_only_linux_gnu_targets_link_glibc() -> None:
    assert not links_glibc("wasm32-wasip1")
    assert links_glibc("armv5te-unknown-linux-gnueabi")


def test_a_wasm_module_needs_no_glibc(tmp_path: Path) -> None:
    # The first bytes of every WebAssembly module: the magic and version 1. The ELF reader must take it for what it
    # is (no ELF file), not fail.
    module = tmp_path / "app.wasm"
    module.write_bytes(b"\0asm\x01\0\0\0" + bytes(64))
    need = glibc_need(module)
    assert (need.machine, need.glibc) == (None, None)
    assert need.describe(None) == "-"


def test_the_c_library_of_a_triple() -> None:
    assert libc_of("x86_64-unknown-linux-musl") == "musl"
    assert libc_of("armv7-unknown-linux-musleabihf") == "musl"
    assert libc_of("armv7-unknown-linux-gnueabihf") != "musl"
    assert libc_of("wasm32-wasip1") != "musl"

    assert libc_of("x86_64-pc-windows-gnu") == "mingw"
    assert libc_of("aarch64-unknown-linux-gnu") == "glibc"
