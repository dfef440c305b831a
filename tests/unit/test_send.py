"""Sending an image to a remote engine, between two fake engines: built on this machine's engine, the chain's missing
stages streamed into the remote one under the same tags, the layers it holds left out; a build on a remote engine
that lacks its image sends it first; without an engine on this machine, the error names save and load."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from xpcargo.container.location import EngineAddress, Engines, this_machine
from xpcargo.context import Context
from xpcargo.errors import EngineUnavailableError
from xpcargo.image import send
from xpcargo.image.plan import ImagePlan
from xpcargo.pipeline import run
from xpcargo.pipeline.remote import RemoteWorkspace
from xpcargo.ui import Reporter

from .fake_runtime import FakeBootstrap, FakeRuntime
from .projects import app_project, plan_in

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"
REPORTER = Reporter(color=False)


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path / "c")})


def _built(context: Context, local: FakeRuntime, triple: str) -> ImagePlan:
    image_plan = context.host.image_plan(context.host.toolchains.target(triple))
    context.host.image_builder(local, Reporter(color=False)).ensure(image_plan)
    return image_plan


def test_the_missing_chain_is_sent_stage_by_stage_under_the_same_tags(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    FakeBootstrap(monkeypatch)
    local, remote = FakeRuntime(), FakeRuntime()
    image_plan = _built(context, local, AARCH64)
    sent = send.send(image_plan, local=local, remote=remote, cache=context.host.settings.cache_dir, reporter=REPORTER)
    assert sent.stages == tuple(stage.reference for stage in image_plan.stages)
    for stage in image_plan.stages:
        there, here = remote.inspect_image(stage.reference), local.inspect_image(stage.reference)
        assert there is not None
        assert here is not None
        assert (there.tags, dict(there.labels), there.layers) == (here.tags, dict(here.labels), here.layers)
    # The base's tar went once: the target's archive left it out, since the remote engine held it by then.
    assert [len(carried) for carried in remote.streamed] == [1, 1]
    assert (sent.layers_sent, sent.layers_held) == (2, 1)
    # Nothing more to send.
    assert (
        send.send(
            image_plan, local=local, remote=remote, cache=context.host.settings.cache_dir, reporter=REPORTER
        ).stages
        == ()
    )


def test_a_second_target_sends_only_its_own_layer(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    local, remote = FakeRuntime(), FakeRuntime()
    send.send(
        _built(context, local, AARCH64),
        local=local,
        remote=remote,
        cache=context.host.settings.cache_dir,
        reporter=REPORTER,
    )
    x86 = _built(context, local, X86_64)
    assert send.missing_stages(x86, remote) == (x86.stages[-1],)
    sent = send.send(x86, local=local, remote=remote, cache=context.host.settings.cache_dir, reporter=REPORTER)
    assert sent.stages == (x86.reference,)
    assert (sent.layers_sent, sent.layers_held) == (1, 1)
    assert remote.image_exists(x86.reference)


class SlowLoads(FakeRuntime):
    """Loads that take a while: long enough for a second sender to ask whether the engine has the base."""

    def load_chunks(self, chunks: Iterable[bytes]) -> list[str]:
        time.sleep(0.3)
        return super().load_chunks(chunks)


def test_targets_side_by_side_send_a_shared_base_once(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    local, remote = FakeRuntime(), SlowLoads()
    plans = [_built(context, local, AARCH64), _built(context, local, X86_64)]
    failures: list[BaseException] = []

    def sender(image_plan: ImagePlan) -> None:
        try:
            send.send(image_plan, local=local, remote=remote, cache=context.host.settings.cache_dir, reporter=REPORTER)
        except BaseException as error:  # noqa: BLE001 - reported by the test
            failures.append(error)

    threads = [threading.Thread(target=sender, args=(image_plan,)) for image_plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # Three stages (the base, two targets' layers), three archives, one layer's tar each.
    assert sorted(len(carried) for carried in remote.streamed) == [1, 1, 1]
    assert all(remote.image_exists(image_plan.reference) for image_plan in plans)


def _remote_world(tmp_path: Path, *, local: FakeRuntime | None) -> tuple[Context, FakeRuntime, Engines]:
    root = app_project(tmp_path)
    (tmp_path / "cargo-home").mkdir()
    environ = {
        "HOME": str(tmp_path / "home"),
        "CARGO_HOME": str(tmp_path / "cargo-home"),
        "XPCARGO_CACHE_DIR": str(tmp_path / "cache"),
        "DOCKER_HOST": "tcp://127.0.0.1:1",
    }
    context = Context.create(cwd=root, environ=environ)
    remote = FakeRuntime()

    def connect(address: EngineAddress) -> FakeRuntime:
        if address.url == "tcp://127.0.0.1:1":
            return remote
        assert local is not None
        return local

    engines = Engines(connect, environ)
    if local is not None:
        engines._runtimes["unix:///local.sock"] = local
    return context, remote, engines


def test_a_remote_engine_that_lacks_the_image_gets_it_from_this_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    FakeBootstrap(monkeypatch)
    local = FakeRuntime()
    context, remote, engines = _remote_world(tmp_path, local=local)
    monkeypatch.setattr(
        "xpcargo.container.location.this_machine",
        lambda environ: EngineAddress(url="unix:///local.sock", remote=False, why="test"),
    )
    build_plan = plan_in(context, "build", X86_64, [])
    assert isinstance(build_plan.workspace, RemoteWorkspace)
    outcome = run.execute(
        context.host,
        build_plan,
        runtime=remote,
        reporter=context.host.reporter(),
        write_stdout=lambda _: None,
        engines=engines,
    )
    assert outcome.code == 0
    assert build_plan.image_plan is not None
    # Built on this machine's engine (never on the remote one), then sent.
    assert local.image_exists(build_plan.image_plan.reference)
    assert remote.imported == []
    assert remote.image_exists(build_plan.image_plan.reference)
    assert "Sent" in capsys.readouterr().err
    assert remote.purposes()[-1] == "build"


def test_without_an_engine_on_this_machine_the_error_names_save_and_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    context, remote, engines = _remote_world(tmp_path, local=None)
    monkeypatch.setattr("xpcargo.container.location.this_machine", lambda environ: None)
    build_plan = plan_in(context, "build", X86_64, [])
    with pytest.raises(EngineUnavailableError) as caught:
        run.execute(context.host, build_plan, runtime=remote, reporter=context.host.reporter(), engines=engines)
    assert "has no xpcargo/" in str(caught.value)
    assert caught.value.hint is not None
    assert "image save" in caught.value.hint
    assert "image load" in caught.value.hint
    assert remote.started == []


def test_this_machines_engine_is_the_first_unix_socket_that_exists(tmp_path: Path) -> None:
    import socket  # noqa: PLC0415

    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(path))
        found = this_machine({"DOCKER_HOST": "tcp://10.0.0.5:2375", "XDG_RUNTIME_DIR": str(tmp_path)})
        if Path("/var/run/docker.sock").is_socket():
            assert found is not None
            assert found.url == "unix:///var/run/docker.sock"
        else:
            assert found == EngineAddress(url=f"unix://{path}", remote=False, why="this machine's engine")
        assert this_machine({"DOCKER_HOST": f"unix://{path}"}).url == f"unix://{path}"  # type: ignore[union-attr]
    assert this_machine({"DOCKER_HOST": f"unix://{tmp_path}/missing.sock", "HOME": str(tmp_path)}) in (
        None,
        EngineAddress(url="unix:///var/run/docker.sock", remote=False, why="this machine's engine"),
    )
