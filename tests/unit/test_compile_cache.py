"""The compile cache as planned and run: where its directory is, which steps mount it, when it is off (the user's
XPCARGO_CACHE, a target's setting, reproducible builds, a rustc wrapper of the build's own), the statistics the build
leaves (read as untrusted), and the host's records that `xpcargo cache` shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from xpcargo.container.spec import Mount
from xpcargo.context import Context
from xpcargo.errors import ConfigError, ProjectError
from xpcargo.pipeline import compile_cache, run
from xpcargo.pipeline.compile_cache import CacheOff, CompileCache, Stats
from xpcargo.pipeline.plan import BuildPlan
from xpcargo.pipeline.reproducible import Reproducibility
from xpcargo.pipeline.workspace import Step

from .fake_runtime import Exec, FakeRuntime, Reply, default_script
from .projects import app_project, plan_in

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


def _context(tmp_path: Path, root: Path, **environ: str) -> Context:
    env = {"HOME": str(tmp_path / "home"), "XPCARGO_CACHE_DIR": str(tmp_path / "cache"), **environ}
    return Context.create(cwd=root, environ=env)


def _planned(tmp_path: Path, *, toml: str | None = None, args: tuple[str, ...] = (), **environ: str) -> BuildPlan:
    root = app_project(tmp_path, toml)
    return plan_in(_context(tmp_path, root, **environ), "build", AARCH64, list(args))


def _cache(planned: BuildPlan) -> CompileCache:
    assert isinstance(planned.compile_cache, CompileCache), planned.compile_cache
    return planned.compile_cache


def _off(planned: BuildPlan) -> CacheOff:
    assert isinstance(planned.compile_cache, CacheOff), planned.compile_cache
    return planned.compile_cache


# --- Planned -------------------------------------------------------------------------------------------------------


def test_the_build_and_the_shell_mount_the_workspaces_cache_and_the_fetch_step_never(tmp_path: Path) -> None:
    planned = _planned(tmp_path)
    cache = _cache(planned)
    root = planned.project.workspace_root
    assert cache.directory == tmp_path / "cache" / "compile" / compile_cache.key_of(root)
    for step in (Step.BUILD, Step.SHELL):
        request = planned.request(step, "image")
        assert Mount(path=cache.directory) in request.mounts
        # The wrapper is this machine's, beside the cache: the build runs it and cannot change it.
        wrapper = cache.directory.with_name(f"{cache.directory.name}.wrapper")
        assert Mount(path=wrapper, read_only=True) in request.mounts
        assert request.env["RUSTC_WRAPPER"] == str(wrapper / "sccache")
        assert request.env["SCCACHE_DIR"] == str(cache.directory)
        assert request.env["SCCACHE_IDLE_TIMEOUT"] == "0"
        assert request.env["SCCACHE_SERVER_PORT"] == "4226"
    fetch = planned.request(Step.FETCH, "image")
    assert not any(mount.path == cache.directory for mount in fetch.mounts)
    assert not any(name.startswith("SCCACHE_") for name in fetch.env)
    assert fetch.env["RUSTC_WRAPPER"] == ""


def test_rustc_loses_only_the_cargo_variables_xpcargo_set_for_cargo(tmp_path: Path) -> None:
    """sccache keys every CARGO_* variable: those xpcargo sets for Cargo alone (the terminal, the target dir, the
    linkers, offline) go, so that a terminal's width, a checkout or a target is not a cache of its own; the user's
    and the project's stay, whatever their name."""
    planned = _planned(
        tmp_path,
        toml='[build]\nenv = { CARGO_PROJECT_SETTING = "1" }\n',
        CARGO_PROFILE_DEV_DEBUG="0",
        CARGO_TERM_COLOR="always",
    )
    env = planned.request(Step.BUILD, "image").env
    unset = env["XPCARGO_RUSTC_UNSET"].split()
    assert "CARGO_TARGET_DIR" in unset
    assert "CARGO_HOME" in unset
    assert "CARGO_NET_OFFLINE" in unset
    assert "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER" in unset
    assert "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER" in unset
    assert not {"CARGO_PROFILE_DEV_DEBUG", "CARGO_PROJECT_SETTING", "CARGO_TERM_COLOR"} & set(unset)
    assert all(name in env for name in unset)


