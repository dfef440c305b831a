"""The compile cache against the real engine and real Cargo: sccache's hits across two targets' shared host-side
dependencies and across two commands, C compiled by the cc crate cached too; `xpcargo cache stats|clear|path`;
XPCARGO_CACHE=off running no sccache; a hostile project that cannot reach another workspace's cache, nor name a remote
backend (the images' sccache has none); and release builds (`verify`, `dist`) that never touch the cache and give the
same bytes with it on and off."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import pytest

from .helpers import AARCH64, FIXTURES, X86_64, Cli, Result, assert_verified_same

# Minutes: `-m "not slow"` leaves this file out of a quick run.
pytestmark = [pytest.mark.engine, pytest.mark.slow]

EPOCH = {"SOURCE_DATE_EPOCH": "1700000000"}
_SAID = re.compile(r"^\s+Cache (\d+) hits, (\d+) misses \(.*\), (\d+) not cacheable$", re.MULTILINE)


def _said(result: Result) -> tuple[int, int]:
    """The hits and misses of the build's one `Cache` line."""
    found = _SAID.findall(result.stderr)
    assert len(found) == 1, result
    hits, misses, _ = found[0]
    return int(hits), int(misses)


def _cache_env(tmp_path: Path) -> dict[str, str | None]:
    """xpcargo's cache dir of the test's own: the compile caches (and `cache stats`) of this test alone, one per
    workspace (the default: not the session's shared cache)."""
    return {"XPCARGO_CACHE_DIR": str(tmp_path / "xpcargo-cache"), "XPCARGO_CACHE": None}


def _copy(tmp_path: Path, name: str) -> Path:
    project = tmp_path / name
    shutil.copytree(FIXTURES / name, project)
    return project


def _cache_path(xpcargo: Cli, project: Path, env: Mapping[str, str | None]) -> Path:
    shown = xpcargo(["cache", "path"], cwd=project, env=env)
    assert shown.code == 0, shown
    return Path(shown.stdout.strip())


def compile_cache_wrapper(cache: Path) -> Path:
    """The wrapper xpcargo writes for ``cache``, beside it."""
    return cache.with_name(f"{cache.name}.wrapper") / "sccache"


def _snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with its sha256 (what a write would change)."""
    return {
        str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(directory.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def _languages(stats_file: Path, kind: str) -> dict[str, int]:
    """sccache's own per-language counts (``kind``: cache_hits or cache_misses) of the last command."""
    counts: dict[str, int] = json.loads(stats_file.read_text(encoding="utf-8"))["stats"][kind]["counts"]
    return counts


def test_hits_across_targets_and_commands_then_stats_and_clear(tmp_path: Path, xpcargo: Cli) -> None:
    """zlib-sys: libz-sys's build script, its host-side dependencies (cc, shlex, pkg-config, ...) and zlib's C
    sources compiled by the cc crate. x86_64 fills the cache; aarch64, built in a target dir of its own so that Cargo
    builds the host side again, hits the host-side crates; `test` after a `cargo clean` hits every dependency, the C
    of zlib included; clippy works under the wrapper. Then `cache stats` sums it up and `cache clear` empties it."""
    project = tmp_path / "zlib"
    shutil.copytree(FIXTURES / "zlib-sys", project)
    env = _cache_env(tmp_path)
    cache = _cache_path(xpcargo, project, env)
    assert cache.parent == tmp_path / "xpcargo-cache" / "compile"

    first = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert first.code == 0, first
    hits, misses = _said(first)
    assert hits == 0
    assert misses >= 6, first
    assert cache.is_dir()

    other_target = xpcargo(
        ["build", "--target", AARCH64, "--target-dir", str(tmp_path / "aarch64-target")], cwd=project, env=env
    )
    assert other_target.code == 0, other_target
    hits, _ = _said(other_target)
    # cc, shlex, find-msvc-tools, pkg-config and vcpkg: built for the host, alike for both targets.
    assert hits >= 5, other_target

    shutil.rmtree(project / "target")
    tested = xpcargo(["test", "--target", X86_64], cwd=project, env=env)
    assert tested.code == 0, tested
    hits, misses = _said(tested)
    assert hits >= 7, tested
    stats_file = project / "target" / "xpcargo" / X86_64 / "compile-cache-stats.json"
    # zlib's C files, compiled by the cc crate through sccache (RUSTC_WRAPPER is sccache), came from the cache.
    c_hits = sum(count for language, count in _languages(stats_file, "cache_hits").items() if language != "Rust")
    assert c_hits >= 10, stats_file.read_text(encoding="utf-8")

    shutil.rmtree(project / "target")
    linted = xpcargo(["clippy", "--target", X86_64], cwd=project, env=env)
    assert linted.code == 0, linted
    hits, _ = _said(linted)
    assert hits >= 5, linted

    stats = xpcargo(["cache", "stats"], cwd=project, env=env)
    assert stats.code == 0, stats
    header, row = stats.stdout_lines
    assert header.split()[:5] == ["WORKSPACE", "BUILDS", "HITS", "MISSES", "HIT"]
    assert row.split()[0] == str(project.resolve())
    assert row.split()[1] == "4"
    assert row.split()[-1] == str(cache)

    cleared = xpcargo(["cache", "clear"], cwd=project, env=env)
    assert cleared.code == 0, cleared
    assert f"Removed the compile cache {cache}" in cleared.stderr
    assert not cache.exists()
    assert xpcargo(["cache", "stats"], cwd=project, env=env).stdout_lines[1:] == []
    shutil.rmtree(project / "target")
    again = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert again.code == 0, again
    assert _said(again)[0] == 0


