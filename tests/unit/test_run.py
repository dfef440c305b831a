"""The orchestration of a Cargo command against a fake runtime: when the fetch step runs, the build, the refetch,
Cargo's exit code, the report, and that every container is removed whatever happens."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from xpcargo.cargo.args import CargoArgs
from xpcargo.cargo.messages import MAX_MESSAGE_BYTES
from xpcargo.context import Context, Host
from xpcargo.errors import ConfigError, EngineError, InterruptError, ProjectError, ReportError
from xpcargo.pipeline import run
from xpcargo.pipeline.workspace import Step
from xpcargo.report import store
from xpcargo.report.model import Origin

from .fake_runtime import Exec, FakeRuntime, Reply, cargo_message, default_script, metadata
from .projects import app_project, plan_in

AARCH64 = "aarch64-unknown-linux-gnu"
OFFLINE_MISS = b"error: failed to download `zlib`\n  attempting to make an HTTP request, but --offline was specified\n"


def _context(tmp_path: Path, cwd: Path, **environ: str) -> Context:
    env = {"HOME": str(tmp_path / "home"), "XPCARGO_CACHE_DIR": str(tmp_path / "cache"), **environ}
    return Context.create(cwd=cwd, environ=env)


class World:
    """A project, a context, and a fake runtime that has the target's image."""

    def __init__(self, tmp_path: Path, **environ: str) -> None:
        self.root = app_project(tmp_path)
        self.context = _context(tmp_path, self.root, **environ)
        self.runtime = FakeRuntime()
        spec = self.context.host.target(AARCH64, self.context.project_config(self.root))
        self.image = self.context.host.image_plan(spec).reference
        self.runtime.images.add(self.image)
        self.stdout: list[bytes] = []
        self.stderr: list[bytes] = []

    def run(self, command: str = "build", args: tuple[str, ...] = ()) -> int:
        build_plan = plan_in(self.context, command, AARCH64, list(args))
        return run.execute(
            self.context.host,
            build_plan,
            runtime=self.runtime,
            reporter=self.context.host.reporter(),
            write_stdout=self.stdout.append,
            write_stderr=self.stderr.append,
        ).code


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


def test_first_build_fetches_then_builds_offline(world: World) -> None:
    assert world.run() == 0
    assert world.runtime.purposes() == ["fetch", "build"]
    assert world.runtime.commands() == ["fetch", "metadata", "build"]
    fetch, build = world.runtime.started
    assert fetch.network == "host"
    assert build.network == "none"
    assert {request.image for request in world.runtime.started} == {world.image}
    build_call = world.runtime.execs[-1]
    assert build_call.argv[:5] == ("cargo", "build", "--target", AARCH64, "--message-format=json")
    assert not world.runtime.cold_running


def test_an_unchanged_project_is_not_fetched_again(world: World) -> None:
    world.run()
    world.runtime.started.clear()
    world.runtime.removed.clear()
    world.runtime.execs.clear()
    assert world.run() == 0
    # Not even a container: the build's own is still warm.
    assert world.runtime.purposes() == []
    assert world.runtime.commands() == ["build"]


def test_a_changed_lock_file_fetches_again(world: World) -> None:
    world.run()
    (world.root / "Cargo.lock").write_text("version = 4\n", encoding="utf-8")
    world.runtime.started.clear()
    world.runtime.removed.clear()
    world.runtime.execs.clear()
    assert world.run() == 0
    assert world.runtime.purposes() == ["fetch"]
    assert world.runtime.commands() == ["fetch", "metadata", "build"]


def test_offline_means_no_fetch_container(world: World) -> None:
    assert world.run(args=("--offline",)) == 0
    assert world.runtime.purposes() == ["build"]
    # With no fetch record, metadata is read in the build container itself.
    assert world.runtime.commands() == ["metadata", "build"]