def test_the_wrapper_takes_the_variables_away_and_runs_sccache(tmp_path: Path) -> None:
    """The script as the container's sh runs it, with a stand-in for sccache that prints what it was given."""
    planned = _planned(tmp_path)
    cache = _cache(planned)
    cache.prepare()
    script = cache.wrapper.read_text(encoding="utf-8").replace(compile_cache.SCCACHE, str(tmp_path / "sccache"))
    (tmp_path / "sccache").write_text('#!/bin/sh\necho "$@"; env | sort\n', encoding="utf-8")
    (tmp_path / "sccache").chmod(0o755)
    (tmp_path / "wrapper").write_text(script, encoding="utf-8")
    env = {
        "PATH": "/usr/bin:/bin",
        "CARGO_A": "1",
        "CARGO_B": "2",
        "XPCARGO_RUSTC_UNSET": "CARGO_A",
        "SCCACHE_DIR": "/elsewhere",
    }
    shown = subprocess.run(
        ["sh", str(tmp_path / "wrapper"), "rustc", "--crate-name", "x"], env=env, capture_output=True, check=True
    ).stdout.decode()
    assert shown.splitlines()[0] == "rustc --crate-name x"
    assert "CARGO_B=2" in shown
    # The server's settings are the wrapper's, whatever a project's `[env]` gives rustc.
    assert f"SCCACHE_DIR={cache.directory}" in shown
    assert "SCCACHE_SERVER_PORT=4226" in shown
    assert "CARGO_A" not in shown
    assert "XPCARGO_RUSTC_UNSET" not in shown
    assert os.access(cache.wrapper, os.X_OK)


def _wrapper_with(tmp_path: Path, sccache: str) -> Path:
    """The cache's wrapper, with a stand-in for sccache (the shell script ``sccache``)."""
    cache = _cache(_planned(tmp_path))
    cache.prepare()
    fake = tmp_path / "fake-sccache"
    fake.write_text(f"#!/bin/sh\n{sccache}", encoding="utf-8")
    fake.chmod(0o755)
    wrapper = tmp_path / "wrapper"
    wrapper.write_text(cache.wrapper.read_text(encoding="utf-8").replace(compile_cache.SCCACHE, str(fake)))
    return wrapper


@pytest.mark.parametrize("rustc", ["rustc", "/usr/bin/rustc", "clippy-driver"])
def test_rustc_always_goes_to_sccache_whatever_it_says(tmp_path: Path, rustc: str) -> None:
    wrapper = _wrapper_with(tmp_path, 'echo "sccache: caused by: Compiler not supported" >&2; exit 2\n')
    ran = subprocess.run(["sh", str(wrapper), rustc, "-vV"], capture_output=True, text=True, check=False)
    assert (ran.returncode, ran.stderr) == (2, "sccache: caused by: Compiler not supported\n")


def test_a_c_compiler_that_sccache_does_not_know_runs_as_it_is(tmp_path: Path) -> None:
    """sccache refuses a compiler it cannot identify (a script) before running anything: the cc crate's compile then
    runs the compiler itself, whose own words and status are the build's."""
    wrapper = _wrapper_with(
        tmp_path,
        'echo "sccache: error: failed to execute compile" >&2\n'
        'echo "sccache: caused by: Compiler not supported: \\"\\"" >&2; exit 2\n',
    )
    compiler = 'echo "no C++ here: $*" >&2; echo out; exit 7'
    ran = subprocess.run(
        ["sh", str(wrapper), "sh", "-c", compiler, "sh", "-c", "x.cpp"], capture_output=True, text=True, check=False
    )
    assert (ran.returncode, ran.stdout, ran.stderr) == (7, "out\n", "no C++ here: -c x.cpp\n")


