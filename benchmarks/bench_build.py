"""What a no-op build costs with xpcargo against the engine's floor, measured in one run and printed as ratios.

    .venv/bin/python benchmarks/bench_build.py [--target T] [--runs N] [--cold]

- warm no-op `xpcargo build` of the seed C example (its container kept warm, the default), against the same no-op
  `cargo build` run by `docker exec` in a running container of the same image, with the same mounts, environment
  and user: the floor of any tool that builds in containers. Goal: at most 1.5x. The no-op is replayed
  (``xpcargo.replay``); the same with XPCARGO_REPLAY=0 is the usual way, what the first no-op after a change costs.
- the same with warm containers off (XPCARGO_KEEP_WARM=0: a container per command), against `docker run --rm` of
  the same: what a fresh-container-per-command tool pays. Goal: at most 1.5x.
- `xpcargo image list` against `docker images`, in the project (goal: at most 3x; `bench_startup.py` measures it
  outside any project, beside the other start-up costs): replayed, and the usual way (XPCARGO_REPLAY=0).
- peak memory (max RSS) of the xpcargo process during the warm no-op build, against the `docker exec` CLI's.
- with --cold: the first build with the target's image removed and an empty cache (image build included). This
  deletes that one image (xpcargo rebuilds it); nothing else is touched.

Against cross on the same image: not measured here; with cross installed this says so and measures nothing more
(see docs/costs.md).

Each pair is timed back to back, in alternating order, --runs times; the table shows the medians and the median of
the per-pair ratios. Nothing here is a test: it prints numbers for a human (or a note) to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from pairing import Pair, machine, run_pairs, table, timed

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "seed-c-lib"


def run(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> float:
    return timed(argv, cwd=cwd, env=env)


def peak_rss_mib(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> float:
    """Peak resident memory of ``argv`` and its children, measured by a fresh process whose only child it is."""
    probe = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    printed = subprocess.run(
        [sys.executable, "-c", probe, *argv], cwd=cwd, env=env, check=True, capture_output=True
    ).stdout
    return int(printed) / 1024


def xpcargo(*args: str) -> list[str]:
    return [str(Path(sys.executable).parent / "xpcargo"), *args]


def image_of(target: str, cwd: Path) -> str:
    listing = subprocess.run(
        xpcargo("targets", "--json", "--target", target), cwd=cwd, check=True, capture_output=True, text=True
    ).stdout
    (entry,) = json.loads(listing)
    return str(entry["image"])


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


def engine_arguments(target: str, project: Path) -> list[str]:
    """What `docker run` needs to build like xpcargo: the user, no network, the mounts, the environment."""
    env = container_environment(target, project)
    home = Path(env["CARGO_HOME"])
    common = ["--user", f"{os.getuid()}:{os.getgid()}", "--network", "none", "-w", str(project)]
    common += ["-v", f"{project}:{project}", "-v", f"{home}:{home}:ro"]
    share = REPO / "images" / "share"
    common += ["-v", f"{share}:/usr/local/share/xpcargo:ro"]
    # The compile cache (on by default): its wrapper, which Cargo runs for rustc, and the cache it fills.
    if "RUSTC_WRAPPER" in env:
        wrapper = Path(env["RUSTC_WRAPPER"]).parent
        common += ["-v", f"{wrapper}:{wrapper}:ro"]
    if "SCCACHE_DIR" in env:
        common += ["-v", f"{env['SCCACHE_DIR']}:{env['SCCACHE_DIR']}"]
    for name, value in env.items():
        common += ["-e", f"{name}={value}"]
    return common


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", default="aarch64-unknown-linux-gnu")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--cold", action="store_true", help="also time a cold first build (removes the image)")
    options = parser.parse_args()
    # Bytecode written and used as in an installed package: with this set, every module edited since its bytecode
    # was last written is compiled again by every command (xpcargo's own imports took 1.8x as long).
    if os.environ.pop("PYTHONDONTWRITEBYTECODE", None) is not None:
        print("(PYTHONDONTWRITEBYTECODE was set here and is dropped for the commands, as a user does not set it)")

    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-") as scratch:
        project = Path(scratch) / "seed-c-lib"
        shutil.copytree(FIXTURE, project)
        print(f"xpcargo benchmark: no-op build of {FIXTURE.name} for {options.target}, {options.runs} pairs\n")

        if options.cold:
            cold = cold_build(options.target, project)
            print(f"cold first build (image build included): {cold:.2f} s\n")

        build = xpcargo("build", "--target", options.target)
        cold_env = {**os.environ, "XPCARGO_KEEP_WARM": "0"}
        usual_env = {**os.environ, "XPCARGO_REPLAY": "0"}
        run(build, cwd=project)  # the real build, and the fetch step; everything after is a no-op
        image = image_of(options.target, project)
        common = engine_arguments(options.target, project)
        cargo = ["cargo", "build", "--target", options.target]
        container = subprocess.run(
            ["docker", "run", "-d", "--init", *common, image, "sleep", "infinity"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        try:
            warm = Pair(
                name="xpcargo build (warm)",
                measure=lambda: run(build, cwd=project),
                baseline_name="docker exec",
                baseline=lambda: run(["docker", "exec", container, *cargo], cwd=project),
                goal=1.5,
            )
            usual = Pair(
                name="xpcargo build (warm, XPCARGO_REPLAY=0)",
                measure=lambda: run(build, cwd=project, env=usual_env),
                baseline_name="docker exec",
                baseline=lambda: run(["docker", "exec", container, *cargo], cwd=project),
                goal=1.5,
            )
            fresh = Pair(
                name="xpcargo build (KEEP_WARM=0)",
                measure=lambda: run(build, cwd=project, env=cold_env),
                baseline_name="docker run --rm",
                baseline=lambda: run(["docker", "run", "--rm", *common, image, *cargo], cwd=project),
                goal=1.5,
            )
            listing = Pair(
                name="xpcargo image list",
                measure=lambda: run(xpcargo("image", "list"), cwd=project),
                baseline_name="docker images",
                baseline=lambda: run(["docker", "images"], cwd=project),
                goal=3,
            )
            usual_listing = Pair(
                name="xpcargo image list (XPCARGO_REPLAY=0)",
                measure=lambda: run(xpcargo("image", "list"), cwd=project, env=usual_env),
                baseline_name="docker images",
                baseline=lambda: run(["docker", "images"], cwd=project),
                goal=3,
            )
            pairs = [warm, usual, fresh, listing, usual_listing]
            # One untimed run of each first: caches, and the first exec into a container.
            run_pairs(pairs, 1)
            results = run_pairs(pairs, options.runs)
            exec_memory = peak_rss_mib(["docker", "exec", container, *cargo], cwd=project)
        finally:
            subprocess.run(["docker", "rm", "-f", container], check=True, capture_output=True)
        memory = peak_rss_mib(build, cwd=project)
        print(table(results))
        print(
            f"\npeak RSS of xpcargo (warm no-op build): {memory:.1f} MiB; of the `docker exec` CLI: "
            f"{exec_memory:.1f} MiB ({memory / exec_memory:.1f}x)"
        )
        print(f"measured on {machine()}")
        cross = shutil.which("cross")
        print(
            "cross: not installed, so xpcargo against cross on the same image is not measured"
            if cross is None
            else f"cross: installed ({cross}), but this benchmark does not run it yet"
        )
        subprocess.run(xpcargo("down"), cwd=project, check=False, capture_output=True)


if __name__ == "__main__":
    main()
