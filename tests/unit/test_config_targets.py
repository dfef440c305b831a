"""toolchains.yaml, the image recipes and a project's own configuration: loading, validation and precedence."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from xpcargo import resources
from xpcargo.config import targets as config
from xpcargo.config.links import LinksOverrides
from xpcargo.config.schema import read_toml
from xpcargo.config.targets import load_project_config, load_toolchains, resolve_target
from xpcargo.context import Settings
from xpcargo.errors import ConfigError, UnknownTargetError
from xpcargo.image.recipe import load_recipe

X86_64 = "x86_64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"
AARCH64 = "aarch64-unknown-linux-gnu"
# A target that toolchains.yaml does not ship (Debian builds no Rust std for it).
LOONG = "loongarch64-unknown-linux-gnu"
WASM32 = "wasm32-wasip1"
AARCH64_IMAGE_VAR = "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_IMAGE"


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "recipe": "trixie-rust",
        "debian-arch": "arm64",
        "packages": ["gcc-aarch64-linux-gnu", "qemu-user"],
        "cc": "aarch64-linux-gnu-gcc",
        "cxx": "aarch64-linux-gnu-g++",
        "ar": "aarch64-linux-gnu-ar",
        "linker": "aarch64-linux-gnu-gcc",
        "runner": ["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu"],
        "pkg-config-libdir": ["/usr/lib/aarch64-linux-gnu/pkgconfig"],
        "env": {},
    }
    for key, value in changes.items():
        name = key.replace("_", "-")
        if value is None:
            del entry[name]
        else:
            entry[name] = value
    return entry


def _write_toolchains(tmp_path: Path, targets: dict[str, Any], *, version: object = 1) -> Path:
    path = tmp_path / "toolchains.yaml"
    path.write_text(yaml.safe_dump({"version": version, "targets": targets}, sort_keys=False), encoding="utf-8")
    return path


def _config_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_toolchains(path)
    error = caught.value
    assert "\n" not in str(error), f"error is not one line: {error!s}"
    assert str(path) in str(error)
    return error


# --- The shipped files ----------------------------------------------------------------------------------------------


def test_shipped_toolchains_load_with_every_target(shipped: config.Toolchains) -> None:
    assert {X86_64, I686, AARCH64} <= set(shipped.targets)
    for triple, spec in shipped.targets.items():
        assert spec.triple == triple
        # Every target is on the newest Rust: a std Debian packages only for its own rustc (armel's, wasm32's) is
        # built from source (a project's rust-toolchain.toml can still ask for that rustc: image.toolchain).
        assert spec.recipe == "trixie-rust"
        for tool in (spec.cc, spec.cxx, spec.ar, spec.linker):
            assert tool
        if spec.emulator is not None and spec.emulator.startswith("qemu-") and spec.sysroot is not None:
            # The emulator's -L and QEMU_LD_PREFIX (from `sysroot`) must name the same directory (after a CPU model,
            # where one is named: armv5te's `-cpu arm926`).
            assert spec.runner[-2:] == ("-L", spec.sysroot), triple
            assert spec.runner[1:-2] in ((), ("-cpu", "arm926")), triple
            assert spec.cc == f"{Path(spec.sysroot or '').name}-gcc", triple
        if spec.std_from_source and "-linux-gnu" not in triple:
            # Static programs (musl): the emulator loads no library, so no -L and no sysroot (a CPU model may be named:
            # ARMv6's `-cpu arm1176`).
            assert "-L" not in spec.runner, triple
            assert spec.sysroot is None, triple


def test_every_shipped_recipe_pins_the_std_of_its_targets(shipped: config.Toolchains) -> None:
    for spec in shipped.targets.values():
        recipe = load_recipe(spec.recipe, directory=resources.images_dir())
        # An arch-independent std comes through apt, pinned in the target's packages to the recipe's Rust.
        pinned = any(
            name.startswith(f"{recipe.rust.std_package}-") and name.endswith(f"={recipe.rust.version}")
            for name in spec.packages
        )
        # A std built from source comes from the recipe's sources.
        assert (
            spec.debian_arch in ("amd64", *recipe.rust.std_sha256)
            or (spec.debian_arch == "all" and pinned)
            or (spec.std_from_source and recipe.rust.source is not None)
        ), spec.triple


def test_the_wasm_target_runs_under_nodes_wasi_with_xpcargos_runner(shipped: config.Toolchains) -> None:
    wasm = shipped.target(WASM32)
    assert wasm.debian_arch == "all"
    assert wasm.runner[0] == "node"
    # The runner script is a file of images/share/, which a target with a runner gets mounted.
    script = Path(wasm.runner[-1])
    assert str(script.parent) == "/usr/local/share/xpcargo"
    assert (resources.share_dir() / script.name).is_file()
    # clang compiles for wasm only when told; a C build script gets the target with the compiler.
    assert wasm.cc.split()[1:] == ["--target=wasm32-wasip1"]
    assert wasm.sysroot is None


def test_shipped_runners(shipped: config.Toolchains) -> None:
    aarch64 = shipped.target(AARCH64)
    assert aarch64.runner[0] == "qemu-aarch64"
    assert aarch64.emulator == "qemu-aarch64"
    assert aarch64.debian_arch == "arm64"
    assert shipped.target(I686).emulator == "qemu-i386"
    assert shipped.target(X86_64).runner == ()
    assert shipped.target(X86_64).emulator is None


def test_shipped_recipe_pins_std_for_foreign_arches() -> None:
    recipe = load_recipe("trixie-rust", directory=resources.images_dir())
    assert recipe.name == "trixie-rust"
    assert recipe.suite == "trixie"
    assert not recipe.mirror.endswith("/")
    assert recipe.rust.version
    assert recipe.rust.std_package == "libstd-rust-web-dev"
    for arch in ("i386", "arm64"):
        digest = recipe.rust.std_sha256[arch]
        assert len(digest) == 64
        assert set(digest) <= set("0123456789abcdef")


def test_every_shipped_target_names_an_existing_recipe_with_its_std(shipped: config.Toolchains) -> None:
    for spec in shipped.targets.values():
        recipe = load_recipe(spec.recipe, directory=resources.images_dir())
        assert spec.debian_arch in ("amd64", "all", *recipe.rust.std_sha256) or (
            spec.std_from_source and recipe.rust.source is not None
        ), spec.triple


def test_xpcargo_toolchains_variable_points_at_another_table(tmp_path: Path) -> None:
    path = _write_toolchains(tmp_path, {AARCH64: _entry(cc="my-cc")})
    toolchains = load_toolchains(Settings.from_environment({"XPCARGO_TOOLCHAINS": str(path)}).toolchains_file)
    assert toolchains.source == path
    assert set(toolchains.targets) == {AARCH64}
    assert toolchains.target(AARCH64).cc == "my-cc"


def test_a_minimal_valid_table_loads(tmp_path: Path) -> None:
    path = _write_toolchains(tmp_path, {AARCH64: _entry(packages=None, env=None, pkg_config_libdir=None)})
    spec = load_toolchains(path).target(AARCH64)
    assert spec.packages == ()
    assert spec.pkg_config_libdir == ()
    assert dict(spec.env) == {}
    assert spec.runner == ("qemu-aarch64", "-L", "/usr/aarch64-linux-gnu")


# --- Malformed toolchains.yaml --------------------------------------------------------------------------------------


def test_invalid_yaml_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "toolchains.yaml"
    path.write_text("version: 1\ntargets:\n  x86_64-unknown-linux-gnu: [gcc,\n    cc: gcc\n", encoding="utf-8")
    error = _config_error(path)
    assert "not valid YAML" in str(error)
    assert "line " in str(error)


def test_invalid_yaml_reports_the_line_of_the_problem(tmp_path: Path) -> None:
    path = tmp_path / "toolchains.yaml"
    path.write_text("version: 1\ntargets:\n\tx: 1\n", encoding="utf-8")
    error = _config_error(path)
    assert "line 3" in str(error)


@pytest.mark.parametrize(
    ("changes", "field", "problem"),
    [
        pytest.param({"cc": None}, "cc", "is missing", id="missing-cc"),
        pytest.param({"recipe": None}, "recipe", "is missing", id="missing-recipe"),
        pytest.param({"cc": ""}, "cc", "non-empty string", id="empty-cc"),
        pytest.param({"linker": ["gcc"]}, "linker", "string", id="linker-a-list"),
        pytest.param({"runner": "qemu-aarch64 -L /usr/aarch64-linux-gnu"}, "runner", "list", id="runner-a-string"),
        pytest.param({"runner": ["qemu-aarch64 -L"]}, "runner", "white space", id="runner-word-with-space"),
        pytest.param({"packages": [1, 2]}, "packages", "list of non-empty strings", id="packages-not-strings"),
        pytest.param({"env": ["A=1"]}, "env", "table", id="env-a-list"),
        pytest.param({"env": {"A": {"b": 1}}}, "env.A", "expected a string", id="env-value-a-table"),
        pytest.param({"env": {"NOT-A-NAME": "1"}}, "env.NOT-A-NAME", "environment variable", id="env-bad-name"),
        pytest.param({"linkr": "x"}, "linkr", "unknown field (did you mean `linker`?)", id="unknown-field"),
        pytest.param({"pkg_config_lib": ["/x"]}, "pkg-config-lib", "did you mean `pkg-config-libdir`", id="unknown-2"),
    ],
)
def test_malformed_target_names_file_entry_and_field(
    tmp_path: Path, changes: dict[str, Any], field: str, problem: str
) -> None:
    path = _write_toolchains(tmp_path, {X86_64: _entry(), AARCH64: _entry(**changes)})
    error = _config_error(path)
    assert f"targets.{AARCH64}.{field}:" in str(error)
    assert problem in str(error)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param(
            yaml.safe_dump({"version": 1, "targets": {AARCH64: _entry(linker=None, linkr="gcc")}}),
            f"targets.{AARCH64}.linkr: unknown field (did you mean `linker`?)",
            id="linkr",
        ),
        pytest.param("version: 1\ntarget: {}\n", "target: unknown field (did you mean `targets`?)", id="target"),
    ],
)
def test_misspelt_required_field_is_reported_with_a_suggestion(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "toolchains.yaml"
    path.write_text(text, encoding="utf-8")
    error = _config_error(path)
    assert fragment in str(error)


@pytest.mark.parametrize("triple", ["aarch64_linux", "Aarch64-unknown-linux-gnu", "a-b-c-d-e", "x86 64-linux"])
def test_bad_triple_is_named(tmp_path: Path, triple: str) -> None:
    path = _write_toolchains(tmp_path, {triple: _entry()})
    error = _config_error(path)
    assert f"targets.{triple}:" in str(error)
    assert "not a target triple" in str(error)


@pytest.mark.parametrize("version", [2, "1", None, 0])
def test_wrong_version(tmp_path: Path, version: object) -> None:
    path = _write_toolchains(tmp_path, {AARCH64: _entry()}, version=version)
    error = _config_error(path)
    assert "version:" in str(error)
    assert "unsupported version" in str(error)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("", "top level: expected a table", id="empty-file"),
        pytest.param("- a\n- b\n", "top level: expected a table, got a list", id="top-level-list"),
        pytest.param("targets: {}\n", "version: is missing", id="no-version"),
        pytest.param("version: 1\n", "targets: is missing", id="no-targets"),
        pytest.param("version: 1\ntargets:\n", "targets: expected a table, got nothing", id="null-targets"),
        pytest.param("version: 1\ntargets: {}\n", "targets: lists no target", id="no-target"),
        pytest.param(f"version: 1\ntargets:\n  {AARCH64}:\n", f"targets.{AARCH64}: expected a table", id="null-entry"),
        pytest.param(
            "version: 1\ntargets: {}\ntargest: {}\n", "targest: unknown field (did you mean `targets`?)", id="unknown"
        ),
    ],
)
def test_malformed_structure(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "toolchains.yaml"
    path.write_text(text, encoding="utf-8")
    error = _config_error(path)
    assert fragment in str(error)


def test_unreadable_toolchains_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="cannot be read"):
        load_toolchains(missing)


# --- Recipes --------------------------------------------------------------------------------------------------------


def _write_recipe(directory: Path, name: str, data: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _recipe_data(**rust_std: Any) -> dict[str, Any]:
    std = {"package": "libstd-rust-dev", "pool": "/pool/main/r/rustc/", "sha256": {"arm64": "a" * 64}, **rust_std}
    return {
        "suite": "trixie",
        "mirror": "http://mirror.example/debian/",
        "packages": ["make"],
        "rust": {"version": "1.0-1", "packages": ["rustc"], "std": std},
    }


def test_recipe_from_another_directory_is_normalised(tmp_path: Path) -> None:
    _write_recipe(tmp_path, "mine", _recipe_data())
    recipe = load_recipe("mine", directory=tmp_path)
    assert recipe.mirror == "http://mirror.example/debian"
    assert recipe.rust.std_pool == "pool/main/r/rustc"
    assert recipe.dpkg_exclude == ()


def test_recipe_with_a_bad_hash_names_the_arch(tmp_path: Path) -> None:
    path = _write_recipe(tmp_path, "mine", _recipe_data(sha256={"arm64": "ABC"}))
    with pytest.raises(ConfigError) as caught:
        load_recipe("mine", directory=tmp_path)
    assert str(path) in str(caught.value)
    assert "rust.std.sha256.arm64" in str(caught.value)


def test_recipe_with_an_unknown_field(tmp_path: Path) -> None:
    data = _recipe_data()
    data["rust"]["verison"] = "x"
    _write_recipe(tmp_path, "mine", data)
    with pytest.raises(ConfigError, match=r"rust\.verison: unknown field \(did you mean `version`\?\)"):
        load_recipe("mine", directory=tmp_path)


def test_unknown_recipe_lists_the_known_ones(tmp_path: Path) -> None:
    _write_recipe(tmp_path, "mine", _recipe_data())
    with pytest.raises(ConfigError) as caught:
        load_recipe("theirs", directory=tmp_path, referenced_from=f"target {AARCH64}")
    assert "theirs" in str(caught.value)
    assert AARCH64 in str(caught.value)
    assert caught.value.hint is not None
    assert "mine" in caught.value.hint


# --- The project's configuration ------------------------------------------------------------------------------------


def _workspace(tmp_path: Path, *, xpcargo_toml: str | None = None, cargo_toml: str | None = None) -> Path:
    root = tmp_path / "ws"
    root.mkdir()
    manifest = cargo_toml if cargo_toml is not None else '[package]\nname = "app"\nversion = "0.1.0"\n'
    (root / "Cargo.toml").write_text(textwrap.dedent(manifest), encoding="utf-8")
    if xpcargo_toml is not None:
        (root / "xpcargo.toml").write_text(textwrap.dedent(xpcargo_toml), encoding="utf-8")
    return root


FULL_PROJECT = f"""\
    [build]
    env = {{ RUST_LOG = "debug", SHARED = "build" }}
    passthrough = ["MY_TOKEN"]
    mounts = ["/opt/sdk"]
    extra-packages = ["libssl-dev"]

    [target.{AARCH64}]
    cc = "clang"
    extra-packages = ["zlib1g-dev:arm64"]
    image = "my/image:1"
    mounts = ["/opt/arm-sdk"]
    env = {{ SHARED = "target", LEVEL = 3, FAST = true }}

    [target.{AARCH64}.links.z]
    rustc-link-lib = ["z"]
    rustc-link-search = ["native=/opt/z/lib"]
    root = "/opt/z"
