"""Warm sessions against the fake runtime: which container a request gets, and what happens when that container is
closing, gone, or no longer fits. The scripts themselves run for real in tests/integration/test_warm.py."""

from __future__ import annotations

import fcntl
import threading
from pathlib import Path

import pytest

from xpcargo.container import session, spec, warm
from xpcargo.container.spec import TARGET_LABEL, WORKSPACE_LABEL, ContainerRequest, Mount
from xpcargo.errors import (
    CancelledError,
    ContainerGoneError,
    EngineLostError,
    EngineUnavailableError,
    InterruptError,
)

from .fake_runtime import Exec, FakeRuntime, Reply, default_script


def _request(tmp_path: Path, **changes: object) -> ContainerRequest:
    fields: dict[str, object] = {
        "image": "xpcargo/x86_64-unknown-linux-gnu:1",
        "user": "1000:1000",
        "workdir": tmp_path,
        "mounts": (Mount(path=tmp_path),),
        "env": {"A": "1"},
        "labels": {WORKSPACE_LABEL: str(tmp_path), TARGET_LABEL: "x86_64-unknown-linux-gnu"},
        "keep_warm": 60,
        **changes,
    }
    return ContainerRequest(**fields)  # type: ignore[arg-type]


def _run(runtime: FakeRuntime, request: ContainerRequest, locks: Path, argv: tuple[str, ...] = ("true",)) -> int:
    with session.open_session(runtime, request, purpose="build", warm_locks=locks) as opened:
        return opened.run(list(argv), env={"B": "2"})


def test_a_second_command_reuses_the_container_with_its_own_environment(tmp_path: Path) -> None:
    runtime = FakeRuntime(every_image=True)
    _run(runtime, _request(tmp_path), tmp_path / "locks")
    _run(runtime, _request(tmp_path, env={"A": "changed"}), tmp_path / "locks")
    assert len(runtime.started) == 1
    assert runtime.containers["container-1"][1] == tuple(warm.main_argv(60, 3600))
    first, second = runtime.execs
    assert first.env == {"A": "1", "B": "2"}
    assert second.env == {"A": "changed", "B": "2"}
    assert first.token != second.token
    assert not runtime.removed
    # The start-time watch of the container this process started is let go, the container is not.
    assert runtime.released == ["container-1"]


@pytest.mark.parametrize(
    "change",
    [
        {"image": "xpcargo/x86_64-unknown-linux-gnu:2"},
        {"user": "1001:1001"},
        {"keep_warm": 30},
        {"network": "host"},
    ],
    ids=["image", "user", "idle-time", "network"],
)
def test_a_request_that_no_longer_fits_replaces_the_container(tmp_path: Path, change: dict[str, object]) -> None:
    runtime = FakeRuntime(every_image=True)
    _run(runtime, _request(tmp_path), tmp_path / "locks")
    _run(runtime, _request(tmp_path, **change), tmp_path / "locks")
    if "user" in change:
        # Another user has a slot of their own: the first user's container is not theirs to retire.
        assert runtime.removed == []
    else:
        assert runtime.removed == ["container-1"]
        assert [call.warm_script for call in runtime.execs if call.warm_script] == ["xpcargo-retire"]
    assert len(runtime.started) == 2


