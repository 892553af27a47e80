"""rlaudit.analyzer.statistics against known answers, exact bootstrap distributions and rliable itself."""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from rlaudit.analyzer import statistics as st

ORACLE = json.loads((Path(__file__).parent / "data" / "rliable_reference.json").read_text())


# -- hand-made data with known answers ---------------------------------------------------


def test_welch_matches_a_hand_computation():
    x, y = [1, 2, 3, 4], [2, 4, 6, 9]
    mx, my = Fraction(10, 4), Fraction(21, 4)
    vx = sum((Fraction(v) - mx) ** 2 for v in x) / 3  # 5/3
    vy = sum((Fraction(v) - my) ** 2 for v in y) / 3  # 107/12
    se2 = vx / 4 + vy / 4
    t = float(mx - my) / math.sqrt(se2)
    df = float(se2**2 / ((vx / 4) ** 2 / 3 + (vy / 4) ** 2 / 3))
    assert (vx, vy) == (Fraction(5, 3), Fraction(107, 12))
    res = st.welch(x, y)
    assert res.statistic == pytest.approx(t, rel=1e-12) and res.statistic == pytest.approx(-1.690641214609248)
    assert res.df == pytest.approx(df, rel=1e-12) and res.df == pytest.approx(4.0836357498523075)
    assert res.p_value == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-12)
    assert res.p_value == pytest.approx(0.16470207962805658, rel=1e-9)
    # one-sided halves of it, in the right directions
    assert st.welch(x, y, "less").p_value == pytest.approx(res.p_value / 2, rel=1e-9)
    assert st.welch(x, y, "greater").p_value == pytest.approx(1 - res.p_value / 2, rel=1e-9)


def test_welch_with_constant_samples_is_decided_exactly():
    assert st.welch([2, 2, 2], [2, 2]).p_value == 1.0
    assert st.welch([3, 3, 3], [2, 2]).p_value == 0.0
    assert st.welch([3, 3, 3], [2, 2], "less").p_value == 1.0
    with pytest.raises(ValueError, match="at least 2"):
        st.welch([1.0], [1.0, 2.0])


def test_mann_whitney_exact_small_cases():
    # completely separated 3 vs 3: U = 0, two-sided exact p = 2 / C(6, 3) = 0.1
    res = st.mann_whitney([1, 2, 3], [4, 5, 6])
    assert res.statistic == 0 and res.p_value == pytest.approx(0.1) and "exact" in res.method
    # interleaved: U = 3 (3>2, 5>2, 5>4); P(U <= 3) = (1+1+2+3)/20 for 3 vs 3, two-sided 0.7
    res = st.mann_whitney([1, 3, 5], [2, 4, 6])
    assert res.statistic == 3 and res.p_value == pytest.approx(0.7)
    assert st.mann_whitney([1, 1], [1, 1, 1]).p_value == 1.0


def test_iqm_on_hand_examples():
    assert float(st.iqm(st.as_matrix([1, 2, 3, 4, 5, 6, 7, 100]))) == 4.5  # [3, 4, 5, 6]
    assert float(st.iqm(st.as_matrix([10, 1, 3, 2, 50]))) == 5.0  # floor(5/4) = 1 cut each end: [2, 3, 10]
    assert float(st.iqm(st.as_matrix([1, 2, 9]))) == 4.0  # fewer than 4 scores: nothing cut, the mean
    # pooled over tasks, like scipy.stats.trim_mean(x, 0.25, axis=None)
    x = np.arange(12, dtype=float).reshape(4, 3) ** 2
    assert float(st.iqm(x)) == pytest.approx(stats.trim_mean(x, 0.25, axis=None))
    assert float(st.median(st.as_matrix([4, 1, 3, 2]))) == 2.5
    assert float(st.aggregate_median(np.array([[1.0, 10.0, 5.0], [3.0, 20.0, 7.0]]))) == 6.0  # task means 2, 15, 6
    assert float(st.optimality_gap(np.array([[0.5, 2.0], [1.0, 0.0]]))) == pytest.approx(1 - 2.5 / 4)


def test_probability_of_improvement_on_hand_examples():
    # 3 of the 6 pairs won by x
    assert st.probability_of_improvement([1, 3, 5], [2, 4]) == 0.5
    # a tie counts one half: (0.5 + 1 + 1 + 1) / 4
    assert st.probability_of_improvement([2, 3], [2, 1]) == 0.875
    # averaged over tasks: task 0 x always wins, task 1 never
    assert st.probability_of_improvement([[5, 0], [6, 0]], [[1, 1], [2, 1]]) == 0.5
    # equals U / (n_x n_y)
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=7), rng.normal(size=9)
    u = stats.mannwhitneyu(x, y).statistic
    assert st.probability_of_improvement(x, y) == pytest.approx(u / 63)


