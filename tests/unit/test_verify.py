"""`verify` and `dist` against a fake Cargo: each build in a fresh copy in a directory of its own that says nothing
of a check, neither build mounting the other's tree, directories removed by their owner alone, and `dist` packing
only what both builds made alike."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from xpcargo.context import Context
from xpcargo.errors import NotReproducibleError
from xpcargo.image.inventory import ImageInventory
from xpcargo.release import dist, verify

from .fake_runtime import Exec, FakeRuntime, Reply, app_built, default_script, target_of
from .projects import app_project, where

X86_64 = "x86_64-unknown-linux-gnu"


def _context(root: Path, home: Path | None = None) -> Context:
    # The user's own directories (HOME, CARGO_HOME, the cache) are the same in both builds and any other.
    home = home or root.parent
    env = {"HOME": str(home / "home"), "XPCARGO_CACHE_DIR": str(home / "cache"), "SOURCE_DATE_EPOCH": "1"}
    return Context.create(cwd=root, environ=env)


def _cargo(content: list[bytes], calls: list[Exec]) -> FakeRuntime:
    """Cargo that writes `release/app` (and Cargo's hard-linked copy in deps/) into the target dir it is given,
    each build's bytes the next of ``content``."""

    def script(call: Exec) -> Reply:
        # A reproducible build's Cargo runs under `sh -c 'umask "$0" && exec "$@"' <umask> cargo build ...`.
        if "--target-dir" not in call.argv or "build" not in call.argv:
            return default_script(call)
        calls.append(call)
        target_dir = Path(call.argv[call.argv.index("--target-dir") + 1])
        binary = target_dir / target_of(call) / "release" / "app"
        (binary.parent / "deps").mkdir(parents=True, exist_ok=True)
        (binary.parent / "deps" / "app-0123").write_bytes(content[min(len(calls), len(content)) - 1])
        binary.unlink(missing_ok=True)
        binary.hardlink_to(binary.parent / "deps" / "app-0123")
        return Reply(stdout=app_built(binary))

    return FakeRuntime(script=script, every_image=True)


def test_both_builds_look_alike_and_cannot_reach_each_other(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = app_project(tmp_path / "verify-me-xpcargo", locked=True)
    calls: list[Exec] = []
    runtime = _cargo([b"same"], calls)
    assert verify.verify(*where(_context(root, tmp_path)), X86_64, ["--release"], connect=lambda *_: runtime) == 0
    assert "same" in capsys.readouterr().out
    first, second = calls
    trees = [Path(call.argv[call.argv.index("--target-dir") + 1]).parent for call in calls]
    for call, tree in zip(calls, trees, strict=True):
        assert tree.parent == Path(tempfile.gettempdir())
        assert call.workdir == tree / "app"
        # Nothing in where it runs, or in any variable, says that the build is checked.
        assert "verify" not in str(tree).lower()
        assert "xpcargo" not in str(tree).lower()
        assert not [(name, value) for name, value in call.env.items() if "verify" in value.lower()]
        # Removed by their owner once compared.
        assert not tree.exists()
    mounts = [{mount.path for mount in request.mounts} for request in runtime.started if request.mounts]
    for paths in mounts:
        # No build mounts the real workspace (which would show it what the other build was given) or the other tree.
        assert root.resolve() not in paths
        assert not (any(trees[0] in path.parents or path == trees[0] for path in paths) and
                    any(trees[1] in path.parents or path == trees[1] for path in paths))  # fmt: skip
    assert first.env.get("USER") != second.env.get("USER")


def test_runs_at_once_never_share_a_directory(tmp_path: Path) -> None:
    root = app_project(tmp_path, locked=True)
    calls: list[Exec] = []
    runtime = _cargo([b"same"], calls)
    for _ in range(2):
        verify.verify(*where(_context(root)), X86_64, ["--release"], connect=lambda *_: runtime)
    trees = {Path(call.argv[call.argv.index("--target-dir") + 1]).parent for call in calls}
    assert len(trees) == 4


def test_dist_packs_only_what_both_builds_made_alike(tmp_path: Path) -> None:
    root = app_project(tmp_path, locked=True)
    calls: list[Exec] = []
    runtime = _cargo([b"first", b"second"], calls)
    with pytest.raises(NotReproducibleError, match="release/app") as caught:
        dist.dist(
            *where(_context(root)), [X86_64], [], connect=lambda *_: runtime, out_dir=None, version_in_name=False,
            target_jobs=None,
        )  # fmt: skip
    assert not (root / "target" / "dist").exists()
    kept = [Path(call.argv[call.argv.index("--target-dir") + 1]).parent for call in calls]
    assert all(str(path) in (caught.value.hint or "") for path in kept)
    for path in kept:
        assert path.is_dir()
        verify.discard([path])


def test_dist_packs_the_first_build_when_both_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = app_project(tmp_path, locked=True)
    calls: list[Exec] = []
    runtime = _cargo([b"agreed"], calls)
    monkeypatch.setattr("xpcargo.release.dist.inventory", lambda *_, **__: _inventory())
    code = dist.dist(
        *where(_context(root)),
        [X86_64],
        [],
        connect=lambda *_: runtime,
        out_dir=None,
        version_in_name=False,
        target_jobs=None,
    )
    assert code == 0
    statement = json.loads((root / "target" / "dist" / "provenance.intoto.json").read_text(encoding="utf-8"))
    assert statement["predicate"]["buildDefinition"]["internalParameters"]["verifiedByRebuild"] is True
    assert len(calls) == 2
    assert not any(Path(call.argv[call.argv.index("--target-dir") + 1]).exists() for call in calls)


def _inventory() -> ImageInventory:
    return ImageInventory(triple=X86_64, reference="img:1", image_id="sha256:" + "a" * 64, plan_hash=None, layers=())
