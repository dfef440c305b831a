"""Building, finding, listing and pruning images against a fake runtime: the order of the steps, the check before
the tag, what a failure leaves behind, and what prune keeps."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from xpcargo.container.spec import ContainerRequest
from xpcargo.context import Context
from xpcargo.errors import ConfigError, EngineError, ImageBuildError
from xpcargo.image import builder, lock, records
from xpcargo.image.plan import LABEL_PLAN, LABEL_TARGET

from .fake_runtime import Exec, FakeBootstrap, FakeRuntime, Reply

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path / "c")})


def _check_script(fails: bool) -> Any:
    def script(call: Exec) -> Reply:
        return Reply(code=1, stderr=b"rustc: not found\n") if fails else Reply()

    return script


def test_a_missing_image_is_built_checked_then_tagged(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    spec = context.host.toolchains.target(AARCH64)
    plan = context.host.image_plan(spec)
    assert context.host.image_for(spec, runtime) == plan.reference
    assert bootstrap.calls == [
        f"bootstrap {AARCH64}",
        f"std {plan.std_deb.filename if plan.std_deb else ''}",
        f"layer target {AARCH64} std=True",
    ]
    # The base is imported, with its own labels; the target's layer is loaded on it, carrying only its own tar.
    ((_, changes),) = runtime.imported
    assert f"LABEL {LABEL_PLAN}={plan.base.digest}" in changes
    (loaded,) = runtime.loaded
    assert runtime.image_layers[loaded][0] == runtime.image_layers["sha256:imported1"][0]
    assert len(runtime.image_layers[loaded]) == 2
    assert runtime.image_labels[loaded][LABEL_PLAN] == plan.digest
    assert runtime.image_labels[loaded][LABEL_TARGET] == AARCH64
    # Each image was checked as root in a container of its own, which is gone: the base runs rustc and cargo, the
    # target's layer has its std and emulator too.
    base_check, check = runtime.started
    assert (base_check.image, base_check.user) == ("sha256:imported1", "0:0")
    assert "rustc --version" in runtime.execs[0].argv[-1]
    assert "qemu" not in runtime.execs[0].argv[-1]
    assert (check.image, check.user) == (loaded, "0:0")
    assert f"test -d /usr/lib/rustlib/{AARCH64}/lib" in runtime.execs[1].argv[-1]
    assert "qemu-aarch64 --version" in runtime.execs[1].argv[-1]
    assert not runtime.running
    assert {plan.base.reference, plan.reference} <= runtime.images
    # The scratch space is gone too.
    assert list((context.host.settings.cache_dir / "scratch").iterdir()) == []


def test_a_second_target_reuses_the_base_and_extra_packages_add_a_layer(
    context: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    context.host.image_for(context.host.toolchains.target(X86_64), runtime)
    bootstrap.calls.clear()
    from dataclasses import replace  # noqa: PLC0415

    spec = replace(context.host.toolchains.target(AARCH64), extra_packages=("libssl-dev:arm64",))
    context.host.image_for(spec, runtime)
    assert bootstrap.calls == [
        f"std {context.host.image_plan(spec).std_deb.filename}",  # type: ignore[union-attr]
        f"layer target {AARCH64} std=True",
        f"layer extra-packages {AARCH64} std=False",
    ]
    # Each layer loaded on the one before: the base's layer, the target's, the project's.
    assert [len(runtime.image_layers[image]) for image in runtime.loaded] == [2, 2, 3]


def test_an_image_whose_base_was_pruned_needs_nothing(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    plan = context.host.image_plan(context.host.toolchains.target(AARCH64))
    runtime = FakeRuntime(images={plan.reference})
    assert context.host.image_for(context.host.toolchains.target(AARCH64), runtime) == plan.reference
    assert bootstrap.calls == []


def test_an_image_that_is_there_is_not_built(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    spec = context.host.toolchains.target(X86_64)
    runtime = FakeRuntime(images={context.host.image_plan(spec).reference})
    context.host.image_for(spec, runtime)
    assert bootstrap.calls == []
    assert runtime.started == []


def test_a_failed_check_removes_the_image_and_tags_nothing(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    runtime = FakeRuntime(script=_check_script(fails=True))
    spec = context.host.toolchains.target(X86_64)
    with pytest.raises(ImageBuildError, match="failed its check") as caught:
        context.host.image_for(spec, runtime)
    assert "rustc: not found" in caught.value.message
    # The base failed its check: it is removed, and nothing is built on it.
    assert runtime.removed_images == ["sha256:imported1"]
    assert runtime.loaded == []
    assert context.host.image_plan(spec).base.reference not in runtime.images
    assert context.host.image_plan(spec).reference not in runtime.images
    assert not runtime.running


def test_a_failed_bootstrap_imports_nothing(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch, error=ImageBuildError("mirror down"))
    runtime = FakeRuntime()
    with pytest.raises(ImageBuildError, match="mirror down"):
        context.host.image_for(context.host.toolchains.target(X86_64), runtime)
    assert runtime.imported == []
    assert list((context.host.settings.cache_dir / "scratch").iterdir()) == []


def test_an_engine_of_another_architecture_is_refused(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    bootstrap = FakeBootstrap(monkeypatch)
    runtime = FakeRuntime(machine="riscv64")
    with pytest.raises(ImageBuildError, match="runs `riscv64`"):
        context.host.image_for(context.host.toolchains.target(X86_64), runtime)
    assert bootstrap.calls == []


def test_a_configured_image_must_be_in_the_engine(context: Context) -> None:
    spec = context.host.target(X86_64, context.project_config_here())
    named = builder.Builder(
        runtime=FakeRuntime(), cache=context.host.settings.cache_dir, reporter=context.host.reporter()
    )
    from dataclasses import replace  # noqa: PLC0415

    with pytest.raises(ConfigError, match="not in the engine"):
        named.image_for(replace(spec, image="mine:1"), None)
    present = builder.Builder(
        runtime=FakeRuntime(images={"mine:1"}), cache=context.host.settings.cache_dir, reporter=context.host.reporter()
    )
    assert present.image_for(replace(spec, image="mine:1"), None) == "mine:1"


def _labelled(runtime: FakeRuntime, reference: str, target: str, digest: str) -> None:
    runtime.images.add(reference)
    runtime.image_labels[reference] = {"org.xpcargo.managed": "true", LABEL_TARGET: target, LABEL_PLAN: digest}


def _built(context: Context, runtime: FakeRuntime, reference: str, digest: str, *, used_ago: float = 0) -> None:
    """An image that xpcargo built with this cache: labelled, and recorded."""
    _labelled(runtime, reference, X86_64, digest)
    cache = context.host.settings.cache_dir
    records.save(cache, digest=digest, reference=reference, image_id=runtime.image_id(reference), target=X86_64)
    used = time.time() - used_ago
    os.utime(cache / "images" / f"{digest}.json", (used, used))


def _prune(context: Context, runtime: FakeRuntime, *, unused_for: float | None = None) -> builder.Pruned:
    return context.host.image_builder(runtime).prune(keep=[], unused_for=unused_for)


def _kept(pruned: builder.Pruned) -> dict[str, str]:
    return dict(pruned.kept)


def test_a_built_image_is_recorded_and_each_use_is_noted(context: Context, monkeypatch: pytest.MonkeyPatch) -> None:
    FakeBootstrap(monkeypatch)
    runtime = FakeRuntime()
    spec = context.host.toolchains.target(X86_64)
    plan = context.host.image_plan(spec)
    context.host.image_for(spec, runtime)
    base, record = sorted(records.load_all(context.host.settings.cache_dir), key=lambda r: r.reference)
    assert (base.digest, base.reference, base.image_id) == (plan.base.digest, plan.base.reference, "sha256:imported1")
    assert (record.digest, record.reference, record.image_id) == (plan.digest, plan.reference, runtime.loaded[0])
    path = context.host.settings.cache_dir / "images" / f"{plan.digest}.json"
    os.utime(path, (1, 1))
    context.host.image_for(spec, runtime)
    assert {r.digest: r for r in records.load_all(context.host.settings.cache_dir)}[
        plan.digest
    ].last_used > time.time() - 60


def test_prune_removes_only_what_xpcargo_recorded_building(context: Context) -> None:
    """The label is inherited by an image built FROM xpcargo's or committed from its container: no proof at all."""
    runtime = FakeRuntime()
    _built(context, runtime, "xpcargo/x:old", "1" * 64)
    _labelled(runtime, "built-from-ours:1", X86_64, "1" * 64)
    _labelled(runtime, "xpcargo/x:older-xpcargo", X86_64, "2" * 64)
    # A record whose name now belongs to another image proves nothing about that image either.
    _built(context, runtime, "xpcargo/x:renamed", "3" * 64)
    runtime.image_ids["xpcargo/x:renamed"] = "sha256:someone-else"
    pruned = _prune(context, runtime)
    assert [reference for reference, _ in pruned.removed] == ["xpcargo/x:old"]
    kept = _kept(pruned)
    assert set(kept) == {"built-from-ours:1", "xpcargo/x:older-xpcargo", "xpcargo/x:renamed"}
    assert all("not built by xpcargo with this cache" in why for why in kept.values())
    assert {record.digest for record in records.load_all(context.host.settings.cache_dir)} == set()


