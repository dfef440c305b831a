"""The workspace seam: what each side mounts and gives each step, and that a command runs the same steps whichever
side the plan chose (the sides differ only in what they do at each)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from xpcargo.config.targets import TargetSpec
from xpcargo.container.location import Engines
from xpcargo.container.session import Session
from xpcargo.container.spec import Mount
from xpcargo.context import Context
from xpcargo.image.builder import Builder
from xpcargo.image.plan import ImagePlan
from xpcargo.pipeline import run
from xpcargo.pipeline.plan import BuildPlan
from xpcargo.pipeline.remote import CA_DIRECTORY, RemoteWorkspace
from xpcargo.pipeline.workspace import LocalWorkspace, Step, Venue, Workspace

from .fake_runtime import FakeRuntime
from .projects import app_project, plan_in

X86 = "x86_64-unknown-linux-gnu"


def _context(tmp_path: Path, *, remote: bool) -> Context:
    """A project with a CARGO_HOME that holds a Cargo config, a credentials file and a `bin` directory, and a CA
    bundle the host trusts; its engine local or remote."""
    root = app_project(tmp_path)
    home = tmp_path / "cargo-home"
    (home / "bin").mkdir(parents=True)
    (home / "config.toml").write_text("[net]\nretry = 3\n", encoding="utf-8")
    (home / "credentials.toml").write_text('[registry]\ntoken = "secret"\n', encoding="utf-8")
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    environ = {
        "HOME": str(tmp_path / "home"),
        "CARGO_HOME": str(home),
        "XPCARGO_CACHE_DIR": str(tmp_path / "cache"),
        "XPCARGO_REMOTE": "1" if remote else "0",
        "CARGO_HTTP_CAINFO": str(tmp_path / "ca.pem"),
    }
    return Context.create(cwd=root, environ=environ)


def _plan(tmp_path: Path, *, remote: bool) -> BuildPlan:
    return plan_in(_context(tmp_path, remote=remote), "build", X86, [])


def test_the_plan_chooses_the_side_from_the_engine(tmp_path: Path) -> None:
    assert isinstance(_plan(tmp_path / "local", remote=False).workspace, LocalWorkspace)
    assert isinstance(_plan(tmp_path / "remote", remote=True).workspace, RemoteWorkspace)


def test_locally_the_fetch_step_writes_cargo_home_and_trusts_the_hosts_bundle_at_its_path(tmp_path: Path) -> None:
    plan = _plan(tmp_path, remote=False)
    home, bundle = tmp_path / "cargo-home", tmp_path / "ca.pem"
    fetch = plan.request(Step.FETCH, "image")
    by_path = {mount.path: mount for mount in fetch.mounts}
    assert by_path[home] == Mount(path=home)
    assert by_path[bundle] == Mount(path=bundle, read_only=True)
    assert home / "credentials.toml" not in by_path
    assert fetch.env["CARGO_HTTP_CAINFO"] == str(bundle)
    assert "CARGO_NET_OFFLINE" not in fetch.env
    assert all(mount.volume is None for mount in fetch.mounts)


@pytest.mark.parametrize("step", [Step.BUILD, Step.SHELL])
def test_locally_the_projects_code_reads_cargo_home_without_its_credentials_or_bin(tmp_path: Path, step: Step) -> None:
    plan = _plan(tmp_path, remote=False)
    home = tmp_path / "cargo-home"
    request = plan.request(step, "image")
    by_path = {mount.path: mount for mount in request.mounts}
    assert by_path[home] == Mount(path=home, read_only=True)
    assert by_path[home / "credentials.toml"] == Mount(
        path=home / "credentials.toml", source=Path("/dev/null"), read_only=True
    )
    assert tmp_path / "ca.pem" not in by_path
    assert request.hidden == (home / "bin",)
    assert request.env["CARGO_NET_OFFLINE"] == "true"
    # The bind mounts themselves are the same for every step: only what a step adds over them differs.
    assert {mount.path for mount in plan.workspace.binds} <= set(by_path)


def test_remotely_every_step_mounts_volumes_at_the_host_paths(tmp_path: Path) -> None:
    plan = _plan(tmp_path, remote=True)
    home, root = tmp_path / "cargo-home", (tmp_path / "app").resolve()
    fetch, build, shell = (plan.request(step, "image") for step in (Step.FETCH, Step.BUILD, Step.SHELL))
    for request in (fetch, build, shell):
        assert all(mount.volume is not None for mount in request.mounts), request.mounts
        assert request.hidden == ()
    fetch_mounts = {mount.path: mount.read_only for mount in fetch.mounts}
    build_mounts = {mount.path: mount.read_only for mount in build.mounts}
    assert fetch_mounts[home] is False
    assert build_mounts[home] is True
    assert build_mounts[root] is False
    # The host's bundle, in a volume of its own, for the fetch step alone.
    assert CA_DIRECTORY in fetch_mounts
    assert CA_DIRECTORY not in build_mounts
    assert fetch.env["CARGO_HTTP_CAINFO"] == str(CA_DIRECTORY / "ca.pem")
    assert build.env["CARGO_NET_OFFLINE"] == shell.env["CARGO_NET_OFFLINE"] == "true"
    assert shell.mounts == build.mounts


def test_the_fetch_record_of_a_remote_engine_is_its_own(tmp_path: Path) -> None:
    local = _context(tmp_path, remote=False)
    remote = replace(local, host=replace(local.host, environ={**local.host.environ, "XPCARGO_REMOTE": "1"}))
    local_plan = plan_in(local, "build", X86, [])
    remote_plan = plan_in(remote, "build", X86, [])
    assert local_plan.workspace.fetch_record != remote_plan.workspace.fetch_record
    assert local_plan.workspace.fetch_record.parent == remote_plan.workspace.fetch_record.parent


@dataclass
class Recording:
    """A workspace that records what the run asks of it, and passes every question on to ``inner``."""

    inner: Workspace
    calls: list[str] = field(default_factory=list)

    @property
    def binds(self) -> tuple[Mount, ...]:
        return self.inner.binds

    @property
    def ca_bundle(self) -> Path | None:
        return self.inner.ca_bundle

    @property
    def fetch_record(self) -> Path:
        return self.inner.fetch_record

    def mounts(self, step: Step) -> tuple[Mount, ...]:
        return self.inner.mounts(step)

    def hidden(self) -> tuple[Path, ...]:
        return self.inner.hidden()

    def image(self, builder: Builder, spec: TargetSpec, plan: ImagePlan | None, engines: Engines | None) -> str:
        self.calls.append("image")
        return self.inner.image(builder, spec, plan, engines)

    def push(self, venue: Venue) -> None:
        self.calls.append("push")
        self.inner.push(venue)

    def entered(self, session: Session, venue: Venue) -> None:
        self.calls.append("entered")
        self.inner.entered(session, venue)

    def fetched(self, session: Session, venue: Venue) -> None:
        self.calls.append("fetched")
        self.inner.fetched(session, venue)

    def built(self, session: Session, venue: Venue, messages: Sequence[Mapping[str, Any]]) -> None:
        self.calls.append("built")
        self.inner.built(session, venue, messages)


@pytest.mark.parametrize("remote", [False, True], ids=["local", "remote"])
def test_a_command_runs_the_same_steps_on_either_side(tmp_path: Path, remote: bool) -> None:
    context = _context(tmp_path, remote=remote)
    planned = plan_in(context, "build", X86, [])
    recording = Recording(planned.workspace)
    runtime = FakeRuntime(every_image=True)
    outcome = run.execute(
        context.host,
        replace(planned, workspace=recording),
        runtime=runtime,
        reporter=context.host.reporter(),
        write_stdout=lambda _: None,
    )
    assert outcome.code == 0
    assert recording.calls == ["image", "push", "entered", "fetched", "entered", "built"]
    # Only the remote side moves anything: sync containers before the steps, and listings in them.
    steps = [purpose for purpose in runtime.purposes() if purpose != "sync"]
    assert steps == ["fetch", "build"]
    assert ("sync" in runtime.purposes()) is remote
    if not remote:
        # Nothing but Cargo's own commands: no listing, no copy back.
        assert runtime.commands() == ["fetch", "metadata", "build"]
