"""Reference numbers from rliable itself, for tests/analyzer/test_statistics.py.

rliable is not a dependency of rlaudit (archived, slow, and it needs
``pandas<3``); run this script in a separate environment:

    python -m venv /tmp/rliable-venv
    /tmp/rliable-venv/bin/pip install rliable "pandas<3"
    /tmp/rliable-venv/bin/python benchmarks/rliable_oracle.py

It writes tests/analyzer/data/rliable_reference.json: fixed score data,
rliable's point estimates (IQM, mean, median, optimality gap, probability of
improvement) and its stratified-bootstrap percentile intervals. rliable draws
its resamples from numpy's *global* random state (its ``random_state``
argument is ignored), so every interval here is computed right after
``np.random.seed(seed)``; the seed and the number of resamples are stored
with it, so a test can regenerate rliable's very draws (one
``np.random.choice(runs, (runs, tasks))`` per resample, X before Y for the
probability of improvement) and compare rlaudit's arithmetic to rliable's
exactly, independent of Monte Carlo noise. Intervals with 50,000 resamples
from rliable's own stream are stored too, for a statistical comparison.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import rliable
from rliable import library as rly
from rliable import metrics

OUT = Path(__file__).resolve().parents[1] / "tests" / "analyzer" / "data" / "rliable_reference.json"


def _data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20211206)
    return {
        # a suite: 10 runs x 5 tasks, two algorithms (lognormal-ish, normalised scores)
        "suite_x": np.round(rng.lognormal(0.0, 0.5, size=(10, 5)), 4),
        "suite_y": np.round(rng.lognormal(-0.2, 0.5, size=(10, 5)), 4),
        # one environment: 10 and 8 runs
        "single_x": np.round(rng.normal(100.0, 15.0, size=(10, 1)), 3),
        "single_y": np.round(rng.normal(90.0, 20.0, size=(8, 1)), 3),
        # 5 runs: the bootstrap distribution has few atoms (exact percentiles exist)
        "small": np.array([[3.0], [7.5], [1.25], [10.0], [4.0]]),
    }


def _aggregates(x: np.ndarray) -> np.ndarray:
    return np.array([
        metrics.aggregate_iqm(x),
        metrics.aggregate_mean(x),
        metrics.aggregate_median(x),
        float(np.median(x)),  # median of all scores pooled (what rlaudit reports for one task)
        metrics.aggregate_optimality_gap(x, 1.0),
    ])


NAMES = ["iqm", "mean", "aggregate_median", "median", "optimality_gap"]


def _intervals(key: str, scores, func, reps: int, seed: int) -> dict:
    np.random.seed(seed)
    point, interval = rly.get_interval_estimates({key: scores}, func, reps=reps)
    return {"point": np.atleast_1d(point[key]).tolist(), "low": interval[key][0].tolist(),
            "high": interval[key][1].tolist(), "reps": reps, "seed": seed}


def main() -> None:
    data = _data()
    out: dict = {
        "rliable_version": getattr(rliable, "__version__", "1.2.0"),
        "numpy_version": np.__version__,
        "python": sys.version.split()[0],
        "data": {k: v.tolist() for k, v in data.items()},
        "aggregate_names": NAMES,
        "points": {},
        "poi": {},
        "matched": {},
        "independent": {},
    }
    for key in ("suite_x", "suite_y", "single_x", "single_y", "small"):
        out["points"][key] = _aggregates(data[key]).tolist()
    for a, b in (("suite_x", "suite_y"), ("single_x", "single_y"), ("single_y", "single_x")):
        out["poi"][f"{a},{b}"] = float(metrics.probability_of_improvement(data[a], data[b]))

    def poi(x, y):
        return np.array([metrics.probability_of_improvement(x, y)])

    # matched draws: tests regenerate rliable's indices from the seed
    for key in ("suite_x", "single_x", "small"):
        out["matched"][key] = _intervals(key, data[key], _aggregates, 2000, 7)
    out["matched"]["poi:suite_x,suite_y"] = _intervals("p", (data["suite_x"], data["suite_y"]), poi, 1000, 11)
    out["matched"]["poi:single_x,single_y"] = _intervals("p", (data["single_x"], data["single_y"]), poi, 2000, 13)

    # rliable's own stream, default 50,000 resamples (statistical comparison, and timing)
    started = time.perf_counter()
    for key in ("single_x", "small"):
        out["independent"][key] = _intervals(key, data[key], _aggregates, 50_000, 2021)
    out["independent"]["poi:single_x,single_y"] = _intervals(
        "p", (data["single_x"], data["single_y"]), poi, 50_000, 2022)
    out["independent_seconds"] = time.perf_counter() - started

    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({out['independent_seconds']:.1f} s for the 50,000-resample intervals)")


if __name__ == "__main__":
    main()
