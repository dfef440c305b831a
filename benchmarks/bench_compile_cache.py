"""What the compile cache (sccache) saves and what it costs, measured in one run and printed as ratios.

    .venv/bin/python benchmarks/bench_compile_cache.py [--target T] [--runs N] [--release]

The project is a real crates.io CLI: ripgrep 15.2.0, as crates.io publishes it (the crate tests/integration/
test_real_release.py builds), in three checkouts of its own under a scratch directory, with xpcargo's cache dir there
too (XPCARGO_CACHE_DIR): nothing of the user's caches is read or written.

- **filled**: a clean build (the target dir removed, as `cargo clean` does) with the workspace's cache filled by an
  earlier build, against the same clean build with an empty cache (a new directory each time, XPCARGO_CACHE=<dir>).
  Goal: at most 0.35x.
- **moved**: the same in a fresh checkout at another path, with the filled cache copied to that checkout's cache
  directory (`xpcargo cache path`), as a CI cache restores it. Goal: at most 0.35x.
- **moved, one target dir**: the same, but both checkouts build into one target dir outside them (`--target-dir`, a
  fixed path, as a CI job can set CARGO_TARGET_DIR), so that the paths of build scripts' `OUT_DIR`, which sccache keys
  where they reach rustc, are the same for both. Goal: at most 0.35x.
- **cold**: the wrapper's cost on a cold build: the clean build with an empty cache against the same with
  XPCARGO_CACHE=off. Goal: at most 1.05x.
- **no-op**: the wrapper's cost on a no-op build in a warm container: cache on against XPCARGO_CACHE=off, each
  checkout with its own warm container. Goal: at most 1.05x.

The clean builds of a round run in a rotating order (so that a machine that gets busier during the run moves each
alike); each ratio is the median of the per-round ratios against the baseline measured in the same round. The hits
and misses each build printed are shown too. Nothing here is a test: it prints numbers for a human (or a note) to read.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pairing import Pair, Result, machine, run_pairs, table

RIPGREP = "15.2.0"
# The checksum crates.io's index records for the .crate (tests/integration/test_real_release.py).
RIPGREP_SHA256 = "a30750b6d0743bfdd2656ebbaf4555aa278c43144b84bc389bcbfa399485ec71"
_SAID = re.compile(r"Cache (\d+) hits, (\d+) misses")


def xpcargo(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "xpcargo"), *args]


def download(where: Path) -> Path:
    url = f"https://static.crates.io/crates/ripgrep/ripgrep-{RIPGREP}.crate"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != RIPGREP_SHA256:
        sys.exit("crates.io served other bytes than its index names for ripgrep")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as crate:
        crate.extractall(where, filter="data")
    return where / f"ripgrep-{RIPGREP}"


class Build:
    """`xpcargo build` of one checkout, timed, with the hits and misses it printed kept."""

    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.said: list[str] = []

    def __call__(self, project: Path, *, clean: bool, extra: Mapping[str, str] | None = None) -> float:
        if clean:
            shutil.rmtree(project / "target", ignore_errors=True)
        start = time.perf_counter()
        done = subprocess.run(
            self.argv, cwd=project, env={**self.env, **(extra or {})}, capture_output=True, text=True, check=False
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            sys.exit(f"`{' '.join(self.argv)}` failed in {project}:\n{done.stderr}")
        found = _SAID.search(done.stderr)
        self.said.append(f"{found.group(1)} hits, {found.group(2)} misses" if found else "no cache line")
        return seconds


def cache_path(project: Path, env: Mapping[str, str]) -> Path:
    shown = subprocess.run(xpcargo("cache", "path"), cwd=project, env=env, capture_output=True, text=True, check=True)
    return Path(shown.stdout.strip())


def fresh_directory(scratch: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix="empty-cache-", dir=scratch))


def rounds(measurements: Mapping[str, Callable[[], float]], runs: int) -> dict[str, list[float]]:
    """Each measurement ``runs`` times, the order rotated by one each round."""
    names = list(measurements)
    values: dict[str, list[float]] = {name: [] for name in names}
    for run in range(runs):
        for name in names[run % len(names) :] + names[: run % len(names)]:
            values[name].append(measurements[name]())
            print(f"  round {run + 1}: {name} {values[name][-1]:.1f} s", flush=True)
    return values


def paired(name: str, values: list[float], baseline_name: str, baselines: list[float], goal: float) -> Result:
    pair = Pair(name=name, measure=lambda: 0.0, baseline_name=baseline_name, baseline=lambda: 0.0, goal=goal)
    return Result(pair=pair, values=values, baselines=baselines)


def noop_builds(build: Build, main: Path, off: Path, runs: int) -> Result:
    """No-op builds, cache on against off, each checkout built once more first (untimed) so that its warm container
    matches."""
    off_env = {"XPCARGO_CACHE": "off"}
    build(main, clean=False)
    build(off, clean=False, extra=off_env)
    noop = Pair(
        name="no-op build, cache on",
        measure=lambda: build(main, clean=False),
        baseline_name="cache off",
        baseline=lambda: build(off, clean=False, extra=off_env),
        goal=1.05,
    )
    run_pairs([noop], 1)
    (result,) = run_pairs([noop], runs)
    return result


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="x86_64-unknown-linux-gnu")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--noop-runs", type=int, default=15)
    parser.add_argument("--release", action="store_true", help="build with --release")
    return parser.parse_args()


def main() -> None:
    options = arguments()

    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-cache-") as scratch_name:
        scratch = Path(scratch_name)
        source = download(scratch / "crate")
        checkouts = {
            "main": scratch / "one" / "ripgrep",
            "moved": scratch / "elsewhere" / "deeper" / "ripgrep",
            "off": scratch / "three" / "ripgrep",
            "fixed-first": scratch / "four" / "ripgrep",
            "fixed-moved": scratch / "five" / "deeper" / "ripgrep",
        }
        for path in checkouts.values():
            shutil.copytree(source, path)
        env = {**os.environ, "XPCARGO_CACHE_DIR": str(scratch / "xpcargo-cache")}
        args = ["build", "--target", options.target, *(["--release"] if options.release else [])]
        build = Build(xpcargo(*args), env)
        fixed_target = scratch / "fixed-target"
        fixed = Build(xpcargo(*args, "--target-dir", str(fixed_target)), env)
        off = {"XPCARGO_CACHE": "off"}
        print(
            f"xpcargo benchmark: the compile cache, ripgrep {RIPGREP} for {options.target}"
            f"{' (release)' if options.release else ''}, {options.runs} rounds of clean builds\n",
            flush=True,
        )
        # Untimed: the fetch step of each checkout, and the filled cache of the main one.
        build(checkouts["main"], clean=True)
        build(checkouts["off"], clean=True, extra=off)
        filled = cache_path(checkouts["main"], env)
        moved_cache = cache_path(checkouts["moved"], env)
        print(f"filled the cache {filled}: {build.said[0]}", flush=True)
        fixed(checkouts["fixed-first"], clean=False)
        filled_fixed = cache_path(checkouts["fixed-first"], env)
        moved_fixed_cache = cache_path(checkouts["fixed-moved"], env)
        print(f"filled the cache {filled_fixed} (target dir {fixed_target}): {fixed.said[0]}", flush=True)

        def empty_cache() -> float:
            directory = fresh_directory(scratch)
            try:
                return build(checkouts["main"], clean=True, extra={"XPCARGO_CACHE": str(directory)})
            finally:
                shutil.rmtree(directory, ignore_errors=True)

        def moved() -> float:
            shutil.rmtree(moved_cache, ignore_errors=True)
            shutil.copytree(filled, moved_cache, symlinks=True)
            return build(checkouts["moved"], clean=True)

        def moved_one_target_dir() -> float:
            shutil.rmtree(moved_fixed_cache, ignore_errors=True)
            shutil.copytree(filled_fixed, moved_fixed_cache, symlinks=True)
            shutil.rmtree(fixed_target, ignore_errors=True)
            return fixed(checkouts["fixed-moved"], clean=False)

        said_from = len(build.said)
        fixed_said_from = len(fixed.said)
        values = rounds(
            {
                "filled": lambda: build(checkouts["main"], clean=True),
                "empty": empty_cache,
                "moved": moved,
                "moved-one-target-dir": moved_one_target_dir,
                "off": lambda: build(checkouts["off"], clean=True, extra=off),
            },
            options.runs,
        )
        said = build.said[said_from:]
        said_fixed = fixed.said[fixed_said_from:]

        noop_result = noop_builds(build, checkouts["main"], checkouts["off"], options.noop_runs)
        results = [
            paired("clean build, filled cache", values["filled"], "empty cache", values["empty"], 0.35),
            paired("fresh checkout, cache moved", values["moved"], "empty cache", values["empty"], 0.35),
            paired(
                "fresh checkout, cache moved, one target dir",
                values["moved-one-target-dir"],
                "empty cache",
                values["empty"],
                0.35,
            ),
            paired("clean build, empty cache", values["empty"], "cache off", values["off"], 1.05),
        ]
        print("\n" + table(results, unit="s"))
        print(table([noop_result], unit="ms").split("\n", 1)[1])
        print("\nwhat the timed clean builds said, in order:", ", ".join(said))
        print("and those into one target dir:", ", ".join(said_fixed))
        print(f"medians: {', '.join(f'{name} {statistics.median(v):.1f} s' for name, v in values.items())}")
        print(f"measured on {machine()}")
        for path in checkouts.values():
            subprocess.run(xpcargo("down"), cwd=path, env=env, check=False, capture_output=True)


if __name__ == "__main__":
    main()
