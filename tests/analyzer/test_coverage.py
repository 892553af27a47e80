"""The coverage docs/statistics.md states is what rlaudit's intervals deliver.

benchmarks/bootstrap_stats.py measured the table with 2,000 replications and a
vectorised batch bootstrap; here a smaller independent simulation through the
public functions (bootstrap_intervals, welch) must land within Monte Carlo
error of the documented numbers.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rlaudit.analyzer import statistics as st

DOC = (Path(__file__).resolve().parents[2] / "docs" / "statistics.md").read_text()
REPLICATIONS = 800


def _documented() -> dict[tuple[str, int], tuple[float, float, float]]:
    rows = re.findall(r"^\| (normal|lognormal) \| (\d+) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \| [\d.]+ \|$", DOC, re.M)
    return {(d, int(n)): (float(m), float(i), float(w)) for d, n, m, i, w in rows}


def test_the_documented_table_has_every_cell():
    assert set(_documented()) == {(d, n) for d in ("normal", "lognormal") for n in (5, 10, 20)}


@pytest.mark.parametrize("dist,n", [("normal", 5), ("lognormal", 5), ("lognormal", 20)])
def test_simulated_coverage_matches_the_docs(dist, n):
    rng = np.random.default_rng([7, n, len(dist)])
    if dist == "normal":
        draw, true_mean, true_iqm = (lambda size: rng.standard_normal(size)), 0.0, 0.0
    else:
        q1, q3 = stats.norm.ppf(0.25), stats.norm.ppf(0.75)
        draw = lambda size: rng.lognormal(0.0, 1.0, size)  # noqa: E731
        true_mean = math.exp(0.5)
        true_iqm = 2 * math.exp(0.5) * (stats.norm.cdf(q3 - 1) - stats.norm.cdf(q1 - 1))
    hits = np.zeros(3)
    for _ in range(REPLICATIONS):
        a, b = draw(n), draw(n)
        iv = st.bootstrap_intervals(a, {"mean": st.mean, "iqm": st.iqm}, resamples=1000, rng=rng)
        hits += [iv["mean"].low <= true_mean <= iv["mean"].high,
                 iv["iqm"].low <= true_iqm <= iv["iqm"].high,
                 st.welch(a, b).p_value >= 0.05]
    measured = hits / REPLICATIONS
    for got, doc in zip(measured, _documented()[(dist, n)]):
        se = math.sqrt(doc * (1 - doc) / REPLICATIONS + doc * (1 - doc) / 2000)
        assert abs(got - doc) < 4 * se, (dist, n, list(measured), _documented()[(dist, n)])