def test_a_c_compile_that_fails_under_sccache_keeps_its_words_and_status(tmp_path: Path) -> None:
    wrapper = _wrapper_with(tmp_path, 'echo "x.c:1: error: expected ;" >&2; echo partial; exit 1\n')
    ran = subprocess.run(["sh", str(wrapper), "gcc", "-c", "x.c"], capture_output=True, text=True, check=False)
    assert (ran.returncode, ran.stdout, ran.stderr) == (1, "partial\n", "x.c:1: error: expected ;\n")


def test_cargo_runs_first_then_the_statistics_and_the_servers_stop(tmp_path: Path) -> None:
    planned = _planned(tmp_path)
    argv = planned.command_argv()
    assert compile_cache.unwrapped(argv) == (_cache(planned).stats_file, tuple(planned.cargo_argv()))
    script = argv[2]
    assert "--start-server" not in script
    assert script.index('"$@"') < script.index("/proc/net/tcp") < script.index("--show-stats")
    assert script.index("--show-stats") < script.index("--stop-server")
    assert script.endswith('exit "$status"')


@pytest.mark.parametrize(("listening", "stopped"), [(True, True), (False, False)])
def test_the_end_of_a_command_asks_the_server_only_when_one_runs(
    tmp_path: Path, *, listening: bool, stopped: bool
) -> None:
    """The shell as the container's sh runs it, with stand-ins for sccache and for /proc/net/tcp (a no-op build
    starts no server, and must not start one to ask it for statistics)."""
    planned = _planned(tmp_path)
    script = planned.command_argv()[2].replace(compile_cache.SCCACHE, str(tmp_path / "sccache"))
    tcp = tmp_path / "tcp"
    line = "   0: 0100007F:1082 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000\n"
    tcp.write_text(line if listening else "", encoding="utf-8")
    script = script.replace("/proc/net/tcp", str(tcp))
    (tmp_path / "sccache").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\necho {{}}\n', encoding="utf-8")
    (tmp_path / "sccache").chmod(0o755)
    stats = tmp_path / "stats.json"
    done = subprocess.run(["sh", "-c", script, str(stats), "sh", "-c", "exit 7"], check=False)
    assert done.returncode == 7
    calls = (tmp_path / "calls").read_text(encoding="utf-8") if (tmp_path / "calls").exists() else ""
    assert ("--stop-server" in calls) is stopped
    assert stats.exists() is stopped


def test_one_cache_per_workspace_shared_by_its_targets(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    context = _context(tmp_path, root)
    aarch64 = _cache(plan_in(context, "build", AARCH64, []))
    x86_64 = _cache(plan_in(context, "clippy", X86_64, []))
    assert aarch64.directory == x86_64.directory
    assert aarch64.stats_file != x86_64.stats_file
    other_root = app_project(tmp_path / "elsewhere")
    other = _cache(plan_in(_context(tmp_path, other_root), "build", AARCH64, []))
    assert other.directory != aarch64.directory
    assert other.directory.parent == aarch64.directory.parent


def test_a_directory_the_user_names_is_shared_by_every_workspace(tmp_path: Path) -> None:
    shared = tmp_path / "shared-sccache"
    planned = _planned(tmp_path, XPCARGO_CACHE=str(shared))
    assert _cache(planned).directory == shared
    other = plan_in(_context(tmp_path, app_project(tmp_path / "b"), XPCARGO_CACHE=str(shared)), "build", AARCH64, [])
    assert _cache(other).directory == shared


def test_a_directory_the_user_names_is_ready_on_a_machine_without_xpcargos_cache_dir(tmp_path: Path) -> None:
    """A fresh machine: the wrapper goes beside the cache's record, in an xpcargo cache dir not made yet."""
    shared = tmp_path / "shared-sccache"
    cache = _cache(_planned(tmp_path, XPCARGO_CACHE=str(shared)))
    assert not cache.wrapper.parent.parent.exists()
    cache.prepare()
    assert shared.is_dir()
    assert cache.wrapper.read_text(encoding="utf-8").startswith("#!/bin/sh")


@pytest.mark.parametrize("value", ["relative/dir", "yes", "OFF"])
def test_a_bad_xpcargo_cache_is_one_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="XPCARGO_CACHE=") as raised:
        _planned(tmp_path, XPCARGO_CACHE=value)
    assert raised.value.hint is not None
    assert "absolute directory" in raised.value.hint


