"""The Cargo project as the host sees it: arguments, manifest, workspace, target dir, path dependencies, mounts."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from xpcargo.cargo.args import CargoArgs, parse_cargo_args, profile_dir_name
from xpcargo.cargo.project import Project, discover, find_manifest, find_workspace_root
from xpcargo.container.spec import Mount
from xpcargo.errors import ProjectError
from xpcargo.pipeline import plan

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
AARCH64 = "aarch64-unknown-linux-gnu"


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def _package(directory: Path, name: str, extra: str = "") -> Path:
    manifest = _write(
        directory / "Cargo.toml", f'[package]\nname = "{name}"\nversion = "0.1.0"\n' + textwrap.dedent(extra)
    )
    _write(directory / "src" / "lib.rs", "")
    return manifest


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), **extra}


# --- parse_cargo_args -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param([], CargoArgs(), id="nothing"),
        pytest.param(["--manifest-path", "a/Cargo.toml"], CargoArgs(manifest_path="a/Cargo.toml"), id="manifest"),
        pytest.param(["--manifest-path=a/Cargo.toml"], CargoArgs(manifest_path="a/Cargo.toml"), id="manifest="),
        pytest.param(["--target-dir", "out"], CargoArgs(target_dir="out"), id="target-dir"),
        pytest.param(["--target-dir=/abs/out"], CargoArgs(target_dir="/abs/out"), id="target-dir="),
        pytest.param(["--release"], CargoArgs(profile="release"), id="release"),
        pytest.param(["-r"], CargoArgs(profile="release"), id="-r"),
        pytest.param(["--profile", "bench"], CargoArgs(profile="bench"), id="profile"),
        pytest.param(["--profile=custom"], CargoArgs(profile="custom"), id="profile="),
        pytest.param(["--message-format", "json"], CargoArgs(message_format="json"), id="message-format"),
        pytest.param(
            ["--message-format", "json", "--message-format=short", "--message-format", "ansi"],
            CargoArgs(message_format="json,short,ansi"),
            id="message-format-joined",
        ),
        pytest.param(["--offline"], CargoArgs(offline=True), id="offline"),
        pytest.param(["--locked"], CargoArgs(locked=True), id="locked"),
        pytest.param(["--frozen"], CargoArgs(offline=True, locked=True), id="frozen"),
        pytest.param(["--", "--release"], CargoArgs(has_program_args=True), id="after-dashdash"),
        pytest.param(
            ["-p", "foo", "--features", "a b", "--", "--manifest-path", "x", "--target-dir=y", "--offline"],
            CargoArgs(has_program_args=True),
            id="program-args-not-read",
        ),
        pytest.param(
            ["--release", "--manifest-path", "m/Cargo.toml", "--locked", "--", "-r"],
            CargoArgs(manifest_path="m/Cargo.toml", profile="release", locked=True, has_program_args=True),
            id="mixed",
        ),
    ],
)
def test_parse_cargo_args(args: list[str], expected: CargoArgs) -> None:
    assert parse_cargo_args(args) == expected


def test_parse_cargo_args_does_not_mistake_a_value_for_an_option() -> None:
    # `--release` here is the value of --target-dir, not a flag.
    parsed = parse_cargo_args(["--target-dir", "--release"])
    assert parsed.target_dir == "--release"
    assert parsed.profile == "dev"


@pytest.mark.parametrize(
    ("profile", "directory"),
    [("dev", "debug"), ("test", "debug"), ("release", "release"), ("bench", "release"), ("custom", "custom")],
)
def test_profile_dir_name(profile: str, directory: str) -> None:
    assert profile_dir_name(profile) == directory


# --- find_manifest and find_workspace_root --------------------------------------------------------------------------


def test_find_manifest_walks_up(tmp_path: Path) -> None:
    manifest = _package(tmp_path / "pkg", "pkg")
    deep = tmp_path / "pkg" / "src" / "a" / "b"
    deep.mkdir(parents=True)
    assert find_manifest(deep, None) == manifest
    assert find_manifest(tmp_path / "pkg", None) == manifest


def test_find_manifest_with_manifest_path(tmp_path: Path) -> None:
    manifest = _package(tmp_path / "pkg", "pkg")
    assert find_manifest(tmp_path, "pkg/Cargo.toml") == manifest.resolve()
    assert find_manifest(tmp_path / "elsewhere", str(manifest)) == manifest.resolve()
    with pytest.raises(ProjectError, match=r"does not name a Cargo\.toml"):
        find_manifest(tmp_path, "pkg/src/lib.rs")
    with pytest.raises(ProjectError, match="does not exist"):
        find_manifest(tmp_path, "missing/Cargo.toml")


def test_find_manifest_without_any_cargo_toml(tmp_path: Path) -> None:
    cwd = tmp_path / "empty" / "dir"
    cwd.mkdir(parents=True)
    if any((directory / "Cargo.toml").is_file() for directory in cwd.parents):
        pytest.skip("a parent of the temporary directory holds a Cargo.toml")
    with pytest.raises(ProjectError) as caught:
        find_manifest(cwd, None)
    error = caught.value
    assert "\n" not in str(error)
    assert "Cargo.toml" in error.message
    assert str(cwd) in error.message
    assert "--manifest-path" in f"{error.message} {error.hint}"
    assert "\n" not in f"{error.message} {error.hint}"


def test_workspace_root_of_a_member_listed_by_glob(tmp_path: Path) -> None:
    _write(tmp_path / "Cargo.toml", '[workspace]\nmembers = ["crates/*"]\n')
    member = _package(tmp_path / "crates" / "a", "a")
    assert find_workspace_root(member) == tmp_path
    # The root manifest is its own root.
    assert find_workspace_root(tmp_path / "Cargo.toml") == tmp_path


def test_workspace_root_of_an_excluded_package(tmp_path: Path) -> None:
    _write(tmp_path / "Cargo.toml", '[workspace]\nmembers = ["crates/*"]\nexclude = ["crates/skip"]\n')
    excluded = _package(tmp_path / "crates" / "skip", "skip")
    assert find_workspace_root(excluded) == tmp_path / "crates" / "skip"


def test_workspace_root_through_package_workspace(tmp_path: Path) -> None:
    _write(tmp_path / "root" / "Cargo.toml", '[workspace]\nmembers = ["../pkg"]\n')
    member = _package(tmp_path / "pkg", "pkg", 'workspace = "../root"\n')
    assert find_workspace_root(member) == (tmp_path / "root").resolve()


def test_workspace_root_of_a_standalone_package(tmp_path: Path) -> None:
    # The parent's Cargo.toml is a plain package, not a workspace.
    _package(tmp_path, "outer")
    inner = _package(tmp_path / "inner", "inner")
    assert find_workspace_root(inner) == tmp_path / "inner"


def test_workspace_root_of_an_implicit_path_member(tmp_path: Path) -> None:
    _package(tmp_path, "root", '[workspace]\n\n[dependencies]\nfoo = { path = "foo" }\n')
    member = _package(tmp_path / "foo", "foo")
    assert find_workspace_root(member) == tmp_path


def test_workspace_root_of_an_explicit_member_inside_an_excluded_dir(tmp_path: Path) -> None:
    _write(tmp_path / "Cargo.toml", '[workspace]\nmembers = ["vendor/x"]\nexclude = ["vendor"]\n')
    member = _package(tmp_path / "vendor" / "x", "x")
    assert find_workspace_root(member) == tmp_path


# --- discover -------------------------------------------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace whose members depend on paths inside and outside it, in every kind of dependency table."""
    root = tmp_path / "ws"
    _write(
        root / "Cargo.toml",
        """\
        [workspace]
        members = ["app", "tools/*"]
        resolver = "2"

        [workspace.dependencies]
        wsdep = { path = "../shared/wsdep" }
        regdep = "1.0"

        [patch.crates-io]
        patched = { path = "../patches/patched" }
        """,
    )
    _package(
        root / "app",
        "app",
        """\
        [dependencies]
        inner = { path = "../inner" }
        outer = { path = "../../outer", version = "0.1" }
        wsdep = { workspace = true }
        serde = "1"

        [dev-dependencies]
        devdep = { path = "../../dev/devdep" }

        [build-dependencies]
        builddep = { path = "../../build/builddep" }

        [target.'cfg(unix)'.dependencies]
        unixdep = { path = "../../unixdep" }
        """,
    )
    _package(root / "tools" / "gen", "gen", '[dependencies]\ntooldep = { path = "../../../tooldep" }\n')
    _package(root / "inner", "inner")
    _package(tmp_path / "outer", "outer", '[dependencies]\ntransitive = { path = "../transitive" }\n')
    for name in ("shared/wsdep", "patches/patched", "dev/devdep", "build/builddep", "unixdep", "tooldep", "transitive"):
        _package(tmp_path / name, name.rsplit("/", 1)[-1])
    _write(root / "Cargo.lock", "version = 3\n")
    return root


