"""Which targets get the exec preload, what their layer compiles, and what the preload does: compiled here by the
host's gcc for a pretend machine (aarch64's e_machine), preloaded into the host's own bash, with a script standing in
for the emulator that prints what it was given."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from xpcargo.config import targets as config
from xpcargo.emulation import PRELOAD_CFLAGS, c_string, exec_preload, preload_path, preload_source
from xpcargo.image.layers import exec_preload_script, install_script
from xpcargo.image.plan import Layer, _layer_content

GLIBC = (
    "aarch64-unknown-linux-gnu",
    "armv7-unknown-linux-gnueabihf",
    "riscv64gc-unknown-linux-gnu",
    "i686-unknown-linux-gnu",
)
STATIC_OR_NOT_QEMU = (
    "aarch64-unknown-linux-musl",
    "x86_64-unknown-linux-gnu",
    "wasm32-wasip1",
    "x86_64-pc-windows-gnu",
)


@pytest.mark.parametrize("triple", GLIBC)
def test_a_foreign_glibc_target_gets_the_preload(shipped: config.Toolchains, triple: str) -> None:
    spec = shipped.target(triple)
    preload = exec_preload(spec)
    assert preload is not None
    assert preload.path == preload_path(spec) == f"/usr/local/lib/xpcargo/{triple}/exec-preload.so"
    assert preload.emulator_args == ("-L", spec.sysroot)
    assert preload.emulator == spec.runner[0]
    # Compiled by the layer's own cross gcc, from the shipped source, to its fixed path.
    script = "\n".join(exec_preload_script(preload))
    assert f"{preload.gnu_triple}-gcc " in script
    assert f"-o {preload.path} " in script
    assert all(flag in script for flag in PRELOAD_CFLAGS)
    assert shlex.quote(preload_source()) in script


@pytest.mark.parametrize("triple", STATIC_OR_NOT_QEMU)
def test_a_static_or_native_target_gets_none(shipped: config.Toolchains, triple: str) -> None:
    assert exec_preload(shipped.target(triple)) is None
    assert preload_path(shipped.target(triple)) is None


def test_the_runners_cpu_goes_to_the_children_too(shipped: config.Toolchains) -> None:
    preload = exec_preload(shipped.target("armv5te-unknown-linux-gnueabi"))
    assert preload is not None
    assert preload.emulator_args == ("-cpu", "arm926", "-L", "/usr/arm-linux-gnueabi")
    assert '-DXPCARGO_EMULATOR_ARGS="-cpu", "arm926", "-L", "/usr/arm-linux-gnueabi"' in preload.defines()


def test_a_runner_word_cannot_end_its_c_string() -> None:
    # Every byte but a plain character is an octal escape: no quote, backslash, comma or newline survives.
    assert c_string('x", evil(), "') == '"x\\042\\054\\040evil\\050\\051\\054\\040\\042"'
    assert c_string("a\\\nb") == '"a\\134\\012b"'


def test_crt_static_turns_it_off(shipped: config.Toolchains) -> None:
    spec = replace(shipped.target("aarch64-unknown-linux-gnu"), target_features=("+crt-static",))
    assert exec_preload(spec) is None


def test_the_layer_builds_it_and_its_source_is_in_the_layers_digest(shipped: config.Toolchains) -> None:
    preload = exec_preload(shipped.target("aarch64-unknown-linux-gnu"))
    assert preload is not None
    layer = Layer(purpose="target", packages=("gcc-aarch64-linux-gnu",), emulator="qemu-aarch64", exec_preload=preload)
    script = install_script(layer, build_arch="amd64", pool_debs=(), owner="1000:1000")
    # After apt installed the cross gcc.
    assert script.index("apt-get") < script.index("aarch64-linux-gnu-gcc")
    changed = replace(layer, exec_preload=replace(preload, source_sha256="0" * 64))
    assert _layer_content(changed) != _layer_content(layer)
    # A layer without one hashes as before the field existed.
    assert "exec_preload" not in _layer_content(replace(layer, exec_preload=None))


# A pretend ELF executable of aarch64 (EI_CLASS 2, little-endian, ET_DYN, e_machine 183), and one of x86_64 (62).
def _elf_header(machine: int) -> bytes:
    return b"\x7fELF\x02\x01\x01" + bytes(9) + (3).to_bytes(2, "little") + machine.to_bytes(2, "little")


@pytest.fixture
def preloaded(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The preload, compiled by the host's gcc for aarch64 programs, with a script as the emulator; the program."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc on this machine")
    work = tmp_path / "a dir"
    work.mkdir()
    emulator = work / "emulator"
    emulator.write_text('#!/bin/sh\nprintf "[%s]" "$0" "$@"; echo; echo "host LD_PRELOAD=${LD_PRELOAD-unset}"\n')
    emulator.chmod(0o755)
    # LD_PRELOAD splits at spaces: the library's own path has none (the image's is fixed); the others have one.
    library = tmp_path / "exec-preload.so"
    source = work / "exec-preload.c"
    source.write_text(preload_source())
    defines = [
        f'-DXPCARGO_EMULATOR="{emulator}"',
        '-DXPCARGO_EMULATOR_ARGS="-L", "/usr/aarch64-linux-gnu"',
        f'-DXPCARGO_SELF="{library}"',
        "-DXPCARGO_CLASS=2",
        "-DXPCARGO_DATA=1",
        "-DXPCARGO_MACHINE=183",
    ]
    subprocess.run([gcc, *PRELOAD_CFLAGS, *defines, "-o", str(library), str(source)], check=True)
    program = work / "foreign program"
    program.write_bytes(_elf_header(183))
    program.chmod(0o755)
    return library, emulator, program


def _sh(library: Path, command: str, **env: str) -> str:
    environ = {"PATH": os.environ["PATH"], "LD_PRELOAD": str(library), **env}
    done = subprocess.run(["bash", "-c", command], env=environ, capture_output=True, text=True, check=False)
    return done.stdout + done.stderr


def test_a_foreign_program_runs_under_the_emulator_with_its_argv0(preloaded: tuple[Path, Path, Path]) -> None:
    library, emulator, program = preloaded
    out = _sh(library, f'exec -a my-name "{program}" one "two words"')
    assert out.splitlines()[0] == (
        f"[{emulator}][-L][/usr/aarch64-linux-gnu][-0][my-name][-E][LD_PRELOAD={library}][{program}][one][two words]"
    )
    # The host's loader never gets the foreign preload.
    assert out.splitlines()[1] == "host LD_PRELOAD=unset"


def test_the_programs_own_preload_goes_to_the_program(preloaded: tuple[Path, Path, Path]) -> None:
    library, _, program = preloaded
    out = _sh(library, f'LD_PRELOAD=/their/lib.so exec "{program}"')
    assert f"[-E][LD_PRELOAD={library}:/their/lib.so][{program}]" in out
    assert "host LD_PRELOAD=unset" in out


def test_a_foreign_program_found_on_path(preloaded: tuple[Path, Path, Path]) -> None:
    library, emulator, program = preloaded
    out = _sh(library, 'exec "foreign program" x', PATH=f"/nonexistent:{program.parent}:{os.environ['PATH']}")
    assert out.startswith(f"[{emulator}]"), out
    assert f"[foreign program][-E][LD_PRELOAD={library}][{program}][x]" in out


def test_anything_else_runs_as_it_is(preloaded: tuple[Path, Path, Path], tmp_path: Path) -> None:
    library, _, program = preloaded
    native = tmp_path / "x86_64 header"
    native.write_bytes(_elf_header(62))
    native.chmod(0o755)
    # The host's own programs, and the preload takes itself out of the environment they see.
    assert _sh(library, "echo ok; echo ${LD_PRELOAD-unset}").splitlines() == ["ok", "unset"]
    # Another machine's ELF file: the real exec, which fails as it would have.
    assert "emulator" not in _sh(library, f'"{native}"')
    assert "emulator" not in _sh(library, f'"{program}-missing"')
