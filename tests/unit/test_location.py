"""An engine per target (`engine` in `[target.T]`, `XPCARGO_TARGET_<TRIPLE>_ENGINE`), against fake runtimes: the
setting and its checks, `xpcargo targets` showing it, and a multi-target build spread over the engines, each
connected once, each remote or local by its own address."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcargo.commands import targets
from xpcargo.container.location import EngineAddress
from xpcargo.context import Context, Host
from xpcargo.errors import ConfigError

from .fake_runtime import FakeRuntime, builds_a_binary
from .projects import app_project, build_matrix

AARCH64 = "aarch64-unknown-linux-gnu"
I686 = "i686-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"
ARM_BUILDER = "tcp://10.0.0.5:2376"
OTHER_SOCKET = "unix:///other/docker.sock"


def _context(root: Path, **environ: str) -> Context:
    home = root.parent / "cargo-home"
    home.mkdir(exist_ok=True)
    env = {
        "HOME": str(root.parent / "home"),
        "CARGO_HOME": str(home),
        "XPCARGO_CACHE_DIR": str(root.parent / "cache"),
        # The user consents to the `engine` the projects here name (config.trust).
        "XPCARGO_TRUST": "1",
        **environ,
    }
    return Context.create(cwd=root, environ=env)


def _project(tmp_path: Path, toml: str) -> Path:
    root = app_project(tmp_path)
    (root / "xpcargo.toml").write_text(toml, encoding="utf-8")
    return root


def test_a_target_names_its_engine_in_the_project_or_the_environment(tmp_path: Path) -> None:
    root = _project(tmp_path, f'[target.{AARCH64}]\nengine = "{ARM_BUILDER}"\n')
    context = _context(root)
    project = context.project_config(root)
    aarch64 = context.host.engine_for(context.host.target(AARCH64, project))
    assert (aarch64.url, aarch64.remote) == (ARM_BUILDER, True)
    assert context.host.engine_for(context.host.target(X86_64, project)) == context.host.engine
    overridden = _context(root, XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_ENGINE=OTHER_SOCKET)
    spec = overridden.host.target(AARCH64, project)
    assert (overridden.host.engine_for(spec).url, overridden.host.engine_for(spec).remote) == (OTHER_SOCKET, False)
    # XPCARGO_REMOTE forces every engine's mode.
    forced = _context(root, XPCARGO_REMOTE="1", XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_ENGINE=OTHER_SOCKET)
    assert forced.host.engine_for(forced.host.target(AARCH64, project)).remote is True


@pytest.mark.parametrize("value", ["arm-builder", "http://x", "unix://relative.sock", "tcp://"])
def test_an_engine_that_is_no_address_is_refused(tmp_path: Path, value: str) -> None:
    root = _project(tmp_path, f'[target.{AARCH64}]\nengine = "{value}"\n')
    context = _context(root)
    with pytest.raises(ConfigError, match="engine") as caught:
        context.host.target(AARCH64, context.project_config(root))
    assert caught.value.hint is not None
    assert "ssh://HOST" in caught.value.hint


def test_build_takes_no_engine(tmp_path: Path) -> None:
    root = _project(tmp_path, f'[build]\nengine = "{ARM_BUILDER}"\n')
    with pytest.raises(ConfigError, match="engine"):
        _context(root).project_config(root)


def test_targets_shows_each_targets_engine(tmp_path: Path) -> None:
    root = _project(tmp_path, f'[target.{AARCH64}]\nengine = "{ARM_BUILDER}"\n')
    rows = {row[0]: row for row in targets.rows(targets.describe(_context(root), [AARCH64, X86_64]))}
    assert rows[AARCH64][-1] == f"{ARM_BUILDER} (remote)"
    assert rows[X86_64][-1] == "unix:///var/run/docker.sock"


def test_a_multi_target_build_spreads_over_the_engines_each_connected_once(tmp_path: Path) -> None:
    root = _project(tmp_path, f'[target.{AARCH64}]\nengine = "{ARM_BUILDER}"\n')
    context = _context(root, XPCARGO_TARGET_I686_UNKNOWN_LINUX_GNU_ENGINE=OTHER_SOCKET)
    runtimes: dict[str, FakeRuntime] = {}

    def connect(_: Host, address: EngineAddress | None = None, /) -> FakeRuntime:
        assert address is not None
        assert address.url not in runtimes, f"{address.url} connected twice"
        runtimes[address.url] = builds_a_binary(root)
        return runtimes[address.url]

    summary = build_matrix(
        context, "build", [AARCH64, I686, X86_64], [], connect=connect, target_jobs=3, fail_fast=False
    )
    assert summary.exit_code == 0
    built = {
        url: {call.argv[call.argv.index("--target") + 1] for call in runtime.execs if call.command == "build"}
        for url, runtime in runtimes.items()
    }
    assert built == {ARM_BUILDER: {AARCH64}, OTHER_SOCKET: {I686}, "unix:///var/run/docker.sock": {X86_64}}
    # Remote or local, each by its own address: volumes on the tcp:// engine, bind mounts on the sockets.
    remote = runtimes[ARM_BUILDER]
    assert remote.volumes
    assert all(mount.volume is not None for request in remote.started for mount in request.mounts)
    for url in (OTHER_SOCKET, "unix:///var/run/docker.sock"):
        assert not runtimes[url].volumes
        assert all(mount.volume is None for request in runtimes[url].started for mount in request.mounts)
    for triple in (AARCH64, I686, X86_64):
        assert (root / "target" / triple / "debug" / "app").read_bytes() == triple.encode()


def test_an_engine_no_target_names_is_never_connected(tmp_path: Path) -> None:
    root = _project(tmp_path, f'[target.{AARCH64}]\nengine = "{ARM_BUILDER}"\n')
    connected: list[str] = []

    def connect(_: Host, address: EngineAddress | None = None, /) -> FakeRuntime:
        assert address is not None
        connected.append(address.url)
        return builds_a_binary(root)

    summary = build_matrix(_context(root), "build", [I686, X86_64], [], connect=connect, target_jobs=2, fail_fast=False)
    assert summary.exit_code == 0
    assert connected == ["unix:///var/run/docker.sock"]
