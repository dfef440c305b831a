"""Parse what a build script printed, with the rules Cargo applies.

Cargo keeps a build script's stdout in ``target/<triple>/<profile>/build/<pkg>-<hash>/output`` and re-reads it on
every fresh build, so parsing that file gives exactly what Cargo used: the libraries and paths it linked, the
``cfg``s, the environment for rustc, and the ``links`` metadata it passed to dependents as ``DEP_<LINKS>_<KEY>``.

The rules follow ``BuildOutput::parse`` in Cargo's ``custom_build.rs``. Checks that need more than the output
itself are left out: the package's ``rust-version`` (``cargo::`` needs 1.77) and its target list (Cargo rejects
``rustc-link-arg-bins`` in a package without binaries, and warns about ``rustc-link-arg-cdylib`` without a cdylib).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Literal, get_args

from xpcargo.config.links import RUST_WHITESPACE, RustcFlagsError, split_rustc_flags
from xpcargo.errors import BuildScriptProtocolError

# Old-form keys that are instructions; any other `cargo:KEY=VALUE` is metadata. Cargo matches these with the `=`
# included, so `cargo:rustc-cfg` without a value is metadata without `=`, not a `rustc-cfg` without a value.
_RESERVED_PREFIXES = (
    "rustc-flags=",
    "rustc-link-lib=",
    "rustc-link-search=",
    "rustc-link-arg-cdylib=",
    "rustc-cdylib-link-arg=",
    "rustc-link-arg-bins=",
    "rustc-link-arg-bin=",
    "rustc-link-arg-tests=",
    "rustc-link-arg-benches=",
    "rustc-link-arg-examples=",
    "rustc-link-arg=",
    "rustc-cfg=",
    "rustc-check-cfg=",
    "rustc-env=",
    "warning=",
    "rerun-if-changed=",
    "rerun-if-env-changed=",
)

_DOCS = "see https://doc.rust-lang.org/cargo/reference/build-scripts.html#outputs-of-the-build-script"


# Which targets a `rustc-link-arg*` instruction applies to; "bin" is one binary, named in `LinkArg.bin`.
LinkArgKind = Literal["all", "cdylib", "bins", "bin", "tests", "benches", "examples"]

_LINK_ARG_KINDS: dict[str, LinkArgKind] = {
    "rustc-link-arg": "all",
    "rustc-link-arg-cdylib": "cdylib",
    "rustc-cdylib-link-arg": "cdylib",
    "rustc-link-arg-bins": "bins",
    "rustc-link-arg-tests": "tests",
    "rustc-link-arg-benches": "benches",
    "rustc-link-arg-examples": "examples",
}


@dataclass(frozen=True, kw_only=True)
class LinkArg:
    """One linker argument; ``bin`` names the binary when ``kind`` is ``"bin"``."""

    kind: LinkArgKind
    arg: str
    bin: str | None = None


@dataclass(frozen=True, kw_only=True)
class BuildScriptOutput:
    """Everything a build script told Cargo, in the order it printed it."""

    link_libs: tuple[str, ...] = ()
    link_search: tuple[str, ...] = ()
    link_args: tuple[LinkArg, ...] = ()
    cfgs: tuple[str, ...] = ()
    check_cfgs: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    warnings: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    rerun_if_changed: tuple[str, ...] = ()
    rerun_if_env_changed: tuple[str, ...] = ()


# Keys of `[target.<triple>]` in Cargo's config that are the target's settings; every other table there is a
# `links` override.
TARGET_SETTING_KEYS = frozenset({"ar", "linker", "runner", "rustflags", "rustdocflags"})


def envify(name: str) -> str:
    """Cargo's ``envify``: Unicode uppercase (so ``ß`` becomes ``SS``), then ``-`` becomes ``_``."""
    return name.upper().replace("-", "_")


def dep_env_name(links: str, key: str) -> str:
    """The variable in which a dependent's build script receives metadata ``key`` of the package linking ``links``."""
    return f"DEP_{envify(links)}_{envify(key)}"


def dependent_metadata(output: BuildScriptOutput, links: str | None) -> dict[str, str]:
    """Map each normalised KEY to the value an immediate dependent receives as ``DEP_<LINKS>_<KEY>``.

    Cargo sets the variables in printed order, so when two keys normalise alike the later one wins. Without
    ``links`` there is no variable name to pass the metadata in, so Cargo passes none.
    """
    if links is None:
        return {}
    return {envify(key): value for key, value in output.metadata}