def test_a_recreated_mount_source_replaces_the_container(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    holder = tmp_path / "holder"
    runtime = FakeRuntime(every_image=True)
    request = _request(tmp_path, mounts=(Mount(path=tmp_path / "ws"), Mount(path=target)))
    (tmp_path / "ws").mkdir()
    _run(runtime, request, tmp_path / "locks")
    # Moved away (and kept, so that its inode cannot be reused) and made again: what a bind mount would pin.
    target.rename(holder)
    target.mkdir()
    _run(runtime, request, tmp_path / "locks")
    assert len(runtime.started) == 2
    assert runtime.removed == ["container-1"]


def test_a_busy_container_that_no_longer_fits_is_left_to_end_by_itself(tmp_path: Path) -> None:
    def script(call: Exec) -> Reply:
        return Reply(code=1) if call.warm_script == "xpcargo-retire" else default_script(call)

    runtime = FakeRuntime(script=script, every_image=True)
    _run(runtime, _request(tmp_path), tmp_path / "locks")
    _run(runtime, _request(tmp_path, keep_warm=30), tmp_path / "locks")
    assert runtime.removed == []
    assert runtime.running == {"container-1", "container-2"}


def test_a_command_refused_by_a_closing_container_runs_in_a_new_one(tmp_path: Path) -> None:
    closing = threading.Event()

    def script(call: Exec) -> Reply:
        if closing.is_set() and call.container == "container-1" and call.token is not None:
            return Reply(code=warm.REFUSED)
        return Reply(code=0)  # and `test -e refused.<token>` says it was the wrapper

    runtime = FakeRuntime(script=script, every_image=True)
    _run(runtime, _request(tmp_path), tmp_path / "locks")
    runtime.execs.clear()
    closing.set()
    assert _run(runtime, _request(tmp_path), tmp_path / "locks", ("cargo", "build")) == 0
    assert [call.container for call in runtime.execs if call.token] == ["container-1", "container-2"]
    assert "container-1" in runtime.removed


def test_a_command_that_exits_199_itself_is_not_run_again(tmp_path: Path) -> None:
    def script(call: Exec) -> Reply:
        if call.token is not None:
            return Reply(code=warm.REFUSED)
        # `test -e refused.<token>` fails: the command chose that code.
        return Reply(code=1)

    runtime = FakeRuntime(script=script, every_image=True)
    assert _run(runtime, _request(tmp_path), tmp_path / "locks", ("cargo", "build")) == warm.REFUSED
    assert len(runtime.started) == 1
    assert len([call for call in runtime.execs if call.token]) == 1


def test_a_container_gone_before_the_command_started_is_replaced(tmp_path: Path) -> None:
    runtime = FakeRuntime(every_image=True)
    _run(runtime, _request(tmp_path), tmp_path / "locks")
    runtime.execs.clear()

    def script(call: Exec) -> Reply:
        if call.container == "container-1" and call.token:
            # It ended by itself (its idle time ran out) just as it was found.
            runtime.removed.append("container-1")
            return Reply(error=ContainerGoneError("container-1 was no longer running"))
        return Reply()

    runtime.script = script
    assert _run(runtime, _request(tmp_path), tmp_path / "locks") == 0
    assert [call.container for call in runtime.execs if call.token] == ["container-1", "container-2"]


def test_containers_that_keep_going_away_end_in_one_error(tmp_path: Path) -> None:
    runtime = FakeRuntime(script=lambda call: Reply(error=ContainerGoneError("gone")), every_image=True)
    with pytest.raises(ContainerGoneError, match="no warm container stayed up"):
        _run(runtime, _request(tmp_path), tmp_path / "locks")


def test_cancelling_stops_the_running_command_and_then_refuses_the_next(tmp_path: Path) -> None:
    started, stopped = threading.Event(), threading.Event()

    def script(call: Exec) -> Reply:
        if call.warm_script == "xpcargo-stop":
            stopped.set()
        elif call.token is not None:
            started.set()
            assert stopped.wait(10)
            return Reply(code=143)
        return Reply()

    runtime = FakeRuntime(script=script, every_image=True)
    cancellation = session.Cancellation()
    codes: list[int] = []
    errors: list[BaseException] = []

    def build() -> None:
        with session.open_session(
            runtime, _request(tmp_path), purpose="build", cancellation=cancellation, warm_locks=tmp_path / "locks"
        ) as opened:
            codes.append(opened.run(["cargo", "build"]))
            try:
                opened.run(["cargo", "metadata"])
            except CancelledError as error:
                errors.append(error)

    worker = threading.Thread(target=build)
    worker.start()
    assert started.wait(10)
    cancellation.cancel("INT")
    worker.join(10)
    assert codes == [143]
    assert len(errors) == 1
    stop = next(call for call in runtime.execs if call.warm_script == "xpcargo-stop")
    assert stop.argv[6] == "INT"
    assert not runtime.removed


def test_a_cancelled_command_whose_stop_goes_unanswered_is_named(tmp_path: Path) -> None:
    started, stopped = threading.Event(), threading.Event()

    def script(call: Exec) -> Reply:
        if call.warm_script == "xpcargo-stop":
            stopped.set()
            return Reply(error=EngineUnavailableError("no answer within 3s"))
        if call.token is not None:
            started.set()
            assert stopped.wait(10)
            return Reply(code=143)
        return Reply()

    runtime = FakeRuntime(script=script, every_image=True)
    cancellation = session.Cancellation()

    def build() -> None:
        with session.open_session(
            runtime, _request(tmp_path), purpose="build", cancellation=cancellation, warm_locks=tmp_path / "locks"
        ) as opened:
            opened.run(["cargo", "build"])

    worker = threading.Thread(target=build)
    worker.start()
    assert started.wait(10)
    cancellation.cancel("INT")
    worker.join(10)
    assert cancellation.still_running == [("container-1", "cargo build")]
    assert cancellation.left_behind == []


def test_an_interrupt_passes_its_own_signal_on(tmp_path: Path) -> None:
    def script(call: Exec) -> Reply:
        if call.token is not None:
            return Reply(error=InterruptError("terminated by SIGHUP", signal_name="HUP"))
        return Reply()

    runtime = FakeRuntime(script=script, every_image=True)
    with pytest.raises(InterruptError):
        _run(runtime, _request(tmp_path), tmp_path / "locks")
    assert runtime.execs[-1].warm_script == "xpcargo-stop"
    assert runtime.execs[-1].argv[6] == "HUP"
    assert runtime.running == {"container-1"}


def _engine_lost(stop: Reply) -> FakeRuntime:
    """The engine lost while `cargo build` runs in a warm container; the stop that follows gets ``stop``."""

    def script(call: Exec) -> Reply:
        if call.warm_script == "xpcargo-stop":
            return stop
        if call.token is not None:
            return Reply(error=EngineLostError("Docker engine stopped answering while `cargo build` ran", hint="h"))
        return Reply()

    return FakeRuntime(script=script, every_image=True)


def test_a_command_the_engine_lost_is_stopped_when_the_engine_takes_it(tmp_path: Path) -> None:
    runtime = _engine_lost(Reply())
    with pytest.raises(EngineLostError) as caught:
        _run(runtime, _request(tmp_path), tmp_path / "locks", ("cargo", "build", "--release"))
    stop = runtime.execs[-1]
    assert (stop.warm_script, stop.argv[6]) == ("xpcargo-stop", "TERM")
    assert caught.value.summary() == "error: Docker engine stopped answering while `cargo build` ran (hint: h)"
    # The container stays warm for the next command.
    assert runtime.running == {"container-1"}


def test_a_command_the_engine_lost_and_cannot_stop_is_named_with_its_container(tmp_path: Path) -> None:
    """The engine frozen under a warm command: the container is meant to stay, the command may run on in it."""
    runtime = _engine_lost(Reply(error=EngineUnavailableError("no answer within 3s")))
    with pytest.raises(EngineLostError) as caught:
        _run(runtime, _request(tmp_path), tmp_path / "locks", ("cargo", "build", "--release"))
    assert caught.value.still_running == [("container-1", "cargo build")]
    assert caught.value.summary() == (
        "error: Docker engine stopped answering while `cargo build` ran; the engine did not confirm that `cargo "
        "build` ended in warm container container-1, where it may still be running (hint: once the engine answers, "
        "`docker rm -f container-1`)"
    )
    assert not runtime.removed


def test_a_command_run_under_a_script_is_named_as_its_caller_names_it(tmp_path: Path) -> None:
    """The compile cache runs Cargo as the arguments of its script: the build names the command `cargo test`."""
    runtime = _engine_lost(Reply(error=EngineUnavailableError("no answer within 3s")))
    with (
        pytest.raises(EngineLostError) as caught,
        session.open_session(runtime, _request(tmp_path), purpose="build", warm_locks=tmp_path / "locks") as opened,
    ):
        opened.run(["sh", "-c", '"$@"', "/t/stats.json", "cargo", "test", "-q"], name="cargo test")
    assert caught.value.still_running == [("container-1", "cargo test")]


def test_an_engine_out_of_reach_before_the_command_started_names_nothing(tmp_path: Path) -> None:
    def script(call: Exec) -> Reply:
        if call.token is not None:
            return Reply(error=EngineUnavailableError("lost Docker engine while trying to start `cargo build`"))
        return Reply()

    runtime = FakeRuntime(script=script, every_image=True)
    with pytest.raises(EngineUnavailableError) as caught:
        _run(runtime, _request(tmp_path), tmp_path / "locks", ("cargo", "build"))
    assert caught.value.summary() == "error: lost Docker engine while trying to start `cargo build`"
    assert not any(call.warm_script == "xpcargo-stop" for call in runtime.execs)


def test_an_interrupt_whose_stop_goes_unanswered_names_the_command_not_a_removal(tmp_path: Path) -> None:
    def script(call: Exec) -> Reply:
        if call.warm_script == "xpcargo-stop":
            return Reply(error=EngineUnavailableError("no answer within 3s"))
        if call.token is not None:
            return Reply(error=InterruptError("interrupted"))
        return Reply()

    runtime = FakeRuntime(script=script, every_image=True)
    with pytest.raises(InterruptError) as caught:
        _run(runtime, _request(tmp_path), tmp_path / "locks", ("sleep", "600"))
    assert caught.value.summary() == (
        "error: interrupted; the engine did not confirm that `sleep 600` ended in warm container container-1, where "
        "it may still be running (hint: once the engine answers, `docker rm -f container-1`)"
    )


def test_a_container_past_its_lifetime_is_not_reused(tmp_path: Path) -> None:
    """By the engine's clock of its creation, which nothing in the container can change."""
    runtime = FakeRuntime(every_image=True)
    _run(runtime, _request(tmp_path, warm_lifetime=3600), tmp_path / "locks")
    runtime.created["container-1"] -= 3601
    _run(runtime, _request(tmp_path, warm_lifetime=3600), tmp_path / "locks")
    assert len(runtime.started) == 2
    assert runtime.removed == ["container-1"]
    assert runtime.containers["container-2"][1] == tuple(warm.main_argv(60, 3600))


def test_a_command_while_another_runs_in_the_slot_gets_a_container_of_its_own(tmp_path: Path) -> None:
    runtime = FakeRuntime(every_image=True)
    _run(runtime, _request(tmp_path), tmp_path / "locks")
    (lock,) = (tmp_path / "locks").glob("*.lock")
    with lock.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        _run(runtime, _request(tmp_path), tmp_path / "locks")
    # Tied to this process, not kept warm, and removed at its end; the warm one is left alone.
    assert runtime.containers["container-2"][1] is None
    assert runtime.started[1].keep_warm == 0
    assert runtime.removed == ["container-2"]
    assert runtime.running == {"container-1"}


def test_confined_commands_run_as_the_user_and_xpcargos_scripts_as_the_keeper(tmp_path: Path) -> None:
    interrupted: list[str] = []

    def script(call: Exec) -> Reply:
        if call.token is not None and not interrupted:
            interrupted.append(call.token)
            return Reply(error=InterruptError("interrupted", signal_name="INT"))
        return Reply()

    runtime = FakeRuntime(script=script, every_image=True)
    with pytest.raises(InterruptError):
        _run(runtime, _request(tmp_path, confined=True), tmp_path / "locks")
    command, stop = runtime.execs
    assert (command.argv, command.user) == (("true",), "1000:1000")
    # The stop kills what the command left: it must be the command's user to signal it.
    assert (stop.warm_script, stop.user) == ("xpcargo-stop", "1000:1000")
    _run(runtime, _request(tmp_path, confined=True, keep_warm=30), tmp_path / "locks")
    retire = next(call for call in runtime.execs if call.warm_script == "xpcargo-retire")
    assert retire.user is None


def test_a_container_of_its_own_runs_each_command_under_the_wrapper_when_confined(tmp_path: Path) -> None:
    runtime = FakeRuntime(every_image=True)
    _run(runtime, _request(tmp_path, confined=True, keep_warm=0), tmp_path / "locks")
    _run(runtime, _request(tmp_path, keep_warm=0), tmp_path / "locks")
    confined, plain = runtime.execs
    assert confined.token is not None
    assert confined.user == "1000:1000"
    assert (plain.token, plain.user) == (None, None)


@pytest.mark.parametrize(("user", "keeper"), [("1000:1000", "0:0"), ("0:0", "65534:65534"), ("root", "65534:65534")])
def test_the_keeper_is_never_the_commands_user(user: str, keeper: str) -> None:
    assert spec.keeper(user) == keeper


_TABLE = (
    "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
    "30 22 0:25 / /proc rw shared:2 - proc proc rw\n"
    "40 22 0:40 / /srv/other rw shared:9 - tmpfs tmpfs rw\n"
)


def test_a_mount_at_or_under_a_source_changes_the_key_and_one_elsewhere_does_not(tmp_path: Path) -> None:
    request = _request(tmp_path)
    before = warm.key(request, "sha256:1", mount_table=_TABLE)
    assert warm.key(request, "sha256:1", mount_table=_TABLE) == before
    elsewhere = _TABLE + "41 22 0:41 / /srv/more rw - tmpfs tmpfs rw\n"
    assert warm.key(request, "sha256:1", mount_table=elsewhere) == before
    over_target = _TABLE + f"42 22 0:42 / {tmp_path.resolve()}/tar\\040get rw - tmpfs tmpfs rw\n"
    assert warm.key(request, "sha256:1", mount_table=over_target) != before


def test_a_link_put_in_a_sources_place_changes_the_key(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    (tmp_path / "elsewhere").mkdir()
    request = _request(tmp_path, mounts=(Mount(path=tmp_path / "ws" / "target"),))
    (tmp_path / "ws" / "target").mkdir()
    before = warm.key(request, "sha256:1", mount_table=_TABLE)
    (tmp_path / "ws" / "target").rmdir()
    (tmp_path / "ws" / "target").symlink_to(tmp_path / "elsewhere")
    assert warm.key(request, "sha256:1", mount_table=_TABLE) != before


@pytest.mark.parametrize("tether", [True, False])
@pytest.mark.parametrize("argv", [("cargo", "build", "--target", "x"), ("sh", "-c", "xpcargo-run"), ()])
def test_a_wrapped_command_is_recovered_as_it_was_given(tether: bool, argv: tuple[str, ...]) -> None:
    assert warm.unwrapped(warm.wrapped("t0ken", argv, tether=tether)) == warm.Wrapped(
        token="t0ken", tether=tether, argv=argv
    )


@pytest.mark.parametrize(
    "argv",
    [["cargo", "build"], warm.stop_argv("t0ken", "INT"), warm.retire_argv(), warm.wrapped("t", [], tether=True)[:6]],
)
def test_a_command_not_under_the_wrapper_is_not_unwrapped(argv: list[str]) -> None:
    assert warm.unwrapped(argv) is None
