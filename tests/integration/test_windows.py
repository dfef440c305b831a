"""Windows programs against the real engine: x86_64-pc-windows-gnu, whose Rust std the image builds from Debian's
sources in its layer, linked by MinGW-w64's gcc and run under Debian's wine through xpcargo's runner
(images/share/wine-run). The seed C example and a -sys crate (zlib through the cc crate) build with a plain `cargo
build --target` into AMD64 PE programs that run and print what they should; unwinding works (a caught panic, a
`#[should_panic]` test); `verify --release` finds the builds the same; `dist` packs a `.zip` that is the same bytes
twice. A project cannot steer the runner: its `[env]` WINE* settings and a link its build script plants where the
runner keeps its prefix get it nothing."""

from __future__ import annotations

import io
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import pytest

from .helpers import (
    RUNNABLE,
    WINDOWS,
    Cli,
    assert_unwinding,
    assert_verified_same,
    base_environment,
    copy_fixture,
    image_build_output,
)

pytestmark = [pytest.mark.engine, pytest.mark.std_images(WINDOWS)]

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
_IMAGE_FILE_MACHINE_AMD64 = 0x8664
# IMAGE_SUBSYSTEM_WINDOWS_CUI: a console program.
_CONSOLE = 3


@pytest.fixture(scope="module")
def xpcargo(cli_env: dict[str, str]) -> Cli:
    """The CLI once the Windows image exists: built here, on its own (its layer builds a std, minutes the first
    time), rather than with every other target's image as the session's `xpcargo` fixture would."""
    code, output = image_build_output([sys.executable, "-m", "xpcargo", "image", "build", WINDOWS], base_environment())
    assert code == 0, output
    return Cli(cli_env)


def pe_header(path: Path) -> tuple[int, int, int]:
    """The PE file's machine, its optional header's magic (0x20B: PE32+) and its subsystem, read from the bytes."""
    data = path.read_bytes()
    assert data[:2] == b"MZ", f"{path}: no DOS header"
    (lfanew,) = struct.unpack_from("<I", data, 0x3C)
    assert data[lfanew : lfanew + 4] == b"PE\0\0", f"{path}: no PE signature"
    (machine,) = struct.unpack_from("<H", data, lfanew + 4)
    optional = lfanew + 24
    (magic,) = struct.unpack_from("<H", data, optional)
    (subsystem,) = struct.unpack_from("<H", data, optional + 68)
    return machine, magic, subsystem


@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_c_code_builds_into_an_amd64_program_that_runs_under_wine(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str
) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    ran = xpcargo(["run", "--target", WINDOWS], cwd=project)
    assert ran.code == 0, ran
    expected = RUNNABLE[fixture].expected_lines(WINDOWS)
    assert ran.stdout_lines[-len(expected) :] == expected, ran
    # No wine diagnostics and no display complaints in what the user sees: Cargo's lines, and nothing else.
    said = [line for line in ran.stderr_lines if line.split()[:1] not in (["Compiling"], ["Finished"], ["Running"])]
    assert not [line for line in said if "wine" in line.lower() or "XDG_RUNTIME_DIR" in line], ran
    program = project / "target" / WINDOWS / "debug" / f"{RUNNABLE[fixture].binary}.exe"
    assert pe_header(program) == (_IMAGE_FILE_MACHINE_AMD64, 0x20B, _CONSOLE)
    tested = xpcargo(["test", "--target", WINDOWS], cwd=project)
    assert tested.code == 0, tested
    assert "test result: ok." in tested.stdout, tested


def test_the_report_names_the_machine_and_no_glibc(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    assert xpcargo(["build", "--target", WINDOWS], cwd=project).code == 0
    report = xpcargo(["report", "--target", WINDOWS, "--artifacts", "--json"], cwd=project)
    assert report.code == 0, report
    assert '"machine": "x86_64"' in report.stdout, report
    assert '"glibc": null' in report.stdout, report


def test_unwinding_catches_panics_and_should_panic_passes(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = assert_unwinding(xpcargo, tmp_path_factory, WINDOWS)
    # `bench` runs the harness in its bench mode under wine too (the fixture has no #[bench]: both tests ignored).
    benched = xpcargo(["bench", "--target", WINDOWS], cwd=project)
    assert benched.code == 0, benched
    assert "test result: ok. 0 passed; 0 failed; 2 ignored" in benched.stdout, benched


@pytest.mark.parametrize("fixture", ["seed-c-lib", "zlib-sys"])
def test_verify_release_is_green(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, fixture: str) -> None:
    project = copy_fixture(tmp_path_factory, fixture)
    assert_verified_same(xpcargo(["verify", "--target", WINDOWS, "--release"], cwd=project, env=EPOCH))


def _dist(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli, name: str) -> Path:
    # Another directory name and depth each time: the checkout's path must not reach the archive.
    project = copy_fixture(tmp_path_factory, "seed-c-lib")
    moved = project.parent / name / "deeper" / "seed-c-lib"
    moved.parent.mkdir(parents=True)
    shutil.move(project, moved)
    built = xpcargo(["dist", "--target", WINDOWS], cwd=moved, env=EPOCH)
    assert built.code == 0, built
    return moved / "target" / "dist"


def test_dist_packs_a_reproducible_zip_with_the_exe(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    first, second = _dist(tmp_path_factory, xpcargo, "one"), _dist(tmp_path_factory, xpcargo, "checkout-two")
    name = f"hello-world-from-c-{WINDOWS}.zip"
    assert sorted(path.name for path in first.iterdir() if path.suffix in (".zip", ".gz")) == [name]
    for file in [name, "sha256.sum", "dist-manifest.json"]:
        assert (first / file).read_bytes() == (second / file).read_bytes(), file
    with zipfile.ZipFile(io.BytesIO((first / name).read_bytes())) as packed:
        assert packed.namelist() == ["hello-world-from-c.exe"]
        program = packed.read("hello-world-from-c.exe")
    (struct_machine,) = struct.unpack_from("<H", program, struct.unpack_from("<I", program, 0x3C)[0] + 4)
    assert struct_machine == _IMAGE_FILE_MACHINE_AMD64


# --- A project cannot steer the wine runner ----------------------------------------------------------------------


def test_the_projects_wine_settings_are_dropped(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "wine-hostile")
    ran = xpcargo(["run", "--target", WINDOWS], cwd=project)
    assert ran.code == 0, ran
    assert "hostile program ran" in ran.stdout_lines, ran
    # The runner's own prefix, in the container's /tmp, not the one the project's `[env]` names.
    prefix = next(line for line in ran.stdout_lines if line.startswith("WINEPREFIX="))
    assert prefix.startswith("WINEPREFIX=/tmp/xpcargo-wine-"), ran
    assert not (project / "planted-prefix").exists()
    assert not (project / "wineserver-ran").exists()
    # WINEDEBUG=+all would have put wine's traces on stderr.
    assert not [line for line in ran.stderr_lines if "trace:" in line], ran
    # The program's exit status comes through the runner and wine.
    failed = xpcargo(["run", "--target", WINDOWS, "--", "exit", "7"], cwd=project)
    assert failed.code == 7, failed


def test_a_link_planted_where_the_prefix_goes_is_refused(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "wine-hostile")
    ran = xpcargo(["run", "--target", WINDOWS, "--features", "plant-link"], cwd=project)
    assert ran.code == 125, ran
    assert any("is not a wine prefix of this user's" in line for line in ran.stderr_lines), ran
    assert "hostile program ran" not in ran.stdout_lines, ran
    # The runner made nothing where the link pointed: the project's tree on the host.
    assert list((project / "planted-link-target").iterdir()) == []
