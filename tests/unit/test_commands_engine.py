"""`xpcargo info`, `ps` and `down` against a fake runtime: what each says, and which warm containers `down` stops."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import xpcargo
from xpcargo.commands import engine
from xpcargo.container.spec import (
    KEEP_WARM_LABEL,
    SLOT_LABEL,
    TARGET_LABEL,
    USER_LABEL,
    WORKSPACE_LABEL,
    ContainerRequest,
)
from xpcargo.context import Context
from xpcargo.errors import ProjectError

from .fake_runtime import Exec, FakeRuntime, Reply
from .projects import app_project

AARCH64 = "aarch64-unknown-linux-gnu"


def _context(cwd: Path) -> Context:
    return Context.create(cwd=cwd, environ={"HOME": str(cwd)})


def _warm(runtime: FakeRuntime, workspace: Path, target: str = AARCH64) -> str:
    labels = {
        SLOT_LABEL: "s",
        USER_LABEL: str(os.getuid()),
        WORKSPACE_LABEL: str(workspace),
        TARGET_LABEL: target,
        KEEP_WARM_LABEL: "600",
    }
    request = ContainerRequest(image="xpcargo/x:1", user="0:0", workdir=Path("/"), labels=labels)
    return runtime.start(request, main=["sh"])


def test_info_says_a_line_per_field_or_one_json_object() -> None:
    runtime = FakeRuntime()
    lines = engine.info(runtime, as_json=False)
    assert lines[0] == f"xpcargo:          {xpcargo.__version__}"
    assert "rootless:         no" in lines
    (text,) = engine.info(runtime, as_json=True)
    assert json.loads(text)["xpcargo"] == xpcargo.__version__


def test_ps_has_a_row_per_warm_container(tmp_path: Path) -> None:
    def script(call: Exec) -> Reply:
        # The busy check answers 1: no command runs in the container.
        return Reply(code=1)

    runtime = FakeRuntime(script=script)
    container = _warm(runtime, tmp_path)
    header, row = engine.ps(runtime)
    assert header[:3] == ("CONTAINER", "TARGET", "STATE")
    assert row == (container, AARCH64, "idle", "0s", "600s", str(tmp_path))


def test_down_stops_this_workspaces_warm_containers_or_all(tmp_path: Path) -> None:
    project = app_project(tmp_path)
    runtime = FakeRuntime()
    here = _warm(runtime, project)
    elsewhere = _warm(runtime, tmp_path / "elsewhere")
    said = engine.down(_context(project), runtime, everything=False)
    assert runtime.removed == [here]
    assert said.statuses == (("Stopped", f"warm container {here} of {AARCH64} ({project})"),)
    engine.down(_context(project), runtime, everything=True)
    assert runtime.removed == [here, elsewhere]

    nothing = engine.down(_context(project), FakeRuntime(), everything=False)
    assert nothing.statuses == (("Stopped", "nothing: no warm container for this workspace"),)


def test_down_outside_a_project_needs_all(tmp_path: Path) -> None:
    with pytest.raises(ProjectError) as caught:
        engine.down(_context(tmp_path), FakeRuntime(), everything=False)
    assert caught.value.hint is not None
    assert "--all" in caught.value.hint
    said = engine.down(_context(tmp_path), FakeRuntime(), everything=True)
    assert said.statuses == (("Stopped", "nothing: no warm container"),)