"""


def test_project_config_is_read_from_xpcargo_toml(tmp_path: Path) -> None:
    root = _workspace(tmp_path, xpcargo_toml=FULL_PROJECT)
    project = load_project_config(root)
    assert project.source == root / "xpcargo.toml"
    build = project.build.values
    assert dict(build["env"]) == {"RUST_LOG": "debug", "SHARED": "build"}  # type: ignore[call-overload]
    assert build["passthrough"] == ("MY_TOKEN",)
    assert build["mounts"] == ("/opt/sdk",)
    own = project.targets[AARCH64].values
    assert own["cc"] == "clang"
    assert own["image"] == "my/image:1"
    assert dict(own["env"]) == {"SHARED": "target", "LEVEL": "3", "FAST": "true"}  # type: ignore[call-overload]
    links = own["links"]
    assert isinstance(links, LinksOverrides)
    assert dict(links.tables["z"]) == {
        "rustc-link-lib": ["z"],
        "rustc-link-search": ["native=/opt/z/lib"],
        "root": "/opt/z",
    }


def test_resolve_target_applies_project_over_shipped(tmp_path: Path, shipped: config.Toolchains) -> None:
    project = load_project_config(_workspace(tmp_path, xpcargo_toml=FULL_PROJECT))
    spec = resolve_target(AARCH64, shipped, project, environ={})
    base = shipped.target(AARCH64)
    assert spec.cc == "clang"
    assert (spec.cxx, spec.ar, spec.linker, spec.runner) == (base.cxx, base.ar, base.linker, base.runner)
    assert spec.packages == base.packages
    # Per-target env beats [build]; both add to the shipped env.
    assert dict(spec.env) == {**base.env, "RUST_LOG": "debug", "SHARED": "target", "LEVEL": "3", "FAST": "true"}
    # extra-packages, passthrough and mounts append: [build] first, then the target's own.
    assert spec.extra_packages == ("libssl-dev", "zlib1g-dev:arm64")
    assert spec.passthrough == ("MY_TOKEN",)
    assert spec.mounts == ("/opt/sdk", "/opt/arm-sdk")
    assert spec.image == "my/image:1"
    assert set(spec.links) == {"z"}


def test_build_section_applies_to_every_target(tmp_path: Path, shipped: config.Toolchains) -> None:
    project = load_project_config(_workspace(tmp_path, xpcargo_toml=FULL_PROJECT))
    spec = resolve_target(X86_64, shipped, project, environ={})
    assert spec.cc == "gcc"
    assert dict(spec.env) == {"RUST_LOG": "debug", "SHARED": "build"}
    assert spec.extra_packages == ("libssl-dev",)
    assert spec.mounts == ("/opt/sdk",)
    assert spec.image is None
    assert not spec.links


def test_environment_image_wins(tmp_path: Path, shipped: config.Toolchains) -> None:
    project = load_project_config(_workspace(tmp_path, xpcargo_toml=FULL_PROJECT))
    spec = resolve_target(AARCH64, shipped, project, environ={AARCH64_IMAGE_VAR: "env/image:2"})
    assert spec.image == "env/image:2"
    # The variable of another target does not leak, and an empty one does not count.
    other = resolve_target(AARCH64, shipped, project, environ={"XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_IMAGE": "x"})
    assert other.image == "my/image:1"
    empty = resolve_target(AARCH64, shipped, project, environ={AARCH64_IMAGE_VAR: ""})
    assert empty.image == "my/image:1"


def test_environment_image_without_project(shipped: config.Toolchains) -> None:
    project = config.ProjectConfig(source=None)
    spec = resolve_target(X86_64, shipped, project, environ={"XPCARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_IMAGE": "i:1"})
    assert spec.image == "i:1"
    assert resolve_target(X86_64, shipped, project, environ={}) == shipped.target(X86_64)


def test_workspace_metadata_is_the_fallback(tmp_path: Path, shipped: config.Toolchains) -> None:
    root = _workspace(
        tmp_path,
        cargo_toml=f"""\
            [workspace]
            members = []

            [workspace.metadata.xpcargo.build]
            extra-packages = ["libfoo-dev"]

            [workspace.metadata.xpcargo.target.{AARCH64}]
            cxx = "clang++"
            """,
    )
    project = load_project_config(root)
    assert project.source == root / "Cargo.toml"
    spec = resolve_target(AARCH64, shipped, project, environ={})
    assert spec.cxx == "clang++"
    assert spec.extra_packages == ("libfoo-dev",)


def test_package_metadata_is_read_too(tmp_path: Path, shipped: config.Toolchains) -> None:
    root = _workspace(
        tmp_path,
        cargo_toml="""\
            [package]
            name = "app"
            version = "0.1.0"

            [package.metadata.xpcargo.build]
            passthrough = ["FOO"]
            """,
    )
    assert resolve_target(X86_64, shipped, load_project_config(root), environ={}).passthrough == ("FOO",)


def test_xpcargo_toml_wins_over_metadata(tmp_path: Path) -> None:
    root = _workspace(
        tmp_path,
        xpcargo_toml='[build]\nextra-packages = ["from-file"]\n',
        cargo_toml='[workspace]\n[workspace.metadata.xpcargo.build]\nextra-packages = ["from-metadata"]\n',
    )
    project = load_project_config(root)
    assert project.source == root / "xpcargo.toml"
    assert project.build.values["extra_packages"] == ("from-file",)


def test_no_project_config(tmp_path: Path) -> None:
    project = load_project_config(_workspace(tmp_path))
    assert project.source is None
    assert dict(project.targets) == {}
    # A directory without any Cargo.toml is no error either.
    assert load_project_config(tmp_path / "nowhere").source is None


@pytest.mark.parametrize(
    ("text", "fields"),
    [
        pytest.param('[build]\nmounts = ["relative/dir"]\n', ["build.mounts", "relative/dir"], id="mount-relative"),
        pytest.param(
            f'[target.{AARCH64}]\nmounts = ["rel"]\n', [f"target.{AARCH64}.mounts", "absolute"], id="target-mount"
        ),
        pytest.param(
            f"[target.{AARCH64}.env]\nFOO = {{ a = 1 }}\n", [f"target.{AARCH64}.env.FOO", "string"], id="env-table"
        ),
        pytest.param("[build]\nenv = [1]\n", ["build.env", "table"], id="env-list"),
        pytest.param(
            '[build]\nextra-package = ["x"]\n', ["build.extra-package", "did you mean `extra-packages`"], id="unknown"
        ),
        pytest.param('[build]\nimage = "x"\n', ["build.image", "unknown field"], id="image-in-build"),
        pytest.param('[build]\ncc = "clang"\n', ["build.cc", "unknown field"], id="override-in-build"),
        pytest.param('[biuld]\nmounts = ["/x"]\n', ["biuld", "did you mean `build`"], id="unknown-section"),
        pytest.param('[build]\npassthrough = ["MY-VAR"]\n', ["build.passthrough", "MY-VAR"], id="passthrough"),
        pytest.param('[target.not_a_triple]\ncc = "x"\n', ["target.not_a_triple", "not a target triple"], id="triple"),
        pytest.param(f'[target.{AARCH64}]\ncc = ""\n', [f"target.{AARCH64}.cc", "non-empty"], id="empty-cc"),
        pytest.param(
            f'[target.{AARCH64}]\nrunner = ["qemu -L"]\n', [f"target.{AARCH64}.runner", "white space"], id="runner"
        ),
        pytest.param(
            f'[target.{AARCH64}.links]\nz = "x"\n', [f"target.{AARCH64}.links.z", "expected a table"], id="links"
        ),
        pytest.param("[build\n", ["not valid TOML"], id="invalid-toml"),
        pytest.param('[build]\nenv = { A = "1", A = "2" }\n', ["not valid TOML"], id="duplicate-key"),
    ],
)
def test_malformed_project_config(tmp_path: Path, text: str, fields: list[str]) -> None:
    root = _workspace(tmp_path, xpcargo_toml=text)
    with pytest.raises(ConfigError) as caught:
        load_project_config(root)
    message = str(caught.value)
    assert "\n" not in message
    assert str(root / "xpcargo.toml") in message
    for field in fields:
        assert field in message


def test_malformed_metadata_names_its_table(tmp_path: Path) -> None:
    root = _workspace(tmp_path, cargo_toml='[workspace]\n[workspace.metadata.xpcargo.build]\nmounts = ["rel"]\n')
    with pytest.raises(ConfigError) as caught:
        load_project_config(root)
    assert str(root / "Cargo.toml") in str(caught.value)
    assert "workspace.metadata.xpcargo.build.mounts" in str(caught.value)


NEW_TARGET = f"""\
    [target.{LOONG}]
    recipe = "trixie-rust"
    debian-arch = "loong64"
    packages = ["gcc-loongarch64-linux-gnu", "qemu-user"]
    cc = "loongarch64-linux-gnu-gcc"
    cxx = "loongarch64-linux-gnu-g++"
    ar = "loongarch64-linux-gnu-ar"
    linker = "loongarch64-linux-gnu-gcc"
    runner = ["qemu-loongarch64", "-L", "/usr/loongarch64-linux-gnu"]
    extra-packages = ["libz-dev"]
    env = {{ A = "1" }}
