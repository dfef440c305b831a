"""How a foreign target's programs run under qemu-user: which ELF machine each emulator runs, and xpcargo's exec
preload (``images/share/exec-preload.c``), which a foreign glibc target's image layer compiles with the target's own
cross gcc and which qemu preloads into the target's programs, so that a program starting another program of the
target (a test running ``env!("CARGO_BIN_EXE_<name>")``) starts it under the emulator.

The kernel alone cannot run such a program, and registering the emulator in binfmt_misc needs a user namespace that
Docker's default seccomp profile refuses (``pipeline.binfmt``, kept for the targets the preload cannot serve).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from xpcargo.config.targets import GNU_TRIPLES, TargetSpec
from xpcargo.resources import share_dir

# What each emulator runs, as ELF header fields: EI_CLASS (1: 32-bit, 2: 64-bit), big-endian, e_machine.
MACHINES = {
    "qemu-i386": (1, False, 3),
    "qemu-arm": (1, False, 40),
    "qemu-aarch64": (2, False, 183),
    "qemu-riscv64": (2, False, 243),
    "qemu-ppc64le": (2, False, 21),
    "qemu-s390x": (2, True, 22),
}
PRELOAD_SOURCE = "exec-preload.c"
# Where the layer installs the library: a fixed path outside the target's sysroot, which qemu's -L would look in
# first (and finds nothing there).
_PRELOAD_DIR = "/usr/local/lib/xpcargo"
# Options that make the same source the same bytes on every build: no debug information (no paths), stripped.
PRELOAD_CFLAGS = ("-O2", "-fPIC", "-shared", "-s", "-Wall", "-Wextra", "-Werror", "-Wl,--build-id=sha1")


@dataclass(frozen=True, kw_only=True)
class ExecPreload:
    """The exec preload of one target: data for the layer's fixed script (``image.layers``), never a command."""

    # Debian's GNU triple: `<gnu_triple>-gcc` compiles it.
    gnu_triple: str
    emulator: str
    # The runner's options, which the programs it starts get too: -L <the target's sysroot>, -cpu where there is one.
    emulator_args: tuple[str, ...]
    path: str
    # EI_CLASS, EI_DATA (1: little-endian, 2: big) and e_machine of the emulator's programs.
    elf_class: int
    elf_data: int
    machine: int
    # The source's digest: a changed source changes the layer's tag.
    source_sha256: str

    def defines(self) -> tuple[str, ...]:
        """The compiler's -D options that make the source this target's."""
        return (
            f"-DXPCARGO_EMULATOR={c_string(f'/usr/bin/{self.emulator}')}",
            f"-DXPCARGO_EMULATOR_ARGS={', '.join(c_string(arg) for arg in self.emulator_args)}",
            f"-DXPCARGO_SELF={c_string(self.path)}",
            f"-DXPCARGO_CLASS={self.elf_class}",
            f"-DXPCARGO_DATA={self.elf_data}",
            f"-DXPCARGO_MACHINE={self.machine}",
        )


def c_string(text: str) -> str:
    """``text`` as a C string literal that nothing in it can end: the runner's words are settings a project may give,
    so every byte but a plain character is an octal escape."""
    plain = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/._-+=")
    return '"' + "".join(chr(b) if chr(b) in plain else f"\\{b:03o}" for b in text.encode()) + '"'


def preload_source() -> str:
    return (share_dir() / PRELOAD_SOURCE).read_text()


def preload_path(spec: TargetSpec) -> str | None:
    """Where ``spec``'s image has the exec preload, or None where it cannot work: no qemu xpcargo knows, no glibc
    cross compiler and sysroot, or programs that are static (a static program has no dynamic loader to honour
    LD_PRELOAD)."""
    if spec.emulator not in MACHINES or spec.debian_arch not in GNU_TRIPLES or spec.sysroot is None:
        return None
    if "-linux-gnu" not in spec.triple or "+crt-static" in spec.target_features:
        return None
    return f"{_PRELOAD_DIR}/{spec.triple}/exec-preload.so"


def exec_preload(spec: TargetSpec) -> ExecPreload | None:
    """What ``spec``'s image layer compiles of the exec preload, or None (``preload_path``)."""
    path = preload_path(spec)
    if path is None or spec.emulator is None or spec.sysroot is None:
        return None
    bits, big_endian, machine = MACHINES[spec.emulator]
    # The program's environment may be emptied (env_clear), and QEMU_LD_PREFIX with it: -L always.
    args = spec.runner[1:] if "-L" in spec.runner[1:] else (*spec.runner[1:], "-L", spec.sysroot)
    return ExecPreload(
        gnu_triple=GNU_TRIPLES[spec.debian_arch],
        emulator=spec.emulator,
        emulator_args=args,
        path=path,
        elf_class=bits,
        elf_data=2 if big_endian else 1,
        machine=machine,
        source_sha256=hashlib.sha256(preload_source().encode()).hexdigest(),
    )
