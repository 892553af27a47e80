"""Change points in short per-episode or per-update series, with autocorrelation-aware p-values (numpy/scipy).

Learning curves, entropies and losses are autocorrelated: a test that
assumes independent noise raises false alarms on half of all clean series at
a lag-1 autocorrelation of 0.5. Every test here therefore scales its
statistic by the *long-run* standard deviation
``sd_lr = sd * sqrt((1 + phi) / (1 - phi))``, where ``phi`` is the lag-1
autocorrelation of the residuals around the fitted segment means (clipped to
[0, 0.97]); measured on AR(1) noise this keeps the false-alarm rate near its
nominal level for phi up to 0.95 and keeps the power for half-sigma shifts.

The offline CUSUM statistic ``T = max_k |S_k - k/n S_n| / (sd_lr sqrt(n))``
tends under the null of no change to the supremum of a Brownian bridge, so
its p-value is the Kolmogorov survival function ("asymptotic").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import kolmogorov

#: Upper clip of the lag-1 autocorrelation (beyond it the variance inflation explodes).
MAX_PHI = 0.97


def lag1(x: np.ndarray) -> float:
    """Lag-1 autocorrelation of ``x`` (centred); 0 for constant or very short series."""
    x = np.asarray(x, dtype=float)
    if x.size < 3:
        return 0.0
    d = x - x.mean()
    den = float(d @ d)
    if den <= 0.0:
        return 0.0
    return float(d[1:] @ d[:-1]) / den


def long_run_sd(residuals: np.ndarray) -> tuple[float, float, float]:
    """(sd, phi, sd_lr) of residuals: plain SD, clipped lag-1 autocorrelation, long-run SD."""
    r = np.asarray(residuals, dtype=float)
    sd = float(r.std()) if r.size else 0.0
    phi = lag1(r)
    if r.size:
        phi += (1.0 + 3.0 * phi) / r.size  # Kendall's first-order bias correction of the AR(1) estimate
    phi = min(max(phi, 0.0), MAX_PHI)
    return sd, phi, sd * math.sqrt((1.0 + phi) / (1.0 - phi))


@dataclass(frozen=True)
class Change:
    """One mean change: ``x[:index]`` and ``x[index:]`` of the tested series differ."""

    index: int
    statistic: float
    p_value: float
    before: float
    after: float
    sd: float
    phi: float

    @property
    def shift(self) -> float:
        """after - before."""
        return self.after - self.before

    @property
    def shift_sd(self) -> float:
        """|after - before| in residual standard deviations (inf when the residuals are constant)."""
        if self.sd > 0:
            return abs(self.shift) / self.sd
        return math.inf if self.shift else 0.0


def cusum_change(x: np.ndarray, min_size: int = 5) -> Change | None:
    """The most likely single mean change in ``x`` and its asymptotic CUSUM p-value.

    Candidate splits leave at least ``min_size`` points on each side; None
    when ``x`` is too short for that.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    min_size = max(1, int(min_size))
    if n < 2 * min_size:
        return None
    s = np.cumsum(x - x.mean())[:-1]  # S_k - k/n S_n for k = 1..n-1
    ks = np.arange(1, n)
    ok = (ks >= min_size) & (ks <= n - min_size)
    dev = np.abs(s)
    dev[~ok] = -1.0
    k = int(np.argmax(dev))
    index = int(ks[k])
    before, after = float(x[:index].mean()), float(x[index:].mean())
    resid = np.concatenate([x[:index] - before, x[index:] - after])
    sd, phi, sd_lr = long_run_sd(resid)
    peak = float(dev[k])
    if sd_lr > 0:
        stat = peak / (sd_lr * math.sqrt(n))
        p = float(kolmogorov(stat))
    else:
        stat = math.inf if peak > 0 else 0.0
        p = 0.0 if peak > 0 else 1.0
    return Change(index, stat, min(max(p, 0.0), 1.0), before, after, sd, phi)


