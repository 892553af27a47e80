"""Statistics for comparing runs across seeds: rliable's metrics in numpy, plus tests.

Scores come as a matrix ``scores[run, task]`` (one column for a comparison on
one environment). Everything here is vectorised and seeded with
``numpy.random.default_rng(seed)``: the same inputs and seed give the same
numbers, bit for bit.

Aggregates (Agarwal et al., NeurIPS 2021, as rliable 1.2 defines them):

* :func:`mean` — mean over tasks of the per-task mean over runs;
* :func:`aggregate_median` — median over tasks of the per-task means (rliable's
  "median"; with one task it is the mean);
* :func:`median` — median of every score pooled (with one task: the median run);
* :func:`iqm` — 25 %-trimmed mean of every score pooled
  (``scipy.stats.trim_mean(x, 0.25, axis=None)``: ``floor(n / 4)`` scores cut at
  each end, so with fewer than 4 scores nothing is cut and it equals the mean);
* :func:`optimality_gap` — ``gamma`` minus the mean of ``min(score, gamma)``;
* :func:`probability_of_improvement` — P(X > Y) averaged over tasks, ties
  counting one half (the Mann–Whitney U over ``n_x * n_y``).

Intervals: :func:`bootstrap_interval` and :func:`poi_interval` are stratified
percentile bootstraps (runs resampled with replacement within each task,
independently for each group), the method rliable's ``get_interval_estimates``
uses. They accept precomputed resample indices so that a test can feed them
the very draws rliable made (``benchmarks/rliable_oracle.py``).

Tests: :func:`welch` (Welch's t-test, two- or one-sided), :func:`mann_whitney`
(scipy's exact test for small samples without ties, else the normal
approximation with tie and continuity corrections), :func:`min_detectable_effect`
(the smallest mean difference a Welch test detects with the given power).
docs/statistics.md says how often the intervals cover at 5, 10 and 20 seeds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "Interval", "as_matrix", "mean", "median", "aggregate_median", "iqm", "optimality_gap",
    "probability_of_improvement", "resample_indices", "bootstrap_interval", "bootstrap_intervals", "poi_interval",
    "mean_difference_interval",
    "performance_profile", "welch", "mann_whitney", "min_detectable_effect", "METRICS",
]

#: Resampled values held in memory at once (elements); larger jobs run in chunks.
_CHUNK_ELEMENTS = 4_000_000


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval ``[low, high]``."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return {"value": self.value, "low": self.low, "high": self.high}

    def overlaps(self, other: "Interval") -> bool:
        return self.low <= other.high and other.low <= self.high


def as_matrix(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``scores`` as a float matrix ``(runs, tasks)``; a 1-D sequence is one task."""
    x = np.asarray(scores, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"expected scores shaped (runs, tasks) with at least one run, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("scores must be finite numbers")
    return x


# -- aggregates over the last two axes (..., runs, tasks) ---------------------------


def mean(x: np.ndarray) -> np.ndarray:
    """Mean over tasks of the per-task mean over runs (rliable ``aggregate_mean``)."""
    return np.asarray(x).mean(axis=-2).mean(axis=-1)


def aggregate_median(x: np.ndarray) -> np.ndarray:
    """Median over tasks of the per-task means (rliable ``aggregate_median``)."""
    return np.median(np.asarray(x).mean(axis=-2), axis=-1)


def median(x: np.ndarray) -> np.ndarray:
    """Median of all scores pooled over runs and tasks."""
    x = np.asarray(x)
    flat = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)  # sorting beats np.median on many short rows
    n = flat.shape[-1]
    if n % 2:
        return flat[..., n // 2]
    return 0.5 * (flat[..., n // 2 - 1] + flat[..., n // 2])


def iqm(x: np.ndarray) -> np.ndarray:
    """Interquartile mean: 25 %-trimmed mean of all scores pooled (rliable ``aggregate_iqm``)."""
    x = np.asarray(x)
    flat = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)
    return flat[..., cut:n - cut].mean(axis=-1)


def optimality_gap(x: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``gamma - mean(min(score, gamma))`` over all scores (rliable ``aggregate_optimality_gap``)."""
    x = np.asarray(x)
    flat = x.reshape(*x.shape[:-2], -1)
    return gamma - np.minimum(flat, gamma).mean(axis=-1)


#: The aggregates a comparison reports, by name.
METRICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"iqm": iqm, "mean": mean, "median": median}


def _pair_scores(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """S[task, i, j] = 1 if x[i, task] > y[j, task], 1/2 if equal, else 0."""
    xt, yt = x.T[:, :, None], y.T[:, None, :]
    return (xt > yt) + 0.5 * (xt == yt)


def probability_of_improvement(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """P(X > Y): the chance a run of X beats a run of Y on the same task, averaged over tasks.

    Ties count one half. Equal to rliable's ``probability_of_improvement`` and to
    the Mann–Whitney U statistic of X over ``n_x * n_y`` (Vargha–Delaney A12).
    """
    x, y = as_matrix(x), as_matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y need the same tasks, got {x.shape[1]} and {y.shape[1]}")
    return float(_pair_scores(x, y).mean(axis=(1, 2)).mean())


# -- stratified bootstrap -----------------------------------------------------------


def resample_indices(rng: np.random.Generator, runs: int, tasks: int, resamples: int) -> np.ndarray:
    """Indices ``(resamples, runs, tasks)`` drawn uniformly from ``0..runs-1``: runs resampled within each task."""
    return rng.integers(0, runs, size=(resamples, runs, tasks))


def _chunks(resamples: int, per_resample: int):
    step = max(1, _CHUNK_ELEMENTS // max(per_resample, 1))
    for start in range(0, resamples, step):
        yield start, min(resamples, start + step)


def _percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1.0 - confidence) / 2.0
    # linear interpolation between order statistics, as numpy's (and so rliable's) percentile does
    low, high = np.percentile(values, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(low), float(high)


def _check(resamples: int, confidence: float) -> None:
    if not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")


def bootstrap_intervals(
    scores: Sequence[float] | np.ndarray,
    statistics: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    *,
    resamples: int = 50_000,
    confidence: float = 0.95,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
    indices: np.ndarray | None = None,
) -> dict[str, Interval]:
    """Stratified percentile bootstrap intervals of several statistics on the same resamples.

    ``statistics`` maps names to functions of an array ``(..., runs, tasks)``
    returning ``(...)`` (default: :data:`METRICS`, IQM, mean and median). Runs
    are resampled with replacement within each task. Draws come from ``rng``,
    or ``numpy.random.default_rng(seed)``; ``indices`` (shaped
    ``(resamples, runs, tasks)``, e.g. the draws rliable made) replaces them.
    """
    statistics = dict(METRICS if statistics is None else statistics)
    x = as_matrix(scores)
    runs, tasks = x.shape
    if indices is not None:
        indices = np.asarray(indices)
        if indices.ndim != 3 or indices.shape[1:] != x.shape:
            raise ValueError(f"indices must be shaped (resamples, {runs}, {tasks}), got {indices.shape}")
        resamples = indices.shape[0]
    _check(resamples, confidence)
    if rng is None and indices is None:
        rng = np.random.default_rng(seed)
    task = np.arange(tasks)
    values = {name: np.empty(resamples) for name in statistics}
    for start, stop in _chunks(resamples, runs * tasks):
        idx = indices[start:stop] if indices is not None else resample_indices(rng, runs, tasks, stop - start)
        sample = x[idx, task]
        for name, func in statistics.items():
            values[name][start:stop] = func(sample)
    out = {}
    for name, func in statistics.items():
        low, high = _percentile_interval(values[name], confidence)
        out[name] = Interval(float(func(x)), low, high)
    return out


def bootstrap_interval(
    scores: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] = iqm,
    **options,
) -> Interval:
    """:func:`bootstrap_intervals` for one statistic (same options)."""
    return bootstrap_intervals(scores, {"statistic": statistic}, **options)["statistic"]


def poi_interval(
    x: Sequence[float] | np.ndarray,
    y: Sequence[float] | np.ndarray,
    *,
    resamples: int = 50_000,
    confidence: float = 0.95,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
    indices: tuple[np.ndarray, np.ndarray] | None = None,
) -> Interval:
    """Probability of improvement P(X > Y) with a stratified bootstrap interval.

    X and Y are resampled independently (each within each task), as rliable's
    ``StratifiedIndependentBootstrap`` does; ``indices`` is a pair of index
    arrays ``(resamples, n_x, tasks)`` and ``(resamples, n_y, tasks)``.
    """
    x, y = as_matrix(x), as_matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"X and Y need the same tasks, got {x.shape[1]} and {y.shape[1]}")
    (nx, tasks), ny = x.shape, y.shape[0]
    pair = _pair_scores(x, y)  # (tasks, nx, ny)
    value = float(pair.mean(axis=(1, 2)).mean())
    if indices is not None:
        ix_all, iy_all = (np.asarray(a) for a in indices)
        if ix_all.shape[1:] != x.shape or iy_all.shape[1:] != y.shape or ix_all.shape[0] != iy_all.shape[0]:
            raise ValueError("indices must be shaped (resamples, n_x, tasks) and (resamples, n_y, tasks)")
        resamples = ix_all.shape[0]
    _check(resamples, confidence)
    if rng is None and indices is None:
        rng = np.random.default_rng(seed)
    task = np.arange(tasks)
    values = np.empty(resamples)
    for start, stop in _chunks(resamples, nx * ny * tasks):
        if indices is not None:
            ix, iy = ix_all[start:stop], iy_all[start:stop]
        else:
            ix = resample_indices(rng, nx, tasks, stop - start)
            iy = resample_indices(rng, ny, tasks, stop - start)
        # pair[task, ix[b, i, task], iy[b, j, task]] for every resample b, run pair (i, j) and task
        picked = pair[task[None, None, None, :], ix[:, :, None, :], iy[:, None, :, :]]
        values[start:stop] = picked.mean(axis=(1, 2)).mean(axis=-1)
    low, high = _percentile_interval(values, confidence)
    return Interval(value, low, high)


def mean_difference_interval(
    x: Sequence[float],
    y: Sequence[float],
    *,
    resamples: int = 50_000,
    confidence: float = 0.95,
    seed: int | None = 0,
    rng: np.random.Generator | None = None,
) -> Interval:
    """mean(x) − mean(y) with a percentile bootstrap interval (x and y resampled independently)."""
    a, b = as_matrix(x)[:, 0], as_matrix(y)[:, 0]
    _check(resamples, confidence)
    rng = rng if rng is not None else np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for start, stop in _chunks(resamples, a.size + b.size):
        ia = rng.integers(0, a.size, size=(stop - start, a.size))
        ib = rng.integers(0, b.size, size=(stop - start, b.size))
        diffs[start:stop] = a[ia].mean(axis=1) - b[ib].mean(axis=1)
    low, high = _percentile_interval(diffs, confidence)
    return Interval(float(a.mean() - b.mean()), low, high)


def performance_profile(scores: Sequence[float] | np.ndarray, thresholds: Sequence[float]) -> list[float]:
    """Run-score distribution: the fraction of scores above each threshold (rliable ``score_distributions``)."""
    x = as_matrix(scores).ravel()
    tau = np.asarray(thresholds, dtype=float)
    return [float(v) for v in (x[None, :] > tau[:, None]).mean(axis=1)]


# -- tests --------------------------------------------------------------------------


@dataclass(frozen=True)
class HypothesisTest:
    """A test statistic, its p-value and (for Welch) the degrees of freedom."""

    statistic: float
    p_value: float
    df: float | None = None
    method: str = ""


def _sample(values: Sequence[float]) -> np.ndarray:
    a = np.asarray(values, dtype=float).ravel()
    if a.size < 2:
        raise ValueError(f"a test needs at least 2 values per group, got {a.size}")
    if not np.all(np.isfinite(a)):
        raise ValueError("values must be finite numbers")
    return a


def welch(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> HypothesisTest:
    """Welch's unequal-variance t-test of mean(x) against mean(y).

    t = (x̄ − ȳ) / √(s_x²/n_x + s_y²/n_y) with Welch–Satterthwaite degrees of
    freedom. ``alternative``: ``two-sided``, ``greater`` (mean x > mean y) or
    ``less``. When both samples are constant the test is degenerate: p is 1
    for equal means and 0 otherwise (the difference is then certain).
    """
    from scipy import stats

    a, b = _sample(x), _sample(y)
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    diff = a.mean() - b.mean()
    if va + vb == 0.0:
        if diff == 0.0:
            return HypothesisTest(0.0, 1.0, None, "welch (both samples constant)")
        sign = 1.0 if diff > 0 else -1.0
        holds = {"two-sided": True, "greater": sign > 0, "less": sign < 0}[alternative]
        return HypothesisTest(sign * math.inf, 0.0 if holds else 1.0, None, "welch (both samples constant)")
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    if alternative == "two-sided":
        p = 2.0 * stats.t.sf(abs(t), df)
    elif alternative == "greater":
        p = stats.t.sf(t, df)
    else:
        p = stats.t.cdf(t, df)
    return HypothesisTest(float(t), float(min(1.0, p)), float(df), "welch")


def mann_whitney(x: Sequence[float], y: Sequence[float], alternative: str = "two-sided") -> HypothesisTest:
    """Mann–Whitney U test (statistic: U of x); exact for small samples without ties."""
    from scipy import stats

    a, b = _sample(x), _sample(y)
    if np.ptp(np.concatenate([a, b])) == 0.0:
        return HypothesisTest(a.size * b.size / 2.0, 1.0, None, "mann-whitney (all values equal)")
    res = stats.mannwhitneyu(a, b, alternative=alternative, method="auto")
    exact = a.size <= 8 and b.size <= 8 and np.unique(np.concatenate([a, b])).size == a.size + b.size
    return HypothesisTest(float(res.statistic), float(res.pvalue), None,
                      "mann-whitney (exact)" if exact else "mann-whitney (normal approximation)")


def min_detectable_effect(
    x: Sequence[float], y: Sequence[float], *, alpha: float = 0.05, power: float = 0.8
) -> float:
    """Smallest |mean(x) − mean(y)| a two-sided Welch test detects with ``power`` at level ``alpha``.

    MDE = (t_{1−α/2,ν} + t_{power,ν}) · √(s_x²/n_x + s_y²/n_y), with the
    observed standard deviations and Welch–Satterthwaite ν (methods §1.6).
    Observed spreads from few seeds are themselves uncertain; the figure is a
    planning guide, not a guarantee.
    """
    from scipy import stats

    a, b = _sample(x), _sample(y)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    if va + vb == 0.0:
        return 0.0
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * math.sqrt(va + vb))
