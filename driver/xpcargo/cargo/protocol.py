"""Parse what a build script printed, with the rules Cargo applies.

Cargo keeps a build script's stdout in ``target/<triple>/<profile>/build/<pkg>-<hash>/output`` and re-reads it on
every fresh build, so parsing that file gives exactly what Cargo used: the libraries and paths it linked, the
``cfg``s, the environment for rustc, and the ``links`` metadata it passed to dependents as ``DEP_<LINKS>_<KEY>``.

The rules follow ``BuildOutput::parse`` in Cargo's ``custom_build.rs``. Checks that need more than the output
itself are left out: the package's ``rust-version`` (``cargo::`` needs 1.77) and its target list (Cargo rejects
``rustc-link-arg-bins`` in a package without binaries, and warns about ``rustc-link-arg-cdylib`` without a cdylib).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

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

# Rust's `char::is_whitespace` (the Unicode White_Space property). Python's `str.strip()` also removes U+001C..U+001F,
# which Rust keeps, so a line starting with one of those is not an instruction for Cargo.
_RUST_WHITESPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
_RUST_WHITESPACE_RUN = re.compile(f"[{_RUST_WHITESPACE}]+")

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

# Instructions whose value is stored as printed, each in its own list.
_PLAIN = (
    "rustc-link-lib",
    "rustc-link-search",
    "rustc-cfg",
    "rustc-check-cfg",
    "warning",
    "error",
    "rerun-if-changed",
    "rerun-if-env-changed",
)


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


class RustcFlagsError(ValueError):
    """``rustc-flags`` holds something other than ``-l``/``-L`` flags."""


# Keys of `[target.<triple>]` in Cargo's config that are the target's settings; every other table there is a
# `links` override.
TARGET_SETTING_KEYS = frozenset({"ar", "linker", "runner", "rustflags", "rustdocflags"})


def split_rustc_flags(value: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a ``rustc-flags`` value into (search paths, libraries) the way Cargo does.

    Shared with ``[target.<triple>.<links>]`` overrides, whose ``rustc-flags`` Cargo reads with the same function.
    """
    words = iter(word for word in _RUST_WHITESPACE_RUN.split(value) if word)
    paths: list[str] = []
    libs: list[str] = []
    for word in words:
        flag, attached = word[:2], word[2:]
        if flag not in ("-l", "-L"):
            raise RustcFlagsError(f"only `-l` and `-L` flags are allowed in rustc-flags, found `{word}`")
        # pkg-config style output attaches the value (`-lfoo`); hand-written flags often separate it (`-l foo`).
        argument = attached or next(words, None)
        if argument is None:
            raise RustcFlagsError(f"flag `{flag}` in rustc-flags has no value")
        (libs if flag == "-l" else paths).append(argument)
    return tuple(paths), tuple(libs)


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
    whence = f"build script of `{package}`" if package else "build script"
    parsed = _Parsed()
    for number, raw_line in enumerate(raw.split(b"\n"), start=1):
        try:
            line = raw_line.decode("utf-8").strip(_RUST_WHITESPACE)
        except UnicodeDecodeError:
            # Cargo skips such lines silently instead of failing the build.
            continue
        try:
            instruction = _split_instruction(line)
            if instruction is not None:
                syntax, key, value = instruction
                if moved_out_dir is not None and moved_out_dir[0] != moved_out_dir[1]:
                    value = value.replace(*moved_out_dir)
                parsed.add(syntax, key, value, whence=whence)
        except _LineError as error:
            raise BuildScriptProtocolError(
                f"invalid output in {whence} at line {number}: `{line}`: {error.reason}",
                line_number=number,
                line=line,
                hint=error.hint,
            ) from None
    return parsed.freeze()


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


class _Parsed:
    """The lists being filled while the lines are read; frozen into a ``BuildScriptOutput`` at the end."""

    def __init__(self) -> None:
        self.plain: dict[str, list[str]] = {key: [] for key in _PLAIN}
        self.link_args: list[LinkArg] = []
        self.env: list[tuple[str, str]] = []
        self.metadata: list[tuple[str, str]] = []

    def add(self, syntax: str, key: str, value: str, *, whence: str) -> None:
        if key in self.plain:
            self.plain[key].append(value)
        elif key == "rustc-flags":
            try:
                paths, libs = split_rustc_flags(value)
            except RustcFlagsError as error:
                hint = f"link with `{syntax}rustc-link-lib=LIB` and `{syntax}rustc-link-search=PATH` instead"
                raise _LineError(str(error), hint) from None
            self.plain["rustc-link-lib"].extend(libs)
            self.plain["rustc-link-search"].extend(paths)
        elif key in _LINK_ARG_KINDS:
            self.link_args.append(LinkArg(kind=_LINK_ARG_KINDS[key], arg=value))
        elif key == "rustc-link-arg-bin":
            bin_name, separator, arg = value.partition("=")
            if not separator:
                raise _LineError(
                    f"`{syntax}rustc-link-arg-bin` needs the form `{syntax}rustc-link-arg-bin=BIN=ARG`",
                    f"name the binary before the argument; {_DOCS}",
                )
            self.link_args.append(LinkArg(kind="bin", arg=arg, bin=bin_name))
        elif key == "rustc-env":
            self._add_env(syntax, value, whence=whence)
        elif key == "metadata":
            meta_key, separator, meta_value = value.partition("=")
            if not separator:
                form = "cargo:KEY=VALUE" if syntax == "cargo:" else "cargo::metadata=KEY=VALUE"
                raise _LineError(
                    f"expected `{form}` with an `=` character, but none was found", f"add `=VALUE`; {_DOCS}"
                )
            # Trimmed after the OUT_DIR rewrite, as Cargo does.
            self.metadata.append((meta_key, meta_value.rstrip(_RUST_WHITESPACE)))
        else:
            raise _LineError(
                f"unknown key `{key}`",
                f"`cargo::` takes only Cargo's instructions; write metadata as `cargo::metadata={key}=VALUE`",
            )

    def _add_env(self, syntax: str, value: str, *, whence: str) -> None:
        name, separator, env_value = value.partition("=")
        if not separator:
            raise _LineError(f"variable rustc-env has no value: `{value}`", f"write `{syntax}rustc-env=VAR=VALUE`")
        if name == "RUSTC_BOOTSTRAP":
            # Cargo never passes this one to rustc: it fails the build unless nightly features are allowed anyway, and
            # then it warns. An output read back after a build that got through is the second case.
            self.plain["warning"].append(
                f"cannot set `RUSTC_BOOTSTRAP={env_value}` from {whence}: crates cannot set `RUSTC_BOOTSTRAP` "
                "themselves, as doing so would subvert the stability guarantees of Rust for your project"
            )
        else:
            self.env.append((name, env_value))

    def freeze(self) -> BuildScriptOutput:
        return BuildScriptOutput(
            link_libs=tuple(self.plain["rustc-link-lib"]),
            link_search=tuple(self.plain["rustc-link-search"]),
            link_args=tuple(self.link_args),
            cfgs=tuple(self.plain["rustc-cfg"]),
            check_cfgs=tuple(self.plain["rustc-check-cfg"]),
            env=tuple(self.env),
            metadata=tuple(self.metadata),
            warnings=tuple(self.plain["warning"]),
            errors=tuple(self.plain["error"]),
            rerun_if_changed=tuple(self.plain["rerun-if-changed"]),
            rerun_if_env_changed=tuple(self.plain["rerun-if-env-changed"]),
        )
