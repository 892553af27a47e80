"""Speed and coverage of rlaudit's comparison statistics (rlaudit.analyzer.statistics).

    PYTHONPATH=src python benchmarks/bootstrap_stats.py            # both parts
    PYTHONPATH=src python benchmarks/bootstrap_stats.py speed      # (a) only
    PYTHONPATH=src python benchmarks/bootstrap_stats.py coverage   # (b) only

(a) Speed: 95 % stratified-bootstrap intervals for 10 groups x 10 runs with
    50,000 resamples each: the IQM alone (target <= 1 s), IQM + mean + median
    on shared resamples (what ``rlaudit compare`` computes per group), and the
    probability of improvement of 9 groups against one. Best of 3 repeats.

(b) Coverage: simulated run scores with known population values, normal
    N(0, 1) and lognormal LN(0, 1), 5 / 10 / 20 runs per group, 2,000
    replications per cell (a coverage of 0.95 is then known to +-0.01 at 95 %
    confidence), 2,000 bootstrap resamples per interval. Reported:

    * how often the 95 % percentile-bootstrap interval of the mean, and of
      the IQM, holds the population mean / IQM;
    * how often Welch's 95 % interval of the difference of two groups' means
      holds the true difference (0: both groups from the same distribution),
      i.e. 1 - its false-positive rate;
    * how often ``rlaudit compare``'s verdict is "better" or "worse" between
      two groups from the same distribution (its false-decision rate).

docs/statistics.md quotes the table this prints.
"""

from __future__ import annotations

import math
import sys
import time

import numpy as np
from scipy import stats

from rlaudit.analyzer import statistics as st

REPLICATIONS = 2000
RESAMPLES = 2000
SEEDS = (5, 10, 20)


# -- (a) speed -----------------------------------------------------------------------------


def speed() -> None:
    rng = np.random.default_rng(0)
    groups = [rng.lognormal(0.1 * i, 0.5, size=10) for i in range(10)]

    def best(fn, repeats=3):
        """(wall seconds, CPU seconds of this process), best of ``repeats``; on a shared
        machine the CPU time shows the cost when the wall time is inflated by other load."""
        times = []
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times.append((time.perf_counter() - t0, time.process_time() - c0))
        return min(times)

    iqm_s = best(lambda: [st.bootstrap_interval(g, st.iqm, resamples=50_000, seed=i) for i, g in enumerate(groups)])
    all_s = best(lambda: [st.bootstrap_intervals(g, resamples=50_000, seed=i) for i, g in enumerate(groups)])
    poi_s = best(lambda: [st.poi_interval(g, groups[0], resamples=50_000, seed=i) for i, g in enumerate(groups[1:])])
    print("## (a) bootstrap speed: 10 groups x 10 runs, 50,000 resamples, best of 3\n")
    print("| what | wall s | CPU s |")
    print("|---|---|---|")
    print(f"| IQM interval, 10 groups | {iqm_s[0]:.3f} | {iqm_s[1]:.3f} |")
    print(f"| IQM + mean + median intervals (shared resamples), 10 groups | {all_s[0]:.3f} | {all_s[1]:.3f} |")
    print(f"| probability of improvement interval, 9 pairs | {poi_s[0]:.3f} | {poi_s[1]:.3f} |")
    print()


# -- (b) coverage ----------------------------------------------------------------------------

LN_SIGMA = 1.0
Q1, Q3 = stats.norm.ppf(0.25), stats.norm.ppf(0.75)
DISTRIBUTIONS = {
    # name: (sampler, population mean, population interquartile mean)
    "normal": (lambda rng, size: rng.standard_normal(size), 0.0, 0.0),
    "lognormal": (
        lambda rng, size: rng.lognormal(0.0, LN_SIGMA, size),
        math.exp(LN_SIGMA**2 / 2),
        # E[X | q1 < X < q3] for LN(0, s): 2 e^{s^2/2} (Phi(z3 - s) - Phi(z1 - s))
        2 * math.exp(LN_SIGMA**2 / 2) * (stats.norm.cdf(Q3 - LN_SIGMA) - stats.norm.cdf(Q1 - LN_SIGMA)),
    ),
}


def _bootstrap_batch(data: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Percentile 95 % intervals of mean and IQM for each row of ``data`` (replications, runs)."""
    reps, n = data.shape
    out = {name: np.empty((reps, 2)) for name in ("mean", "iqm")}
    chunk = max(1, 4_000_000 // (RESAMPLES * n))
    for start in range(0, reps, chunk):
        stop = min(reps, start + chunk)
        idx = rng.integers(0, n, size=(stop - start, RESAMPLES, n))
        sample = np.take_along_axis(data[start:stop, None, :], idx, axis=2)[..., None]  # (r, B, n, 1)
        for name, func in (("mean", st.mean), ("iqm", st.iqm)):
            values = func(sample)  # (r, B)
            out[name][start:stop] = np.percentile(values, [2.5, 97.5], axis=1).T
    return out


def _welch_p(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    va, vb = a.var(axis=1, ddof=1) / a.shape[1], b.var(axis=1, ddof=1) / b.shape[1]
    t = (a.mean(axis=1) - b.mean(axis=1)) / np.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.shape[1] - 1) + vb**2 / (b.shape[1] - 1))
    return 2 * stats.t.sf(np.abs(t), df)


def coverage() -> list[tuple]:
    rows = []
    for dist, (sample, true_mean, true_iqm) in DISTRIBUTIONS.items():
        for n in SEEDS:
            rng = np.random.default_rng([n, len(dist)])
            a = sample(rng, (REPLICATIONS, n))
            b = sample(rng, (REPLICATIONS, n))
            ia, ib = _bootstrap_batch(a, rng), _bootstrap_batch(b, rng)
            mean_cov = np.mean((ia["mean"][:, 0] <= true_mean) & (true_mean <= ia["mean"][:, 1]))
            iqm_cov = np.mean((ia["iqm"][:, 0] <= true_iqm) & (true_iqm <= ia["iqm"][:, 1]))
            p = _welch_p(a, b)
            welch_cov = np.mean(p >= 0.05)
            # the verdict: Welch rejects and the IQM intervals do not overlap
            apart = (ia["iqm"][:, 0] > ib["iqm"][:, 1]) | (ib["iqm"][:, 0] > ia["iqm"][:, 1])
            decided = np.mean((p < 0.05) & apart)
            rows.append((dist, n, mean_cov, iqm_cov, welch_cov, decided))
    print(f"## (b) coverage of nominal 95 % intervals ({REPLICATIONS:,} replications per cell, "
          f"+-0.01 at 95 % confidence; {RESAMPLES:,} bootstrap resamples)\n")
    print("| scores | runs per group | bootstrap mean | bootstrap IQM | Welch (difference) | "
          "verdict not \"tie\" under no difference |")
    print("|---|---|---|---|---|---|")
    for dist, n, m, i, w, d in rows:
        print(f"| {dist} | {n} | {m:.3f} | {i:.3f} | {w:.3f} | {d:.3f} |")
    print()
    return rows


if __name__ == "__main__":
    parts = sys.argv[1:] or ["speed", "coverage"]
    started = time.perf_counter()
    if "speed" in parts:
        speed()
    if "coverage" in parts:
        coverage()
    print(f"({time.perf_counter() - started:.0f} s)")