def test_a_proc_macros_dependencies_hit_across_targets(tmp_path: Path, xpcargo: Cli) -> None:
    """A proc macro of the workspace's own runs on the host side of every target: its crates.io dependencies
    (proc-macro2, quote, unicode-ident) compiled for x86_64 come from the cache for aarch64, whose program prints what
    the macro made."""
    project = _copy(tmp_path, "cache-proc-macro")
    env = _cache_env(tmp_path)
    first = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert first.code == 0, first
    assert _said(first)[0] == 0, first
    other = xpcargo(
        ["run", "--target", AARCH64, "--target-dir", str(tmp_path / "aarch64-target")], cwd=project, env=env
    )
    assert other.code == 0, other
    assert other.stdout_lines == ["HELLO FROM A PROC MACRO"], other
    hits, _ = _said(other)
    assert hits >= 3, other


def test_off_runs_no_sccache(tmp_path: Path, xpcargo: Cli) -> None:
    project = _copy(tmp_path, "seed-c-lib")
    env = {**_cache_env(tmp_path), "XPCARGO_CACHE": "off"}
    built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert built.code == 0, built
    assert not _SAID.search(built.stderr), built
    assert not _cache_path(xpcargo, project, env).exists()
    assert not (project / "target" / "xpcargo" / X86_64 / "compile-cache-stats.json").exists()
    shown = xpcargo(
        ["shell", "--target", X86_64, "--", "sh", "-c", 'echo "wrapper=${RUSTC_WRAPPER:-none}"; cat /proc/[0-9]*/comm'],
        cwd=project,
        env=env,
    )
    assert shown.code == 0, shown
    assert "wrapper=none" in shown.stdout
    assert "sccache" not in shown.stdout