"""


def test_new_target_from_the_project(tmp_path: Path, shipped: config.Toolchains) -> None:
    project = load_project_config(_workspace(tmp_path, xpcargo_toml=NEW_TARGET))
    spec = resolve_target(LOONG, shipped, project, environ={})
    assert spec.triple == LOONG
    assert spec.recipe == "trixie-rust"
    assert spec.debian_arch == "loong64"
    assert spec.packages == ("gcc-loongarch64-linux-gnu", "qemu-user")
    assert (spec.cc, spec.cxx, spec.ar, spec.linker) == (
        "loongarch64-linux-gnu-gcc",
        "loongarch64-linux-gnu-g++",
        "loongarch64-linux-gnu-ar",
        "loongarch64-linux-gnu-gcc",
    )
    assert spec.emulator == "qemu-loongarch64"
    assert spec.pkg_config_libdir == ()
    assert spec.extra_packages == ("libz-dev",)
    assert dict(spec.env) == {"A": "1"}
    # The shipped targets are still there.
    assert resolve_target(AARCH64, shipped, project, environ={}) == shipped.target(AARCH64)


@pytest.mark.parametrize("missing", ["recipe", "debian-arch", "cc", "cxx", "ar", "linker"])
def test_incomplete_new_target_names_the_missing_field(
    tmp_path: Path, shipped: config.Toolchains, missing: str
) -> None:
    text = "\n".join(line for line in NEW_TARGET.splitlines() if not line.strip().startswith(f"{missing} ="))
    root = _workspace(tmp_path, xpcargo_toml=text + "\n")
    project = load_project_config(root)
    with pytest.raises(ConfigError) as caught:
        resolve_target(LOONG, shipped, project, environ={})
    message = str(caught.value)
    assert "\n" not in message
    assert str(root / "xpcargo.toml") in message
    assert f"target.{LOONG}.{missing}: is missing" in message


def test_incomplete_new_target_in_metadata_names_the_full_path(tmp_path: Path, shipped: config.Toolchains) -> None:
    root = _workspace(tmp_path, cargo_toml=f'[workspace]\n[workspace.metadata.xpcargo.target.{LOONG}]\nrecipe = "x"\n')
    with pytest.raises(ConfigError) as caught:
        resolve_target(LOONG, shipped, load_project_config(root), environ={})
    assert f"workspace.metadata.xpcargo.target.{LOONG}.debian-arch" in str(caught.value)


def test_unknown_triple_suggests_the_closest(shipped: config.Toolchains) -> None:
    project = config.ProjectConfig(source=None)
    with pytest.raises(UnknownTargetError) as caught:
        resolve_target("aarch64-unknown-linux-gnux", shipped, project, environ={})
    error = caught.value
    assert "aarch64-unknown-linux-gnux" in error.message
    assert error.hint is not None
    assert "did you mean `aarch64-unknown-linux-gnu`?" in error.hint
    for triple in (X86_64, I686, AARCH64):
        assert triple in error.hint
    assert "\n" not in f"{error.message} {error.hint}"


def test_unknown_triple_without_a_close_match(shipped: config.Toolchains) -> None:
    with pytest.raises(UnknownTargetError) as caught:
        shipped.target("sparc64-sun-solaris")
    assert caught.value.hint is not None
    assert "did you mean" not in caught.value.hint
    assert AARCH64 in caught.value.hint


def test_unknown_triple_suggests_project_targets(tmp_path: Path, shipped: config.Toolchains) -> None:
    project = load_project_config(_workspace(tmp_path, xpcargo_toml=NEW_TARGET))
    with pytest.raises(UnknownTargetError) as caught:
        resolve_target("loongarch64-unknown-linux-gnux", shipped, project, environ={})
    assert caught.value.hint is not None
    assert f"did you mean `{LOONG}`?" in caught.value.hint


# --- Settings declared once; the environment layer --------------------------------------------------------------


_ANNOTATION_OF_KIND = {
    config.Kind.NAME: ("str", "str | None"),
    config.Kind.WORDS: ("tuple[str, ...]",),
    config.Kind.ENV: ("Mapping[str, str]",),
    config.Kind.LINKS: ("LinksOverrides",),
}


def test_every_setting_is_a_field_of_its_kind() -> None:
    """The declaration is the only list of settings: each field's annotation agrees with the kind it reads."""
    annotations = {field.name: field.type for field in dataclasses.fields(config.TargetSpec)}
    assert set(config.SETTINGS) == set(annotations) - {"triple"}
    for name, setting in config.SETTINGS.items():
        assert annotations[name] in _ANNOTATION_OF_KIND[setting.kind], name
        optional = annotations[name] == "str | None"
        assert optional == (setting.kind is config.Kind.NAME and not setting.required), name


