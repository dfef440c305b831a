"""Images as files for a CI cache, against a fake runtime: the key, save, load, and what load refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from xpcargo.context import Context
from xpcargo.errors import ImageBuildError
from xpcargo.image import records, transfer
from xpcargo.image.builder import Builder
from xpcargo.image.plan import LABEL_PLAN, LABEL_TARGET, ImagePlan

from .fake_runtime import FakeRuntime

AARCH64 = "aarch64-unknown-linux-gnu"
X86_64 = "x86_64-unknown-linux-gnu"


@pytest.fixture
def context(tmp_path: Path) -> Context:
    return Context.create(cwd=tmp_path, environ={"HOME": str(tmp_path), "XPCARGO_CACHE_DIR": str(tmp_path / "c")})


def _plans(context: Context, *names: str) -> list[ImagePlan]:
    """The plans of ``names`` (default: every shipped target) as configured, as the commands pass them."""
    project = context.project_config_here()
    triples = names or sorted(context.host.toolchains.targets)
    return [context.host.image_plan(context.host.target(triple, project)) for triple in triples]


def _builder(context: Context, runtime: FakeRuntime) -> Builder:
    return context.host.image_builder(runtime)


def _with_images(context: Context) -> FakeRuntime:
    runtime = FakeRuntime()
    for spec in context.host.toolchains.targets.values():
        plan = context.host.image_plan(spec)
        runtime.images.add(plan.reference)
        runtime.image_labels[plan.reference] = dict(plan.final.labels)
    return runtime


def test_the_key_changes_exactly_when_a_plan_does(tmp_path: Path, context: Context) -> None:
    key = transfer.key(_plans(context))
    assert key.startswith("xpcargo-images-")
    assert transfer.key(_plans(context)) == key
    assert transfer.key(_plans(context, AARCH64)) != key
    changed = Context.create(
        cwd=tmp_path,
        environ={"HOME": str(tmp_path), "XPCARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_EXTRA_PACKAGES": "libssl-dev:arm64"},
    )
    assert transfer.key(_plans(changed)) != key
    assert transfer.key(_plans(changed, X86_64)) == transfer.key(_plans(context, X86_64))


def test_save_then_load_into_an_empty_engine(tmp_path: Path, context: Context) -> None:
    saved = transfer.save(_builder(context, _with_images(context)), _plans(context), tmp_path / "cache")
    digests = {context.host.image_plan(spec).digest for spec in context.host.toolchains.targets.values()}
    assert {path.name for path in saved} == {f"{digest}.tar" for digest in digests}

    empty = FakeRuntime()
    result = transfer.load(_builder(context, empty), _plans(context), tmp_path / "cache")
    assert set(result.loaded) == {
        context.host.image_plan(spec).reference for spec in context.host.toolchains.targets.values()
    }
    # Loaded images are xpcargo's own: prune may remove them later.
    assert {record.digest for record in records.load_all(context.host.settings.cache_dir)} == digests
    again = transfer.load(_builder(context, empty), _plans(context), tmp_path / "cache")
    assert again.loaded == ()
    assert len(again.present) == len(digests)


def test_a_stale_archive_is_skipped(tmp_path: Path, context: Context) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    (directory / f"{'0' * 64}.tar").write_text("{}", encoding="utf-8")
    result = transfer.load(_builder(context, FakeRuntime()), _plans(context), directory)
    assert result.skipped == (f"{'0' * 64}.tar",)


def test_an_archive_that_is_not_what_its_name_says_is_refused(tmp_path: Path, context: Context) -> None:
    directory = tmp_path / "cache"
    directory.mkdir()
    aarch64 = context.host.image_plan(context.host.toolchains.target(AARCH64))
    x86_64 = context.host.image_plan(context.host.toolchains.target(X86_64))
    # The aarch64 plan's name, holding an x86_64 image.
    forged = {"reference": x86_64.reference, "labels": {LABEL_PLAN: x86_64.digest, LABEL_TARGET: X86_64}}
    (directory / f"{aarch64.digest}.tar").write_text(json.dumps(forged), encoding="utf-8")
    runtime = FakeRuntime()
    with pytest.raises(ImageBuildError, match="refusing"):
        transfer.load(_builder(context, runtime), _plans(context), directory)
    assert x86_64.reference not in runtime.images
    assert aarch64.reference not in runtime.images


def test_a_missing_or_unwritable_directory_is_one_error(tmp_path: Path, context: Context) -> None:
    with pytest.raises(ImageBuildError, match="there is no directory"):
        transfer.load(_builder(context, FakeRuntime()), _plans(context), tmp_path / "missing")
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    with pytest.raises(ImageBuildError, match="cannot save images to"):
        transfer.save(_builder(context, _with_images(context)), _plans(context), blocker / "below")