def test_a_hostile_project_cannot_reach_another_workspaces_cache(tmp_path: Path, xpcargo: Cli) -> None:
    """The victim's cache is filled first. The hostile project names it as SCCACHE_DIR in its Cargo config's `[env]`
    (forced, with a server port of its own, so that a server of its own would use that directory), in its
    xpcargo.toml's `env`, and its build script writes there and beside its own cache (those writes land in the
    container's own file system, which has no such host directory mounted). Nothing of the victim's cache changes,
    and nothing is planted in the directory that holds every workspace's cache. The build cannot change the wrapper
    that the next build runs, and the links it plants in its own cache (where a wrapper was once written) to a
    directory of the host's lead this machine to write nothing there in the next build. Nor can it forge the parses of
    xpcargo's own YAML files that the host keeps in its cache dir (``schema.load_yaml``), which the next command reads
    instead of the toolchain table and the recipes."""
    env = _cache_env(tmp_path)
    victim = _copy(tmp_path, "zlib-sys")
    filled = xpcargo(["build", "--target", X86_64], cwd=victim, env=env)
    assert filled.code == 0, filled
    victim_cache = _cache_path(xpcargo, victim, env)
    before = _snapshot(victim_cache)
    # Entries of the victim's crates.io dependencies and of zlib's C files.
    assert len(before) >= 10, before
    parsed = tmp_path / "xpcargo-cache" / "parsed"
    parses = _snapshot(parsed)
    # The toolchain table's and the target's recipe's.
    assert len(parses) >= 2, parses

    hostile = tmp_path / "hostile"
    shutil.copytree(FIXTURES / "cache-hostile", hostile)
    own_cache = _cache_path(xpcargo, hostile, env)
    home = tmp_path / "home"
    home.mkdir()
    (hostile / ".cargo").mkdir()
    (hostile / ".cargo" / "config.toml").write_text(
        f'[env]\nSCCACHE_DIR = {{ value = "{victim_cache}", force = true }}\n'
        f'SCCACHE_SERVER_PORT = {{ value = "4227", force = true }}\nVICTIM_CACHE = "{victim_cache}"\n'
        f'OWN_CACHE = "{own_cache}"\nHOST_HOME = "{home}"\nPARSED = "{parsed}"\n',
        encoding="utf-8",
    )
    (hostile / "xpcargo.toml").write_text(f'[build]\nenv = {{ SCCACHE_DIR = "{victim_cache}" }}\n', encoding="utf-8")
    log = hostile / "target" / "hostile.log"
    for attempt in range(2):
        attacked = xpcargo(["build", "--target", X86_64], cwd=hostile, env=env)
        said = log.read_text(encoding="utf-8") if log.exists() else ""
        # `force` beats xpcargo's own variable for the build script (the rustc wrapper sets sccache's back).
        assert f'ran, SCCACHE_DIR=Ok("{victim_cache}")' in said, f"the hostile build script did not run:{attacked}"
        assert re.search(r"^wrapper /.*: Err\(ReadOnlyFilesystem\)$", said, re.MULTILINE), said
        assert "link " in said, said
        assert _snapshot(victim_cache) == before, said
        assert f"parsed {parsed}: NotFound" in said, said
        assert _snapshot(parsed) == parses, said
        assert list((tmp_path / "xpcargo-cache").rglob("*planted*")) == [], said
        assert list(home.iterdir()) == [], said
        if attempt == 0:
            # The next build must run its build script again, through the links the first one left.
            (hostile / "build.rs").touch()
    wrapper = compile_cache_wrapper(own_cache)
    assert "planted" not in wrapper.read_text(encoding="utf-8")


# What names a remote backend to sccache 0.10: each backend's variables, and a config file of the project's own.
_REMOTE_BACKENDS = {
    "SCCACHE_REDIS_ENDPOINT": "redis://127.0.0.1:6379/0",
    "SCCACHE_BUCKET": "bucket",
    "SCCACHE_ENDPOINT": "http://127.0.0.1:9000",
    "SCCACHE_GHA_ENABLED": "on",
    "SCCACHE_MEMCACHED_ENDPOINT": "tcp://127.0.0.1:11211",
    "SCCACHE_WEBDAV_ENDPOINT": "http://127.0.0.1:8080/",
    "SCCACHE_GCS_BUCKET": "bucket",
    "SCCACHE_AZURE_CONNECTION_STRING": "BlobEndpoint=http://127.0.0.1:10000/",
    "SCCACHE_OSS_BUCKET": "bucket",
}