@pytest.mark.parametrize(
    ("variable", "value", "field", "expected"),
    [
        ("XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_CC", "clang", "cc", "clang"),
        (
            "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER",
            "qemu-aarch64 -cpu max",
            "runner",
            ("qemu-aarch64", "-cpu", "max"),
        ),
        (
            "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES",
            "libssl-dev:arm64 zlib1g-dev:arm64",
            "extra_packages",
            ("libssl-dev:arm64", "zlib1g-dev:arm64"),
        ),
        ("XPCARGO_BUILD_EXTRA_PACKAGES", "protobuf-compiler", "extra_packages", ("protobuf-compiler",)),
        ("XPCARGO_BUILD_PASSTHROUGH", "A B", "passthrough", ("A", "B")),
    ],
)
def test_every_field_has_an_environment_form(
    shipped: config.Toolchains, variable: str, value: str, field: str, expected: object
) -> None:
    spec = resolve_target(AARCH64, shipped, config.ProjectConfig(source=None), environ={variable: value})
    assert getattr(spec, field) == expected


def test_environment_env_table_and_links(shipped: config.Toolchains) -> None:
    environ = {
        "XPCARGO_BUILD_ENV": "A=1 B=2",
        "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_ENV": "B=3",
        "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKS": '{ z = { rustc-link-lib = ["z"] } }',
    }
    spec = resolve_target(AARCH64, shipped, config.ProjectConfig(source=None), environ=environ)
    assert dict(spec.env) == {"A": "1", "B": "3"}
    assert dict(spec.links.tables["z"]) == {"rustc-link-lib": ["z"]}