def test_prune_removes_a_name_not_the_image(context: Context) -> None:
    """An image xpcargo built and someone else tagged too keeps that other name: only xpcargo's is removed."""
    runtime = FakeRuntime()
    _built(context, runtime, "xpcargo/x:1", "1" * 64)
    runtime.images.add("mine:keep")
    runtime.image_ids["mine:keep"] = runtime.image_id("xpcargo/x:1")
    pruned = _prune(context, runtime)
    assert [reference for reference, _ in pruned.removed] == ["xpcargo/x:1"]
    assert runtime.removed_images == ["xpcargo/x:1"]
    assert "mine:keep" in runtime.images


def test_prune_keeps_images_in_use_recent_or_refused_and_carries_on(context: Context) -> None:
    runtime = FakeRuntime()
    _built(context, runtime, "xpcargo/x:in-use", "1" * 64, used_ago=30 * 86400)
    _built(context, runtime, "xpcargo/x:recent", "2" * 64, used_ago=3 * 3600)
    _built(context, runtime, "xpcargo/x:refused", "3" * 64, used_ago=30 * 86400)
    _built(context, runtime, "xpcargo/x:old", "4" * 64, used_ago=30 * 86400)
    runtime.start(ContainerRequest(image="xpcargo/x:in-use", user="0:0", workdir=Path("/")))
    runtime.refuse_removal[runtime.image_id("xpcargo/x:refused")] = EngineError("conflict: image is being used")

    pruned = _prune(context, runtime, unused_for=7 * 86400)
    assert [reference for reference, _ in pruned.removed] == ["xpcargo/x:old"]
    assert _kept(pruned) == {
        "xpcargo/x:in-use": "used by running container container-1",
        "xpcargo/x:recent": "used 3h ago",
        "xpcargo/x:refused": "the engine refused: conflict: image is being used",
    }
    # Without a limit on age, the recent one goes too.
    again = _prune(context, runtime)
    assert [reference for reference, _ in again.removed] == ["xpcargo/x:recent"]