# The field of ``BuildScriptOutput`` that an instruction adds to.
Field = Literal[
    "link_libs",
    "link_search",
    "link_args",
    "cfgs",
    "check_cfgs",
    "env",
    "metadata",
    "warnings",
    "errors",
    "rerun_if_changed",
    "rerun_if_env_changed",
]


@dataclass(frozen=True, kw_only=True)
class Instruction:
    """One value a build script gave Cargo: a str, a (name, value) pair for ``env`` and ``metadata``, or a link
    argument."""

    field: Field
    value: str | tuple[str, str] | LinkArg


@dataclass(frozen=True, kw_only=True)
class LongLine:
    """A line that ``output_lines`` did not keep because it is longer than its limit, so it was not interpreted."""

    number: int
    length: int


def output_lines(stream: IO[bytes], *, max_bytes: int) -> Iterator[bytes | int]:
    """The lines of a build script's stdout read from ``stream``, each without its ``\\n``, in bounded memory.

    A line longer than ``max_bytes`` comes as its length in bytes instead: Cargo reads it whole, but a reader that
    must stay small cannot.
    """
    while True:
        # readline with a limit never holds more than the limit, however long the line is.
        line = stream.readline(max_bytes + 1)
        if not line:
            return
        if line.endswith(b"\n"):
            yield line[:-1]
            continue
        if len(line) <= max_bytes:
            yield line  # the last line, without a newline
            return
        length = len(line)
        while line and not line.endswith(b"\n"):
            line = stream.readline(1 << 20)
            length += len(line)
        yield length - 1 if line else length


def instructions(
    lines: Iterable[bytes | int],
    *,
    package: str | None = None,
    moved_out_dir: tuple[str, str] | None = None,
) -> Iterator[Instruction | LongLine]:
    """What each line told Cargo, in printed order, as ``parse`` reads it; for streams too large to hold.

    ``lines`` are the lines without their ``\\n``, or the length of a line the caller did not keep (see
    ``output_lines``); such a line comes back as a ``LongLine``. Raises ``BuildScriptProtocolError`` at the first
    line Cargo would reject, after the instructions of the lines before it.
    """
    whence = f"build script of `{package}`" if package else "build script"
    rewrite = moved_out_dir if moved_out_dir is not None and moved_out_dir[0] != moved_out_dir[1] else None
    for number, raw_line in enumerate(lines, start=1):
        if isinstance(raw_line, int):
            yield LongLine(number=number, length=raw_line)
            continue
        try:
            line = raw_line.decode("utf-8").strip(RUST_WHITESPACE)
        except UnicodeDecodeError:
            # Cargo skips such lines silently instead of failing the build.
            continue
        try:
            instruction = _split_instruction(line)
            if instruction is not None:
                syntax, key, value = instruction
                if rewrite is not None:
                    value = value.replace(*rewrite)
                yield from _interpret(syntax, key, value, whence=whence)
        except _LineError as error:
            raise BuildScriptProtocolError(
                f"invalid output in {whence} at line {number}: `{line}`: {error.reason}",
                line_number=number,
                line=line,
                hint=error.hint,
            ) from None


def parse(
    data: bytes | str,
    *,
    package: str | None = None,
    moved_out_dir: tuple[str, str] | None = None,
) -> BuildScriptOutput:
    """Parse a build script's stdout.

    ``package`` (such as ``foo-sys v0.1.0``) only names the script in error messages. ``moved_out_dir`` is
    (OUT_DIR when the script ran, OUT_DIR now): when Cargo re-reads the output after the target directory has moved,
    it rewrites the old path to the new one in every value.

    Raises ``BuildScriptProtocolError`` for any line Cargo would reject, and nothing else.
    """
    # A str made from undecodable bytes carries lone surrogates; keep them, so that those lines are skipped below.
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    collected: dict[Field, list[Any]] = {field: [] for field in get_args(Field)}
    for item in instructions(raw.split(b"\n"), package=package, moved_out_dir=moved_out_dir):
        if isinstance(item, Instruction):
            collected[item.field].append(item.value)
    return BuildScriptOutput(**{field: tuple(values) for field, values in collected.items()})


