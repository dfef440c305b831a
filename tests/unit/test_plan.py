"""Planning a Cargo command on the host: Cargo's arguments, the mounts, each step's container request."""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from xpcargo import resources
from xpcargo.cargo.args import parse_cargo_args
from xpcargo.container.spec import Mount
from xpcargo.context import Context
from xpcargo.errors import ConfigError, ProjectError, UnknownTargetError
from xpcargo.pipeline.plan import BuildPlan, reproducibility
from xpcargo.pipeline.reproducible import VARIED, Reproducibility
from xpcargo.pipeline.run import _write_overrides_file
from xpcargo.pipeline.workspace import Step

from .projects import APP_LOCK, app_project, listening, plan_in

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


# --- BuildPlan ------------------------------------------------------------------------------------------------------


def _environ(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(tmp_path / "home"), "PATH": "/usr/bin", **extra}


def _plan(
    tmp_path: Path, command: str, args: list[str], *, triple: str = AARCH64, color: bool = False, **kw: Any
) -> BuildPlan:
    root = app_project(tmp_path, kw.pop("xpcargo_toml", None))
    context = Context.create(cwd=root, environ=_environ(tmp_path, **kw), stderr_is_terminal=color)
    return plan_in(context, command, triple, args)


def test_cargo_argv_puts_target_and_format_before_user_args(tmp_path: Path) -> None:
    args = ["--release", "-p", "app", "--", "--message-format", "human", "--target", "x86_64", "--"]
    plan = _plan(tmp_path, "run", args)
    argv = plan.cargo_argv()
    assert argv[:5] == ["cargo", "run", "--target", AARCH64, "--message-format=json"]
    assert argv[5:] == args
    in_colour = _plan(tmp_path / "colour", "run", args, color=True)
    assert in_colour.cargo_argv()[4] == "--message-format=json-diagnostic-rendered-ansi"
    assert plan.invocation.injects_json
    assert plan.invocation.reads_messages
    assert plan.invocation.profile_dir == "release"


def test_no_injection_when_the_user_chose_a_format(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "check", ["--message-format=json-diagnostic-short", "--workspace"], color=True)
    assert plan.cargo_argv() == [
        "cargo",
        "check",
        "--target",
        AARCH64,
        "--message-format=json-diagnostic-short",
        "--workspace",
    ]
    assert not plan.invocation.injects_json
    assert plan.invocation.reads_messages


