"""What a failed build script says is missing from the image, and the one setting that adds it.

Cargo shows a build script's output only when the script fails, under ``error: failed to run custom build command
for `<package>```, indented by two spaces. ``HintScanner`` passes Cargo's stderr on unchanged and reads those
sections a line at a time for the messages that the common tools and crates print when something is not
installed: pkg-config's ``Package X was not found``, clang-sys's ``Unable to find libclang``, the cmake crate's
``is `cmake` not installed?``, perl's ``Can't locate X.pm in @INC``, prost-build's ``Could not find `protoc```,
the shell's ``X: not found``, and the line of a musl target's C++ compiler (``images/share/musl-no-cxx``), which
has no C++ standard library to compile against. It keeps the current line (its first ``MAX_LINE_BYTES``) and the
first finding, so its memory does not grow with Cargo's output. ``hint`` turns the finding into one line naming
``extra-packages``, or, for what no Debian package provides for the target (a library for wasm32 or musl, C++ for
musl), what to do instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from xpcargo.artifacts import libc_of
from xpcargo.config.targets import ARCH_INDEPENDENT
from xpcargo.container.runtime import Output
from xpcargo.ui import escape_controls

# Every message below fits in a line's first KiB; a longer line (a build script's own flood) is read that far.
MAX_LINE_BYTES = 4096

# Debian's -dev package for a pkg-config name, where the name alone says which: the common libraries of -sys
# crates. A name missing here gets no guess ("the Debian -dev package that ships X.pc").
DEV_PACKAGES = {
    "alsa": "libasound2-dev",
    "cairo": "libcairo2-dev",
    "dbus-1": "libdbus-1-dev",
    "expat": "libexpat1-dev",
    "fontconfig": "libfontconfig-dev",
    "freetype2": "libfreetype-dev",
    "gdk-pixbuf-2.0": "libgdk-pixbuf-2.0-dev",
    "gio-2.0": "libglib2.0-dev",
    "glib-2.0": "libglib2.0-dev",
    "gobject-2.0": "libglib2.0-dev",
    "gtk+-3.0": "libgtk-3-dev",
    "gtk4": "libgtk-4-dev",
    "libcrypto": "libssl-dev",
    "libcurl": "libcurl4-openssl-dev",
    "libdrm": "libdrm-dev",
    "libffi": "libffi-dev",
    "libgit2": "libgit2-dev",
    "liblzma": "liblzma-dev",
    "libpcap": "libpcap-dev",
    "libpng": "libpng-dev",
    "libpq": "libpq-dev",
    "libpulse": "libpulse-dev",
    "libseccomp": "libseccomp-dev",
    "libsodium": "libsodium-dev",
    "libssh2": "libssh2-1-dev",
    "libssl": "libssl-dev",
    "libsystemd": "libsystemd-dev",
    "libudev": "libudev-dev",
    "libusb-1.0": "libusb-1.0-0-dev",
    "libxml-2.0": "libxml2-dev",
    "libzstd": "libzstd-dev",
    "openssl": "libssl-dev",
    "pango": "libpango1.0-dev",
    "sqlite3": "libsqlite3-dev",
    "wayland-client": "libwayland-dev",
    "x11": "libx11-dev",
    "xcb": "libxcb1-dev",
    "xkbcommon": "libxkbcommon-dev",
    "zlib": "zlib1g-dev",
}

# The feature that builds a library from its bundled sources, by the pkg-config name its -sys crate asks for: what a
# musl target needs instead of a Debian package (the crate users depend on, and its feature).
VENDORED_FEATURES = {
    "libcrypto": "`openssl`'s `vendored` feature",
    "libcurl": "`curl`'s `static-curl` feature",
    "libgit2": "`git2`'s `vendored-libgit2` feature",
    "liblzma": "`xz2`'s `static` feature",
    "libssl": "`openssl`'s `vendored` feature",
    "openssl": "`openssl`'s `vendored` feature",
    "sqlite3": "`rusqlite`'s (or `libsqlite3-sys`'s) `bundled` feature",
    "zlib": "`libz-sys`'s `static` feature",
}

# Programs build scripts run, and the Debian packages that install them (for the build machine: no arch).
TOOL_PACKAGES = {
    "aclocal": ("automake",),
    "autoconf": ("autoconf",),
    "automake": ("automake",),
    "autopoint": ("autopoint",),
    "autoreconf": ("autoconf", "automake", "libtool"),
    "clang": ("clang",),
    "cmake": ("cmake",),
    "libtoolize": ("libtool",),
    "meson": ("meson",),
    "nasm": ("nasm",),
    "ninja": ("ninja-build",),
    "perl": ("perl",),
    "protoc": ("protobuf-compiler",),
    "python3": ("python3",),
    "yasm": ("yasm",),
}

# Perl modules that Perl itself ships (Debian's `perl`), but its `perl-base` does not: what build systems such as
# OpenSSL's Configure load. Another missing module is a CPAN one, from Debian's lib<name>-perl.
PERL_CORE_MODULES = frozenset(
    {
        "Data::Dumper",
        "Digest::MD5",
        "Digest::SHA",
        "File::Compare",
        "File::Copy",
        "File::Find",
        "File::Path",
        "File::Spec",
        "File::Spec::Functions",
        "File::Temp",
        "FindBin",
        "Getopt::Long",
        "IPC::Cmd",
        "JSON::PP",
        "Module::Load",
        "Params::Check",
        "Pod::Usage",
        "Text::ParseWords",
        "Text::Wrap",
        "Time::Local",
        "Time::Piece",
    }
)

_HEADER = re.compile(r"^error: failed to run custom build command for `(?P<package>[^`]+)`")
# Colours and other CSI sequences, which Cargo adds to its own lines on a terminal.
_CSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
_PKG_CONFIG = (
    # The pkg-config crate's own summary, then pkg-config's and pkgconf's.
    re.compile(r"The system library `(?P<name>[^`]+)` required by crate `[^`]+` was not found"),
    re.compile(r"could not find system library '(?P<name>[^']+)' required by the '[^']+' crate"),
    re.compile(r"^Package (?P<name>\S+) was not found in the pkg-config search path"),
    re.compile(r"^Package '(?P<name>[^']+)', required by '[^']*', not found"),
)
_LIBCLANG = re.compile(r"Unable to find libclang")
_PERL_MODULE = re.compile(r"Can't locate (?P<path>[\w/]+)\.pm in @INC")
_PROTOC = re.compile(r"Could not find `protoc`")
_NASM = re.compile(r"Unable to run nasm\b|Make sure you have nasm installed")
# What images/share/musl-no-cxx, a musl target's C++ compiler, prints (maybe as the cc crate's `cargo:warning=`).
_NO_CXX = re.compile(r"xpcargo: no C\+\+ standard library for musl targets\b")
_TOOL = (
    # The cmake crate: `is `cmake` not installed?`; the cc crate: `failed to find tool "clang"`; a shell.
    re.compile(r"is `(?P<tool>[\w.+-]+)` not installed\?"),
    re.compile(r"failed to find tool \"(?P<tool>[\w.+-]+)\""),
    re.compile(r"(?:^|: )(?P<tool>[\w.+-]+): (?:command )?not found$"),
)


@dataclass(frozen=True, kw_only=True)
class Missing:
    """Something a failed build script looked for and did not find."""

    # The package whose build script failed, as Cargo names it (`openssl-sys v0.9.118`).
    package: str
    # What was missing, for the user: "`openssl.pc`", "libclang", "`cmake`", "Perl module `FindBin`".
    what: str
    # The Debian packages that add it; empty when the name alone does not say which.
    debian_packages: tuple[str, ...]
    # A library for the target (a -dev package of the target's architecture), not a program for the build machine.
    for_target: bool
    # When ``debian_packages`` is empty or a guess: what the right package is, in words.
    advice: str | None = None
    # The name pkg-config was asked for, when that is what found nothing.
    pkg_config_name: str | None = None
    # The C++ standard library, which no package provides for a musl target.
    cxx: bool = False


def recognise(line: str, package: str) -> Missing | None:
    """The missing thing that one line of a failed build script's output names, if it names one."""
    text = line.strip()
    for recogniser in (_pkg_config, _perl_module, _program, _no_cxx):
        found = recogniser(text, package)
        if found is not None:
            return found
    return None