class _LineError(Exception):
    def __init__(self, reason: str, hint: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def _split_instruction(line: str) -> tuple[str, str, str] | None:
    """(syntax, key, value) of an instruction line, or None for any other line."""
    # `cargo::` must be tried first: every `cargo::` line also starts with `cargo:`.
    if line.startswith("cargo::"):
        key, separator, value = line[len("cargo::") :].partition("=")
        if not separator:
            raise _LineError(
                "expected `cargo::KEY=VALUE` with an `=` character, but none was found", f"add `=VALUE`; {_DOCS}"
            )
        return "cargo::", key, value
    if line.startswith("cargo:"):
        data = line[len("cargo:") :]
        if data.startswith(_RESERVED_PREFIXES):
            key, _, value = data.partition("=")
            return "cargo:", key, value
        # The old form has no `metadata=`: an unreserved key is itself the metadata key.
        return "cargo:", "metadata", data
    return None


# Instructions whose value is stored as printed, and the field each goes to.
_PLAIN: dict[str, Field] = {
    "rustc-link-lib": "link_libs",
    "rustc-link-search": "link_search",
    "rustc-cfg": "cfgs",
    "rustc-check-cfg": "check_cfgs",
    "warning": "warnings",
    "error": "errors",
    "rerun-if-changed": "rerun_if_changed",
    "rerun-if-env-changed": "rerun_if_env_changed",
}


def _interpret(syntax: str, key: str, value: str, *, whence: str) -> Iterator[Instruction]:
    """The values one instruction gives Cargo (``rustc-flags`` gives several), or ``_LineError``."""
    if key in _PLAIN:
        yield Instruction(field=_PLAIN[key], value=value)
    elif key == "rustc-flags":
        try:
            paths, libs = split_rustc_flags(value)
        except RustcFlagsError as error:
            hint = f"link with `{syntax}rustc-link-lib=LIB` and `{syntax}rustc-link-search=PATH` instead"
            raise _LineError(str(error), hint) from None
        yield from (Instruction(field="link_libs", value=lib) for lib in libs)
        yield from (Instruction(field="link_search", value=path) for path in paths)
    elif key in _LINK_ARG_KINDS:
        yield Instruction(field="link_args", value=LinkArg(kind=_LINK_ARG_KINDS[key], arg=value))
    elif key == "rustc-link-arg-bin":
        bin_name, separator, arg = value.partition("=")
        if not separator:
            raise _LineError(
                f"`{syntax}rustc-link-arg-bin` needs the form `{syntax}rustc-link-arg-bin=BIN=ARG`",
                f"name the binary before the argument; {_DOCS}",
            )
        yield Instruction(field="link_args", value=LinkArg(kind="bin", arg=arg, bin=bin_name))
    elif key == "rustc-env":
        yield _env(syntax, value, whence=whence)
    elif key == "metadata":
        meta_key, separator, meta_value = value.partition("=")
        if not separator:
            form = "cargo:KEY=VALUE" if syntax == "cargo:" else "cargo::metadata=KEY=VALUE"
            raise _LineError(f"expected `{form}` with an `=` character, but none was found", f"add `=VALUE`; {_DOCS}")
        # Trimmed after the OUT_DIR rewrite, as Cargo does.
        yield Instruction(field="metadata", value=(meta_key, meta_value.rstrip(RUST_WHITESPACE)))
    else:
        raise _LineError(
            f"unknown key `{key}`",
            f"`cargo::` takes only Cargo's instructions; write metadata as `cargo::metadata={key}=VALUE`",
        )


def _env(syntax: str, value: str, *, whence: str) -> Instruction:
    name, separator, env_value = value.partition("=")
    if not separator:
        raise _LineError(f"variable rustc-env has no value: `{value}`", f"write `{syntax}rustc-env=VAR=VALUE`")
    if name == "RUSTC_BOOTSTRAP":
        # Cargo never passes this one to rustc: it fails the build unless nightly features are allowed anyway, and
        # then it warns. An output read back after a build that got through is the second case.
        return Instruction(
            field="warnings",
            value=f"cannot set `RUSTC_BOOTSTRAP={env_value}` from {whence}: crates cannot set `RUSTC_BOOTSTRAP` "
            "themselves, as doing so would subvert the stability guarantees of Rust for your project",
        )
    return Instruction(field="env", value=(name, env_value))