def epidemic_change(x: np.ndarray, min_size: int = 5) -> tuple[Change, Change] | None:
    """The most likely pair of mean changes in ``x`` (a level that changes and comes back, or a staircase).

    The statistic is the range of the CUSUM bridge, ``V = (max_k D_k - min_k D_k) / (sd_lr sqrt(n))``,
    whose null limit is Kuiper's distribution; the residuals are taken around
    the three fitted segment means. Both changes carry the same statistic and
    asymptotic p-value. None when ``x`` is too short.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    min_size = max(1, int(min_size))
    if n < 3 * min_size:
        return None
    d = np.concatenate([[0.0], np.cumsum(x - x.mean())])  # D_0..D_n
    ks = np.arange(n + 1)
    ok = (ks >= min_size) & (ks <= n - min_size)
    hi_k = int(np.argmax(np.where(ok, d, -np.inf)))
    lo_k = int(np.argmin(np.where(ok, d, np.inf)))
    i, j = sorted((hi_k, lo_k))
    if j - i < min_size:
        return None
    parts = (x[:i], x[i:j], x[j:])
    means = [float(p.mean()) for p in parts]
    resid = np.concatenate([p - m for p, m in zip(parts, means)])
    sd, phi, sd_lr = long_run_sd(resid)
    rng = float(d[hi_k] - d[lo_k])
    if sd_lr > 0:
        stat = rng / (sd_lr * math.sqrt(n))
        p = float(np.clip(_kuiper_sf(stat), 0.0, 1.0))
    else:
        stat, p = (math.inf, 0.0) if rng > 0 else (0.0, 1.0)
    return (Change(i, stat, p, means[0], means[1], sd, phi), Change(j, stat, p, means[1], means[2], sd, phi))


def _kuiper_sf(v: float) -> float:
    """P(V > v) for Kuiper's statistic (the range of a Brownian bridge)."""
    if v < 0.4:
        return 1.0
    j = np.arange(1, 101)
    return float(2.0 * np.sum((4.0 * j**2 * v**2 - 1.0) * np.exp(-2.0 * j**2 * v**2)))


def _range_stats(x: np.ndarray, min_size: int) -> np.ndarray:
    """The statistic of :func:`epidemic_change` for every row of ``x``."""
    return np.array([c[0].statistic if (c := epidemic_change(row, min_size)) is not None else 0.0 for row in x])


def _max_stats(x: np.ndarray, min_size: int) -> np.ndarray:
    """The standardised CUSUM statistic of every row of ``x`` (vectorised :func:`cusum_change`)."""
    b, n = x.shape
    s = np.cumsum(x - x.mean(axis=1, keepdims=True), axis=1)[:, :-1]
    dev = np.abs(s)
    ks = np.arange(1, n)
    dev[:, (ks < min_size) | (ks > n - min_size)] = -1.0
    k = np.argmax(dev, axis=1) + 1
    peak = dev[np.arange(b), k - 1]
    idx = np.arange(n)[None, :]
    left = idx < k[:, None]
    c = np.cumsum(x, axis=1)
    before = c[np.arange(b), k - 1] / k
    after = (c[:, -1] - c[np.arange(b), k - 1]) / (n - k)
    resid = x - np.where(left, before[:, None], after[:, None])
    sd = resid.std(axis=1)
    d = resid - resid.mean(axis=1, keepdims=True)
    den = (d * d).sum(axis=1)
    phi = np.where(den > 0, (d[:, 1:] * d[:, :-1]).sum(axis=1) / np.where(den > 0, den, 1.0), 0.0)
    phi = np.clip(phi + (1.0 + 3.0 * phi) / n, 0.0, MAX_PHI)
    sd_lr = sd * np.sqrt((1.0 + phi) / (1.0 - phi))
    return peak / (np.where(sd_lr > 0, sd_lr, np.inf) * math.sqrt(n))


def null_phi(phi: float, n: int) -> float:
    """The autocorrelation the bootstrap null simulates: the upper one-sided 95% bound of ``phi``.

    The estimate from a short series is biased low even after correction;
    simulating with its upper bound keeps the false-alarm rate near nominal
    on short, strongly autocorrelated learning curves.
    """
    return min(MAX_PHI, phi + 1.645 * math.sqrt(max(0.0, 1.0 - phi * phi) / max(n, 1)))


def ar1_noise(phi: float, rows: int, n: int, seed: int) -> np.ndarray:
    """``rows`` stationary AR(1) series of length ``n`` with unit innovations."""
    e = np.random.default_rng(seed).standard_normal((rows, n))
    e[:, 0] /= math.sqrt(max(1e-9, 1.0 - phi**2))  # stationary start
    for t in range(1, n):  # the recursion along time, all series at once
        e[:, t] += phi * e[:, t - 1]
    return e


