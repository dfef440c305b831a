"""Paired timings: a command and its baseline run alternately in the same benchmark, so that a machine that gets
busier or quieter during the run moves both; each pair's ratio is kept, and the table shows medians."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

# What a command run measures: its wall time in seconds, or another number it reports (e.g. libtest's own time).
Measure = Callable[[], float]


def timed(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None) -> float:
    """Seconds ``argv`` took, its output discarded; a failure stops the benchmark."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


@dataclass(frozen=True, kw_only=True)
class Pair:
    """One line of the table: a measurement, its baseline, and the goal for the ratio (None: shown, not judged)."""

    name: str
    measure: Measure
    baseline_name: str
    baseline: Measure
    goal: float | None = None
    # Below the goal is good (a cost), or above it (a speed-up).
    lower_is_better: bool = True


@dataclass(kw_only=True)
class Result:
    pair: Pair
    values: list[float] = field(default_factory=list)
    baselines: list[float] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        """The median of the paired ratios: steadier than the ratio of the medians on a machine whose load moves."""
        return statistics.median(value / baseline for value, baseline in zip(self.values, self.baselines, strict=True))

    @property
    def met(self) -> bool | None:
        goal = self.pair.goal
        if goal is None:
            return None
        return self.ratio <= goal if self.pair.lower_is_better else self.ratio >= goal


def run_pairs(pairs: Sequence[Pair], runs: int) -> list[Result]:
    """Each pair ``runs`` times, the measurement first in even runs and the baseline first in odd ones."""
    results = [Result(pair=pair) for pair in pairs]
    for run in range(runs):
        for result in results:
            if run % 2 == 0:
                result.values.append(result.pair.measure())
                result.baselines.append(result.pair.baseline())
            else:
                result.baselines.append(result.pair.baseline())
                result.values.append(result.pair.measure())
    return results


def _seconds(value: float, unit: str) -> str:
    return f"{value * 1000:8.1f} ms" if unit == "ms" else f"{value:8.2f} s "


def table(results: Sequence[Result], *, unit: str = "ms") -> str:
    """The medians, the paired ratio, and the goal with whether it was met."""
    width = max(len(result.pair.name) for result in results)
    base_width = max(len(result.pair.baseline_name) for result in results)
    lines = [
        f"{'measurement':<{width}}  {'median':>11}  {'baseline':<{base_width}}  {'median':>11}  {'ratio':>6}  goal"
    ]
    for result in results:
        pair = result.pair
        if pair.goal is None:
            judged = ""
        else:
            sign = "<=" if pair.lower_is_better else ">="
            judged = f"{sign} {pair.goal:g}x  {'met' if result.met else 'NOT met'}"
        lines.append(
            f"{pair.name:<{width}}  {_seconds(statistics.median(result.values), unit)}  "
            f"{pair.baseline_name:<{base_width}}  {_seconds(statistics.median(result.baselines), unit)}  "
            f"{result.ratio:5.2f}x  {judged}".rstrip()
        )
    return "\n".join(lines)


def machine() -> str:
    """What the numbers were measured on, for the reader: cores and the load average over the last minute and the
    last five (a benchmark run beside other work measures that work too)."""
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} (1 min), {five:.2f} (5 min)"
