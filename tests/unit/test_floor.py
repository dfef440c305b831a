"""The glibc floor: which one a target gets, the refusal of one the recipe cannot meet, the flags and the mount a
lower one adds to a build's plan, and the sysroot unpacked from .debs (built here, with an absolute symlink and a
path that tries to leave)."""

from __future__ import annotations

import functools
import gc
import hashlib
import http.server
import io
import tarfile
import threading
from pathlib import Path

import pytest

from xpcargo import resources
from xpcargo.context import Context
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.image import debian
from xpcargo.image.recipe import load_recipe
from xpcargo.pipeline import floor
from xpcargo.pipeline.reproducible import Reproducibility
from xpcargo.pipeline.workspace import Step

from .projects import app_project, plan_in

# Taken before the unit tests' guard replaces it (conftest.py), for the one test that knows it downloads nothing.
_FETCH_POOL_FILE = debian.fetch_pool_file

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


def _project(tmp_path: Path, xpcargo_toml: str = "") -> Path:
    return app_project(tmp_path, xpcargo_toml)


def _context(tmp_path: Path, root: Path, **environ: str) -> Context:
    env = {"HOME": str(tmp_path / "home"), "XPCARGO_CACHE_DIR": str(tmp_path / "cache"), **environ}
    return Context.create(cwd=root, environ=env)


def test_without_a_floor_the_images_own_glibc_and_nothing_added(tmp_path: Path) -> None:
    root = _project(tmp_path)
    planned = plan_in(_context(tmp_path, root), "build", AARCH64, [])
    assert planned.flags.glibc_floor == "2.41"
    assert planned.flags.sysroot is None
    # The target's own sysroot (bindgen's --sysroot) is the image's; no floor's sysroot is mounted or named.
    assert not any("sysroots" in value for value in planned.variables.env.values())
    assert planned.flags.rustflags_file is None


def test_a_lower_floor_links_against_the_older_libc(tmp_path: Path) -> None:
    root = _project(tmp_path, '[target.aarch64-unknown-linux-gnu]\nglibc = "2.36"\n')
    planned = plan_in(_context(tmp_path, root), "build", AARCH64, [])
    directory = tmp_path / "cache" / "sysroots" / "glibc-2.36" / "arm64"
    assert planned.flags.glibc_floor == "2.36"
    assert planned.flags.sysroot is not None
    assert planned.flags.sysroot.directory == directory
    assert [url.rsplit("/", 1)[1].split("_")[0] for url, _ in planned.flags.sysroot.debs] == [
        "libc6",
        "libc6-dev",
        "linux-libc-dev",
        "libgcc-s1",
    ]
    assert all("bookworm" not in url and "_arm64.deb" in url for url, _ in planned.flags.sysroot.debs)
    # Mounted read-only at its own path, for every step.
    mounts = {mount.path: mount for mount in planned.request(Step.BUILD, "image").mounts}
    assert mounts[directory].read_only
    # The link: the sysroot, its start files first, its libraries before the cross compiler's own directory.
    assert planned.flags.rustflags_config is not None
    assert planned.flags.rustflags_config.startswith("[build]\nrustflags = [")
    for flag in (
        f"-Clink-arg=--sysroot={directory}",
        f"-Clink-arg=-B{directory}/usr/lib/aarch64-linux-gnu/",
        f"-Clink-arg=-L{directory}/usr/lib/aarch64-linux-gnu",
        f"-Clink-arg=-L{directory}/lib/aarch64-linux-gnu",
    ):
        assert f'"{flag}"' in planned.flags.rustflags_config
    # C and C++: the older headers before the cross compiler's.
    expected = (
        f"--sysroot={directory} -isystem{directory}/usr/include/aarch64-linux-gnu -isystem{directory}/usr/include"
    )
    assert planned.variables.env["CFLAGS_aarch64_unknown_linux_gnu"] == expected
    assert planned.variables.env["CXXFLAGS_aarch64_unknown_linux_gnu"] == expected