def test_a_human_format_is_not_read(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", ["--message-format", "short"])
    assert not any(arg.startswith("--message-format=") for arg in plan.cargo_argv())
    assert not plan.invocation.reads_messages


def test_a_message_format_after_dashdash_is_the_programs(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "run", ["--", "--message-format=short"])
    assert plan.invocation.injects_json
    assert plan.cargo_argv()[4] == "--message-format=json"


def test_plan_environment(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", [], RUSTFLAGS="-Dwarnings", RUSTC_WRAPPER="sccache")
    assert plan.variables.env["CC_aarch64_unknown_linux_gnu"] == "aarch64-linux-gnu-gcc"
    assert plan.variables.env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"].endswith(
        "qemu-aarch64 -L /usr/aarch64-linux-gnu"
    )
    assert plan.variables.env["RUSTFLAGS"] == "-Dwarnings"
    assert plan.variables.env["CARGO_HOME"] == str(tmp_path / "home" / ".cargo")
    assert plan.variables.env["CARGO_TARGET_DIR"] == str(tmp_path.resolve() / "app" / "target")
    assert "RUSTC_WRAPPER" not in plan.variables.env
    assert "PATH" not in plan.variables.env
    assert "HOME" not in plan.variables.env
    assert plan.request(Step.BUILD, "img").env["HOME"] == "/tmp"
    assert plan.flags.state_dir == tmp_path.resolve() / "app" / "target" / "xpcargo" / AARCH64
    assert plan.flags.overrides_file is None


def test_a_targets_features_join_the_users_rustflags_for_its_units_only(tmp_path: Path) -> None:
    riscv64_musl = "riscv64gc-unknown-linux-musl"
    plan = _plan(tmp_path, "build", [], triple=riscv64_musl, RUSTFLAGS="-Dwarnings")
    # The encoded form, which Cargo gives the target's units only (never build scripts or proc macros).
    assert plan.variables.env["CARGO_ENCODED_RUSTFLAGS"].split("\x1f") == ["-Dwarnings", "-Ctarget-feature=+crt-static"]
    assert "RUSTFLAGS" not in plan.variables.env
    # No C flags of its own: the cc crate's variables stay as the user and the target's table set them.
    assert not any(name.startswith(("CFLAGS_", "CXXFLAGS_")) for name in plan.variables.env)
    assert "CARGO_ENCODED_RUSTFLAGS" not in _plan(tmp_path / "gnu", "build", [], triple=X86_64).variables.env


WASM32 = "wasm32-wasip1"
EMULATED_DEFINES = [
    "-D_WASI_EMULATED_PROCESS_CLOCKS",
    "-D_WASI_EMULATED_SIGNAL",
    "-D_WASI_EMULATED_MMAN",
    "-D_WASI_EMULATED_GETPID",
]


def test_wasm32s_c_code_gets_wasi_libcs_emulations_after_the_users_flags(tmp_path: Path) -> None:
    own = f'[target.{WASM32}]\nenv = {{ CFLAGS_wasm32_wasip1 = "-O1 -DMINE" }}\n'
    plan = _plan(tmp_path, "build", [], triple=WASM32, xpcargo_toml=own, RUSTFLAGS="-Dwarnings")
    env = plan.variables.env
    # The cc crate reads only the first of its variables: the project's flags are carried into the one set here.
    assert env["CFLAGS_wasm32_wasip1"].split() == ["-O1", "-DMINE", *EMULATED_DEFINES]
    assert env["CXXFLAGS_wasm32_wasip1"].split() == EMULATED_DEFINES
    # Each emulation's archive is one more input of the link: wasm-ld takes from it only what the module calls. So
    # is the pthread emulation's, for Rust's std (link-archives), whose functions C code is not given.
    assert env["CARGO_ENCODED_RUSTFLAGS"].split("\x1f") == [
        "-Dwarnings",
        *(
            f"-Clink-arg=/usr/lib/wasm32-wasip1/libwasi-emulated-{name}.a"
            for name in ("process-clocks", "signal", "mman", "getpid", "pthread")
        ),
    ]


def test_a_project_can_turn_the_emulations_off_but_not_name_others(tmp_path: Path) -> None:
    off = _plan(tmp_path, "build", [], triple=WASM32, xpcargo_toml=f"[target.{WASM32}]\nwasi-emulated = []\n")
    assert not any(name.startswith("CFLAGS_") for name in off.variables.env)
    # Rust's std still gets its pthread stubs.
    assert "-Clink-arg=/usr/lib/wasm32-wasip1/libwasi-emulated-pthread.a" in str(off.flags.rustflags_config)
    assert "emulated-signal" not in str(off.flags.rustflags_config)
    some = _plan(tmp_path / "some", "build", [], triple=WASM32, XPCARGO_TARGET_WASM32_WASIP1_WASI_EMULATED="getpid")
    assert some.variables.env["CFLAGS_wasm32_wasip1"] == "-D_WASI_EMULATED_GETPID"
    for index, bad in enumerate(("getpid -Clink-arg=--export-all", "pthread", "../x")):
        with pytest.raises(ConfigError, match="wasi-emulated") as caught:
            _plan(
                tmp_path / f"bad{index}",
                "build",
                [],
                triple=WASM32,
                xpcargo_toml=f'[target.{WASM32}]\nwasi-emulated = ["{bad}"]\n',
            )
        assert "\n" not in str(caught.value)


def test_every_step_runs_the_projects_code_confined_with_only_tmp_and_home_writable(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", [])
    for step in Step:
        request = plan.request(step, "img")
        assert request.confined, step
        assert request.scratch == (Path("/tmp"),), step
        assert request.warm_lifetime == 3600
    settings = Reproducibility(source_date_epoch=1, epoch_source="environment", variation=VARIED)
    varied = replace(plan, flags=replace(plan.flags, reproducible=settings))
    assert varied.request(Step.BUILD, "img").scratch == (Path("/tmp"), Path("/var/tmp"))


def test_a_release_build_without_a_lock_file_says_it_is_locked_and_how_to_make_one(tmp_path: Path) -> None:
    """Cargo would refuse it "because --locked was passed", a flag the user never passed, from a copy's path."""
    root = app_project(tmp_path)
    context = Context.create(cwd=root, environ=_environ(tmp_path, SOURCE_DATE_EPOCH="1700000000"))
    project = context.project(parse_cargo_args([]))
    with pytest.raises(ProjectError) as caught:
        reproducibility(context.host, project, X86_64)
    assert caught.value.exit_code == 5
    assert caught.value.summary() == (
        "error: release builds (dist, verify, --reproducible) are locked (Cargo's --locked, added by xpcargo), and "
        f"{root.resolve()} has no Cargo.lock (hint: create it with `xpcargo shell --target {X86_64} -- cargo "
        "generate-lockfile` (or `cargo generate-lockfile` on the host), commit it, and run again)"
    )
    (root / "Cargo.lock").write_text(APP_LOCK, encoding="utf-8")
    assert reproducibility(context.host, project, X86_64).source_date_epoch == 1700000000


def _assert_a_shared_file_mounted_read_only(plan: BuildPlan, path: Path) -> None:
    """``path`` (in the container) is one of xpcargo's files: the build's one mount of images/share/, read-only."""
    mounted = [mount for mount in plan.request(Step.BUILD, "img").mounts if mount.source == resources.share_dir()]
    assert len(mounted) == 1
    assert mounted[0].read_only
    assert path.parent == mounted[0].path
    assert (resources.share_dir() / path.name).is_file()


def test_a_foreign_target_gets_xpcargos_cmake_toolchain_file_read_only(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", [])
    toolchain = Path(plan.variables.env["CMAKE_TOOLCHAIN_FILE_aarch64_unknown_linux_gnu"])
    # The plain emulator: the image's exec preload runs what the program starts under it (test_environment).
    assert plan.variables.env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER"].split()[0] == "qemu-aarch64"
    _assert_a_shared_file_mounted_read_only(plan, toolchain)


def test_a_static_foreign_target_gets_xpcargos_binfmt_runner_read_only(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", [], triple="aarch64-unknown-linux-musl")
    runner = plan.variables.env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER"].split()
    assert runner[0] == "sh"
    _assert_a_shared_file_mounted_read_only(plan, Path(runner[1]))


def test_the_native_target_mounts_none_of_xpcargos_files(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "build", [], triple="x86_64-unknown-linux-gnu")
    assert not [mount for mount in plan.workspace.binds if mount.source == resources.share_dir()]


def test_a_musl_target_gets_its_cxx_script_read_only_even_when_native(tmp_path: Path) -> None:
    # x86_64-unknown-linux-musl has no runner and no sysroot; its C++ compiler is xpcargo's script that says there is
    # no C++ standard library for musl.
    plan = _plan(tmp_path, "build", [], triple="x86_64-unknown-linux-musl")
    cxx = plan.variables.env["CXX_x86_64_unknown_linux_musl"].split()
    assert cxx[0] == "sh"
    _assert_a_shared_file_mounted_read_only(plan, Path(cxx[1]))


def test_plan_with_an_unknown_target(tmp_path: Path) -> None:
    with pytest.raises(UnknownTargetError):
        _plan(tmp_path, "build", [], triple="aarch64-unknown-linux-gnux")


LINKS_PROJECT = f"""\
    [target.{AARCH64}.links.z]
    rustc-link-lib = ["static=z"]
    rustc-link-search = ["native={{lib}}"]
    include = "{{include}}"
    "with space" = "a \\"quoted\\" value"
    level = 3
    static = true
"""


def test_links_overrides_go_into_a_config_file(tmp_path: Path) -> None:
    lib, include = tmp_path / "zlib" / "lib", tmp_path / "zlib" / "include"
    lib.mkdir(parents=True)
    include.mkdir()
    plan = _plan(
        tmp_path, "build", ["--offline"], xpcargo_toml=LINKS_PROJECT.format(lib=lib, include=include), XPCARGO_TRUST="1"
    )
    assert plan.flags.overrides_file == plan.flags.state_dir / "links-overrides.toml"
    argv = plan.cargo_argv()
    assert argv[:7] == [
        "cargo",
        "build",
        "--target",
        AARCH64,
        "--message-format=json",
        "--config",
        str(plan.flags.overrides_file),
    ]
    assert argv[7:] == ["--offline"]

    _write_overrides_file(plan)
    written = tomllib.loads(plan.flags.overrides_file.read_text(encoding="utf-8"))
    assert written == {
        "target": {
            AARCH64: {
                "z": {
                    "rustc-link-lib": ["static=z"],
                    "rustc-link-search": [f"native={lib}"],
                    "include": str(include),
                    "with space": 'a "quoted" value',
                    "level": 3,
                    "static": True,
                }
            }
        }
    }
    # The directories the override names exist on the host, so they are mounted, read-only.
    assert Mount(path=lib, read_only=True) in plan.workspace.binds
    assert Mount(path=include, read_only=True) in plan.workspace.binds


def test_links_overrides_merge_the_projects_cargo_config(tmp_path: Path) -> None:
    root = app_project(tmp_path, f'[target.{AARCH64}.links.z]\ninclude = "/from-xpcargo"\n')
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(
        f'[target.{AARCH64}.z]\nrustc-link-lib = ["z"]\ninclude = "/from-cargo-config"\n', encoding="utf-8"
    )
    plan = plan_in(Context.create(cwd=root, environ=_environ(tmp_path)), "build", AARCH64, [])
    assert plan.flags.links.tables == {"z": {"rustc-link-lib": ["z"], "include": "/from-xpcargo"}}


def test_configured_mount_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{tmp_path / "missing"}"]\n', XPCARGO_TRUST="1")


def test_configured_mount_is_read_only(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    plan = _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{sdk}"]\n', XPCARGO_TRUST="1")
    assert Mount(path=sdk, read_only=True) in plan.workspace.binds


def test_configured_mount_with_dotdot_is_mounted(tmp_path: Path) -> None:
    sdk = tmp_path / "sdk"
    sdk.mkdir()
    dotted = tmp_path.resolve() / "app" / ".." / "sdk"
    plan = _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{dotted}"]\n', XPCARGO_TRUST="1")
    assert any(mount.path.resolve() == sdk.resolve() for mount in plan.workspace.binds)


# --- Container requests per step ---------------------------------------------------------------------------------


def test_only_the_fetch_step_has_a_network_and_the_hosts_ca_bundle(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("certificates", encoding="utf-8")
    plan = _plan(tmp_path, "build", [], CARGO_HTTP_CAINFO=str(bundle))
    fetch = plan.request(Step.FETCH, "img:1")
    build = plan.request(Step.BUILD, "img:1")
    shell = plan.request(Step.SHELL, "img:1")
    assert (fetch.network, build.network, shell.network) == ("host", "none", "none")
    assert Mount(path=bundle, read_only=True) in fetch.mounts
    assert Mount(path=bundle, read_only=True) not in build.mounts
    assert fetch.env["CARGO_HTTP_CAINFO"] == str(bundle)
    assert "CARGO_NET_OFFLINE" not in fetch.env
    assert build.env["CARGO_NET_OFFLINE"] == shell.env["CARGO_NET_OFFLINE"] == "true"
    assert {request.image for request in (fetch, build, shell)} == {"img:1"}
    assert build.user == f"{os.getuid()}:{os.getgid()}"
    assert build.workdir == plan.project.cwd


def test_credentials_reach_no_containers_environment(tmp_path: Path) -> None:
    plan = _plan(
        tmp_path,
        "build",
        [],
        CARGO_REGISTRY_TOKEN="secret-1",
        CARGO_REGISTRIES_CORP_TOKEN="secret-2",
        https_proxy="http://user:secret-3@proxy:3128",
        CARGO_PROFILE_RELEASE_LTO="true",
    )
    for step in Step:
        env = plan.request(step, "img").env
        assert not any("secret" in value for value in env.values()), step
        assert env["CARGO_PROFILE_RELEASE_LTO"] == "true"
    assert dict(plan.variables.credentials) == {
        "CARGO_REGISTRY_TOKEN": "secret-1",
        "CARGO_REGISTRIES_CORP_TOKEN": "secret-2",
        "https_proxy": "http://user:secret-3@proxy:3128",
    }


def test_terminal_policy_reaches_cargo(tmp_path: Path) -> None:
    plain = _plan(tmp_path / "a", "build", [])
    assert plain.request(Step.BUILD, "img").env["CARGO_TERM_COLOR"] == "never"
    coloured = _plan(tmp_path / "b", "build", [], color=True)
    env = coloured.request(Step.BUILD, "img").env
    assert env["CARGO_TERM_COLOR"] == "always"
    assert env["CARGO_TERM_PROGRESS_WHEN"] == "always"
    no_color = _plan(tmp_path / "c", "build", [], color=True, NO_COLOR="1")
    assert no_color.request(Step.BUILD, "img").env["CARGO_TERM_COLOR"] == "never"
    assert no_color.cargo_argv()[4] == "--message-format=json"
    forced = _plan(tmp_path / "d", "build", [], CARGO_TERM_COLOR="always")
    assert forced.cargo_argv()[4] == "--message-format=json-diagnostic-rendered-ansi"


# --- What may be mounted ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/var/run/docker.sock", "/run", "/proc", "/sys/kernel", "/dev/null", "/", "/var"])
def test_special_places_are_never_mounted(tmp_path: Path, path: str) -> None:
    with pytest.raises(ConfigError, match="refusing to mount") as caught:
        _plan(tmp_path, "build", [], xpcargo_toml=f'[build]\nmounts = ["{path}"]\n')
    assert "`mounts`" in caught.value.message
    assert "\n" not in caught.value.message


def test_a_socket_named_by_a_links_override_is_refused(tmp_path: Path) -> None:
    """A project's own Cargo config can name any path in a `links` override: a socket must not be mounted."""
    sock_path = tmp_path / "engine.sock"
    with listening(sock_path):
        project = app_project(tmp_path)
        (project / ".cargo").mkdir()
        (project / ".cargo" / "config.toml").write_text(
            f'[target.{AARCH64}.sqlite]\nsocket = "{sock_path}"\n', encoding="utf-8"
        )
        context = Context.create(cwd=project, environ=_environ(tmp_path))
        with pytest.raises(ConfigError, match="not a directory or a regular file") as caught:
            plan_in(context, "build", AARCH64, [])
        assert "a `links` override" in caught.value.message


def test_a_mount_holding_the_engines_socket_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "engine"
    engine.mkdir()
    with listening(engine / "docker.sock"), pytest.raises(ConfigError, match=r"docker\.sock"):
        _plan(
            tmp_path,
            "build",
            [],
            xpcargo_toml=f'[build]\nmounts = ["{engine}"]\n',
            DOCKER_HOST=f"unix://{engine / 'docker.sock'}",
        )


def test_a_mount_holding_the_socket_of_the_targets_own_engine_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "engine"
    engine.mkdir()
    with listening(engine / "podman.sock"), pytest.raises(ConfigError, match=r"podman\.sock"):
        _plan(
            tmp_path,
            "build",
            [],
            xpcargo_toml=f'[build]\nmounts = ["{engine}"]\n\n[target.{AARCH64}]\n'
            f'engine = "unix://{engine / "podman.sock"}"\n',
        )


def test_a_target_triple_must_look_like_one(tmp_path: Path) -> None:
    for bad in ("x;id", "aarch64/../x", "../../etc", ""):
        with pytest.raises(UnknownTargetError):
            _plan(tmp_path / str(abs(hash(bad))), "build", [], triple=bad)


def test_the_fetch_step_gets_no_env_table_and_the_images_rustc(tmp_path: Path) -> None:
    """The project's `env` (and a user's wrapper) is for the build: the fetch step runs none of the project's code."""
    plan = _plan(
        tmp_path, "build", [], xpcargo_toml='[build]\nenv = { RUSTC_WRAPPER = "./evil.sh", LD_PRELOAD = "x.so" }\n'
    )
    fetch = plan.request(Step.FETCH, "img:1")
    build = plan.request(Step.BUILD, "img:1")
    assert build.env["RUSTC_WRAPPER"] == "./evil.sh"
    assert build.env["LD_PRELOAD"] == "x.so"
    assert "LD_PRELOAD" not in fetch.env
    assert fetch.env["RUSTC_WRAPPER"] == fetch.env["RUSTC_WORKSPACE_WRAPPER"] == ""
    assert fetch.env["CARGO_BUILD_RUSTC_WRAPPER"] == fetch.env["CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER"] == ""
    assert fetch.env["RUSTC"] == fetch.env["CARGO_BUILD_RUSTC"] == "rustc"
    assert fetch.env["CARGO_ENCODED_RUSTFLAGS"] == ""
    assert fetch.env["CARGO_HOME"] == build.env["CARGO_HOME"]
    # A project's `http.cainfo` never decides whom the fetch step trusts.
    assert fetch.env["CARGO_HTTP_CAINFO"]


def test_the_fetch_step_blanks_a_projects_cargo_env_table(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(
        '[env]\nLD_PRELOAD = { value = "evil.so", force = true, relative = true }\nPLAIN = "x"\n', encoding="utf-8"
    )
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    plan = plan_in(context, "build", AARCH64, [])
    assert plan.variables.fetch_config == (
        "--config",
        'env."LD_PRELOAD".value=""',
        "--config",
        'env."LD_PRELOAD".force=false',
        "--config",
        'env."LD_PRELOAD".relative=false',
        "--config",
        'env."PLAIN"=""',
    )


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        ('[registry]\nglobal-credential-providers = ["cargo:token", "./steal.sh"]\n', "global-credential-providers"),
        ('[registry]\ncredential-provider = "cargo:token-from-stdout ./steal.sh"\n', "registry.credential-provider"),
        ('[registries.corp]\nindex = "sparse+https://x/"\ncredential-provider = ["/x"]\n', "registries.corp"),
    ],
)
def test_a_projects_credential_provider_is_refused(tmp_path: Path, config: str, setting: str) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(config, encoding="utf-8")
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    with pytest.raises(ConfigError, match=setting) as caught:
        plan_in(context, "build", AARCH64, [])
    assert "config.toml" in str(caught.value)


def test_a_credential_provider_of_the_users_config_above_the_checkout_is_the_users(tmp_path: Path) -> None:
    # Above the checkout is the user's side of the boundary (config.trust): its provider and its `[env]` stand.
    root = app_project(tmp_path)
    user_config = root.parent / ".cargo" / "config.toml"
    user_config.parent.mkdir()
    user_config.write_text(
        '[registry]\nglobal-credential-providers = ["/usr/local/bin/my-provider"]\n[env]\nMINE = "x"\n',
        encoding="utf-8",
    )
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    plan = plan_in(context, "build", AARCH64, [])
    assert plan.variables.fetch_config == ()


def test_cargos_own_credential_providers_are_accepted(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(
        '[registry]\nglobal-credential-providers = ["cargo:token", "cargo:libsecret"]\n', encoding="utf-8"
    )
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    assert plan_in(context, "build", AARCH64, []).variables.fetch_config == ()


def test_the_users_registries_are_pinned_over_the_projects(tmp_path: Path) -> None:
    """A project's config must not point a registry the user holds a token for at a server of its own."""
    home = tmp_path / "home" / ".cargo"
    home.mkdir(parents=True)
    (home / "config.toml").write_text('[registries.corp-reg]\nindex = "sparse+https://corp/"\n', encoding="utf-8")
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(
        '[registries.corp-reg]\nindex = "sparse+https://evil/"\n', encoding="utf-8"
    )
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    plan = plan_in(context, "build", AARCH64, [])
    for step in (Step.FETCH, Step.BUILD):
        assert plan.request(step, "img:1").env["CARGO_REGISTRIES_CORP_REG_INDEX"] == "sparse+https://corp/"


def test_a_cargo_home_inside_the_workspace_is_still_read_only_outside_the_fetch_step(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    home = root / ".cargo-home"
    home.mkdir()
    context = Context.create(cwd=root, environ=_environ(tmp_path, CARGO_HOME=str(home)), stderr_is_terminal=False)
    plan = plan_in(context, "build", AARCH64, [])
    for step in (Step.BUILD, Step.SHELL):
        assert Mount(path=home, read_only=True) in plan.request(step, "img:1").mounts
    assert not any(mount.path == home for mount in plan.request(Step.FETCH, "img:1").mounts)


def test_files_a_projects_cargo_config_includes_are_the_projects_too(tmp_path: Path) -> None:
    # Cargo (1.96) reads `include`d files as part of the including one: their [env] is blanked, in every form,
    # nested, through a cycle, and with a missing file left for Cargo to report.
    root = app_project(tmp_path)
    (root / ".cargo" / "more").mkdir(parents=True)
    (root / ".cargo" / "config.toml").write_text(
        'include = ["a.toml", { path = "more/b.toml" }, "missing.toml", "a.toml"]\n', encoding="utf-8"
    )
    (root / ".cargo" / "a.toml").write_text('[env]\nA = "x"\n', encoding="utf-8")
    (root / ".cargo" / "more" / "b.toml").write_text('include = ["c.toml"]\n[env]\nB = "x"\n', encoding="utf-8")
    (root / ".cargo" / "more" / "c.toml").write_text('include = ["b.toml"]\n[env]\nC = "x"\n', encoding="utf-8")
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    config = plan_in(context, "build", AARCH64, []).variables.fetch_config
    assert config == ("--config", 'env."A"=""', "--config", 'env."B"=""', "--config", 'env."C"=""')


def test_a_credential_provider_in_an_included_file_is_refused(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text('include = [{ path = "p.toml" }]\n', encoding="utf-8")
    (root / ".cargo" / "p.toml").write_text('[registry]\ncredential-provider = ["/x"]\n', encoding="utf-8")
    context = Context.create(cwd=root, environ=_environ(tmp_path), stderr_is_terminal=False)
    with pytest.raises(ConfigError, match=r"registry\.credential-provider") as caught:
        plan_in(context, "build", AARCH64, [])
    assert "p.toml" in str(caught.value)