def _pkg_config(text: str, package: str) -> Missing | None:
    for pattern in _PKG_CONFIG:
        found = pattern.search(text)
        if found:
            name = found["name"]
            dev = DEV_PACKAGES.get(name)
            return Missing(
                package=package,
                what=f"`{name}.pc`",
                debian_packages=(dev,) if dev else (),
                for_target=True,
                advice=None if dev else f"the Debian -dev package that ships {name}.pc",
                pkg_config_name=name,
            )
    return None


def _perl_module(text: str, package: str) -> Missing | None:
    found = _PERL_MODULE.search(text)
    if not found:
        return None
    module = found["path"].replace("/", "::")
    if module in PERL_CORE_MODULES:
        return Missing(package=package, what=f"Perl module `{module}`", debian_packages=("perl",), for_target=False)
    guess = f"lib{module.lower().replace('::', '-')}-perl"
    return Missing(
        package=package,
        what=f"Perl module `{module}`",
        debian_packages=(guess,),
        for_target=False,
        advice=f"Debian's usual name for {module}'s package; `perl` instead if the module is one of Perl's own",
    )


def _program(text: str, package: str) -> Missing | None:
    if _LIBCLANG.search(text):
        return Missing(package=package, what="libclang", debian_packages=("libclang-dev",), for_target=False)
    tool = "protoc" if _PROTOC.search(text) else "nasm" if _NASM.search(text) else None
    for pattern in _TOOL:
        found = pattern.search(text) if tool is None else None
        if found and found["tool"] in TOOL_PACKAGES:
            tool = found["tool"]
    if tool is None:
        return None
    return Missing(package=package, what=f"`{tool}`", debian_packages=TOOL_PACKAGES[tool], for_target=False)


