"""wasm32-wasip1 against the real engine, on Rust 1.96 with its std built in the image layer from Debian's sources
(Debian packages wasm32's std for 1.85.1 only): a pure-Rust program, the seed C example (C compiled by clang for
wasm32, linked by wasm-ld) and a crates.io -sys crate (libz-sys, through the cc crate) build into WebAssembly modules
and run under Node's WASI with their arguments, the working directory and their exit code; current crates that 1.85
cannot build do. C code gets wasi-libc's emulations (clock, signal, mman, getpid) by default, after the project's own
flags, and a project cannot turn that setting into flags of its own. A module that imports what the runner does not
provide is one line that names the import."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import WASM32, Cli, Workspace, assert_wasm_module, copy_fixture, single_error_line

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

PROGRAM_MANIFEST = """\
[package]
name = "wasi-probe"
version = "0.1.0"
edition = "2021"
publish = false

[workspace]
"""
# Arguments, a file written through a relative path and read back through its absolute one (the runner opens the
# working directory under both), the environment, then an exit code of the program's choosing, or a panic.
PROGRAM_MAIN = """\
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for (index, arg) in args.iter().enumerate() {
        println!("arg{index}=[{arg}]");
    }
    std::fs::write("written.txt", "from wasm").expect("write in the working directory");
    let cwd = std::env::var("PWD_SEEN").expect("the environment reaches the program");
    let back = std::fs::read_to_string(format!("{cwd}/written.txt")).expect("read by absolute path");
    println!("read back=[{back}]");
    println!("arch={}", std::env::consts::ARCH);
    if args.first().map(String::as_str) == Some("panic") {
        panic!("asked to panic");
    }
    std::process::exit(args.len() as i32 + 40);
}
"""


def _program(tmp_path: Path) -> Path:
    project = tmp_path / "wasi-probe"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text(PROGRAM_MANIFEST, encoding="utf-8")
    (project / "src" / "main.rs").write_text(PROGRAM_MAIN, encoding="utf-8")
    return project


def test_a_rust_program_gets_its_arguments_the_working_directory_and_its_exit_code(
    tmp_path: Path, xpcargo: Cli
) -> None:
    project = _program(tmp_path)
    result = xpcargo(
        ["run", "-q", "--target", WASM32, "--", "--version", "a b", "--"],
        cwd=project,
        env={"XPCARGO_BUILD_PASSTHROUGH": "PWD_SEEN", "PWD_SEEN": str(project)},
    )
    # Cargo exits with the program's own code.
    assert result.code == 43, result
    assert result.stdout_lines == [
        "arg0=[--version]",
        "arg1=[a b]",
        "arg2=[--]",
        "read back=[from wasm]",
        "arch=wasm32",
    ], result
    assert (project / "written.txt").read_text(encoding="utf-8") == "from wasm"
    assert_wasm_module(project / "target" / WASM32 / "debug" / "wasi-probe.wasm")

    panicked = xpcargo(
        ["run", "-q", "--target", WASM32, "--", "panic"],
        cwd=project,
        env={"XPCARGO_BUILD_PASSTHROUGH": "PWD_SEEN", "PWD_SEEN": str(project)},
    )
    # A panic aborts, which is a trap for the engine: the runner exits as an aborted program would.
    assert panicked.code == 134, panicked
    assert "asked to panic" in panicked.stderr, panicked


@pytest.mark.parametrize("name", ["seed-c-lib", "zlib-sys"])
def test_c_and_a_sys_crate_build_and_run(workspace: Workspace, xpcargo: Cli, name: str) -> None:
    crate = workspace.built(name, WASM32)
    assert_wasm_module(crate.target_dir / WASM32 / "debug" / f"{crate.crate.binary}.wasm")
    result = xpcargo(["run", "-q", "--target", WASM32], cwd=crate.project)
    assert result.code == 0, result
    # The seed's C says `c-arch=wasm32`: the build script compiled it with clang for wasm32, not the host's gcc.
    assert result.stdout_lines == crate.crate.expected_lines(WASM32), result


def test_unit_tests_run_and_the_report_says_there_is_no_glibc(workspace: Workspace, xpcargo: Cli) -> None:
    crate = workspace.crate("seed-c-lib")
    result = xpcargo(["test", "--target", WASM32], cwd=crate.project)
    assert result.code == 0, result
    assert "test result: ok. 2 passed" in result.stdout, result
    artifacts = xpcargo(["report", "--target", WASM32, "--artifacts"], cwd=crate.project)
    assert artifacts.code == 0, artifacts
    lines = artifacts.stdout_lines
    assert lines[0] == f"artifacts ({WASM32} links no glibc: it has no glibc floor):", artifacts
    (module,) = lines[1:]
    path, need = module.split()
    assert_wasm_module(Path(path))
    assert need == "-"


def test_a_library_from_pkg_config_is_not_found_and_the_hint_says_to_build_it_from_source(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "missing-pkg-config")
    result = xpcargo(["build", "--target", WASM32], cwd=project)
    assert result.code == 101, result
    # pkg-config is set up for the target (and finds nothing), rather than refusing to cross-compile.
    assert "Package sqlite3 was not found in the pkg-config search path" in result.stderr, result
    assert result.stderr_lines[-1] == (
        f"hint: the build script of missing-pkg-config v0.1.0 found no `sqlite3.pc` for {WASM32}: Debian packages "
        f"no such library for {WASM32}; build it from source with the crate's feature for that (often `vendored`, "
        "`bundled` or `static`)"
    ), result


# --- An import the runner does not provide ----------------------------------------------------------------------------


def test_a_missing_import_is_one_line_naming_it_and_what_provides_it(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    project = copy_fixture(tmp_path_factory, "wasm-missing-import")
    result = xpcargo(["run", "-q", "--target", WASM32, "--bin", "embedder-import"], cwd=project)
    # Not started (it would print `started`): the runner exits as the dynamic loader does for a missing library.
    assert result.code == 127, result
    assert "started" not in result.stdout, result
    said = [line for line in result.stderr_lines if line.startswith("wasi-run:")]
    assert said == [
        'wasi-run: target/wasm32-wasip1/debug/embedder-import.wasm: imports function "host_log" from module '
        "\"host\", which this runner (Node's WASI preview 1) does not provide; usually provided by the module's own "
        "host (a `#[link(wasm_import_module = ...)]` block, or an embedder's API); not WASI"
    ], result
    # Not Node's own words for it.
    assert "TypeError" not in result.stderr, result
    assert "WebAssembly.instantiate" not in result.stderr, result


def test_import_names_cannot_forge_the_runners_line(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "wasm-missing-import")
    result = xpcargo(["run", "-q", "--target", WASM32, "--bin", "forged-import"], cwd=project)
    assert result.code == 127, result
    said = [line for line in result.stderr_lines if line.startswith("wasi-run:")]
    assert len(said) == 1, result
    # The names are shown quoted and escaped: the newline, the escape and the override stay on the one line.
    assert 'from module "env\\nerror: forged line\\u001b[2J\\u202e"' in said[0], result
    assert 'imports function "clock\\nerror: forged too' in said[0], result
    assert "x" * 101 not in said[0], result
    assert not any(line.startswith("error: forged") for line in result.stderr_lines), result
    assert "\x1b" not in result.stderr, result
    assert "\u202e" not in result.stderr, result


# --- Rust 1.96, its std built from source ----------------------------------------------------------------------------


def test_current_crates_build_and_run_where_1_85_cannot(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "current-crates")
    ran = xpcargo(["run", "-q", "--target", WASM32], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines == [
        "glob main.rs=true notes.txt=false",
        "url host=xn--bcher-kva.example path=/b",
        "arch=wasm32",
    ], ran
    assert_wasm_module(project / "target" / WASM32 / "debug" / "current-crates.wasm")
    listed = xpcargo(["targets", "--target", WASM32, "--json"], cwd=project)
    assert [(item["rust"], item["recipe"]) for item in json.loads(listed.stdout)] == [("1.96.0", "trixie-rust")]
    # The control: the same lock on Debian's 1.85 (the Rust this target had before) is refused by Cargo.
    old = xpcargo(["build", "--target", WASM32], cwd=project, env={"XPCARGO_TOOLCHAIN": "1.85"})
    assert old.code == 101, old
    assert "rustc 1.85.1 is not supported" in old.stderr, old


# --- wasi-libc's emulations for C code -------------------------------------------------------------------------------

EMULATED = ["clock ok=1", "raise handled=1", "mmap ok=1", "getpid positive=1"]


def _with_settings(project: Path, settings: str) -> None:
    (project / "xpcargo.toml").write_text(f"[target.{WASM32}]\n{settings}\n", encoding="utf-8")


def test_c_code_gets_wasi_libcs_emulations_by_default(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "wasi-emulated-c")
    ran = xpcargo(["run", "-q", "--target", WASM32], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines == [*EMULATED, "from user=0", "arch=wasm32"], ran


def test_the_projects_own_c_flags_come_first_and_stay(tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli) -> None:
    project = copy_fixture(tmp_path_factory, "wasi-emulated-c")
    _with_settings(project, 'env = { CFLAGS_wasm32_wasip1 = "-DFROM_USER=7" }')
    ran = xpcargo(["run", "-q", "--target", WASM32], cwd=project)
    assert ran.code == 0, ran
    assert ran.stdout_lines == [*EMULATED, "from user=7", "arch=wasm32"], ran


def test_without_the_emulations_wasi_libc_refuses_the_c_code(
    tmp_path_factory: pytest.TempPathFactory, xpcargo: Cli
) -> None:
    # The judge bites: what makes the fixture build is the setting, which a project can turn off.
    project = copy_fixture(tmp_path_factory, "wasi-emulated-c")
    _with_settings(project, "wasi-emulated = []")
    result = xpcargo(["build", "--target", WASM32], cwd=project)
    assert result.code == 101, result
    assert "wasm lacks signal support; to enable minimal signal emulation" in result.stderr, result
    assert "WASI lacks a true mmap; to enable minimal mmap emulation" in result.stderr, result


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        # The emulations' flags are xpcargo's, from a closed set: a name can never become a flag or a path.
        ('wasi-emulated = ["process-clocks -Clink-arg=--export-all"]', "wasi-emulated"),
        ('wasi-emulated = ["../../../tmp/evil"]', "wasi-emulated"),
        ('wasi-emulated = ["pthread"]', "wasi-emulated"),
        # The archives every link takes are files of the image: never a flag, never a second word.
        ('link-archives = ["/usr/lib/wasm32-wasip1/libc.a -Clink-arg=--export-all"]', "link-archives"),
        ('link-archives = ["--whole-archive"]', "link-archives"),
        # The std's build runs in the image layer (as root, with the network): one program, files of the image only.
        ('std-cc = "clang-22 --target=wasm32-wasip1 -fplugin=/tmp/evil.so"', "std-cc"),
        (
            'std-self-contained = ["/usr/lib/wasm32-wasip1/libc.a $(touch /tmp/xpcargo-wasm-pwned)"]',
            "std-self-contained",
        ),
    ],
)
def test_a_project_cannot_turn_the_emulations_or_the_std_build_into_flags_of_its_own(
    tmp_path_factory: pytest.TempPathFactory, cli: Cli, settings: str, said: str
) -> None:
    project = copy_fixture(tmp_path_factory, "wasi-emulated-c")
    _with_settings(project, settings)
    result = cli(["build", "--target", WASM32], cwd=project)
    assert result.code == 3, result
    line = single_error_line(result)
    assert "xpcargo.toml" in line, result
    assert said in line, result
    assert "Building image" not in result.stderr, result
    assert not Path("/tmp/xpcargo-wasm-pwned").exists()
