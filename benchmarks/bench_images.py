"""Measure what a further target and a project's extra packages cost once the shared base exists, against the base's
own build in the same run, and print the ratios.

    .venv/bin/python benchmarks/bench_images.py [--target T...] [--extra PKG...] [--runs N]

Each run builds a fresh chain: a copy of the shipped recipe under a name of its own (so the tags are new and nothing
in the engine is reused), then each target's layer on that base, then a layer of `--extra` packages on the last
target. Downloaded .debs are shared with the user's cache (a developer's second target does not download the base's
.debs again either). The images a run built are removed at its end, by their exact tags. Sizes are the bytes each
image adds to the engine (its size minus its parent's). Timings are medians of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TARGETS = ("x86_64-unknown-linux-gnu", "i686-unknown-linux-gnu", "aarch64-unknown-linux-gnu")


def run(argv: Sequence[str], *, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stderr


def image_size(reference: str) -> int:
    printed = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Size}}", reference], capture_output=True, text=True, check=True
    )
    return int(printed.stdout.strip())


def one_run(targets: Sequence[str], extra: Sequence[str], scratch: Path) -> dict[str, tuple[float, int]]:
    """Build a new chain; return each step's seconds and the bytes it added."""
    recipe = f"bench-{uuid.uuid4().hex[:8]}"
    recipes = scratch / "images"
    recipes.mkdir()
    shutil.copy(REPO / "images" / "trixie-rust.yaml", recipes / f"{recipe}.yaml")
    table = (REPO / "toolchains.yaml").read_text(encoding="utf-8").replace("recipe: trixie-rust", f"recipe: {recipe}")
    (scratch / "toolchains.yaml").write_text(table, encoding="utf-8")
    cache = scratch / "cache"
    cache.mkdir()
    user_debs = Path(os.environ.get("XPCARGO_CACHE_DIR", Path.home() / ".cache" / "xpcargo")) / "debs"
    user_debs.mkdir(parents=True, exist_ok=True)
    (cache / "debs").symlink_to(user_debs)
    project = scratch / "project"
    (project / "src").mkdir(parents=True)
    (project / "Cargo.toml").write_text('[package]\nname = "bench"\nversion = "0.1.0"\n', encoding="utf-8")
    (project / "src" / "main.rs").write_text("fn main() {}\n", encoding="utf-8")
    env = {
        **os.environ,
        "XPCARGO_CACHE_DIR": str(cache),
        "XPCARGO_IMAGES": str(recipes),
        "XPCARGO_TOOLCHAINS": str(scratch / "toolchains.yaml"),
    }
    xpcargo = [sys.executable, "-m", "xpcargo"]
    results: dict[str, tuple[float, int]] = {}
    built: list[str] = []
    try:
        for index, target in enumerate(targets):
            start = time.perf_counter()
            said = run([*xpcargo, "image", "build", target], env=env, cwd=project)
            seconds = time.perf_counter() - start
            references = re.findall(r"Built image (\S+) in", said)
            built += references
            if index == 0:
                # The first target's build holds the base's: split it by the times xpcargo prints.
                times = [float(t) for t in re.findall(r"Built image \S+ in ([0-9.]+)s", said)]
                base, layer = references
                results["base"] = (times[0], image_size(base))
                results[target] = (times[1], image_size(layer) - image_size(base))
            else:
                (layer,) = references
                results[target] = (seconds, image_size(layer) - results["base"][1])
        if extra:
            last = targets[-1]
            (project / "xpcargo.toml").write_text(
                f"[target.{last}]\nextra-packages = {json.dumps(list(extra))}\n", encoding="utf-8"
            )
            below = image_size(built[-1])
            start = time.perf_counter()
            said = run([*xpcargo, "image", "build", last], env=env, cwd=project)
            seconds = time.perf_counter() - start
            (layer,) = re.findall(r"Built image (\S+) in", said)
            built.append(layer)
            results[f"extra-packages {' '.join(extra)}"] = (seconds, image_size(layer) - below)
    finally:
        for reference in reversed(built):
            subprocess.run(["docker", "image", "rm", reference], capture_output=True, check=False)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", action="append", dest="targets", help="targets, in order (default: the three)")
    parser.add_argument("--extra", action="append", default=None, help="extra packages for the last target")
    parser.add_argument("--runs", type=int, default=1)
    arguments = parser.parse_args()
    targets = arguments.targets or list(DEFAULT_TARGETS)
    extra = arguments.extra if arguments.extra is not None else ["libssl-dev:arm64"]
    runs = []
    for _ in range(arguments.runs):
        with tempfile.TemporaryDirectory(prefix="xpcargo-bench-images-") as scratch:
            runs.append(one_run(targets, extra, Path(scratch)))
    base_seconds = statistics.median(r["base"][0] for r in runs)
    print(f"{'image':<45} {'seconds':>8} {'x base':>7} {'MB added':>9}")
    for step in runs[0]:
        seconds = statistics.median(r[step][0] for r in runs)
        added = statistics.median(r[step][1] for r in runs) / 1e6
        print(f"{step:<45} {seconds:8.1f} {seconds / base_seconds:7.2f} {added:9.0f}")
    print(f"(medians of {len(runs)} run(s); 'x base' is the ratio to the shared base's build in the same run)")


if __name__ == "__main__":
    main()
