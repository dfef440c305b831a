"""Building, finding, listing and pruning images against a fake runtime: the order of the steps, the check before
the tag, what a failure leaves behind, and what prune keeps."""

from __future__ import annotations

import fcntl
from pathlib import Path
from typing import Any

import pytest

from xpcargo.context import Context
from xpcargo.errors import ConfigError, ImageBuildError
from xpcargo.image import builder, debian
from xpcargo.image.plan import LABEL_PLAN, LABEL_TARGET, ImagePlan

from .fake_runtime import Exec, FakeRuntime, Reply

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path / "c")})


class FakeBootstrap:
    """Stands in for the mirror and mmdebstrap, which a unit test must not use: writes a small tarball."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, error: BaseException | None = None) -> None:
        self.calls: list[str] = []
        self.error = error
        monkeypatch.setattr(debian, "bootstrap", self.bootstrap)
        monkeypatch.setattr(debian, "fetch_pool_file", self.fetch_pool_file)

    def fetch_pool_file(self, url: str, sha256: str, cache: Path, **_: Any) -> Path:
        self.calls.append(f"std {url.rsplit('/', 1)[-1]}")
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "std.deb").write_bytes(b"deb")
        return cache / "std.deb"

    def bootstrap(self, plan: ImagePlan, tarball: Path, **kwargs: Any) -> None:
        self.calls.append(f"bootstrap {plan.target} std={kwargs['std_deb'] is not None}")
        if self.error is not None:
            raise self.error
        tarball.write_bytes(b"\0" * 1024)


def _check_script(fails: bool) -> Any:
    def script(call: Exec) -> Reply:
        return Reply(code=1, stderr=b"rustc: not found\n") if fails else Reply()

    return script


def test_a_missing_image_is_built_checked_then_tagged(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    spec = context.toolchains.target(AARCH64)
    plan = context.image_plan(spec)
    assert builder.image_for(context, runtime, spec) == plan.reference
    assert bootstrap.calls == [f"std {plan.std_deb.filename if plan.std_deb else ''}", f"bootstrap {AARCH64} std=True"]
    ((_, changes),) = runtime.imported
    assert f"LABEL {LABEL_PLAN}={plan.digest}" in changes
    # The check ran as root in a container of its own, which is gone.
    (check,) = runtime.started
    assert check.user == "0:0"
    assert check.image == "sha256:imported1"
    assert "qemu-aarch64 --version" in runtime.execs[0].argv[-1]
    assert not runtime.running
    assert plan.reference in runtime.images
    # The scratch space is gone too.
    assert list((context.settings.cache_dir / "scratch").iterdir()) == []


def test_an_image_that_is_there_is_not_built(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    spec = context.toolchains.target(X86_64)
    runtime = FakeRuntime(images={context.image_plan(spec).reference})
    builder.image_for(context, runtime, spec)
    assert bootstrap.calls == []
    assert runtime.started == []


def test_a_failed_check_removes_the_image_and_tags_nothing(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    runtime = FakeRuntime(script=_check_script(fails=True))
    spec = context.toolchains.target(X86_64)
    with pytest.raises(ImageBuildError, match="failed its check") as caught:
        builder.image_for(context, runtime, spec)
    assert "rustc: not found" in caught.value.message
    assert runtime.removed_images == ["sha256:imported1"]
    assert context.image_plan(spec).reference not in runtime.images
    assert not runtime.running


def test_a_failed_bootstrap_imports_nothing(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch, error=ImageBuildError("mirror down"))
    runtime = FakeRuntime()
    with pytest.raises(ImageBuildError, match="mirror down"):
        builder.image_for(context, runtime, context.toolchains.target(X86_64))
    assert runtime.imported == []
    assert list((context.settings.cache_dir / "scratch").iterdir()) == []


def test_an_engine_of_another_architecture_is_refused(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime(machine="riscv64")
    with pytest.raises(ImageBuildError, match="runs `riscv64`"):
        builder.image_for(context, runtime, context.toolchains.target(X86_64))
    assert bootstrap.calls == []


def test_a_configured_image_must_be_in_the_engine(context: Context) -> None:
    spec = context.target(X86_64, context.project_config_here())
    named = builder.Builder(runtime=FakeRuntime(), cache=context.settings.cache_dir, reporter=context.reporter())
    from dataclasses import replace  # noqa: PLC0415

    with pytest.raises(ConfigError, match="not in the engine"):
        named.image_for(replace(spec, image="mine:1"), None)
    present = builder.Builder(
        runtime=FakeRuntime(images={"mine:1"}), cache=context.settings.cache_dir, reporter=context.reporter()
    )
    assert present.image_for(replace(spec, image="mine:1"), None) == "mine:1"


def test_build_images_and_the_rows(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    builder.build_images(context, runtime, [X86_64])
    reference = context.image_plan(context.toolchains.target(X86_64)).reference
    assert reference in runtime.images
    assert runtime.started[0].image.startswith("sha256:imported")


def _labelled(runtime: FakeRuntime, reference: str, target: str, digest: str) -> None:
    runtime.images.add(reference)
    runtime.image_labels[reference] = {"org.xpcargo.managed": "true", LABEL_TARGET: target, LABEL_PLAN: digest}


def test_prune_keeps_the_shipped_targets_current_images_wherever_it_runs(context: Context) -> None:
    runtime = FakeRuntime()
    current = {t: context.image_plan(spec) for t, spec in context.toolchains.targets.items()}
    for triple, plan in current.items():
        _labelled(runtime, plan.reference, triple, plan.digest)
    _labelled(runtime, f"xpcargo/{X86_64}:old", X86_64, "0" * 64)
    _labelled(runtime, "built-from-ours:1", X86_64, "../../../etc/passwd")
    rows = builder.image_rows(context, runtime)
    assert {row[0]: row[3] for row in rows}[f"xpcargo/{X86_64}:old"] == "stale"
    assert {row[0]: row[3] for row in rows}[current[X86_64].reference] == "current"

    removed = builder.prune_images(context, runtime, everything=False)
    assert {image.tags[0] for image in removed} == {f"xpcargo/{X86_64}:old", "built-from-ours:1"}
    assert {plan.reference for plan in current.values()} <= runtime.images
    # A label that is no digest names no lock file outside the cache.
    assert not (context.settings.cache_dir / "locks").joinpath("../../../etc/passwd.lock").exists()

    everything = builder.prune_images(context, runtime, everything=True)
    assert {image.tags[0] for image in everything} == {plan.reference for plan in current.values()}


def test_prune_leaves_an_image_that_is_being_built(context: Context) -> None:
    runtime = FakeRuntime()
    _labelled(runtime, "xpcargo/x:building", X86_64, "a" * 64)
    locks = context.settings.cache_dir / "locks"
    locks.mkdir(parents=True)
    with (locks / f"{'a' * 64}.lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert builder.prune_images(context, runtime, everything=True) == []
    assert [image.tags[0] for image in builder.prune_images(context, runtime, everything=True)] == [
        "xpcargo/x:building"
    ]
