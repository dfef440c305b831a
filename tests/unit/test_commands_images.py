"""`xpcargo image ...` against a fake runtime: the targets each command is about, the list, and what prune keeps
and says."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcargo.commands import images
from xpcargo.context import Context
from xpcargo.image import records

from .fake_runtime import FakeBootstrap, FakeRuntime
from .test_image_builder import _built, _kept, _labelled

X86_64 = "x86_64-unknown-linux-gnu"


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path / "c")})


def test_build_images_and_the_rows(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    images.build(context, runtime, [X86_64])
    reference = context.host.image_plan(context.host.toolchains.target(X86_64)).reference
    assert reference in runtime.images
    assert [request.image for request in runtime.started] == ["sha256:imported1", runtime.loaded[0]]


def test_prune_keeps_the_shipped_targets_current_images_wherever_it_runs(context: Context) -> None:
    runtime = FakeRuntime()
    current = {t: context.host.image_plan(spec) for t, spec in context.host.toolchains.targets.items()}
    for plan in current.values():
        _built(context, runtime, plan.reference, plan.digest)
    _built(context, runtime, f"xpcargo/{X86_64}:old", "0" * 64)
    rows = images.rows(context, runtime)
    assert {row[0]: row[3] for row in rows}[f"xpcargo/{X86_64}:old"] == "stale"
    assert {row[0]: row[3] for row in rows}[current[X86_64].reference] == "current"

    pruned = images.prune(context, runtime, everything=False)
    assert [reference for reference, _ in pruned.removed] == [f"xpcargo/{X86_64}:old"]
    assert {plan.reference for plan in current.values()} <= runtime.images
    assert _kept(pruned)[current[X86_64].reference] == f"the current image of {X86_64}"
    # Its record went with it.
    assert "0" * 64 not in {record.digest for record in records.load_all(context.host.settings.cache_dir)}

    everything = images.prune(context, runtime, everything=True)
    assert {reference for reference, _ in everything.removed} == {plan.reference for plan in current.values()}


def test_prune_reports_a_line_for_each_image(context: Context, capsys: pytest.CaptureFixture[str]) -> None:
    runtime = FakeRuntime()
    _built(context, runtime, "xpcargo/x:old", "1" * 64)
    _labelled(runtime, "derived:1", X86_64, "1" * 64)
    images.prune(context, runtime, everything=True)
    assert capsys.readouterr().err.splitlines() == [
        "     Removed xpcargo/x:old",
        f"        Kept derived:1: not built by xpcargo with this cache (no record in {context.host.settings.cache_dir}"
        "/images)",
        "      Pruned 1 image(s), 1.00 GB; kept 1",
    ]