def test_the_users_off_turns_it_off_whatever_the_project_says(tmp_path: Path) -> None:
    planned = _planned(tmp_path, toml='[build]\ncompile-cache = "on"\n', XPCARGO_CACHE="off")
    assert _off(planned).reason == "XPCARGO_CACHE=off"
    assert not _off(planned).say
    assert planned.command_argv() == planned.cargo_argv()
    request = planned.request(Step.BUILD, "image")
    assert "RUSTC_WRAPPER" not in request.env
    assert not any(name.startswith("SCCACHE_") for name in request.env)
    assert not any("compile" in mount.path.parts for mount in request.mounts)


@pytest.mark.parametrize(
    ("toml", "environ"),
    [
        ('[target.aarch64-unknown-linux-gnu]\ncompile-cache = "off"\n', {}),
        ('[build]\ncompile-cache = "off"\n', {}),
        (None, {"XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_COMPILE_CACHE": "off"}),
        (None, {"XPCARGO_BUILD_COMPILE_CACHE": "off"}),
    ],
    ids=["project-target", "project-build", "env-target", "env-build"],
)
def test_a_target_or_project_setting_turns_it_off(tmp_path: Path, toml: str | None, environ: dict[str, str]) -> None:
    planned = plan_in(_context(tmp_path, app_project(tmp_path, toml), **environ), "build", AARCH64, [])
    assert _off(planned).reason == f"compile-cache = off for {AARCH64}"


def test_the_setting_takes_on_or_off_only(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="neither on nor off"):
        _planned(tmp_path, toml='[build]\ncompile-cache = "/elsewhere"\n')


