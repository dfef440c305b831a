"""Several targets in one command against the same builds one after another, measured in the same run.

    .venv/bin/python benchmarks/bench_matrix.py [--runs N] [--target-jobs N] [--cold]

- clean build of the zlib-sys fixture (a C build script through the cc crate, and crates.io dependencies) for
  three targets: one `xpcargo build --target A --target B --target C` against `xpcargo build --target A`, then B,
  then C, each pair on fresh copies of the project (the crates are already in CARGO_HOME, so neither side fetches
  from the network); the ratio of the medians, and the median of the paired ratios;
- with --cold: the three images of plans of the benchmark's own (each with the extra package `hello`), built by one
  multi-target command against built one after another, and `xpcargo image load` of the three saved images
  against building them. The benchmark's own images are removed afterwards; the shared ones are never touched.

Nothing here is a test: it prints numbers for a human (or a note) to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "zlib-sys"
TARGETS = ("x86_64-unknown-linux-gnu", "i686-unknown-linux-gnu", "aarch64-unknown-linux-gnu")


def xpcargo(*args: str) -> list[str]:
    return [sys.executable, "-m", "xpcargo", *args]


def timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def fresh_copy(scratch: Path, name: str) -> Path:
    destination = scratch / name
    shutil.copytree(FIXTURE, destination, ignore=shutil.ignore_patterns("target"))
    return destination


def warm_pairs(runs: int, target_jobs: int, env: dict[str, str], scratch: Path) -> tuple[list[float], list[float]]:
    together, apart = [], []
    for run in range(runs):
        # Alternate which side goes first, so that neither always meets a warmer page cache.
        order = ("together", "apart") if run % 2 == 0 else ("apart", "together")
        for side in order:
            project = fresh_copy(scratch, f"{side}-{run}")
            if side == "together":
                targets = [arg for triple in TARGETS for arg in ("--target", triple)]
                argv = xpcargo("build", *targets, "--target-jobs", str(target_jobs))
                together.append(timed(argv, cwd=project, env=env))
            else:
                apart.append(sum(timed(xpcargo("build", "--target", t), cwd=project, env=env) for t in TARGETS))
            shutil.rmtree(project)
    return together, apart


def cold(env: dict[str, str], scratch: Path) -> None:
    """Image builds: one multi-target command against one after another; then `image load` against building."""
    project = fresh_copy(scratch, "cold")
    references: set[str] = set()
    # Plans of the benchmark's own: every target with one small extra Debian package, so that the shared images
    # are neither used nor removed.
    variant = {**env, **{f"XPCARGO_TARGET_{t.replace('-', '_').upper()}_EXTRA_PACKAGES": "hello" for t in TARGETS}}

    def plans(variant: dict[str, str]) -> list[str]:
        listing = subprocess.run(
            xpcargo("targets", "--json"), cwd=project, env=variant, check=True, capture_output=True, text=True
        ).stdout
        return [item["image"] for item in json.loads(listing)]

    try:
        references.update(plans(variant))
        start = time.perf_counter()
        subprocess.run(xpcargo("image", "build", *TARGETS), cwd=project, env=variant, check=True)
        apart = time.perf_counter() - start
        subprocess.run(["docker", "rmi", *plans(variant)], check=True, capture_output=True)
        start = time.perf_counter()
        targets = [arg for triple in TARGETS for arg in ("--target", triple)]
        subprocess.run(xpcargo("build", *targets), cwd=project, env=variant, check=True)
        together = time.perf_counter() - start
        saved = scratch / "saved"
        subprocess.run(xpcargo("image", "save", "-o", str(saved), *TARGETS), cwd=project, env=variant, check=True)
        subprocess.run(["docker", "rmi", *plans(variant)], check=True, capture_output=True)
        start = time.perf_counter()
        subprocess.run(xpcargo("image", "load", str(saved)), cwd=project, env=variant, check=True)
        loaded = time.perf_counter() - start
    finally:
        subprocess.run(["docker", "rmi", *references], check=False, capture_output=True)
    print(f"three image builds, one after another (`image build`): {apart:8.1f} s")
    print(f"three image builds by one multi-target `xpcargo build`: {together:8.1f} s (build included)")
    print(f"`image load` of the three saved images:                  {loaded:8.1f} s")
    print(f"load / build:                                            {loaded / apart:8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--target-jobs", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--cold", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-matrix-") as directory:
        scratch = Path(directory)
        env = {**os.environ, "CARGO_HOME": str(scratch / "cargo-home"), "XPCARGO_CACHE_DIR": str(scratch / "cache")}
        # Fill CARGO_HOME once, so that neither side downloads.
        warm = fresh_copy(scratch, "fetch")
        subprocess.run(xpcargo("build", "--target", TARGETS[0]), cwd=warm, env=env, check=True, capture_output=True)
        print(f"xpcargo benchmark: clean build of {FIXTURE.name} for {len(TARGETS)} targets, {options.runs} pairs")
        together, apart = warm_pairs(options.runs, options.target_jobs, env, scratch)
        ratios = [t / a for t, a in zip(together, apart, strict=True)]
        print(f"one command, {options.target_jobs} side by side: {statistics.median(together):8.1f} s (median)")
        print(f"three commands, one after another:  {statistics.median(apart):8.1f} s (median)")
        print(f"ratio of medians:                   {statistics.median(together) / statistics.median(apart):8.2f}")
        print(f"median of paired ratios:            {statistics.median(ratios):8.2f} (goal: at most 0.75)")
        if options.cold:
            cold(env, scratch)


if __name__ == "__main__":
    main()