def test_prune_stops_idle_warm_containers_of_an_image_and_keeps_busy_ones(context: Context) -> None:
    def script(call: Exec) -> Reply:
        # The retire script answers 1 where a command runs: in the container of the busy image.
        busy = call.warm_script == "xpcargo-retire" and call.container == "container-2"
        return Reply(code=1 if busy else 0)

    runtime = FakeRuntime(script=script)
    _built(context, runtime, "xpcargo/x:idle", "1" * 64)
    _built(context, runtime, "xpcargo/x:busy", "2" * 64)
    warm = {"org.xpcargo.slot": "s", "org.xpcargo.managed": "true"}
    for image in ("xpcargo/x:idle", "xpcargo/x:busy"):
        runtime.start(ContainerRequest(image=image, user="0:0", workdir=Path("/"), labels=warm), main=["sh"])
    pruned = _prune(context, runtime)
    assert [reference for reference, _ in pruned.removed] == ["xpcargo/x:idle"]
    assert runtime.removed == ["container-1"]
    assert _kept(pruned) == {"xpcargo/x:busy": "used by running container container-2"}


def test_prune_leaves_an_image_that_is_being_built(context: Context) -> None:
    runtime = FakeRuntime()
    _built(context, runtime, "xpcargo/x:building", "a" * 64)
    with lock.try_held(context.host.settings.cache_dir, "a" * 64) as free:
        assert free
        pruned = _prune(context, runtime)
    assert pruned.removed == []
    assert _kept(pruned) == {"xpcargo/x:building": "another xpcargo is building it"}
    assert [r for r, _ in _prune(context, runtime).removed] == ["xpcargo/x:building"]