def test_performance_profile_counts_scores_above_each_threshold():
    assert st.performance_profile([1, 2, 3, 4], [0, 2, 4]) == [1.0, 0.5, 0.0]


def test_min_detectable_effect_formula():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 9.0]
    res = st.welch(x, y)
    se = math.sqrt(np.var(x, ddof=1) / 4 + np.var(y, ddof=1) / 4)
    expected = (stats.t.ppf(0.975, res.df) + stats.t.ppf(0.8, res.df)) * se
    assert st.min_detectable_effect(x, y) == pytest.approx(expected)
    # more seeds, smaller detectable effect
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=40), rng.normal(size=40)
    assert st.min_detectable_effect(a, b) < st.min_detectable_effect(a[:5], b[:5])


# -- bootstrap: exact distributions, determinism ------------------------------------------


def _exact_bootstrap_quantiles(x, func, probs):
    """Exact bootstrap distribution of func over all n^n resamples, and its quantile atoms."""
    x = np.asarray(x, dtype=float)
    n = x.size
    idx = np.array(list(itertools.product(range(n), repeat=n)))
    values = func(x[idx][:, :, None])
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    cdf = np.arange(1, len(values) + 1) / len(values)
    out = []
    for p in probs:
        i = int(np.searchsorted(cdf, p))
        value = sorted_values[i]
        # the atom must straddle p with margin, or a finite-resample percentile could land next to it
        first = int(np.searchsorted(sorted_values, value, side="left"))
        below = cdf[first - 1] if first else 0.0
        above = cdf[np.searchsorted(sorted_values, value, side="right") - 1]
        assert below < p - 0.003 and above > p + 0.003, (p, below, above)
        out.append(float(value))
    return out


@pytest.mark.parametrize("name", ["mean", "iqm", "median"])
def test_bootstrap_interval_equals_the_exact_bootstrap_quantiles(name):
    x = [3.0, 7.5, 1.25, 10.0]  # 4^4 equally likely resamples; every 2.5 % / 97.5 % atom has margin
    func = st.METRICS[name]
    low, high = _exact_bootstrap_quantiles(x, func, [0.025, 0.975])
    got = st.bootstrap_interval(x, func, resamples=50_000, seed=1)
    assert (got.low, got.high) == (low, high)
    assert got.value == float(func(st.as_matrix(x)))


def test_mean_difference_interval_on_an_exact_case():
    # x resamples to mean 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4; y is constant
    got = st.mean_difference_interval([0.0, 1.0], [0.0, 0.0], resamples=20_000, seed=2)
    assert (got.value, got.low, got.high) == (0.5, 0.0, 1.0)
    got = st.mean_difference_interval([1.0, 2.0, 4.0], [1.0, 2.0, 4.0], resamples=5000, seed=2)
    assert got.value == 0.0 and got.low < 0.0 < got.high


def test_bootstrap_is_deterministic_under_a_seed():
    rng = np.random.default_rng(5)
    x = rng.lognormal(size=(10, 3))
    a = st.bootstrap_intervals(x, resamples=5000, seed=42)
    b = st.bootstrap_intervals(x, resamples=5000, seed=42)
    c = st.bootstrap_intervals(x, resamples=5000, seed=43)
    assert a == b and a != c
    assert st.poi_interval(x, x + 0.1, resamples=3000, seed=1) == st.poi_interval(x, x + 0.1, resamples=3000, seed=1)
    # chunked and unchunked draws agree (same stream, any chunk size)
    big = st.bootstrap_interval(x, st.mean, resamples=200_000, seed=9)
    assert big == st.bootstrap_interval(x, st.mean, resamples=200_000, seed=9)