def bootstrap_p(change: Change, n: int, *, min_size: int = 5, resamples: int = 499, seed: int = 0,
                epidemic: bool = False) -> float:
    """p-value of ``change`` against a parametric AR(1) null fitted to its residuals.

    Series of length ``n`` are simulated as AR(1) without a change, with
    the upper 95% bound of the change's (bias-corrected) ``phi``
    (:func:`null_phi`); the p-value is
    ``(1 + #{T_null >= T}) / (resamples + 1)``. It corrects the asymptotic
    p-value where series are short and strongly autocorrelated.
    """
    if not math.isfinite(change.statistic):
        return 1.0 / (resamples + 1)
    sims = ar1_noise(null_phi(change.phi, n), resamples, n, seed)
    null = _range_stats(sims, max(1, min_size)) if epidemic else _max_stats(sims, max(1, min_size))
    return float((1 + np.count_nonzero(null >= change.statistic)) / (resamples + 1))


def segment(x: np.ndarray, *, alpha: float = 0.01, min_size: int = 5, min_shift: float = 0.5,
            max_changes: int = 10, resamples: int = 499) -> list[Change]:
    """Mean changes in ``x`` by binary segmentation with the CUSUM test, in index order.

    A split is kept when its shift is at least ``min_shift`` residual
    standard deviations and its p-value is below ``alpha``: the asymptotic
    p-value first, then (for splits that pass) the parametric AR(1)
    bootstrap p-value of :func:`bootstrap_p`, which is the one reported.
    Each kept split's two sides are searched again. Indices are positions in ``x``.
    """
    x = np.asarray(x, dtype=float)
    found: list[Change] = []
    todo = [(0, x.size)]
    while todo and len(found) < max_changes:
        lo, hi = todo.pop()
        c = cusum_change(x[lo:hi], min_size)
        if c is not None and c.p_value < alpha and c.shift_sd >= min_shift:
            p = bootstrap_p(c, hi - lo, min_size=min_size, resamples=resamples, seed=lo)
            if p < alpha:
                found.append(Change(lo + c.index, c.statistic, p, c.before, c.after, c.sd, c.phi))
                todo += [(lo, lo + c.index), (lo + c.index, hi)]
                continue
        # no single change: a level that changes and comes back (or two steps) hides from the one-split test
        pair = epidemic_change(x[lo:hi], min_size)
        if pair is None or pair[0].p_value >= alpha or min(c.shift_sd for c in pair) < min_shift:
            continue
        p = bootstrap_p(pair[0], hi - lo, min_size=min_size, resamples=min(resamples, 199), seed=lo, epidemic=True)
        if p >= alpha:
            continue
        a, b = (Change(lo + c.index, c.statistic, p, c.before, c.after, c.sd, c.phi) for c in pair)
        found += [a, b]
        todo += [(lo, a.index), (a.index, b.index), (b.index, hi)]
    return sorted(found, key=lambda c: c.index)


def segment_means(x: np.ndarray, changes: list[Change]) -> list[tuple[int, int, float]]:
    """(start, end exclusive, mean) of the segments ``changes`` cut ``x`` into."""
    x = np.asarray(x, dtype=float)
    cuts = [0] + [c.index for c in changes] + [x.size]
    return [(a, b, float(x[a:b].mean())) for a, b in zip(cuts[:-1], cuts[1:]) if b > a]


def rolling_median(x: np.ndarray, width: int) -> np.ndarray:
    """Centred rolling median (windows shrink at the ends); ``width`` 1 returns ``x``."""
    x = np.asarray(x, dtype=float)
    width = max(1, int(width))
    if width == 1 or x.size == 0:
        return x.copy()
    half = width // 2
    padded = np.concatenate([np.full(half, np.nan), x, np.full(width - 1 - half, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, width)
    return np.nanmedian(windows, axis=1)


def rolling_mean(x: np.ndarray, width: int) -> np.ndarray:
    """Centred rolling mean (windows shrink at the ends)."""
    x = np.asarray(x, dtype=float)
    width = max(1, int(width))
    if width == 1 or x.size == 0:
        return x.copy()
    half = width // 2
    c = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(x.size)
    lo = np.clip(idx - half, 0, x.size)
    hi = np.clip(idx - half + width, 0, x.size)
    return (c[hi] - c[lo]) / (hi - lo)


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end inclusive) of every run of True in ``mask``."""
    m = np.asarray(mask, dtype=bool)
    if m.size == 0:
        return []
    d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)]


def blocks(x: np.ndarray, max_points: int) -> tuple[np.ndarray, int]:
    """``x`` averaged over consecutive blocks so that at most ``max_points`` remain, and the block size."""
    x = np.asarray(x, dtype=float)
    size = max(1, math.ceil(x.size / max_points)) if max_points > 0 else 1
    if size == 1:
        return x, 1
    n = x.size // size * size
    out = x[:n].reshape(-1, size).mean(axis=1)
    if n < x.size:
        out = np.append(out, x[n:].mean())
    return out, size
