"""The hint after a build script that found a tool or library missing: read from real captured Cargo output.

Each file in captured/failures/ is Cargo's stderr for one failed build script, as xpcargo showed it for
aarch64-unknown-linux-gnu with the image of 2026-11 (openssl-sys with and without `vendored`, alsa-sys, prost-build,
the cmake crate, bindgen), and for aarch64-unknown-linux-musl in 2026-12 (the cc crate compiling C++, cxx-musl.txt),
less the `cargo:rerun-if-*`, `rustc-check-cfg` and backtrace lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcargo.report import hints
from xpcargo.report.hints import HintScanner, Missing

CAPTURED = Path(__file__).parent / "captured" / "failures"
AARCH64 = "aarch64-unknown-linux-gnu"


def _scan(data: bytes, *, chunk: int = 4096) -> tuple[Missing | None, bytes]:
    passed: list[bytes] = []
    scanner = HintScanner(passed.append)
    for start in range(0, len(data), chunk):
        scanner(data[start : start + chunk])
    scanner.close()
    return scanner.found, b"".join(passed)


def _hint(name: str, *, chunk: int = 4096) -> str:
    data = (CAPTURED / name).read_bytes()
    found, passed = _scan(data, chunk=chunk)
    assert passed == data, "Cargo's stderr must pass on unchanged"
    assert found is not None, f"nothing recognised in {name}"
    return hints.hint(found, triple=AARCH64, debian_arch="arm64")


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_openssl_from_pkg_config_names_the_dev_package_for_the_targets_debian_arch(chunk: int) -> None:
    assert _hint("openssl-sys-pkg-config.txt", chunk=chunk) == (
        "the build script of openssl-sys v0.9.118 found no `openssl.pc` for aarch64-unknown-linux-gnu: add "
        '`extra-packages = ["libssl-dev:arm64"]` under [target.aarch64-unknown-linux-gnu] in xpcargo.toml'
    )


def test_alsa_from_the_pkg_config_crate() -> None:
    assert '`extra-packages = ["libasound2-dev:arm64"]` under [target.aarch64-unknown-linux-gnu]' in _hint(
        "alsa-sys-pkg-config.txt"
    )


def test_vendored_openssl_needs_perls_findbin() -> None:
    assert _hint("openssl-vendored-perl.txt") == (
        "the build script of openssl-sys v0.9.118 found no Perl module `FindBin`: add "
        '`extra-packages = ["perl"]` under [build] (or [target.aarch64-unknown-linux-gnu]) in xpcargo.toml'
    )


def test_cmake_crate() -> None:
    assert _hint("cmake-crate.txt") == (
        'the build script of cm v0.1.0 found no `cmake`: add `extra-packages = ["cmake"]` under [build] '
        "(or [target.aarch64-unknown-linux-gnu]) in xpcargo.toml"
    )


def test_bindgen_without_libclang() -> None:
    assert 'found no libclang: add `extra-packages = ["libclang-dev"]` under [build]' in _hint("bindgen-libclang.txt")


def test_prost_build_without_protoc() -> None:
    assert '`extra-packages = ["protobuf-compiler"]`' in _hint("prost-build-protoc.txt")


def test_every_capture_is_recognised_with_colours_as_on_a_terminal() -> None:
    for path in sorted(CAPTURED.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        coloured = text.replace("error:", "\x1b[1m\x1b[91merror\x1b[0m\x1b[1m:", 1)
        found, _ = _scan(coloured.encode())
        assert found is not None, path.name


def test_an_unknown_pkg_config_name_gets_no_guessed_package() -> None:
    found = hints.recognise("Package 'libfrobnicate', required by 'virtual:world', not found", "frob-sys v1.0.0")
    assert found is not None
    assert found.debian_packages == ()
    line = hints.hint(found, triple=AARCH64, debian_arch="arm64")
    assert "the Debian -dev package that ships libfrobnicate.pc, for arm64 (`NAME:arm64`)" in line
    assert "[target.aarch64-unknown-linux-gnu]" in line


def test_a_cpan_module_gets_debians_naming_and_autoreconf_all_three_packages() -> None:
    cpan = hints.recognise("Can't locate Text/Template.pm in @INC (you may need to install", "x v1.0.0")
    assert cpan is not None
    assert cpan.debian_packages == ("libtext-template-perl",)
    shell = hints.recognise("sh: 1: autoreconf: not found", "x v1.0.0")
    assert shell is not None
    assert shell.debian_packages == ("autoconf", "automake", "libtool")
    # A compiler the cc crate cannot find is the target's toolchain, not an extra package: no guess.
    assert hints.recognise('failed to find tool "aarch64-linux-gnu-g++": No such file or directory', "x") is None
    assert hints.recognise("Unable to run nasm: No such file or directory (os error 2)", "x") is not None


def test_only_the_output_of_a_failed_build_script_counts() -> None:
    # A warning of a build script that succeeded (it fell back to its bundled copy) names no failure.
    text = (
        b"warning: libz-sys@1.1.20: Package zlib was not found in the pkg-config search path.\n"
        b"   Compiling app v0.1.0\n"
        b"error[E0425]: cannot find value `x` in this scope\n"
        b"  Package zlib was not found in the pkg-config search path.\n"
    )
    assert _scan(text)[0] is None


def test_a_huge_line_is_read_only_as_far_as_its_start_and_passed_on_whole() -> None:
    data = b"error: failed to run custom build command for `big v1.0.0`\n\nCaused by:\n  " + b"x" * 10_000_000
    data += b"\n  is `cmake` not installed?\n"
    scanner = HintScanner(lambda chunk: None)
    for start in range(0, len(data), 65536):
        scanner(data[start : start + 65536])
        assert len(scanner._line) <= hints.MAX_LINE_BYTES
    scanner.close()
    assert scanner.found is not None
    assert scanner.found.package == "big v1.0.0"


def test_a_name_a_build_script_printed_cannot_drive_the_terminal() -> None:
    found = hints.recognise("Package 'evil\x07\x1b]0;pwned', required by 'virtual:world', not found", "x v1.0.0")
    assert found is not None
    line = hints.hint(found, triple=AARCH64, debian_arch="arm64")
    assert "\x1b" not in line
    assert "\x07" not in line
    assert "evil\\x07\\x1b]0;pwned.pc" in line


def test_a_target_library_missing_for_wasm_names_no_package() -> None:
    found, _ = _scan((CAPTURED / "openssl-sys-pkg-config.txt").read_bytes())
    assert found is not None
    line = hints.hint(found, triple="wasm32-wasip1", debian_arch="all")
    # Debian has no wasm32 libraries: `libssl-dev:all` would be a hint that cannot work.
    assert ":all" not in line
    assert "extra-packages" not in line
    assert "Debian packages no such library for wasm32-wasip1" in line
    assert "`vendored`" in line


MUSL = "x86_64-unknown-linux-musl"


def test_a_target_library_missing_for_musl_names_the_crates_feature_that_builds_it() -> None:
    found, _ = _scan((CAPTURED / "openssl-sys-pkg-config.txt").read_bytes())
    assert found is not None
    # Debian's libssl-dev:amd64 is a glibc build, which pkg-config does not even look at for musl.
    assert hints.hint(found, triple=MUSL, debian_arch="amd64") == (
        f"the build script of openssl-sys v0.9.118 found no `openssl.pc` for {MUSL}: Debian packages no library built "
        "for musl (its -dev packages are glibc builds); build it from source with the crate's feature for that "
        "(`openssl`'s `vendored` feature)"
    )


def test_an_unknown_library_missing_for_musl_gets_the_usual_feature_names() -> None:
    found = hints.recognise("Package 'libfrobnicate', required by 'virtual:world', not found", "frob-sys v1.0.0")
    assert found is not None
    line = hints.hint(found, triple="armv7-unknown-linux-musleabihf", debian_arch="armhf")
    assert "extra-packages" not in line
    assert line.endswith("from source with the crate's feature for that (often `vendored`, `bundled` or `static`)")


@pytest.mark.parametrize("chunk", [1, 4096])
def test_cxx_for_musl_is_said_once_with_what_to_do(chunk: int) -> None:
    data = (CAPTURED / "cxx-musl.txt").read_bytes()
    found, _ = _scan(data, chunk=chunk)
    assert found is not None
    assert found.cxx
    assert hints.hint(found, triple="armv7-unknown-linux-musleabihf", debian_arch="armhf") == (
        "the build script of cxx-build v0.1.0 compiles C++, and xpcargo has no C++ standard library for musl targets "
        "(Debian packages none for musl): build armv7-unknown-linux-musleabihf without the crate's C++ part (a "
        "feature that leaves it out), or build for armv7-unknown-linux-gnueabihf instead"
    )


def test_the_cxx_scripts_line_outside_a_failed_build_script_names_nothing() -> None:
    # The cc crate repeats the compiler's stderr as a warning, which Cargo shows for a build script that succeeded
    # too (one that fell back to C, say): only a failure counts.
    text = b"warning: x@1.0.0: xpcargo: no C++ standard library for musl targets (x86_64-unknown-linux-musl)\n"
    assert _scan(text)[0] is None
