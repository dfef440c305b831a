"""Measure xpcargo's start-up against baselines measured in the same run, and print the ratios.

    .venv/bin/python benchmarks/bench_startup.py [--runs N]

- `xpcargo --help` against `python -c pass` on the same interpreter (goal: at most 3x). After the first help (the
  warm-up, not timed) the help comes from xpcargo's help cache;
- the same help with the cache unusable, as the first help after an install or an edit of xpcargo pays it (no goal);
- `xpcargo image list` against `docker images` (goal: at most 3x);
- what stands under those: importing typer and click, and importing the Docker SDK as xpcargo does (paramiko kept
  out), against `python -c pass`.

xpcargo is run as the user runs it: the `xpcargo` script beside this Python (else `python -m xpcargo`). Bytecode is
written and used as in an installed package (PYTHONDONTWRITEBYTECODE is dropped for the commands), and every command
runs once before the timed runs. Each command and its baseline run alternately, the order swapped every run; the
table shows the medians and the median of the paired ratios. Nothing here is a test: it prints numbers for a human
(or a note) to read.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from pairing import Pair, machine, run_pairs, table, timed


def xpcargo_command() -> tuple[list[str], str]:
    """The command a user types, as this Python runs it."""
    script = Path(sys.executable).with_name("xpcargo")
    if not script.is_file():
        return [sys.executable, "-m", "xpcargo"], "python -m xpcargo"
    if "xpcargo.launch" not in script.read_text(encoding="utf-8", errors="replace"):
        print(f"note: {script} was installed before xpcargo.launch: install again for the help cache")
    return [str(script)], "xpcargo"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=15)
    options = parser.parse_args()

    env = dict(os.environ)
    dropped = env.pop("PYTHONDONTWRITEBYTECODE", None) is not None
    xpcargo, shown = xpcargo_command()
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="xpcargo-bench-startup-") as scratch:
        # Outside any Cargo project, so that `image list` reads no project's configuration.
        cwd = Path(scratch)
        unusable = cwd / "not-a-directory"
        unusable.write_text("", encoding="utf-8")
        no_cache = {**env, "XPCARGO_CACHE_DIR": str(unusable)}

        def run(argv: Sequence[str], environ: dict[str, str] = env) -> float:
            return timed(argv, cwd=cwd, env=environ)

        pass_ = partial(run, [python, "-c", "pass"])
        pairs = [
            Pair(
                name=f"{shown} --help",
                measure=partial(run, [*xpcargo, "--help"]),
                baseline_name="python -c pass",
                baseline=pass_,
                goal=3,
            ),
            Pair(
                name=f"{shown} --help, no help cache",
                measure=partial(run, [*xpcargo, "--help"], no_cache),
                baseline_name="python -c pass",
                baseline=pass_,
            ),
            Pair(
                name=f"{shown} image list",
                measure=partial(run, [*xpcargo, "image", "list"]),
                baseline_name="docker images",
                baseline=partial(run, ["docker", "images"]),
                goal=3,
            ),
            Pair(
                name="python -c 'import typer'",
                measure=partial(run, [python, "-c", "import typer"]),
                baseline_name="python -c pass",
                baseline=pass_,
            ),
            Pair(
                # As xpcargo imports it for an engine not reached over ssh:// (container/docker/runtime.py).
                name="python -c 'import docker', no paramiko",
                measure=partial(run, [python, "-c", "import sys; sys.modules['paramiko'] = None; import docker"]),
                baseline_name="python -c pass",
                baseline=pass_,
            ),
        ]
        for pair in pairs:  # the warm-up: bytecode written, the help cache filled
            pair.measure()
            pair.baseline()
        print(f"xpcargo start-up: medians of {options.runs} paired runs; Python {sys.version.split()[0]}")
        if dropped:
            print("(PYTHONDONTWRITEBYTECODE was set here and is dropped for the commands, as a user does not set it)")
        results = run_pairs(pairs, options.runs)
        print(table(results))
        print(f"measured on {machine()}")


if __name__ == "__main__":
    main()