def test_the_floor_joins_the_users_rustflags_and_the_reproducible_remapping(tmp_path: Path) -> None:
    root = _project(tmp_path, '[build]\nenv = { CFLAGS = "-O1" }\n')
    context = _context(tmp_path, root, RUSTFLAGS="-g", XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_GLIBC="2.36")
    settings = Reproducibility(source_date_epoch=1700000000, epoch_source="environment")
    planned = plan_in(context, "build", X86_64, [], reproducible_settings=settings)
    flags = planned.variables.env["CARGO_ENCODED_RUSTFLAGS"].split("\x1f")
    assert flags[0] == "-g"
    assert any(flag.startswith("--remap-path-prefix=") for flag in flags)
    assert f"-Clink-arg=--sysroot={tmp_path / 'cache' / 'sysroots' / 'glibc-2.36' / 'amd64'}" in flags
    assert "RUSTFLAGS" not in planned.variables.env
    cflags = planned.variables.env["CFLAGS_x86_64_unknown_linux_gnu"]
    assert cflags.startswith("-O1 -ffile-prefix-map=")
    assert "-isystem" in cflags
    assert "/usr/include/x86_64-linux-gnu" in cflags


@pytest.mark.parametrize("version", ["2.17", "2.99"])
def test_a_floor_the_recipe_cannot_meet_is_one_error_naming_the_supported_ones(tmp_path: Path, version: str) -> None:
    root = _project(tmp_path, f'[target.aarch64-unknown-linux-gnu]\nglibc = "{version}"\n')
    with pytest.raises(ConfigError) as caught:
        plan_in(_context(tmp_path, root), "build", AARCH64, [])
    assert caught.value.summary() == (
        f"error: glibc {version} for {AARCH64}: the recipe `trixie-rust` has no such floor for arm64 (hint: supported "
        f"floors for {AARCH64}: 2.36, 2.41 (the image's own); set `glibc` to one of them or remove it)"
    )


def test_a_floor_for_an_architecture_the_older_suite_lacks_is_refused(tmp_path: Path) -> None:
    recipe = load_recipe("trixie-rust", directory=resources.images_dir())
    root = _project(tmp_path, '[target.aarch64-unknown-linux-gnu]\nglibc = "2.36"\ndebian-arch = "riscv64"\n')
    context = _context(tmp_path, root)
    spec = context.host.target(AARCH64, context.project_config(root))
    with pytest.raises(ConfigError, match="no such floor for riscv64") as caught:
        floor.floor_of(spec, recipe, cache_dir=tmp_path)
    assert "supported floors for aarch64-unknown-linux-gnu: 2.41 (the image's own)" in (caught.value.hint or "")


def test_the_images_own_glibc_asked_for_is_no_sysroot(tmp_path: Path) -> None:
    root = _project(tmp_path, '[target.aarch64-unknown-linux-gnu]\nglibc = "2.41"\n')
    planned = plan_in(_context(tmp_path, root), "build", AARCH64, [])
    assert (planned.flags.glibc_floor, planned.flags.sysroot) == ("2.41", None)


def test_a_glibc_setting_that_is_no_version(tmp_path: Path) -> None:
    root = _project(tmp_path, '[target.aarch64-unknown-linux-gnu]\nglibc = "bookworm"\n')
    with pytest.raises(ConfigError, match="`bookworm` is not a glibc version"):
        plan_in(_context(tmp_path, root), "build", AARCH64, [])


# --- Unpacking ------------------------------------------------------------------------------------------------------