def test_a_reproducible_build_runs_without_it(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    settings = Reproducibility(source_date_epoch=1700000000, epoch_source="environment")
    planned = plan_in(_context(tmp_path, root), "build", AARCH64, ["--release"], reproducible_settings=settings)
    assert "reproducible" in _off(planned).reason
    request = planned.request(Step.BUILD, "image")
    assert "RUSTC_WRAPPER" not in request.env
    assert not any("compile" in mount.path.parts for mount in request.mounts)
    assert "--start-server" not in " ".join(planned.command_argv())


def test_an_image_of_the_projects_own_runs_without_it(tmp_path: Path) -> None:
    planned = _planned(tmp_path, toml='[target.aarch64-unknown-linux-gnu]\nimage = "mine:1"\n', XPCARGO_TRUST="1")
    assert "image" in _off(planned).reason


@pytest.mark.parametrize(
    "config",
    ['[build]\nrustc-wrapper = "/usr/bin/my-wrapper"\n', '[build]\nrustc-workspace-wrapper = "clippy-driver"\n'],
    ids=["rustc-wrapper", "workspace-wrapper"],
)
def test_a_projects_rustc_wrapper_keeps_it_off_and_says_so(tmp_path: Path, config: str) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text(config, encoding="utf-8")
    planned = plan_in(_context(tmp_path, root), "build", AARCH64, [])
    off = _off(planned)
    assert off.say
    assert str(root / ".cargo" / "config.toml") in off.reason
    # Cargo prefers RUSTC_WRAPPER to every config file: set, it would replace the project's wrapper.
    assert "RUSTC_WRAPPER" not in planned.request(Step.BUILD, "image").env


def test_a_wrapper_in_an_included_config_file_counts(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text('include = ["more.toml"]\n', encoding="utf-8")
    (root / ".cargo" / "more.toml").write_text('[build]\nrustc-wrapper = "w"\n', encoding="utf-8")
    assert "more.toml" in _off(plan_in(_context(tmp_path, root), "build", AARCH64, [])).reason


def test_an_empty_wrapper_is_no_wrapper(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text('[build]\nrustc-wrapper = ""\n', encoding="utf-8")
    _cache(plan_in(_context(tmp_path, root), "build", AARCH64, []))


def test_a_wrapper_in_the_builds_environment_or_arguments_keeps_it_off(tmp_path: Path) -> None:
    by_env = _planned(tmp_path / "a", toml='[build]\nenv = { RUSTC_WRAPPER = "mine" }\n')
    assert _off(by_env).reason.startswith("RUSTC_WRAPPER ")
    assert planned_env(by_env)["RUSTC_WRAPPER"] == "mine"
    by_user = _planned(tmp_path / "b", XPCARGO_BUILD_ENV="CARGO_BUILD_RUSTC_WRAPPER=theirs")
    assert _off(by_user).reason.startswith("CARGO_BUILD_RUSTC_WRAPPER ")
    by_argument = _planned(tmp_path / "c", args=("--config", "build.rustc-wrapper='x'"))
    assert "--config build.rustc-wrapper" in _off(by_argument).reason


@pytest.mark.parametrize("value", ["redis://:hunter2@cache.example:6379/0", "s3://bucket", "gha://"])
def test_a_remote_cache_is_one_error_that_keeps_its_url_to_itself(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match=r"no remote backend") as raised:
        _planned(tmp_path, XPCARGO_CACHE=value)
    said = f"{raised.value} {raised.value.hint}"
    assert f"{value.partition(':')[0]}://" in said
    assert value.partition("://")[2] not in said or not value.partition("://")[2]
    assert "hunter2" not in said
    assert "absolute directory" in said


def planned_env(planned: BuildPlan) -> dict[str, str]:
    return dict(planned.request(Step.BUILD, "image").env)


def test_the_projects_own_sccache_dir_changes_no_mount(tmp_path: Path) -> None:
    """A project's `[env]` reaches its own processes, never what xpcargo mounts: the only cache in the container is the
    workspace's own."""
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    other = tmp_path / "cache" / "compile" / ("0" * 32)
    (root / ".cargo" / "config.toml").write_text(f'[env]\nSCCACHE_DIR = "{other}"\n', encoding="utf-8")
    planned = plan_in(_context(tmp_path, root), "build", AARCH64, [])
    request = planned.request(Step.BUILD, "image")
    assert [mount for mount in request.mounts if "compile" in mount.path.parts] == list(_cache(planned).mounts())
    assert [mount.path for mount in request.mounts if not mount.read_only and "compile" in mount.path.parts] == [
        _cache(planned).directory
    ]
    assert request.env["SCCACHE_DIR"] == str(_cache(planned).directory)


# --- Run -----------------------------------------------------------------------------------------------------------


def _sccache_json(hits: int, misses: int, uncacheable: int = 0) -> bytes:
    stats = {
        "compile_requests": hits + misses + uncacheable,
        "requests_not_cacheable": uncacheable,
        "cache_hits": {"counts": {"Rust": hits}, "adv_counts": {}},
        "cache_misses": {"counts": {"Rust": max(0, misses - 1), "C/C++": min(1, misses)}, "adv_counts": {}},
    }
    return json.dumps({"stats": stats, "cache_location": "Local disk", "cache_size": 1}).encode()


def _fake_build(tmp_path: Path) -> tuple[Path, Context, FakeRuntime, BuildPlan]:
    """A project's build of aarch64 planned, with a fake engine that has its image."""
    root = app_project(tmp_path)
    context = _context(tmp_path, root)
    runtime = FakeRuntime()
    planned = plan_in(context, "build", AARCH64, [])
    runtime.images.add(context.host.image_plan(planned.spec).reference)
    return root, context, runtime, planned


def test_a_build_says_its_hit_rate_and_adds_to_the_workspaces_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, context, runtime, planned = _fake_build(tmp_path)

    def script(call: Exec) -> Reply:
        reply = default_script(call)
        if call.command == "build":
            return Reply(stdout=reply.stdout, cache_stats=_sccache_json(hits=6, misses=2, uncacheable=1))
        return reply

    runtime.script = script
    for _ in range(2):
        code = run.execute(
            context.host, planned, runtime=runtime, reporter=context.host.reporter(), write_stdout=lambda _: None
        ).code
        assert code == 0
    build = runtime.execs[-1]
    assert build.cache_stats == _cache(planned).stats_file
    assert "Cache 6 hits, 2 misses (75% hit rate), 1 not cacheable" in capsys.readouterr().err
    assert _cache(planned).directory.is_dir()
    (record,) = compile_cache.records(tmp_path / "cache")
    assert (record.directory, record.workspaces, record.builds) == (_cache(planned).directory, (str(root),), 2)
    assert record.stats == Stats(hits=12, misses=4, uncacheable=2)


def test_a_build_that_wrote_no_statistics_says_nothing_of_the_cache(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, context, runtime, planned = _fake_build(tmp_path)
    # Statistics of an earlier command are removed before this one runs.
    stale = _cache(planned).stats_file
    stale.parent.mkdir(parents=True)
    stale.write_bytes(_sccache_json(1, 1))
    outcome = run.execute(context.host, planned, runtime=runtime, reporter=context.host.reporter())
    assert outcome.code == 0
    assert outcome.cache_stats is None
    assert "Cache" not in capsys.readouterr().err
    assert compile_cache.records(tmp_path / "cache") == []


def test_a_projects_wrapper_is_said_once_before_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = app_project(tmp_path)
    (root / ".cargo").mkdir()
    (root / ".cargo" / "config.toml").write_text('[build]\nrustc-wrapper = "w"\n', encoding="utf-8")
    context = _context(tmp_path, root)
    runtime = FakeRuntime()
    planned = plan_in(context, "build", AARCH64, [])
    runtime.images.add(context.host.image_plan(planned.spec).reference)
    run.execute(context.host, planned, runtime=runtime, reporter=context.host.reporter(), write_stdout=lambda _: None)
    said = [line for line in capsys.readouterr().err.splitlines() if "Cache" in line]
    assert len(said) == 1
    assert "off:" in said[0]
    assert "rustc wrapper" in said[0]


# --- The statistics a build leaves: untrusted ----------------------------------------------------------------------


def test_statistics_are_read_as_numbers_where_numbers_belong(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    path.write_bytes(_sccache_json(3, 1, 2))
    assert compile_cache.read_stats(path) == Stats(hits=3, misses=1, uncacheable=2)
    hostile = {
        "stats": {
            "cache_hits": {"counts": {"Rust": True, "C": -5, "x": 2**60, "y": "9", "z": 4}},
            "cache_misses": ["not", "a", "table"],
            "requests_not_cacheable": 1.5,
        }
    }
    path.write_text(json.dumps(hostile), encoding="utf-8")
    assert compile_cache.read_stats(path) == Stats(hits=4)


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"stats": 1}', b"[" * 100_000, b'{"stats": {}}' + b" " * 70_000 + b"}"]
)
def test_unreadable_statistics_are_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "stats.json"
    path.write_bytes(content)
    assert compile_cache.read_stats(path) in (None, Stats())


def test_a_fifo_in_place_of_the_statistics_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "stats.json"
    os.mkfifo(path)
    assert compile_cache.read_stats(path) is None
    assert compile_cache.read_stats(tmp_path / "missing.json") is None


# --- Records, sizes, clearing --------------------------------------------------------------------------------------


def test_records_add_up_and_clearing_forgets_them(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    directory, record = compile_cache.directory_for(cache_dir, Path("/w/one"), None)
    (directory / "a" / "b").mkdir(parents=True)
    (directory / "a" / "b" / "entry").write_bytes(b"x" * 1000)
    compile_cache.add_to_record(record, Stats(hits=1, misses=3), directory=directory, workspace=Path("/w/one"))
    compile_cache.add_to_record(record, Stats(hits=2), directory=directory, workspace=Path("/w/one"))
    (found,) = compile_cache.records(cache_dir)
    assert found.stats.rate == 0.5
    assert compile_cache.size_of(directory) == 1000
    compile_cache.clear(directory, record, shared=False)
    assert not directory.exists()
    assert compile_cache.records(cache_dir) == []


def test_clearing_a_directory_the_user_named_removes_only_sccaches_entries(tmp_path: Path) -> None:
    shared = tmp_path / "mine"
    for name in ("0", "f", "preprocessor", "notes"):
        (shared / name).mkdir(parents=True)
    (shared / "README").write_text("the user's\n", encoding="utf-8")
    _, record = compile_cache.directory_for(tmp_path / "cache", Path("/w"), shared)
    compile_cache.clear(shared, record, shared=True)
    assert sorted(path.name for path in shared.iterdir()) == ["README", "notes"]


def test_a_record_that_is_not_one_is_skipped(tmp_path: Path) -> None:
    root = compile_cache.root(tmp_path)
    root.mkdir(parents=True)
    (root / "a.json").write_text("[1, 2]", encoding="utf-8")
    (root / "b.json").write_text('{"directory": "/x", "hits": "many", "workspaces": "w"}', encoding="utf-8")
    (record,) = compile_cache.records(tmp_path)
    assert (record.directory, record.stats, record.workspaces) == (Path("/x"), Stats(), ())


def test_the_wrapper_is_rewritten_only_when_it_changed(tmp_path: Path) -> None:
    """Cargo keys its cache of rustc's answers on the wrapper's modification time: an unchanged wrapper keeps it (a
    no-op build then starts no sccache server); one the last build changed is written anew."""
    cache = _cache(_planned(tmp_path))
    cache.prepare()
    written = cache.wrapper.read_text(encoding="utf-8")
    os.utime(cache.wrapper, ns=(1_000_000_000, 1_000_000_000))
    cache.prepare()
    assert cache.wrapper.stat().st_mtime_ns == 1_000_000_000
    cache.wrapper.write_text('#!/bin/sh\nexec planted "$@"\n', encoding="utf-8")
    cache.prepare()
    assert cache.wrapper.read_text(encoding="utf-8") == written
    cache.wrapper.chmod(0o777)
    cache.prepare()
    assert cache.wrapper.stat().st_mode & 0o777 == 0o755


def test_a_target_dir_that_cannot_be_made_is_named_not_the_cache(tmp_path: Path) -> None:
    """The statistics file lies in the target dir: when that cannot be made, the error names the directory that could
    not be, with the target dir's hint, not the compile cache's."""
    cache = _cache(_planned(tmp_path))
    # A file where the target dir would go: the directory under it is the first that cannot be made.
    target_dir = next(path for path in reversed(cache.stats_file.parents) if not path.exists())
    target_dir.write_text("a file, not a directory", encoding="utf-8")
    with pytest.raises(ProjectError) as raised:
        cache.prepare()
    below = cache.stats_file.parents[len(cache.stats_file.parents) - len(target_dir.parents) - 2]
    assert below.parent == target_dir
    assert str(raised.value) == f"cannot create {below}: Not a directory"
    assert "--target-dir" in (raised.value.hint or "")


def test_a_cache_dir_that_cannot_be_made_names_the_cache(tmp_path: Path) -> None:
    planned = _planned(tmp_path)
    # Planning made the cache dir (it keeps the recipes' parses there): a file in its place, after.
    shutil.rmtree(tmp_path / "cache")
    (tmp_path / "cache").write_text("a file, not a directory", encoding="utf-8")
    with pytest.raises(ProjectError, match=r"^cannot prepare the compile cache .*: Not a directory$") as raised:
        _cache(planned).prepare()
    assert "XPCARGO_CACHE" in (raised.value.hint or "")
