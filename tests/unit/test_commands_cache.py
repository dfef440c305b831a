"""`xpcargo cache path|stats|clear`: the workspace's directory (or the user's shared one), the recorded caches, and
clearing one or all."""

from __future__ import annotations

from pathlib import Path

import pytest

from xpcargo.commands import cache
from xpcargo.context import Context
from xpcargo.errors import ProjectError
from xpcargo.pipeline import compile_cache
from xpcargo.pipeline.compile_cache import Stats

from .projects import app_project


def _context(tmp_path: Path, cwd: Path, **environ: str) -> Context:
    env = {"HOME": str(tmp_path / "home"), "XPCARGO_CACHE_DIR": str(tmp_path / "cache"), **environ}
    return Context.create(cwd=cwd, environ=env)


def _fill(directory: Path, record: Path, workspace: Path, stats: Stats, size: int) -> None:
    (directory / "0").mkdir(parents=True)
    (directory / "0" / "entry").write_bytes(b"x" * size)
    wrapper = compile_cache.wrapper_directory(record)
    wrapper.mkdir()
    (wrapper / "sccache").write_text("#!/bin/sh\n", encoding="utf-8")
    compile_cache.add_to_record(record, stats, directory=directory, workspace=workspace)


def test_path_is_the_workspaces_directory_from_anywhere_in_it(tmp_path: Path) -> None:
    root = app_project(tmp_path).resolve()
    expected = tmp_path / "cache" / "compile" / compile_cache.key_of(root)
    assert cache.path(_context(tmp_path, root)).lines == (str(expected),)
    assert cache.path(_context(tmp_path, root / "src")).lines == (str(expected),)
    shared = tmp_path / "shared"
    assert cache.path(_context(tmp_path, root, XPCARGO_CACHE=str(shared))).lines == (str(shared),)


def test_path_outside_a_project_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ProjectError, match=r"Cargo\.toml"):
        cache.path(_context(tmp_path, tmp_path))


def test_stats_lists_every_recorded_cache(tmp_path: Path) -> None:
    one = app_project(tmp_path / "one").resolve()
    two = app_project(tmp_path / "two").resolve()
    cache_dir = tmp_path / "cache"
    for root, stats in ((one, Stats(hits=3, misses=1)), (two, Stats(uncacheable=4))):
        directory, record = compile_cache.directory_for(cache_dir, root, None)
        _fill(directory, record, root, stats, 2048)
    header, *rows = cache.rows(_context(tmp_path, one))
    assert header == ("WORKSPACE", "BUILDS", "HITS", "MISSES", "HIT RATE", "SIZE", "DIRECTORY")
    by_workspace = {row[0]: row for row in rows}
    assert by_workspace[str(one)][1:6] == ("1", "3", "1", "75%", "2.0 KiB")
    assert by_workspace[str(two)][1:6] == ("1", "0", "0", "-", "2.0 KiB")


def test_clear_empties_this_workspaces_cache_only_and_all_clears_every_one(tmp_path: Path) -> None:
    one = app_project(tmp_path / "one").resolve()
    two = app_project(tmp_path / "two").resolve()
    cache_dir = tmp_path / "cache"
    places = {root: compile_cache.directory_for(cache_dir, root, None) for root in (one, two)}
    for root, (directory, record) in places.items():
        _fill(directory, record, root, Stats(hits=1), 100)
    said = cache.clear(_context(tmp_path, one), everything=False)
    assert said.statuses == (("Removed", f"the compile cache {places[one][0]} (100 B)"),)
    assert not places[one][0].exists()
    assert not compile_cache.wrapper_directory(places[one][1]).exists()
    assert places[two][0].is_dir()
    assert compile_cache.wrapper_directory(places[two][1]).is_dir()
    assert [record.workspaces for record in compile_cache.records(cache_dir)] == [(str(two),)]
    cache.clear(_context(tmp_path, one), everything=True)
    assert not places[two][0].exists()
    assert compile_cache.records(cache_dir) == []
    assert cache.clear(_context(tmp_path, one), everything=True).statuses == (
        ("Removed", "nothing: no compile cache recorded"),
    )