def _no_cxx(text: str, package: str) -> Missing | None:
    if not _NO_CXX.search(text):
        return None
    return Missing(package=package, what="C++ standard library", debian_packages=(), for_target=True, cxx=True)


def hint(missing: Missing, *, triple: str, debian_arch: str) -> str:
    """The one line that names the setting adding what was missing, with any control character a build script
    slipped into a name written out as an escape (see ``ui.escape_controls``)."""
    return escape_controls(_hint(missing, triple=triple, debian_arch=debian_arch))


def _hint(missing: Missing, *, triple: str, debian_arch: str) -> str:
    where = f"[target.{triple}]" if missing.for_target else f"[build] (or [target.{triple}])"
    if missing.cxx:
        glibc = triple.replace("-musl", "-gnu")
        return (
            f"the build script of {missing.package} compiles C++, and xpcargo has no C++ standard library for musl "
            f"targets (Debian packages none for musl): build {triple} without the crate's C++ part (a feature that "
            f"leaves it out), or build for {glibc} instead"
        )
    lead = f"the build script of {missing.package} found no {missing.what}"
    if missing.for_target:
        lead += f" for {triple}"
        if debian_arch == ARCH_INDEPENDENT:
            # wasm32: Debian builds no library for it, so no package of any name can provide one.
            return (
                f"{lead}: Debian packages no such library for {triple}; build it from source with the crate's feature "
                "for that (often `vendored`, `bundled` or `static`)"
            )
        if libc_of(triple) == "musl":
            feature = VENDORED_FEATURES.get(missing.pkg_config_name or "", "often `vendored`, `bundled` or `static`")
            # pkg-config looks only where musl's own libraries are: a Debian -dev package is a glibc build.
            return (
                f"{lead}: Debian packages no library built for musl (its -dev packages are glibc builds); build it "
                f"from source with the crate's feature for that ({feature})"
            )
    if not missing.debian_packages:
        return (
            f"{lead}: add {missing.advice}, for {debian_arch} (`NAME:{debian_arch}`), to `extra-packages` under "
            f"{where} in xpcargo.toml"
        )
    suffix = f":{debian_arch}" if missing.for_target else ""
    listed = ", ".join(f'"{name}{suffix}"' for name in missing.debian_packages)
    text = f"{lead}: add `extra-packages = [{listed}]` under {where} in xpcargo.toml"
    return f"{text} ({missing.advice})" if missing.advice else text


class HintScanner:
    """Passes Cargo's stderr on unchanged and keeps the first ``Missing`` its failed build scripts name."""

    def __init__(self, write: Output) -> None:
        self._write = write
        self._line = bytearray()
        # The package whose failed build script's output is being read, if any.
        self._package: str | None = None
        self.found: Missing | None = None

    def __call__(self, chunk: bytes) -> None:
        self._write(chunk)
        if self.found is not None:
            return
        position = 0
        while position < len(chunk):
            newline = chunk.find(b"\n", position)
            end = len(chunk) if newline < 0 else newline
            room = MAX_LINE_BYTES - len(self._line)
            if room > 0:
                self._line += chunk[position : min(end, position + room)]
            if newline < 0:
                return
            found = self._read(bytes(self._line))
            self._line.clear()
            position = newline + 1
            if found is not None:
                self.found = found
                return

    def close(self) -> None:
        if self._line and self.found is None:
            self.found = self._read(bytes(self._line))
        self._line.clear()

    def _read(self, raw: bytes) -> Missing | None:
        line = _CSI.sub("", raw.decode("utf-8", "replace")).rstrip("\r")
        header = _HEADER.match(line)
        if header:
            # `cm v0.1.0 (/path/to/cm)`: the name and version say which.
            self._package = " ".join(header["package"].split()[:2])
            return None
        if line and not line.startswith(" ") and line != "Caused by:":
            # Cargo's next line of its own: the failed script's output is over.
            self._package = None
        return None if self._package is None else recognise(line, self._package)
