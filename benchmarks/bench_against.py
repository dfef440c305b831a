"""This checkout's xpcargo against another checkout's, on the same machine at the same time, printed as ratios: the
steadier way to see what a change to the warm path saved, where the ratio to `docker exec` moves between runs on a
loaded machine by more than the change does.

    .venv/bin/python benchmarks/bench_against.py OTHER_CHECKOUT [--target T] [--runs N]

OTHER_CHECKOUT is a copy of another commit's tree (`git archive main | tar -x -C /tmp/main-copy`); its `driver/` is
put first on PYTHONPATH, so that this venv's Python and packages run its code. Measured: a warm no-op `xpcargo
build` of the seed C example (each checkout with a copy of the project and a warm container of its own, made by a
first build) and `xpcargo image list` in the project. Each pair is timed back to back, in alternating order; the
table shows the medians and the median of the per-pair ratios (this checkout's time over the other's). Bytecode is
written and used (PYTHONDONTWRITEBYTECODE dropped), as in an installed package. Nothing here is a test.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

from pairing import Pair, machine, run_pairs, table, timed

REPO = Path(__file__).resolve().parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "seed-c-lib"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("other", type=Path, help="a copy of another commit's tree")
    parser.add_argument("--target", default="aarch64-unknown-linux-gnu")
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()
    other_driver = options.other.resolve() / "driver"
    if not (other_driver / "xpcargo").is_dir():
        sys.exit(f"bench_against: no driver/xpcargo in {options.other}")

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPATH", None)
    other_env = {**env, "PYTHONPATH": str(other_driver)}
    xpcargo = [sys.executable, "-m", "xpcargo"]
    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-against-") as scratch:
        this_project, other_project = Path(scratch) / "this", Path(scratch) / "other"
        for project, project_env in ((this_project, env), (other_project, other_env)):
            shutil.copytree(FIXTURE, project)
            # The first build starts the project's warm container (and fetches its dependencies).
            subprocess.run([*xpcargo, "build", "--target", options.target], cwd=project, env=project_env, check=True)
        build = [*xpcargo, "build", "--target", options.target]
        image_list = [*xpcargo, "image", "list"]
        pairs = [
            Pair(
                name="xpcargo build (warm no-op)",
                measure=partial(timed, build, cwd=this_project, env=env),
                baseline_name="the other's",
                baseline=partial(timed, build, cwd=other_project, env=other_env),
            ),
            Pair(
                name="xpcargo image list",
                measure=partial(timed, image_list, cwd=this_project, env=env),
                baseline_name="the other's",
                baseline=partial(timed, image_list, cwd=other_project, env=other_env),
            ),
        ]
        run_pairs(pairs, 1)  # bytecode written, caches warm
        print(f"this checkout against {options.other}: {options.target}, medians of {options.runs} paired runs")
        print(table(run_pairs(pairs, options.runs)))
        print(f"measured on {machine()}")
        for project, project_env in ((this_project, env), (other_project, other_env)):
            # Their warm containers, stopped rather than left to their idle time.
            subprocess.run([*xpcargo, "down"], cwd=project, env=project_env, check=False, capture_output=True)


if __name__ == "__main__":
    main()