def test_credentials_go_to_the_fetch_command_only(tmp_path: Path) -> None:
    world = World(tmp_path, CARGO_REGISTRIES_COMPANY_TOKEN="s3cret", CARGO_REGISTRY_TOKEN="publish-only")
    world.run()
    fetch_call = next(call for call in world.runtime.execs if call.command == "fetch")
    assert fetch_call.env["CARGO_REGISTRIES_COMPANY_TOKEN"] == "s3cret"
    for request in world.runtime.started:
        assert "s3cret" not in request.env.values()
    assert all("s3cret" not in call.env.values() for call in world.runtime.execs if call.command != "fetch")
    # crates.io's token serves `cargo publish` alone: no step is given it, the fetch step included.
    assert all("publish-only" not in call.env.values() for call in world.runtime.execs)
    assert all("publish-only" not in request.env.values() for request in world.runtime.started)


def test_a_failed_fetch_returns_cargos_code_and_builds_nothing(world: World) -> None:
    world.runtime.script = lambda call: (
        Reply(code=101, stderr=b"error: no network") if call.command == "fetch" else Reply()
    )
    assert world.run() == 101
    assert world.runtime.commands() == ["fetch"]
    assert not world.runtime.cold_running


def test_cargos_exit_code_comes_back(world: World) -> None:
    def script(call: Exec) -> Reply:
        if call.command == "build":
            return Reply(code=101, stderr=b"error[E0425]: cannot find value\n")
        return default_script(call)

    world.runtime.script = script
    assert world.run() == 101
    assert b"".join(world.stderr) == b"error[E0425]: cannot find value\n"
    assert not world.runtime.cold_running


def test_an_offline_miss_refetches_once(world: World) -> None:
    builds: list[int] = []

    def script(call: Exec) -> Reply:
        if call.command == "build":
            builds.append(1)
            return Reply(code=101, stderr=OFFLINE_MISS) if len(builds) == 1 else default_script(call)
        return default_script(call)

    world.run()  # fetches and records
    world.runtime.script = script
    world.runtime.started.clear()
    world.runtime.removed.clear()
    world.runtime.execs.clear()
    assert world.run() == 0
    # The builds run in the warm container of the first run; the fetch in a container of its own.
    assert world.runtime.purposes() == ["fetch"]
    assert world.runtime.commands() == ["build", "fetch", "metadata", "build"]
    assert len(builds) == 2


def test_an_offline_miss_that_persists_is_not_retried_forever(world: World) -> None:
    world.runtime.script = lambda call: (
        Reply(code=101, stderr=OFFLINE_MISS) if call.command == "build" else default_script(call)
    )
    assert world.run() == 101
    assert world.runtime.commands().count("build") == 2
    assert world.runtime.commands().count("fetch") == 2


def test_an_offline_miss_with_offline_asked_is_cargos_answer(world: World) -> None:
    world.runtime.script = lambda call: (
        Reply(code=101, stderr=OFFLINE_MISS) if call.command == "build" else default_script(call)
    )
    assert world.run(args=("--offline",)) == 101
    assert "fetch" not in world.runtime.commands()


def test_a_failing_metadata_read_returns_its_code(world: World) -> None:
    world.runtime.script = lambda call: Reply(code=3) if call.command == "metadata" else default_script(call)
    assert world.run() == 3
    assert "build" not in world.runtime.commands()


def test_report_is_kept_and_a_report_failure_never_changes_cargos_code(world: World) -> None:
    package = {"id": "app 0.1.0", "name": "app", "version": "0.1.0", "links": None}
    out_dir = world.root.resolve() / "target" / AARCH64 / "debug" / "build" / "app-1" / "out"
    out_dir.mkdir(parents=True)
    # What Cargo keeps beside OUT_DIR: the build script's own stdout.
    (out_dir.parent / "output").write_text("cargo:rustc-link-lib=static=z\ncargo:warning=hi\n", encoding="utf-8")
    executed = cargo_message(
        "build-script-executed",
        package_id="app 0.1.0",
        linked_libs=["static=z"],
        linked_paths=[],
        cfgs=[],
        env=[],
        out_dir=str(out_dir),
    )

    def script(call: Exec) -> Reply:
        if call.command == "metadata":
            return Reply(stdout=metadata(package))
        if call.command == "build":
            return Reply(stdout=executed + cargo_message("build-finished", success=True))
        return default_script(call)

    world.runtime.script = script
    assert world.run() == 0
    path = store.report_path(world.root.resolve() / "target", AARCH64, "debug")
    saved = store.load(path)
    assert [p.package for p in saved.packages] == ["app"]
    assert saved.packages[0].linked_libs == ("static=z",)
    assert saved.packages[0].warnings == ("hi",)

    # Cargo built a package that metadata does not list: the report cannot be made, Cargo's 0 stands, and the
    # stale report is gone.
    world.runtime.script = lambda call: (
        Reply(stdout=executed.replace(b"app 0.1.0", b"ghost 0.1.0") + cargo_message("build-finished", success=True))
        if call.command == "build"
        else script(call)
    )
    assert world.run() == 0
    assert not path.exists()