def _deb(entries: list[tarfile.TarInfo | tuple[tarfile.TarInfo, bytes]]) -> bytes:
    """A .deb as dpkg-deb writes one: an ar archive of debian-binary, control.tar.xz and data.tar.xz."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w:xz") as archive:
        for entry in entries:
            info, content = entry if isinstance(entry, tuple) else (entry, b"")
            archive.addfile(info, io.BytesIO(content) if content else None)

    def member(name: str, content: bytes) -> bytes:
        header = f"{name:<16}{0:<12}{0:<6}{0:<6}{'100644':<8}{len(content):<10}`\n".encode()
        return header + content + (b"\n" if len(content) % 2 else b"")

    return (
        b"!<arch>\n"
        + member("debian-binary", b"2.0\n")
        + member("control.tar.xz", b"")
        + member("data.tar.xz", data.getvalue())
    )


def _file(name: str, content: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    return info, content


def _link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.SYMTYPE
    info.linkname = target
    return info


def test_unpacking_makes_absolute_links_point_into_the_sysroot(tmp_path: Path) -> None:
    deb = tmp_path / "libc6-dev_2.36_arm64.deb"
    deb.write_bytes(
        _deb(
            [
                _file("./lib/aarch64-linux-gnu/libm.so.6", b"old libm"),
                _link("./usr/lib/aarch64-linux-gnu/libm.so", "/lib/aarch64-linux-gnu/libm.so.6"),
                _link("./usr/lib/aarch64-linux-gnu/libc.so.6", "../../../lib/aarch64-linux-gnu/libm.so.6"),
            ]
        )
    )
    root = tmp_path / "root"
    root.mkdir()
    floor.unpack_deb(deb, root)
    link = root / "usr/lib/aarch64-linux-gnu/libm.so"
    assert str(link.readlink()) == "../../../lib/aarch64-linux-gnu/libm.so.6"
    assert link.read_bytes() == b"old libm"
    assert (root / "usr/lib/aarch64-linux-gnu/libc.so.6").read_bytes() == b"old libm"


@pytest.mark.parametrize("hostile", ["../escaped", "/etc/escaped"])
def test_a_member_that_leaves_the_sysroot_is_refused(tmp_path: Path, hostile: str) -> None:
    deb = tmp_path / "evil.deb"
    deb.write_bytes(_deb([_file(hostile, b"x")]))
    root = tmp_path / "root"
    root.mkdir()
    if hostile.startswith("/"):
        # tarfile's data filter strips the leading slash: it lands inside.
        floor.unpack_deb(deb, root)
        assert (root / "etc/escaped").is_file()
    else:
        with pytest.raises(ImageBuildError, match=r"cannot unpack evil\.deb"):
            floor.unpack_deb(deb, root)
        assert not (tmp_path / "escaped").exists()


def test_bad_bytes_are_one_error(tmp_path: Path) -> None:
    deb = tmp_path / "broken.deb"
    deb.write_bytes(b"!<arch>\ngarbage")
    with pytest.raises(ImageBuildError, match=r"cannot unpack broken\.deb"):
        floor.unpack_deb(deb, tmp_path)
    deb.write_bytes(b"not an archive")
    with pytest.raises(ImageBuildError, match="not an ar archive"):
        floor.unpack_deb(deb, tmp_path)


def test_ensure_unpacks_once_and_again_when_the_pins_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The real download function: with the file already in the pool cache under its pinned hash, it downloads nothing.
    monkeypatch.setattr(debian, "fetch_pool_file", _FETCH_POOL_FILE)
    cache = tmp_path / "cache"
    (cache / "pool").mkdir(parents=True)
    contents = _deb([_file("./lib/x86_64-linux-gnu/libc.so.6", b"glibc 2.36")])
    (cache / "pool" / "libc6_2.36_amd64.deb").write_bytes(contents)
    digest = hashlib.sha256(contents).hexdigest()
    sysroot = floor.Sysroot(
        version="2.36",
        suite="bookworm",
        debian_arch="amd64",
        directory=cache / "sysroots" / "glibc-2.36" / "amd64",
        # Already in the pool cache with this hash: fetch_pool_file downloads nothing.
        debs=(("http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36_amd64.deb", digest),),
    )

    def never(message: str) -> None:
        raise AssertionError(message)

    assert floor.ensure(sysroot, cache_dir=cache, on_retry=never, retry_wait=0)
    assert (sysroot.directory / "lib/x86_64-linux-gnu/libc.so.6").read_bytes() == b"glibc 2.36"
    assert not floor.ensure(sysroot, cache_dir=cache, on_retry=never, retry_wait=0)
    # Another pin (say a point release): unpacked anew, the stale files gone, nothing left beside it.
    newer = _deb([_file("./lib/x86_64-linux-gnu/libc.so.6", b"glibc 2.36 u15")])
    (cache / "pool" / "libc6_2.36u15_amd64.deb").write_bytes(newer)
    repinned = floor.Sysroot(
        version="2.36",
        suite="bookworm",
        debian_arch="amd64",
        directory=sysroot.directory,
        debs=(
            (
                "http://deb.debian.org/debian/pool/main/g/glibc/libc6_2.36u15_amd64.deb",
                hashlib.sha256(newer).hexdigest(),
            ),
        ),
    )
    assert floor.ensure(repinned, cache_dir=cache, on_retry=never, retry_wait=0)
    assert (sysroot.directory / "lib/x86_64-linux-gnu/libc.so.6").read_bytes() == b"glibc 2.36 u15"
    assert sorted(path.name for path in sysroot.directory.parent.iterdir()) == ["amd64"]


def test_a_pin_the_mirror_no_longer_serves_is_one_error_saying_to_renew_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A real HTTP server on this machine that has no such file: the real download meets a real 404.
    monkeypatch.setattr(debian, "fetch_pool_file", _FETCH_POOL_FILE)
    served = tmp_path / "mirror"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        sysroot = floor.Sysroot(
            version="2.36",
            suite="bookworm",
            debian_arch="arm64",
            directory=tmp_path / "cache" / "sysroots" / "glibc-2.36" / "arm64",
            debs=((f"http://127.0.0.1:{port}/pool/main/g/glibc/libc6_2.36_arm64.deb", "0" * 64),),
        )
        with pytest.raises(ImageBuildError) as caught:
            floor.ensure(sysroot, cache_dir=tmp_path / "cache", on_retry=lambda _: None, retry_wait=0)
    finally:
        server.shutdown()
        server.server_close()
        gc.collect()
    summary = caught.value.summary()
    assert summary.startswith("error: cannot download bookworm's glibc 2.36 for arm64: the mirror answered HTTP 404")
    assert "renew the pins of `glibc-floors`" in summary
    assert "Rust" not in summary
    assert not sysroot.directory.exists()


def test_two_processes_making_the_same_sysroot_leave_one_whole_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(debian, "fetch_pool_file", _FETCH_POOL_FILE)
    cache = tmp_path / "cache"
    (cache / "pool").mkdir(parents=True)
    contents = _deb([_file(f"./usr/lib/x86_64-linux-gnu/lib{index}.a", b"x" * 4096) for index in range(300)])
    (cache / "pool" / "libc6-dev_2.36_amd64.deb").write_bytes(contents)
    sysroot = floor.Sysroot(
        version="2.36",
        suite="bookworm",
        debian_arch="amd64",
        directory=cache / "sysroots" / "glibc-2.36" / "amd64",
        debs=(("http://mirror/pool/libc6-dev_2.36_amd64.deb", hashlib.sha256(contents).hexdigest()),),
    )
    errors: list[BaseException] = []

    def make() -> None:
        try:
            floor.ensure(sysroot, cache_dir=cache, on_retry=lambda _: None, retry_wait=0)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=make) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(list((sysroot.directory / "usr/lib/x86_64-linux-gnu").iterdir())) == 300
    assert sorted(path.name for path in sysroot.directory.parent.iterdir()) == ["amd64"]


def test_a_target_that_links_no_glibc_has_no_floor_and_refuses_one(tmp_path: Path) -> None:
    root = _project(tmp_path)
    planned = plan_in(_context(tmp_path, root), "build", "wasm32-wasip1", [])
    assert (planned.flags.glibc_floor, planned.flags.sysroot) == (None, None)
    # Its only flags of xpcargo's are wasi-libc's emulations (test_plan), no sysroot's.
    assert "--sysroot" not in str(planned.flags.rustflags_config)
    asked = _project(tmp_path / "asked", '[target.wasm32-wasip1]\nglibc = "2.36"\n')
    with pytest.raises(ConfigError, match="link no glibc") as caught:
        plan_in(_context(tmp_path / "asked", asked), "build", "wasm32-wasip1", [])
    assert "remove `glibc`" in (caught.value.hint or "")