def test_constant_scores_give_a_point_interval():
    got = st.bootstrap_intervals([2.0, 2.0, 2.0], resamples=1000)
    assert all((i.value, i.low, i.high) == (2.0, 2.0, 2.0) for i in got.values())


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="finite"):
        st.bootstrap_interval([1.0, float("nan")])
    with pytest.raises(ValueError, match="resamples"):
        st.bootstrap_interval([1.0, 2.0], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        st.bootstrap_interval([1.0, 2.0], confidence=1.0)
    with pytest.raises(ValueError, match="same tasks"):
        st.probability_of_improvement(np.ones((3, 2)), np.ones((3, 1)))


# -- rliable as the oracle ---------------------------------------------------------------

AGGREGATES = {"iqm": st.iqm, "mean": st.mean, "aggregate_median": st.aggregate_median, "median": st.median,
              "optimality_gap": st.optimality_gap}


def _data(key):
    return np.array(ORACLE["data"][key], dtype=float)


def _rliable_indices(seed, shapes, reps):
    """The resample indices rliable drew after np.random.seed(seed): one choice per array per resample."""
    rs = np.random.RandomState(seed)
    draws = [[] for _ in shapes]
    for _ in range(reps):
        for i, (n, m) in enumerate(shapes):
            draws[i].append(rs.choice(n, (n, m), replace=True))
    return [np.stack(d) for d in draws]


def test_oracle_lists_the_aggregates_we_check():
    assert ORACLE["aggregate_names"] == list(AGGREGATES)


@pytest.mark.parametrize("key", ["suite_x", "suite_y", "single_x", "single_y", "small"])
def test_point_estimates_equal_rliable(key):
    x = _data(key)
    ours = [float(f(x)) for f in AGGREGATES.values()]
    assert ours == pytest.approx(ORACLE["points"][key], abs=1e-12)


@pytest.mark.parametrize("pair", ["suite_x,suite_y", "single_x,single_y", "single_y,single_x"])
def test_probability_of_improvement_equals_rliable(pair):
    a, b = pair.split(",")
    assert st.probability_of_improvement(_data(a), _data(b)) == pytest.approx(ORACLE["poi"][pair], abs=1e-12)


@pytest.mark.parametrize("key", ["suite_x", "single_x", "small"])
def test_intervals_equal_rliable_on_rliable_draws(key):
    ref = ORACLE["matched"][key]
    x = _data(key)
    (idx,) = _rliable_indices(ref["seed"], [x.shape], ref["reps"])
    got = st.bootstrap_intervals(x, AGGREGATES, indices=idx)
    for i, name in enumerate(AGGREGATES):
        assert got[name].value == pytest.approx(ref["point"][i], abs=1e-12)
        assert got[name].low == pytest.approx(ref["low"][i], abs=1e-9), name
        assert got[name].high == pytest.approx(ref["high"][i], abs=1e-9), name


@pytest.mark.parametrize("pair", ["suite_x,suite_y", "single_x,single_y"])
def test_poi_interval_equals_rliable_on_rliable_draws(pair):
    ref = ORACLE["matched"][f"poi:{pair}"]
    a, b = (_data(k) for k in pair.split(","))
    ix, iy = _rliable_indices(ref["seed"], [a.shape, b.shape], ref["reps"])
    got = st.poi_interval(a, b, indices=(ix, iy))
    assert got.value == pytest.approx(ref["point"][0], abs=1e-12)
    assert got.low == pytest.approx(ref["low"][0], abs=1e-9)
    assert got.high == pytest.approx(ref["high"][0], abs=1e-9)


def test_intervals_agree_with_rliable_own_stream_on_exact_atoms():
    """Five runs: the IQM's and the median's bootstrap distributions have few atoms, so 50,000
    resamples from either generator land on the exact percentile values (agreement to 1e-3,
    here exactly). The mean of five has too many atoms near its 97.5 % point for this."""
    ref = ORACLE["independent"]["small"]
    x = _data("small")
    got = st.bootstrap_intervals(x, AGGREGATES, resamples=ref["reps"], seed=0)
    for name in ("iqm", "median"):
        j = list(AGGREGATES).index(name)
        exact = _exact_bootstrap_quantiles(x[:, 0], AGGREGATES[name], [0.025, 0.975])
        assert [ref["low"][j], ref["high"][j]] == pytest.approx(exact, abs=1e-12), name
        assert [got[name].low, got[name].high] == pytest.approx(exact, abs=1e-12), name


def test_intervals_agree_with_rliable_own_stream_within_monte_carlo_error():
    """Ten continuous scores: two independent 50,000-resample runs differ only by Monte Carlo
    error, about 0.05 on scores of spread 15 (tolerance 0.5 %, five such errors)."""
    ref = ORACLE["independent"]["single_x"]
    x = _data("single_x")
    got = st.bootstrap_intervals(x, AGGREGATES, resamples=ref["reps"], seed=0)
    for i, name in enumerate(AGGREGATES):
        assert got[name].low == pytest.approx(ref["low"][i], rel=5e-3), name
        assert got[name].high == pytest.approx(ref["high"][i], rel=5e-3), name
    poi = ORACLE["independent"]["poi:single_x,single_y"]
    got = st.poi_interval(_data("single_x"), _data("single_y"), resamples=poi["reps"], seed=0)
    assert got.low == pytest.approx(poi["low"][0], abs=0.02) and got.high == pytest.approx(poi["high"][0], abs=0.02)