def test_a_build_script_message_too_long_to_read_leaves_no_report(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world.run()
    path = store.report_path(world.root.resolve() / "target", AARCH64, "debug")
    assert path.exists()
    # Written into Cargo's stdout by a build script: it starts like the message the report needs, and never ends.
    forged = b'{"reason":"build-script-executed","package_id":"' + b"x" * (MAX_MESSAGE_BYTES + 1) + b"\n"
    world.runtime.script = lambda call: (
        Reply(stdout=forged + cargo_message("build-finished", success=True))
        if call.command == "build"
        else default_script(call)
    )
    assert world.run() == 0
    assert not path.exists()
    assert "build-script report not saved: 1 of Cargo's messages were too long" in capsys.readouterr().err


def test_a_report_that_cannot_be_written_is_a_warning(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = world.root / "target" / "xpcargo" / "build-scripts"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("a file where a directory must go", encoding="utf-8")
    assert world.run() == 0
    assert "build-script report not saved" in capsys.readouterr().err


def test_a_human_message_format_drops_the_stale_report(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.run()
    path = store.report_path(world.root.resolve() / "target", AARCH64, "debug")
    assert path.exists()
    world.run(args=("--message-format", "short"))
    assert not path.exists()
    assert "hides Cargo's build-script messages" in capsys.readouterr().err


@pytest.mark.parametrize(
    "error",
    [EngineError("lost the output"), InterruptError("interrupted"), KeyboardInterrupt()],
    ids=["engine-error", "interrupt", "keyboard-interrupt"],
)
def test_the_container_is_removed_on_error_and_interrupt(tmp_path: Path, error: BaseException) -> None:
    world = World(tmp_path, XPCARGO_KEEP_WARM="0")
    world.runtime.script = lambda call: (
        Reply(stdout=b"partial", error=error) if call.command == "build" else default_script(call)
    )
    # Ctrl-C reaches the caller as xpcargo's own error, which says what was left running.
    with pytest.raises(EngineError if isinstance(error, EngineError) else InterruptError) as caught:
        world.run()
    if isinstance(caught.value, InterruptError):
        assert caught.value.left_behind == []
        assert caught.value.summary().endswith("nothing was left running")
    assert world.runtime.started
    assert not world.runtime.running


@pytest.mark.parametrize(
    ("error", "signal_name"),
    [(InterruptError("terminated by SIGTERM", signal_name="TERM"), "TERM"), (KeyboardInterrupt(), "INT")],
    ids=["sigterm", "keyboard-interrupt"],
)
def test_an_interrupt_in_a_warm_container_signals_the_command_and_keeps_the_container(
    world: World, error: BaseException, signal_name: str
) -> None:
    world.runtime.script = lambda call: (
        Reply(stdout=b"partial", error=error) if call.command == "build" else default_script(call)
    )
    with pytest.raises(InterruptError) as caught:
        world.run()
    assert caught.value.left_behind == []
    build = next(call for call in world.runtime.execs if call.command == "build")
    stop = world.runtime.execs[-1]
    assert stop.warm_script == "xpcargo-stop"
    assert stop.container == build.container
    # The token the wrapper recorded the command's process group under, and the signal xpcargo received.
    assert stop.argv[5:7] == (build.token, signal_name)
    assert world.runtime.running == {build.container} == world.runtime.warm_running


def test_an_interrupt_that_cannot_be_passed_on_removes_the_warm_container(world: World) -> None:
    def script(call: Exec) -> Reply:
        if call.command == "build":
            return Reply(error=InterruptError("interrupted"))
        if call.warm_script == "xpcargo-stop":
            return Reply(error=EngineError("no answer"))
        return default_script(call)

    world.runtime.script = script
    with pytest.raises(InterruptError):
        world.run()
    assert not world.runtime.running


def test_an_interrupted_fetch_removes_its_container(world: World) -> None:
    world.runtime.script = lambda call: Reply(error=KeyboardInterrupt()) if call.command == "fetch" else Reply()
    with pytest.raises(InterruptError):
        world.run()
    assert world.runtime.purposes() == ["fetch"]
    assert not world.runtime.cold_running


def test_links_overrides_file_is_written_and_passed(tmp_path: Path) -> None:
    world = World(tmp_path)
    (world.root / "xpcargo.toml").write_text(f'[target.{AARCH64}.links.z]\nrustc-link-lib = ["z"]\n', encoding="utf-8")
    assert world.run() == 0
    build_call = world.runtime.execs[-1]
    config_file = Path(build_call.argv[build_call.argv.index("--config") + 1])
    assert config_file.read_text(encoding="utf-8").startswith(f'[target."{AARCH64}"."z"]')


def test_a_toolchain_file_asking_for_a_rust_no_image_has_stops_the_build(tmp_path: Path) -> None:
    world = World(tmp_path)
    (world.root / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "1.70.0"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"asks for Rust 1\.70\.0, which no xpcargo image provides") as caught:
        world.run()
    assert "1.85 and 1.96 (stable)" in str(caught.value.hint)
    assert world.runtime.started == []


def test_the_toolchain_files_other_keys_are_said_not_applied(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path)
    text = '[toolchain]\nchannel = "stable"\ncomponents = ["rustfmt"]\ntargets = ["x86_64-pc-windows-msvc"]\n'
    (world.root / "rust-toolchain.toml").write_text(text, encoding="utf-8")
    assert world.run() == 0
    assert "components, targets not applied: the image has what it has (Rust 1.96.0" in capsys.readouterr().err
    (world.root / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "stable"\n', encoding="utf-8")
    assert world.run() == 0
    assert "not applied" not in capsys.readouterr().err


def test_messages_the_user_asked_for_pass_through(world: World) -> None:
    lines = cargo_message("compiler-artifact", package_id="app 0.1.0") + cargo_message("build-finished", success=True)
    world.runtime.script = lambda call: Reply(stdout=lines) if call.command == "build" else default_script(call)
    assert world.run(args=("--message-format=json",)) == 0
    assert b"".join(world.stdout) == lines


def test_cargo_command_plans_before_it_connects(tmp_path: Path) -> None:
    root = app_project(tmp_path)
    context = _context(tmp_path, root)
    connected: list[Host] = []

    def connect(host: Host, address: object = None, /) -> FakeRuntime:
        connected.append(host)
        return FakeRuntime()

    from xpcargo.errors import UnknownTargetError  # noqa: PLC0415

    project = context.project(CargoArgs())
    with pytest.raises(UnknownTargetError):
        run.cargo_command(context.host, project, "build", "nonsense-target", [], connect=connect)
    assert connected == []


# --- shell and report -----------------------------------------------------------------------------------------


def _shell(world: World, argv: list[str], *, interactive: bool) -> int:
    project = world.context.project(CargoArgs())
    host = world.context.host
    return run.shell(host, project, AARCH64, argv, connect=lambda *_: world.runtime, interactive=interactive)


def test_shell_runs_a_command_in_a_build_container(world: World) -> None:
    (world.root.parent / "home" / ".cargo").mkdir(parents=True)
    code = _shell(world, ["uname", "-m"], interactive=False)
    assert code == 0
    (request,) = world.runtime.started
    assert request.network == "none"
    assert world.runtime.execs[0].argv == ("uname", "-m")
    assert not world.runtime.cold_running
    expected = plan_in(world.context, "shell", AARCH64, []).request(Step.SHELL, world.image)
    assert dataclasses.replace(request, labels={}) == dataclasses.replace(expected, labels={})
    assert expected.labels.items() <= request.labels.items()


def test_shell_without_a_command_needs_a_terminal(world: World) -> None:
    with pytest.raises(ProjectError, match="needs a terminal"):
        run.check_shell([], interactive=False)
    run.check_shell(["uname"], interactive=False)
    assert _shell(world, [], interactive=True) == 0
    assert world.runtime.execs[-1].argv == ("bash", "-l")


def test_load_report_after_a_build(world: World) -> None:
    world.run()
    loaded = store.load_last(AARCH64, [], cwd=world.context.cwd, environ=world.context.host.environ)
    assert loaded.target == AARCH64
    with pytest.raises(ReportError) as caught:
        store.load_last(AARCH64, ["--release"], cwd=world.context.cwd, environ=world.context.host.environ)
    assert caught.value.hint == f"run `xpcargo build --target {AARCH64}` first"


def test_fetch_record_survives_concurrent_saves(world: World) -> None:
    """Two processes saving the record at once each write a temporary file of their own."""
    import threading  # noqa: PLC0415

    from xpcargo.pipeline.fetch import FetchRecord  # noqa: PLC0415

    record = FetchRecord(world.root / "target" / "xpcargo" / "record.json")
    errors: list[BaseException] = []

    def save(index: int) -> None:
        try:
            for _ in range(200):
                record.save(f"fingerprint-{index}", {"index": index})
        except BaseException as error:  # noqa: BLE001 - collected for the assertion below
            errors.append(error)

    threads = [threading.Thread(target=save, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = json.loads(record.path.read_text(encoding="utf-8"))
    assert record.load(state["fingerprint"]) == state["metadata"]
    assert list(record.path.parent.glob("*.tmp")) == []


def test_an_interrupt_whose_cleanup_fails_names_what_is_left(world: World) -> None:
    class Unremovable(FakeRuntime):
        def remove(self, container_id: str, *, unhurried: bool = False) -> None:
            raise EngineError("the engine does not answer")

    runtime = Unremovable(every_image=True, script=lambda call: Reply(error=KeyboardInterrupt()))
    world.runtime = runtime
    with pytest.raises(InterruptError) as caught:
        world.run()
    assert caught.value.left_behind == ["container-1"]
    line = caught.value.summary()
    assert line.startswith("error: interrupted; the engine did not confirm the removal of container container-1")
    assert "docker rm -f container-1" in line


def test_a_failed_removal_after_success_is_an_error(world: World) -> None:
    class Unremovable(FakeRuntime):
        def remove(self, container_id: str, *, unhurried: bool = False) -> None:
            raise EngineError("the engine does not answer")

    world.runtime = Unremovable(every_image=True)
    with pytest.raises(EngineError, match="does not answer"):
        world.run()


def test_only_the_removal_after_success_is_unhurried(world: World) -> None:
    seen: list[bool] = []

    class Recording(FakeRuntime):
        def remove(self, container_id: str, *, unhurried: bool = False) -> None:
            seen.append(unhurried)
            super().remove(container_id, unhurried=unhurried)

    world.runtime = Recording(every_image=True)
    world.run()
    assert seen == [True]
    seen.clear()
    world.runtime = Recording(every_image=True, script=lambda call: Reply(error=KeyboardInterrupt()))
    with pytest.raises(InterruptError):
        world.run()
    assert seen
    assert not any(seen)


def test_an_engine_error_keeps_its_cause_when_the_cleanup_fails_too(world: World) -> None:
    class Unremovable(FakeRuntime):
        def remove(self, container_id: str, *, unhurried: bool = False) -> None:
            raise EngineError("the engine does not answer")

    world.runtime = Unremovable(
        every_image=True, script=lambda call: Reply(error=EngineError("lost the output of `cargo build`"))
    )
    with pytest.raises(EngineError, match="lost the output") as caught:
        world.run()
    assert caught.value.left_behind == ["container-1"]
    assert "may still be running" in caught.value.summary()


def test_a_second_ctrl_c_during_cleanup_still_says_what_may_be_left(world: World) -> None:
    class SlowToRemove(FakeRuntime):
        def remove(self, container_id: str, *, unhurried: bool = False) -> None:
            raise KeyboardInterrupt

    world.runtime = SlowToRemove(every_image=True, script=lambda call: Reply(error=KeyboardInterrupt()))
    with pytest.raises(InterruptError) as caught:
        world.run()
    assert caught.value.left_behind == ["container-1"]


def test_orphans_of_dead_processes_on_this_machine_are_reaped(world: World) -> None:
    from xpcargo.container import session  # noqa: PLC0415
    from xpcargo.container.spec import ContainerRequest  # noqa: PLC0415

    runtime = FakeRuntime(every_image=True)
    dead = session.labelled(ContainerRequest(image="i", user="0:0", workdir=Path("/")), "build")
    dead_labels = {**dead.labels, "org.xpcargo.session": "build:999999999"}
    elsewhere = {**dead_labels, "org.xpcargo.host": "another-machine/boot"}
    alive = session.labelled(ContainerRequest(image="i", user="0:0", workdir=Path("/")), "build").labels
    # A running warm container outlives the process that started it by design.
    warm = {**dead_labels, "org.xpcargo.session": "build:warm-999999999"}
    for labels in (dead_labels, elsewhere, alive, warm):
        runtime.start(ContainerRequest(image="i", user="0:0", workdir=Path("/"), labels=labels))
    assert session.reap_orphans(runtime) == ["container-1"]
    assert runtime.running == {"container-2", "container-3", "container-4"}


def test_the_build_reads_cargo_home_and_never_its_credentials(world: World) -> None:
    home = world.root.parent / "home" / ".cargo"
    home.mkdir(parents=True)
    (home / "credentials.toml").write_text('[registry]\ntoken = "s3cret"\n', encoding="utf-8")
    world.run()
    fetch, build = world.runtime.started
    by_path = {mount.path: mount for mount in build.mounts}
    assert by_path[home].read_only
    assert by_path[home / "credentials.toml"].source == Path("/dev/null")
    fetch_paths = {mount.path: mount for mount in fetch.mounts}
    assert not fetch_paths[home].read_only
    assert home / "credentials.toml" not in fetch_paths


def test_cargo_clean_does_not_bring_the_fetch_step_back(world: World) -> None:
    world.run()
    import shutil  # noqa: PLC0415

    shutil.rmtree(world.root / "target")  # what `cargo clean` does
    world.runtime.started.clear()
    world.runtime.removed.clear()
    world.runtime.execs.clear()
    assert world.run() == 0
    assert world.runtime.commands() == ["build"]


def test_a_build_script_missing_a_tool_gets_one_hint_line_after_cargos_output(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    failure = (Path(__file__).parent / "captured" / "failures" / "cmake-crate.txt").read_bytes()
    world.runtime.script = lambda call: (
        Reply(code=101, stdout=cargo_message("build-finished", success=False), stderr=failure)
        if call.command == "build"
        else default_script(call)
    )
    assert world.run() == 101
    assert b"".join(world.stderr) == failure
    hint_lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("hint:")]
    assert hint_lines == [
        'hint: the build script of cm v0.1.0 found no `cmake`: add `extra-packages = ["cmake"]` under [build] '
        f"(or [target.{AARCH64}]) in xpcargo.toml"
    ]


def test_a_successful_build_gets_no_hint_whatever_its_output(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    failure = (Path(__file__).parent / "captured" / "failures" / "cmake-crate.txt").read_bytes()
    world.runtime.script = lambda call: (
        Reply(stdout=cargo_message("build-finished", success=True), stderr=failure)
        if call.command == "build"
        else default_script(call)
    )
    assert world.run() == 0
    assert "hint:" not in capsys.readouterr().err


def test_the_libraries_origins_are_asked_of_the_build_container_once_after_a_successful_build(world: World) -> None:
    package = {"id": "app 0.1.0", "name": "app", "version": "0.1.0", "links": None}
    out_dir = world.root.resolve() / "target" / AARCH64 / "debug" / "build" / "app-1" / "out"
    out_dir.mkdir(parents=True)
    (out_dir.parent / "output").write_text(
        f"cargo:rustc-link-search=native={out_dir}\ncargo:rustc-link-lib=static=hello\ncargo:rustc-link-lib=m\n",
        encoding="utf-8",
    )
    executed = cargo_message("build-script-executed", package_id="app 0.1.0", out_dir=str(out_dir))
    probe = (
        f"T\t/usr/aarch64-linux-gnu/lib/\nH\t/usr/lib/x86_64-linux-gnu/\nE\t{out_dir}/libhello.a\t{out_dir}/libhello.a\n"
        "E\t/usr/aarch64-linux-gnu/lib//libm.so\t/usr/aarch64-linux-gnu/lib/libm.so\n"
        "O\tlibc6-dev-arm64-cross: /usr/aarch64-linux-gnu/lib/libm.so\n"
    ).encode()

    def script(call: Exec) -> Reply:
        if call.command == "metadata":
            return Reply(stdout=metadata(package))
        if call.command == "build":
            return Reply(stdout=executed + cargo_message("build-finished", success=True))
        if call.command == "sh":
            return Reply(stdout=probe)
        return default_script(call)

    world.runtime.script = script
    assert world.run() == 0
    build, probe_call = world.runtime.execs[-2:]
    assert probe_call.command == "sh"
    assert probe_call.container == build.container
    assert probe_call.argv[4] == "aarch64-linux-gnu-gcc"
    saved = store.load(store.report_path(world.root.resolve() / "target", AARCH64, "debug"))
    hello, libm = saved.packages[0].libraries
    assert (hello.origin, hello.path) == (Origin.OUT_DIR, f"{out_dir}/libhello.a")
    assert (libm.origin, libm.debian_package) == (Origin.IMAGE, "libc6-dev-arm64-cross")

    # Built again: everything the probe found is known, and the container is not asked again.
    world.runtime.execs.clear()
    (out_dir / "libhello.a").write_bytes(b"!<arch>\n")
    assert world.run() == 0
    assert "sh" not in world.runtime.commands()
    again = store.load(store.report_path(world.root.resolve() / "target", AARCH64, "debug"))
    assert again.packages[0].libraries == (hello, libm)

    # A failed build asks nothing more of the container.
    world.runtime.execs.clear()
    world.runtime.script = lambda call: (
        Reply(code=101, stdout=executed + cargo_message("build-finished", success=False))
        if call.command == "build"
        else script(call)
    )
    assert world.run() == 101
    assert "sh" not in world.runtime.commands()


def test_a_test_run_on_a_rust_that_skips_cross_doc_tests_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    world = World(tmp_path)
    assert world.run("test") == 0
    assert "doc tests" not in capsys.readouterr().err
    # Cargo 1.85 skips a cross target's doc tests without a word: xpcargo says it, once, for `test` only.
    (world.root / "rust-toolchain.toml").write_text('[toolchain]\nchannel = "1.85"\n', encoding="utf-8")
    spec = world.context.host.target(AARCH64, world.context.project_config(world.root))
    world.runtime.images.add(world.context.host.image_plan(spec).reference)
    assert world.run("test") == 0
    said = [line for line in capsys.readouterr().err.splitlines() if "doc tests" in line]
    assert said == [
        f"warning: doc tests are not run: Cargo 1.85.1 skips them for {AARCH64} (not this machine's target); Rust "
        "1.89 and later run them under the target's runner (XPCARGO_TOOLCHAIN=default: the target's own Rust)"
    ]
    assert world.run("build") == 0
    assert "doc tests" not in capsys.readouterr().err