def test_precedence_is_one_fold(tmp_path: Path, shipped: config.Toolchains) -> None:
    """shipped < [build] < [target.T] < XPCARGO_BUILD_ < XPCARGO_TARGET_T_, each merging as its field says."""
    project = load_project_config(_workspace(tmp_path, xpcargo_toml=FULL_PROJECT))
    environ = {
        "XPCARGO_BUILD_EXTRA_PACKAGES": "from-env-build",
        "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES": "from-env-target",
        "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_CC": "from-env",
    }
    spec = resolve_target(AARCH64, shipped, project, environ=environ)
    assert spec.extra_packages == ("libssl-dev", "zlib1g-dev:arm64", "from-env-build", "from-env-target")
    assert spec.cc == "from-env"
    assert spec.cxx == shipped.target(AARCH64).cxx


@pytest.mark.parametrize(
    ("environ", "fragments"),
    [
        ({"XPCARGO_BUILD_ENV": "NOT_A_PAIR"}, ["XPCARGO_BUILD_ENV", "expected a table"]),
        ({"XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER": "x"}, []),
        ({"XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES": "libssl-dev:aarch64"}, ["arm64"]),
        ({"XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKS": "{ z = 1 }"}, ["LINKS (z)", "expected a table"]),
        ({"XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RECIPE": "../../evil"}, ["not a recipe name"]),
    ],
)
def test_bad_environment_values(shipped: config.Toolchains, environ: dict[str, str], fragments: list[str]) -> None:
    if not fragments:
        resolve_target(AARCH64, shipped, config.ProjectConfig(source=None), environ=environ)
        return
    with pytest.raises(ConfigError) as caught:
        resolve_target(AARCH64, shipped, config.ProjectConfig(source=None), environ=environ)
    text = f"{caught.value.message} {caught.value.hint}"
    for fragment in fragments:
        assert fragment in text