def test_discover_collects_path_dependencies_outside_the_workspace(tmp_path: Path, workspace: Path) -> None:
    project = discover(workspace / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    base = tmp_path.resolve()
    assert project.workspace_root == workspace.resolve()
    assert project.manifest == workspace.resolve() / "app" / "Cargo.toml"
    assert project.cwd == workspace.resolve() / "app"
    assert set(project.outside_paths) == {
        base / "outer",
        base / "transitive",
        base / "shared" / "wsdep",
        base / "patches" / "patched",
        base / "dev" / "devdep",
        base / "build" / "builddep",
        base / "unixdep",
        base / "tooldep",
    }
    assert len(project.outside_paths) == len(set(project.outside_paths))
    assert workspace.resolve() / "inner" / "Cargo.toml" in project.manifests
    assert workspace.resolve() / "tools" / "gen" / "Cargo.toml" in project.manifests
    assert base / "transitive" / "Cargo.toml" in project.manifests
    assert list(project.manifests) == sorted(project.manifests)
    assert project.target_dir == workspace.resolve() / "target"
    assert project.cargo_home == tmp_path / "home" / ".cargo"


def test_discover_with_manifest_path(tmp_path: Path, workspace: Path) -> None:
    args = parse_cargo_args(["--manifest-path", "ws/app/Cargo.toml"])
    project = discover(tmp_path, args, environ=_environ(tmp_path))
    assert project.workspace_root == workspace.resolve()
    assert project.manifest == workspace.resolve() / "app" / "Cargo.toml"
    assert project.cwd == tmp_path.resolve()


def test_discover_cargo_home_from_environment(tmp_path: Path, workspace: Path) -> None:
    environ = _environ(tmp_path, CARGO_HOME=str(tmp_path / "cargo-home"))
    project = discover(workspace, parse_cargo_args([]), environ=environ)
    assert project.cargo_home == (tmp_path / "cargo-home").resolve()


@pytest.mark.parametrize(
    ("cli", "env", "config", "expected"),
    [
        pytest.param(None, None, None, "ws/target", id="default"),
        pytest.param(None, None, "from-config", "ws/from-config", id="config-relative-to-dir-holding-.cargo"),
        pytest.param(None, None, "/abs/config-out", "/abs/config-out", id="config-absolute"),
        pytest.param(None, "from-env", "from-config", "ws/app/from-env", id="env-beats-config"),
        pytest.param("from-cli", "from-env", "from-config", "ws/app/from-cli", id="cli-beats-env"),
        pytest.param("/abs/cli", None, None, "/abs/cli", id="cli-absolute"),
    ],
)
def test_target_dir_precedence(
    tmp_path: Path, workspace: Path, *, cli: str | None, env: str | None, config: str | None, expected: str
) -> None:
    if config is not None:
        _write(workspace / ".cargo" / "config.toml", f'[build]\ntarget-dir = "{config}"\n')
    args = parse_cargo_args(["--target-dir", cli] if cli else [])
    environ = _environ(tmp_path, **({"CARGO_TARGET_DIR": env} if env else {}))
    project = discover(workspace / "app", args, environ=environ)
    want = Path(expected) if expected.startswith("/") else tmp_path.resolve() / expected
    assert project.target_dir == want


def test_target_dir_from_build_target_dir_variable(tmp_path: Path, workspace: Path) -> None:
    environ = _environ(tmp_path, CARGO_BUILD_TARGET_DIR="/abs/build-var")
    assert discover(workspace, parse_cargo_args([]), environ=environ).target_dir == Path("/abs/build-var")


def test_nearer_cargo_config_wins_for_target_dir(tmp_path: Path, workspace: Path) -> None:
    _write(workspace / ".cargo" / "config.toml", '[build]\ntarget-dir = "far"\n')
    _write(workspace / "app" / ".cargo" / "config.toml", '[build]\ntarget-dir = "near"\n')
    project = discover(workspace / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    assert project.target_dir == workspace.resolve() / "app" / "near"
    assert project.cargo_config_files == (
        workspace.resolve() / "app" / ".cargo" / "config.toml",
        workspace.resolve() / ".cargo" / "config.toml",
    )


def test_cargo_home_config_comes_last(tmp_path: Path, workspace: Path) -> None:
    home_config = _write(tmp_path / "home" / ".cargo" / "config.toml", '[build]\ntarget-dir = "/from-home"\n')
    project = discover(workspace, parse_cargo_args([]), environ=_environ(tmp_path))
    assert project.cargo_config_files[-1] == home_config
    assert project.target_dir == Path("/from-home")
    _write(workspace / ".cargo" / "config", '[build]\ntarget-dir = "legacy-name"\n')
    project = discover(workspace, parse_cargo_args([]), environ=_environ(tmp_path))
    assert project.target_dir == workspace.resolve() / "legacy-name"


def test_cargo_prefers_the_extensionless_config_when_both_exist(tmp_path: Path, workspace: Path) -> None:
    _write(workspace / ".cargo" / "config", '[build]\ntarget-dir = "from-legacy"\n')
    _write(workspace / ".cargo" / "config.toml", '[build]\ntarget-dir = "from-toml"\n')
    project = discover(workspace, parse_cargo_args([]), environ=_environ(tmp_path))
    assert project.target_dir == workspace.resolve() / "from-legacy"


# --- links overrides from the Cargo config --------------------------------------------------------------------------

FAR_CONFIG = f"""\
    [build]
    rustflags = ["-Cdebuginfo=1"]

    [target.{AARCH64}]
    linker = "host-linker"
    runner = "host-runner"
    rustflags = ["-Ctarget-cpu=native"]
    rustdocflags = ["--cfg", "x"]

    [target.{AARCH64}.z]
    rustc-link-lib = ["z"]
    root = "/far/z"

    [target.{AARCH64}.ssl]
    rustc-link-lib = ["ssl"]

    [target.x86_64-unknown-linux-gnu.z]
    rustc-link-lib = ["z-x86"]

    [target.'cfg(unix)']
    rustflags = ["-Cforce-frame-pointers"]
"""

NEAR_CONFIG = f"""\
    [target.{AARCH64}.z]
    root = "/near/z"
    include = "/near/z/include"
"""


def test_links_overrides_merge_nearer_wins(tmp_path: Path, workspace: Path) -> None:
    _write(workspace / ".cargo" / "config.toml", FAR_CONFIG)
    _write(workspace / "app" / ".cargo" / "config.toml", NEAR_CONFIG)
    project = discover(workspace / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    overrides = project.links_overrides(AARCH64).tables
    assert set(overrides) == {"z", "ssl"}
    assert dict(overrides["z"]) == {"rustc-link-lib": ["z"], "root": "/near/z", "include": "/near/z/include"}
    assert dict(overrides["ssl"]) == {"rustc-link-lib": ["ssl"]}
    assert project.links_overrides("x86_64-unknown-linux-gnu").tables == {"z": {"rustc-link-lib": ["z-x86"]}}
    assert project.links_overrides("i686-unknown-linux-gnu").tables == {}


def test_links_overrides_from_the_far_file_only_seen_from_its_directory(tmp_path: Path, workspace: Path) -> None:
    _write(workspace / "app" / ".cargo" / "config.toml", NEAR_CONFIG)
    # From the workspace root, app/.cargo is not one of Cargo's config files.
    project = discover(workspace, parse_cargo_args([]), environ=_environ(tmp_path))
    assert not project.links_overrides(AARCH64)


def test_links_override_arrays_are_joined_like_cargo(tmp_path: Path, workspace: Path) -> None:
    _write(workspace / ".cargo" / "config.toml", f'[target.{AARCH64}.z]\nrustc-link-search = ["/far/lib"]\n')
    _write(workspace / "app" / ".cargo" / "config.toml", f'[target.{AARCH64}.z]\nrustc-link-search = ["/near/lib"]\n')
    project = discover(workspace / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    search = project.links_overrides(AARCH64).tables["z"]["rustc-link-search"]
    assert isinstance(search, list)
    assert sorted(search) == ["/far/lib", "/near/lib"]


# --- fingerprint ----------------------------------------------------------------------------------------------------


def test_fingerprint_follows_lock_manifests_and_config(tmp_path: Path, workspace: Path) -> None:
    _write(workspace / ".cargo" / "config.toml", "[net]\nretry = 3\n")
    project = discover(workspace / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    first = project.fingerprint("image:1")
    assert project.fingerprint("image:1") == first
    assert len(first) == 64

    # Sources and build output do not count.
    _write(workspace / "app" / "src" / "lib.rs", "pub fn changed() {}\n")
    _write(workspace / "target" / "debug" / "junk", "x")
    assert project.fingerprint("image:1") == first

    # The extra parts do.
    assert project.fingerprint("image:2") != first
    assert project.fingerprint("image:1", "m/Cargo.toml") != first

    def changes(path: Path) -> bool:
        original = path.read_text(encoding="utf-8")
        path.write_text(original + "\n# edited\n", encoding="utf-8")
        changed = project.fingerprint("image:1") != first
        path.write_text(original, encoding="utf-8")
        assert project.fingerprint("image:1") == first
        return changed

    assert changes(workspace / "Cargo.lock")
    assert changes(workspace / "Cargo.toml")
    assert changes(workspace / "app" / "Cargo.toml")
    assert changes(tmp_path / "outer" / "Cargo.toml")
    assert changes(workspace / ".cargo" / "config.toml")


def test_fingerprint_notices_a_lock_file_appearing(tmp_path: Path, workspace: Path) -> None:
    (workspace / "Cargo.lock").unlink()
    project = discover(workspace, parse_cargo_args([]), environ=_environ(tmp_path))
    before = project.fingerprint()
    _write(workspace / "Cargo.lock", "version = 3\n")
    assert project.fingerprint() != before


# --- build commands -------------------------------------------------------------------------------------------------


def test_legacy_build_command_is_refused(tmp_path: Path) -> None:
    fixture = FIXTURES / "legacy-build-command"
    with pytest.raises(ProjectError) as caught:
        discover(fixture, parse_cargo_args([]), environ=_environ(tmp_path))
    error = caught.value
    assert "\n" not in str(error)
    assert str(fixture / "Cargo.toml") in error.message
    assert 'build = "make"' in error.message
    assert "build script" in error.message
    assert error.hint is not None
    assert "build.rs" in error.hint
    assert 'Command::new("make")' in error.hint


@pytest.mark.parametrize("build", ["build.rs", "build/main.rs", "custom_build"])
def test_build_scripts_are_accepted(tmp_path: Path, build: str) -> None:
    _package(tmp_path / "p", "p", f'build = "{build}"\n')
    _write(tmp_path / "p" / build, "fn main() {}\n")
    assert (
        discover(tmp_path / "p", parse_cargo_args([]), environ=_environ(tmp_path)).workspace_root
        == (tmp_path / "p").resolve()
    )


def test_build_false_is_accepted(tmp_path: Path) -> None:
    _package(tmp_path / "p", "p", "build = false\n")
    discover(tmp_path / "p", parse_cargo_args([]), environ=_environ(tmp_path))


@pytest.mark.parametrize("build", ["", "   "])
def test_blank_build_value_is_an_error_not_a_crash(tmp_path: Path, build: str) -> None:
    _package(tmp_path / "p", "p", f'build = "{build}"\n')
    # A crash (an IndexError on the empty command) would escape pytest.raises, and no error would fail it.
    with pytest.raises(ProjectError) as caught:
        discover(tmp_path / "p", parse_cargo_args([]), environ=_environ(tmp_path))
    assert f'`build = "{build}"` is a build command' in caught.value.message


# --- mounts ---------------------------------------------------------------------------------------------------------


def _project(**changes: object) -> Project:
    values: dict[str, object] = {
        "cwd": Path("/w/app"),
        "manifest": Path("/w/app/Cargo.toml"),
        "workspace_root": Path("/w"),
        "target_dir": Path("/w/target"),
        "cargo_home": Path("/h/.cargo"),
        "outside_paths": (),
        "cargo_config_files": (),
        "manifests": (Path("/w/Cargo.toml"),),
        "checkout": Path("/w"),
    }
    values.update(changes)
    return Project(**values)  # type: ignore[arg-type]


def mounts_for(project: Project, extra: list[Path] | None = None) -> tuple[Mount, ...]:
    asked = [(path, "a test") for path in extra or []]
    return plan.mounts_for(project, asked, engine_socket=Path("/var/run/docker.sock"))


def test_mounts_fold_nested_directories() -> None:
    project = _project(
        outside_paths=(Path("/o"), Path("/o/sub"), Path("/elsewhere")),
        cargo_config_files=(Path("/w/app/.cargo/config.toml"), Path("/h/.cargo/config.toml")),
    )
    mounts = mounts_for(project, [Path("/ro"), Path("/ro/nested"), Path("/w/app/vendor")])
    assert set(mounts) == {
        Mount(path=Path("/w")),
        Mount(path=Path("/h/.cargo")),
        Mount(path=Path("/o"), read_only=True),
        Mount(path=Path("/elsewhere"), read_only=True),
        Mount(path=Path("/ro"), read_only=True),
    }
    assert len(mounts) == len({mount.path for mount in mounts})


def test_writable_child_of_a_read_only_parent_is_kept() -> None:
    project = _project(target_dir=Path("/data/target"))
    mounts = mounts_for(project, [Path("/data")])
    assert Mount(path=Path("/data"), read_only=True) in mounts
    assert Mount(path=Path("/data/target")) in mounts
    # The parent comes first, so the engine mounts the child on top of it.
    paths = [mount.path for mount in mounts]
    assert paths.index(Path("/data")) < paths.index(Path("/data/target"))


def test_writable_wins_over_read_only_of_the_same_path() -> None:
    project = _project(cargo_config_files=(Path("/h/.cargo/config.toml"),))
    mounts = mounts_for(project, [Path("/w")])
    assert [mount for mount in mounts if mount.path == Path("/w")] == [Mount(path=Path("/w"))]
    assert [mount for mount in mounts if mount.path == Path("/h/.cargo")] == [Mount(path=Path("/h/.cargo"))]


def test_working_directory_outside_every_mount_is_mounted_read_only() -> None:
    mounts = mounts_for(_project(cwd=Path("/somewhere/else")))
    assert Mount(path=Path("/somewhere/else"), read_only=True) in mounts
    inside = mounts_for(_project(cwd=Path("/w/app/src")))
    assert all(mount.path != Path("/w/app/src") for mount in inside)


def test_mounts_for_a_discovered_project(tmp_path: Path, workspace: Path) -> None:
    project = discover(workspace / "app", parse_cargo_args([]), environ=_environ(tmp_path))
    mounts = mounts_for(project)
    paths = {mount.path for mount in mounts}
    assert workspace.resolve() in paths
    assert tmp_path / "home" / ".cargo" in paths
    assert tmp_path.resolve() / "outer" in paths
    assert workspace.resolve() / "target" not in paths  # inside the workspace
    # The workspace and CARGO_HOME are writable; a path dependency outside the workspace is not.
    writable = {mount.path for mount in mounts if not mount.read_only}
    assert writable == {workspace.resolve(), tmp_path / "home" / ".cargo"}
    assert tmp_path.resolve() / "outer" in paths - writable


def test_a_directory_whose_name_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    """The engine's API is JSON: a mount, a label or a working directory of such a name would name another."""
    root = Path(os.fsdecode(os.fsencode(tmp_path) + b"/proj-\xff"))
    (root / "src").mkdir(parents=True)
    (root / "Cargo.toml").write_text('[package]\nname = "app"\nversion = "0.1.0"\n', encoding="utf-8")
    with pytest.raises(ProjectError, match=r"proj-\\xff` has a name that is not UTF-8"):
        discover(root, CargoArgs(), environ={"HOME": str(tmp_path)})