def test_a_projects_remote_backend_changes_nothing(tmp_path: Path, xpcargo: Cli) -> None:
    """The images' sccache (Debian's 0.10) is built without remote backends, as the docs say: a project that names
    one for every backend (its Cargo config's `[env]`, forced, its xpcargo.toml's `env`, and an sccache config file of
    its own through SCCACHE_CONF) builds into its own local cache (Rust and zlib's C), which its next build hits.
    None of its SCCACHE_* settings reaches sccache's server: the wrapper takes them away (were one to, a backend
    compiled in would be preferred to the disk, and the statistics would name it; a size would be the project's)."""
    project = _copy(tmp_path, "zlib-sys")
    env = _cache_env(tmp_path)
    cache = _cache_path(xpcargo, project, env)
    conf = project / "sccache.toml"
    conf.write_text('[cache.redis]\nendpoint = "redis://127.0.0.1:6379/0"\n', encoding="utf-8")
    # A project's SCCACHE_CACHE_SIZE would show in the statistics: they keep sccache's default, 10 GiB.
    named = {**_REMOTE_BACKENDS, "SCCACHE_CONF": str(conf), "SCCACHE_CACHE_SIZE": "7G"}
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(
        "[env]\n" + "".join(f'{name} = {{ value = "{value}", force = true }}\n' for name, value in named.items()),
        encoding="utf-8",
    )
    table = ", ".join(f'{name} = "{value}"' for name, value in named.items())
    (project / "xpcargo.toml").write_text(f"[build]\nenv = {{ {table} }}\n", encoding="utf-8")
    stats_file = project / "target" / "xpcargo" / X86_64 / "compile-cache-stats.json"
    for attempt in range(2):
        built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
        assert built.code == 0, built
        hits, misses = _said(built)
        # The first build fills the cache; the second, after `cargo clean`'s like, hits it.
        assert (hits == 0 and misses > 0) if attempt == 0 else hits > 0, built
        said = json.loads(stats_file.read_text(encoding="utf-8"))
        assert said["max_cache_size"] == 10 << 30, said
        assert said["cache_location"] == f'Local disk: "{cache}"', said
        assert _snapshot(cache), cache
        shutil.rmtree(project / "target")


def test_release_builds_never_touch_the_cache_and_match_with_it_on_and_off(tmp_path: Path, xpcargo: Cli) -> None:
    project = _copy(tmp_path, "zlib-sys")
    env = {**_cache_env(tmp_path), **EPOCH}
    cache = _cache_path(xpcargo, project, env)
    records = tmp_path / "xpcargo-cache" / "compile"
    verified = xpcargo(["verify", "--target", X86_64, "--release"], cwd=project, env=env)
    assert_verified_same(verified)
    assert not _SAID.search(verified.stderr), verified
    assert not cache.exists()
    assert not records.exists() or not list(records.glob("*.json"))

    # With a cache that a plain build filled, `dist` still leaves it as it was.
    built = xpcargo(["build", "--target", X86_64, "--release"], cwd=project, env=env)
    assert built.code == 0, built
    before = _snapshot(cache)
    assert len(before) >= 10, before
    on = xpcargo(["dist", "--target", X86_64, "--out-dir", str(tmp_path / "on")], cwd=project, env=env)
    assert on.code == 0, on
    off = xpcargo(
        ["dist", "--target", X86_64, "--out-dir", str(tmp_path / "off")],
        cwd=project,
        env={**env, "XPCARGO_CACHE": "off"},
    )
    assert off.code == 0, off
    assert _snapshot(cache) == before
    archive = f"zlib-roundtrip-{X86_64}.tar.gz"
    for name in (archive, "sha256.sum"):
        assert (tmp_path / "on" / name).read_bytes() == (tmp_path / "off" / name).read_bytes(), name


def test_a_projects_rustc_wrapper_runs_and_the_cache_stays_off(tmp_path: Path, xpcargo: Cli) -> None:
    """Cargo prefers RUSTC_WRAPPER to the project's `build.rustc-wrapper`: the cache stays off, said once, and the
    project's wrapper runs."""
    project = _copy(tmp_path, "seed-c-lib")
    wrapper = project / "wrap.sh"
    wrapper.write_text('#!/bin/sh\necho "wrapped $*" >> "$(dirname "$0")/wrapper.log"\nexec "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    (project / ".cargo").mkdir()
    (project / ".cargo" / "config.toml").write_text(f'[build]\nrustc-wrapper = "{wrapper}"\n', encoding="utf-8")
    env = _cache_env(tmp_path)
    built = xpcargo(["build", "--target", X86_64], cwd=project, env=env)
    assert built.code == 0, built
    assert "Cache off:" in built.stderr, built
    assert "rustc wrapper" in built.stderr
    assert "wrapped " in (project / "wrapper.log").read_text(encoding="utf-8")
    assert not _cache_path(xpcargo, project, env).exists()