@pytest.mark.parametrize(
    ("package", "fragment"),
    [
        ("libssl-dev:aarch64", "write `libssl-dev:arm64`"),
        ("libssl-dev:x86_64", "write `libssl-dev:amd64`"),
        ("libssl-dev:armv7", "write `libssl-dev:armhf`"),
        ("libssl-dev,evil", "not a Debian package name"),
        ("Upper", "not a Debian package name"),
        ("--option", "not a Debian package name"),
    ],
)
def test_extra_packages_follow_debians_grammar(tmp_path: Path, package: str, fragment: str) -> None:
    root = _workspace(tmp_path, xpcargo_toml=f'[build]\nextra-packages = ["{package}"]\n')
    with pytest.raises(ConfigError) as caught:
        load_project_config(root)
    assert fragment in f"{caught.value.message} (hint: {caught.value.hint})"


@pytest.mark.parametrize("package", ["libssl-dev:arm64", "g++", "libc6-dev:i386=2.41-12", "zlib1g-dev"])
def test_good_package_names(tmp_path: Path, package: str) -> None:
    root = _workspace(tmp_path, xpcargo_toml=f'[build]\nextra-packages = ["{package}"]\n')
    assert load_project_config(root).build.values["extra_packages"] == (package,)


@pytest.mark.parametrize("recipe", ["../images/x", "/etc/recipe", "a/b", ".hidden"])
def test_a_recipe_is_a_name_never_a_path(tmp_path: Path, recipe: str) -> None:
    root = _workspace(tmp_path, xpcargo_toml=f'[target.{AARCH64}]\nrecipe = "{recipe}"\n')
    with pytest.raises(ConfigError, match="not a recipe name"):
        load_project_config(root)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("XPCARGO_CACHEDIR", "did you mean XPCARGO_CACHE_DIR"),
        ("XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_IMAGES", "names no setting"),
        ("XPCARGO_BUILD_CC", "names no setting"),
    ],
)
def test_unknown_xpcargo_variables_are_errors(name: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environment({name: "x"})
    assert fragment in f"{caught.value.message} {caught.value.hint}"


def test_settings_come_from_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_environment(
        {
            "XPCARGO_CACHE_DIR": str(tmp_path / "cache"),
            "XPCARGO_IMAGES": str(tmp_path / "recipes"),
            "XPCARGO_RETRY_WAIT": "0.5",
            "XPCARGO_DEBUG": "1",
            "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_IMAGE": "x",
        }
    )
    assert settings.cache_dir == tmp_path / "cache"
    assert settings.recipes_dir == tmp_path / "recipes"
    assert settings.retry_wait == 0.5
    defaults = Settings.from_environment({"HOME": str(tmp_path)})
    assert defaults.cache_dir == tmp_path / ".cache" / "xpcargo"
    assert defaults.toolchains_file == resources.toolchains_file()
    with pytest.raises(ConfigError, match="XPCARGO_RETRY_WAIT"):
        Settings.from_environment({"XPCARGO_RETRY_WAIT": "soon"})


@pytest.mark.parametrize("nested", ["a = " + "[" * 5000 + "]" * 5000, "a = " + "{b=" * 3000 + "1" + "}" * 3000])
def test_toml_nested_too_deeply_is_one_error_naming_the_file(tmp_path: Path, nested: str) -> None:
    path = tmp_path / "xpcargo.toml"
    path.write_text(nested + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        read_toml(path)
    assert str(path) in str(caught.value)


# --- A std built from source ----------------------------------------------------------------------------------------


def test_the_musl_target_builds_its_std_from_source(shipped: config.Toolchains) -> None:
    spec = shipped.target("x86_64-unknown-linux-musl")
    assert spec.std_from_source
    assert spec.std_unwinder == "/usr/lib/llvm-19/lib/libunwind.a"
    assert not shipped.target("x86_64-unknown-linux-gnu").std_from_source


def test_the_arm64_musl_target_runs_static_programs_under_qemu(shipped: config.Toolchains) -> None:
    spec = shipped.target("aarch64-unknown-linux-musl")
    assert spec.std_from_source
    assert spec.debian_arch == "arm64"
    assert (spec.cc, spec.linker) == ("aarch64-linux-musl-gcc", "aarch64-linux-musl-gcc")
    # No -L and no sysroot: a static program loads no library, and QEMU_LD_PREFIX would point at glibc's.
    assert spec.runner == ("qemu-aarch64",)
    assert spec.sysroot is None
    assert spec.pkg_config_libdir == ("/usr/lib/aarch64-linux-musl/pkgconfig",)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('std = "rustup"', "is not where a std comes from"),
        ('std-unwinder = "/usr/lib/libunwind.a; id"', "not an absolute path of plain characters"),
        ('std-unwinder = "lib/libunwind.a"', "not an absolute path of plain characters"),
        ('std-self-contained = ["/usr/lib/../../etc/shadow"]', "not an absolute path of plain characters"),
        ('std-self-contained = ["/usr/lib/$(id)/crt1.o"]', "not an absolute path of plain characters"),
    ],
)
def test_std_settings_are_checked(tmp_path: Path, line: str, problem: str) -> None:
    (tmp_path / "xpcargo.toml").write_text(f"[target.x86_64-unknown-linux-musl]\n{line}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(problem)):
        config.load_project_config(tmp_path)


@pytest.mark.parametrize(
    "engine",
    [
        "ssh://builder",
        "ssh://me@arm-builder.example:2222",
        "ssh://root@127.0.0.1:42253",
        "ssh://[fd00::5]:22",
        "ssh://build_box",
    ],
)
def test_an_ssh_engine_is_a_host_an_optional_user_and_port(tmp_path: Path, engine: str) -> None:
    root = _workspace(tmp_path, xpcargo_toml=f'[target.{AARCH64}]\nengine = "{engine}"\n')
    assert load_project_config(root).targets[AARCH64].values["engine"] == engine


@pytest.mark.parametrize(
    "engine",
    [
        # Words for a ProxyCommand of ~/.ssh/config that names the host (`%h`), which paramiko splits into words.
        "ssh://-oProxyCommand=touch /tmp/pwned",
        "ssh://builder -W evil:22",
        "ssh://me@-builder",
        "ssh://builder;id",
        "ssh://builder/path",
        "ssh://builder:22x",
        "ssh://",
    ],
)
def test_an_ssh_engine_that_would_be_more_than_a_host_is_refused(tmp_path: Path, engine: str) -> None:
    root = _workspace(tmp_path, xpcargo_toml=f'[target.{AARCH64}]\nengine = "{engine}"\n')
    with pytest.raises(ConfigError) as caught:
        load_project_config(root)
    assert f"target.{AARCH64}.engine" in str(caught.value)
    assert "is not an ssh:// engine's address" in str(caught.value)
    assert caught.value.hint is not None
    assert "ssh://[USER@]HOST[:PORT]" in caught.value.hint
