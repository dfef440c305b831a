"""Measure xpcargo's costs against baselines taken in the same run, and print the ratios.

    .venv/bin/python benchmarks/bench_build.py [--target T] [--runs N] [--cold]

- warm no-op build: `xpcargo build` of the seed C example when nothing changed, against the same no-op
  `cargo build` run by `docker exec` in an already running container of the same image (the floor for any tool
  that builds in containers; `docker run --rm` is shown too, which is what a fresh-container-per-command tool pays);
- peak memory (max RSS) of the xpcargo process during the warm no-op build;
- with --cold: the first build with the target's image removed and an empty cache (image build included).
  This deletes that one image (xpcargo rebuilds it); nothing else is touched.

Timings are medians of --runs runs. Start-up (`xpcargo --help`, `xpcargo image list`) is bench_startup.py's.
Nothing here is a test: it prints numbers for a human (or a note) to read.
"""

from __future__ import annotations

import argparse
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
FIXTURE = REPO / "tests" / "fixtures" / "seed-c-lib"


def timed(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss_mib(argv: Sequence[str], *, cwd: Path) -> float:
    """Peak resident memory of ``argv`` and its children, measured by a fresh process whose only child it is."""
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    printed = subprocess.run([sys.executable, "-c", probe, *argv], cwd=cwd, check=True, capture_output=True).stdout
    return int(printed) / 1024


def median_of(runs: int, argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None) -> float:
    return statistics.median(timed(argv, cwd=cwd, env=env) for _ in range(runs))


def xpcargo(*args: str) -> list[str]:
    return [sys.executable, "-m", "xpcargo", *args]


def image_of(target: str, cwd: Path) -> str:
    listing = subprocess.run(xpcargo("targets"), cwd=cwd, check=True, capture_output=True, text=True).stdout
    for line in listing.splitlines():
        fields = line.split()
        if fields and fields[0] == target:
            return fields[-1]
    raise SystemExit(f"error: {target} is not a known target")


def cold_build(target: str, project: Path) -> float:
    image = image_of(target, project)
    subprocess.run(["docker", "image", "rm", "--force", image], check=False, capture_output=True)
    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-cache-") as cache:
        env = {**os.environ, "XPCARGO_CACHE_DIR": cache}
        shutil.rmtree(project / "target", ignore_errors=True)
        return timed(xpcargo("build", "--target", target), cwd=project, env=env)


def container_environment(target: str, project: Path) -> dict[str, str]:
    """The environment xpcargo gives Cargo, read back from inside its container, so the baseline builds alike."""
    printed = subprocess.run(
        xpcargo("shell", "--target", target, "--", "env", "-0"), cwd=project, check=True, capture_output=True
    ).stdout.decode()
    variables = dict(item.split("=", 1) for item in printed.split("\0") if "=" in item)
    for name in ("PATH", "HOSTNAME", "PWD", "SHLVL", "_"):
        variables.pop(name, None)
    return variables


def docker_exec_baseline(target: str, project: Path, runs: int) -> tuple[float, float, float]:
    """The same no-op through `docker exec` into a running container (time and the CLI's peak memory), and
    through `docker run --rm`."""
    image = image_of(target, project)
    env = container_environment(target, project)
    home = Path(env["CARGO_HOME"])
    common = ["--user", f"{os.getuid()}:{os.getgid()}", "--network", "none", "-w", str(project)]
    common += ["-v", f"{project}:{project}", "-v", f"{home}:{home}"]
    for name, value in env.items():
        common += ["-e", f"{name}={value}"]
    cargo = ["cargo", "build", "--target", target]
    container = subprocess.run(
        ["docker", "run", "-d", "--init", *common, image, "sleep", "infinity"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    try:
        exec_time = median_of(runs, ["docker", "exec", container, *cargo], cwd=project)
        exec_memory = peak_rss_mib(["docker", "exec", container, *cargo], cwd=project)
    finally:
        subprocess.run(["docker", "rm", "-f", container], check=True, capture_output=True)
    run_time = median_of(runs, ["docker", "run", "--rm", *common, image, *cargo], cwd=project)
    return exec_time, run_time, exec_memory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="aarch64-unknown-linux-gnu")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--cold", action="store_true", help="also time a cold first build (removes the image)")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-") as scratch:
        project = Path(scratch) / "seed-c-lib"
        shutil.copytree(FIXTURE, project)
        print(f"xpcargo benchmark: {FIXTURE.name} for {options.target}, medians of {options.runs} runs")

        if options.cold:
            cold = cold_build(options.target, project)
            print(f"cold first build (image build included): {cold:8.2f} s")

        build = xpcargo("build", "--target", options.target)
        timed(build, cwd=project)  # the real build, and the fetch step; everything after is a no-op
        warm = median_of(options.runs, build, cwd=project)
        exec_time, run_time, exec_memory = docker_exec_baseline(options.target, project, options.runs)
        print(f"warm no-op `xpcargo build`:            {warm:8.3f} s")
        print(f"  baseline `docker exec` cargo build:   {exec_time:8.3f} s   ratio {warm / exec_time:5.1f}x")
        print(f"  reference `docker run --rm` cargo:    {run_time:8.3f} s   ratio {warm / run_time:5.1f}x")

        memory = peak_rss_mib(build, cwd=project)
        print(f"peak RSS of xpcargo (no-op build):      {memory:8.1f} MiB")
        print(f"  baseline `docker exec` CLI:           {exec_memory:8.1f} MiB   ratio {memory / exec_memory:5.1f}x")


if __name__ == "__main__":
    main()
