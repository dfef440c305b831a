"""Where each linked library came from: the probe's command, its output read back (captured/probe-aarch64.txt is
what the probe printed in the aarch64 image for `m`, `dylib=pthread`, `static=gcc` and `z`), and the attribution."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from xpcargo.report import origins
from xpcargo.report.model import BuildReport, LinkedLibrary, Origin, PackageReport
from xpcargo.report.origins import Known, Places, Probe, Request, parse_library

CAPTURED = Path(__file__).parent / "captured"
TRIPLE = "aarch64-unknown-linux-gnu"
OUT_DIR = f"/w/target/{TRIPLE}/debug/build/foo-sys-0123/out"


def _package(name: str, libs: tuple[str, ...], paths: tuple[str, ...] = (), **fields: object) -> PackageReport:
    values: dict[str, object] = {
        "package": name,
        "version": "1.0.0",
        "links": None,
        "out_dir": OUT_DIR,
        "linked_libs": libs,
        "linked_paths": paths,
        "cfgs": (),
        "env": {},
        "metadata": {},
        "warnings": (),
        "overridden": False,
        **fields,
    }
    return PackageReport(**values)  # type: ignore[arg-type]


def _report(*packages: PackageReport) -> BuildReport:
    return BuildReport(target=TRIPLE, profile="debug", success=True, packages=packages)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("z", Request(name="z", kind=None, file_names=("libz.so", "libz.a"))),
        ("static=z", Request(name="z", kind="static", file_names=("libz.a",))),
        ("dylib=ssl", Request(name="ssl", kind="dylib", file_names=("libssl.so", "libssl.a"))),
        ("static:+whole-archive,-bundle=foo", Request(name="foo", kind="static", file_names=("libfoo.a",))),
        ("static:+verbatim=foo.o", Request(name="foo.o", kind="static", file_names=("foo.o",))),
        ("z:renamed", Request(name="z", kind=None, file_names=("libz.so", "libz.a"))),
        ("framework=Security", None),
        ("", None),
    ],
)
def test_parse_library(entry: str, expected: Request | None) -> None:
    assert parse_library(entry) == expected


def test_no_library_no_probe_and_a_flood_of_them_no_probe_either() -> None:
    assert origins.probe_argv(_report(_package("a", ())), target_cc="gcc") is None
    flood = tuple(f"native=/{'x' * 60_000}/{index}" for index in range(20))
    assert origins.probe_argv(_report(_package("a", ("m",), flood)), target_cc="gcc") is None


def test_the_probe_gets_the_compiler_the_file_names_and_every_search_path() -> None:
    report = _report(_package("a", ("static=foo", "m"), (f"native={OUT_DIR}/lib",)), _package("b", ("m",), ("/opt/x",)))
    argv = origins.probe_argv(
        report, target_cc="aarch64-linux-gnu-gcc", mounted=("/w/", "/home/u/.cargo"), known={"/usr/lib/b", "/usr/lib/a"}
    )
    assert argv is not None
    assert argv[:2] == ["sh", "-c"]
    assert argv[3:] == [
        "probe",
        "aarch64-linux-gnu-gcc",
        "cc",
        "libfoo.a\nlibm.a\nlibm.so",
        # The host's directories, whose files dpkg is not asked about.
        "/w\n/home/u/.cargo",
        # Files whose owners an earlier probe of the image found.
        "/usr/lib/a\n/usr/lib/b",
        "/opt/x",
        f"{OUT_DIR}/lib",
    ]


def test_the_image_libraries_of_the_real_probe_and_their_debian_packages() -> None:
    probe = origins.read_probe((CAPTURED / "probe-aarch64.txt").read_bytes())
    assert probe.target_dirs[0] == "/usr/lib/gcc-cross/aarch64-linux-gnu/14/"
    assert probe.host_dirs[0] == "/usr/lib/gcc/x86_64-linux-gnu/14/"
    report = _report(_package("p", ("m", "dylib=pthread", "static=gcc", "z")))
    (package,) = origins.attribute(report, probe, Places(target_dir="/w/target")).packages
    assert package.libraries == (
        # The linker's order: the sysroot's lib/../lib before lib; in each, the shared library before the static.
        LinkedLibrary(
            name="m",
            kind=None,
            path="/usr/aarch64-linux-gnu/lib/libm.so",
            origin=Origin.IMAGE,
            debian_package="libc6-dev-arm64-cross",
        ),
        # glibc 2.34 and later ship only an empty libpthread.a.
        LinkedLibrary(
            name="pthread",
            kind="dylib",
            path="/usr/aarch64-linux-gnu/lib/libpthread.a",
            origin=Origin.IMAGE,
            debian_package="libc6-dev-arm64-cross",
        ),
        LinkedLibrary(
            name="gcc",
            kind="static",
            path="/usr/lib/gcc-cross/aarch64-linux-gnu/14/libgcc.a",
            origin=Origin.IMAGE,
            debian_package="libgcc-14-dev-arm64-cross",
        ),
        LinkedLibrary(name="z", kind=None, path=None, origin=Origin.NOT_FOUND),
    )


def test_a_host_build_script_is_looked_up_in_the_build_machines_directories() -> None:
    probe = origins.read_probe((CAPTURED / "probe-aarch64.txt").read_bytes())
    report = _report(_package("p", ("m",), host=True))
    (package,) = origins.attribute(report, probe, Places(target_dir="/w/target")).packages
    assert package.libraries[0].path == "/usr/lib/x86_64-linux-gnu/libm.so"
    assert package.libraries[0].debian_package == "libc6-dev:amd64"


def test_out_dir_mounts_overrides_and_the_project_come_before_the_image() -> None:
    lib = f"{OUT_DIR}/lib"
    probe = Probe(
        target_dirs=("/usr/lib/aarch64-linux-gnu/",),
        existing={
            f"{lib}/libfoo.a": f"{lib}/libfoo.a",
            "/opt/sdk/lib/libsdk.so": "/opt/sdk/lib/libsdk.so",
            "/opt/prebuilt/libpre.a": "/opt/prebuilt/libpre.a",
            "/w/vendor/libv.a": "/w/vendor/libv.a",
            # An image library of the same name as the bundled one comes after it in the search order.
            "/usr/lib/aarch64-linux-gnu//libfoo.a": "/usr/lib/aarch64-linux-gnu/libfoo.a",
        },
        owners={"/usr/lib/aarch64-linux-gnu/libfoo.a": "libfoo-dev:arm64"},
    )
    report = _report(
        _package("foo-sys", ("static=foo",), (f"native={lib}",)),
        _package("sdk-sys", ("sdk",), ("native=/opt/sdk/lib",)),
        _package("pre", ("static=pre",), ("/opt/prebuilt",), overridden=True, out_dir=None),
        _package("v", ("static=v",), ("native=/w/vendor",)),
    )
    places = Places(target_dir="/w/target", mounts=("/opt/sdk",), project=("/w", "/w/target", "/opt/prebuilt"))
    found = {package.package: package.libraries[0] for package in origins.attribute(report, probe, places).packages}
    assert found["foo-sys"] == LinkedLibrary(name="foo", kind="static", path=f"{lib}/libfoo.a", origin=Origin.OUT_DIR)
    assert found["sdk-sys"].origin is Origin.MOUNT
    assert found["pre"].origin is Origin.LINKS_OVERRIDE
    assert found["v"].origin is Origin.PROJECT
    assert all(library.debian_package is None for library in found.values())


def test_read_probe_skips_dpkg_diversions_and_noise() -> None:
    probe = origins.read_probe(
        b"diversion by foo from: /usr/lib/libx.so\n"
        b"O\tdiversion by foo to: /usr/lib/libx.so.real\n"
        b"O\tlibx-dev:arm64, liby-dev:arm64: /usr/lib/libx.so\n"
        b"garbage\n"
    )
    assert probe.owners == {"/usr/lib/libx.so": "libx-dev:arm64, liby-dev:arm64"}


def test_owners_known_from_an_earlier_probe_and_files_no_package_owns() -> None:
    output = (
        b"E\t/usr/lib/x/liba.so\t/usr/lib/x/liba.so\n"
        b"E\t/usr/lib/x/libb.so\t/usr/lib/x/libb.so\n"
        b"E\t/usr/lib/x/libc.so\t/usr/lib/x/libc.so\n"
        b"E\t/w/lib/libd.a\t/w/lib/libd.a\n"
        b"O\tliba-dev:arm64: /usr/lib/x/liba.so\n"
    )
    probe = origins.read_probe(output, mounted=("/w",), known={"/usr/lib/x/libb.so": "libb-dev:arm64"})
    # The host's file is nobody's business; the image file dpkg did not name is owned by no package.
    assert probe.owners == {
        "/usr/lib/x/liba.so": "liba-dev:arm64",
        "/usr/lib/x/libb.so": "libb-dev:arm64",
        "/usr/lib/x/libc.so": "",
    }
    report = _report(_package("p", ("a", "b", "c"), ("/usr/lib/x",)))
    libraries = origins.attribute(report, probe, Places(target_dir="/w/target")).packages[0].libraries
    assert [(library.origin, library.debian_package) for library in libraries] == [
        (Origin.IMAGE, "liba-dev:arm64"),
        (Origin.IMAGE, "libb-dev:arm64"),
        (Origin.IMAGE, None),
    ]


def test_the_cache_is_per_image_and_no_cache_is_no_error(tmp_path: Path) -> None:
    path = tmp_path / "state" / "library-probe.json"
    cache = origins.ProbeCache(path, "xpcargo/aarch64-unknown-linux-gnu:1234")
    assert cache.load() == Known()
    known = Known(
        dirs={"cc": ("/usr/lib/",)},
        files={"/usr/lib//liba.so": "/usr/lib/liba.so", "/usr/lib//libb.so": ""},
        owners={"/usr/lib/liba.so": "liba-dev:amd64"},
    )
    cache.save(known)
    assert cache.load() == known
    assert origins.ProbeCache(path, "xpcargo/aarch64-unknown-linux-gnu:5678").load() == Known()
    path.write_text("[1, 2", encoding="utf-8")
    assert cache.load() == Known()
    blocked = origins.ProbeCache(tmp_path / "file" / "library-probe.json", "i")
    (tmp_path / "file").write_text("", encoding="utf-8")
    blocked.save(known)
    assert blocked.load() == Known()


class _Session:
    """Answers the probe with the captured output, plus what it would say of ``extra`` (host files), and counts
    the calls."""

    def __init__(self, *extra: Path) -> None:
        self.calls = 0
        self.extra = extra

    def run(self, argv: list[str], **kwargs: Any) -> int:
        self.calls += 1
        found = "".join(f"E\t{path}\t{path}\n" for path in self.extra if path.exists())
        kwargs["on_stdout"]((CAPTURED / "probe-aarch64.txt").read_bytes() + found.encode())
        return 0


def test_a_build_that_links_what_an_earlier_one_linked_asks_the_container_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "target" / "out"
    out_dir.mkdir(parents=True)
    (out_dir / "libhello.a").write_bytes(b"!<arch>\n")
    report = _report(_package("p", ("m", "static=gcc", "z", "static=hello"), (f"native={out_dir}",)))
    places = Places(target_dir=str(tmp_path / "target"), project=(str(tmp_path),))
    cache = origins.ProbeCache(tmp_path / "target" / "library-probe.json", "image:1")
    session = _Session(out_dir / "libhello.a")
    first = origins.find(session, report, target_cc="aarch64-linux-gnu-gcc", places=places, cache=cache)  # type: ignore[arg-type]
    second = origins.find(session, report, target_cc="aarch64-linux-gnu-gcc", places=places, cache=cache)  # type: ignore[arg-type]
    assert session.calls == 1
    assert first == second
    hello = first.packages[0].libraries[3]
    assert (hello.origin, hello.path) == (Origin.OUT_DIR, f"{out_dir}/libhello.a")
    # The host's files are looked at again, each time: a build script may have stopped making one.
    (out_dir / "libhello.a").unlink()
    third = origins.find(session, report, target_cc="aarch64-linux-gnu-gcc", places=places, cache=cache)  # type: ignore[arg-type]
    assert session.calls == 1
    assert third.packages[0].libraries[3].origin is Origin.NOT_FOUND
    # Another library of the image is not known yet: the probe runs again.
    more = _report(_package("p", ("m", "dylib=pthread")))
    origins.find(session, more, target_cc="aarch64-linux-gnu-gcc", places=places, cache=cache)  # type: ignore[arg-type]
    assert session.calls == 2
