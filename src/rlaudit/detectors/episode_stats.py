"""Helpers shared by the hacking and behaviour detectors (numpy only, small arrays).

Detectors aggregate steps to one row per episode in DuckDB and judge the
episode series here: a baseline (reference runs or the run's own early
phase), per-episode flags, the persistent span of the flags (onset and end,
one finding per condition) and rank tests for the p-values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rlaudit.analyzer.store import ident
from rlaudit.detectors.stats import MAD_TO_SIGMA, MEANAD_TO_SIGMA

#: Persistence window in episodes: an episode belongs to a condition when the
#: majority of the episodes centred on it (this many, clipped at the ends) are flagged.
SMOOTH_EPISODES = 5


def num(x: float) -> str:
    return f"{x:.4g}"


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def robust_scale(x: np.ndarray) -> tuple[float, float, str]:
    """Median, a robust standard deviation and its source (MAD, mean absolute deviation or SD)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return math.nan, 0.0, "none"
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    if mad > 0:
        return med, mad * MAD_TO_SIGMA, "MAD"
    meanad = float(np.mean(np.abs(x - med)))
    if meanad > 0:
        return med, meanad * MEANAD_TO_SIGMA, "mean absolute deviation"
    return med, 0.0, "constant"


def smoothed(flags: Sequence[bool], window: int = SMOOTH_EPISODES) -> np.ndarray:
    """Centred majority vote over ``window`` episodes (clipped at the ends of the series)."""
    f = np.asarray(flags, dtype=float)
    n = f.size
    if n == 0:
        return np.zeros(0, dtype=bool)
    half = window // 2
    c = np.concatenate([[0.0], np.cumsum(f)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    return (c[hi] - c[lo]) * 2 > (hi - lo)


def spans(mask: np.ndarray) -> list[tuple[int, int]]:
    """Runs of consecutive True values as inclusive (start, end) index pairs."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return []
    d = np.diff(np.concatenate([[0], m.astype(np.int8), [0]]))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1) - 1
    return list(zip(starts.tolist(), ends.tolist()))


@dataclass(frozen=True)
class Span:
    """A persistent condition over an episode series: first and last index, and the indices it covers."""

    start: int
    end: int
    members: np.ndarray  # indices inside the qualifying spans


def persistent_span(flags: Sequence[bool], *, min_episodes: int, window: int = SMOOTH_EPISODES,
                    groups: Sequence[Any] | None = None) -> Span | None:
    """Onset of the first to end of the last persistent stretch of ``flags`` with at least ``min_episodes`` episodes.

    A stretch is a run of episodes whose centred majority (``window``) is
    flagged, trimmed to flagged episodes at both ends, so a step change at
    episode k starts the span at k exactly. With ``groups`` (the sub-env of
    each episode) stretches are found in each sub-env's own episode sequence
    and joined: a stuck sub-env is not diluted by its healthy neighbours.
    """
    if groups is not None:
        g = np.asarray(groups)
        parts = []
        for value in np.unique(g):
            idx = np.flatnonzero(g == value)
            sub = persistent_span(np.asarray(flags, dtype=bool)[idx], min_episodes=min_episodes, window=window)
            if sub is not None:
                parts.append(idx[sub.members])
        if not parts:
            return None
        members = np.sort(np.concatenate(parts))
        return Span(int(members[0]), int(members[-1]), members)
    f = np.asarray(flags, dtype=bool)
    keep = []
    for s, e in spans(smoothed(f, window)):
        idx = np.flatnonzero(f[s:e + 1]) + s
        if idx.size == 0:
            continue
        s, e = int(idx[0]), int(idx[-1])
        if e - s + 1 >= min_episodes:
            keep.append((s, e))
    if not keep:
        return None
    members = np.concatenate([np.arange(s, e + 1) for s, e in keep])
    return Span(keep[0][0], keep[-1][1], members)


def mann_whitney_greater(x: Sequence[float], y: Sequence[float]) -> float:
    """One-sided p-value that ``x`` tends to exceed ``y`` (Mann–Whitney U, normal approximation, ties corrected)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    x, y = x[np.isfinite(x)], y[np.isfinite(y)]
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return 1.0
    allv = np.concatenate([x, y])
    order = np.argsort(allv, kind="mergesort")
    ranks = np.empty(allv.size)
    sorted_v = allv[order]
    # average ranks of ties
    uniq, start_idx, counts = np.unique(sorted_v, return_index=True, return_counts=True)
    avg = start_idx + (counts + 1) / 2.0
    ranks[order] = np.repeat(avg, counts)
    u = ranks[:n1].sum() - n1 * (n1 + 1) / 2.0
    n = n1 + n2
    tie = float(np.sum(counts ** 3 - counts))
    var = n1 * n2 / 12.0 * ((n + 1) - tie / (n * (n - 1))) if n > 1 else 0.0
    if var <= 0:
        return 1.0
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(var)
    return min(1.0, max(0.0, normal_sf(z)))


def welch_greater(n1: float, m1: float, v1: float, n2: float, m2: float, v2: float) -> float:
    """One-sided p-value that mean 1 exceeds mean 2 from group counts, means and variances (Welch z, large samples)."""
    if n1 < 2 or n2 < 2:
        return 1.0
    se = math.sqrt(max(v1, 0.0) / n1 + max(v2, 0.0) / n2)
    if se == 0:
        return 0.0 if m1 > m2 else 1.0
    return min(1.0, max(0.0, normal_sf((m1 - m2) / se)))


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, int, float]:
    """Kendall's tau-a of two short series, the number of discordant pairs, and the one-sided p of tau < 0 (normal approximation)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    n = x.size
    if n < 3:
        return math.nan, 0, 1.0
    dx = np.sign(x[:, None] - x[None, :])
    dy = np.sign(y[:, None] - y[None, :])
    prod = np.triu(dx * dy, 1)
    pairs = n * (n - 1) / 2
    tau = float(prod.sum() / pairs)
    discordant = int((prod < 0).sum())
    sd = math.sqrt(2 * (2 * n + 5) / (9 * n * (n - 1)))
    return tau, discordant, min(1.0, max(0.0, normal_sf(-tau / sd)))


def baseline_count(n: int, fraction: float, min_episodes: int) -> int:
    """How many leading episodes form the early-phase baseline: ``fraction`` of them, at least ``min_episodes``."""
    return max(min_episodes, int(math.ceil(fraction * n)))


def column_sql(column: str) -> str:
    """``"info.burnout"`` -> ``info."burnout"``: a step column or struct field as a quoted SQL expression."""
    head, dot, field = column.partition(".")
    if not dot:
        return ident(head)
    return f"{ident(head)}.{ident(field)}"


def list_dims(ctx: Any, column: str) -> int | None:
    """Length of a fixed-size float list column (Box observation or action) in this run, else None."""
    kind = ctx.sql(f"SELECT typeof({ident(column)}) FROM steps WHERE run_id = $run_id LIMIT 1").scalar()
    if kind is None:
        return None
    kind = str(kind).upper()
    if not (kind.startswith("FLOAT[") or kind.startswith("DOUBLE[")) or kind.count("[") != 1:
        return None
    size = kind[kind.index("[") + 1: kind.index("]")]
    if size:
        return int(size)
    n = ctx.sql(f"SELECT max(len({ident(column)})) FROM steps WHERE run_id = $run_id").scalar()
    return int(n) if n else None


def scalar_kind(ctx: Any, column: str) -> str | None:
    """The DuckDB type name of ``column`` in this run."""
    kind = ctx.sql(f"SELECT typeof({ident(column)}) FROM steps WHERE run_id = $run_id LIMIT 1").scalar()
    return None if kind is None else str(kind).upper()


def dim_ranges(ctx: Any, column: str, dims: int, *, reference: bool = False) -> tuple[list[float], list[float]]:
    """Per-dimension finite min and max of a float list column, over the run (or the reference runs), in one scan."""
    c = ident(column)
    parts = ", ".join(f"min({c}[{d}]) FILTER (WHERE isfinite({c}[{d}])), max({c}[{d}]) FILTER (WHERE isfinite({c}[{d}]))"
                      for d in range(1, dims + 1))
    where = "list_contains($reference, run_id)" if reference else "run_id = $run_id"
    query = f"SELECT {parts} FROM steps WHERE {where} AND {c} IS NOT NULL"
    row = (ctx.reference_sql(query) if reference else ctx.sql(query)).one()
    if row is None or any(v is None for v in row):
        return [], []
    return [float(v) for v in row[0::2]], [float(v) for v in row[1::2]]


def quantised_key_sql(column: str, dims: int, *, lows: str = "lows", widths: str = "widths") -> str:
    """A SQL expression hashing a float list column quantised per dimension.

    Bind ``$lows`` and ``$widths`` (one value per dimension, widths > 0; other parameter names with ``lows`` and
    ``widths``): dimension d becomes ``floor((x[d] - lows[d]) / widths[d])`` (NULL for NaN and infinities).
    """
    c = ident(column)
    cells = ", ".join(f"TRY_CAST(floor(({c}[{d}] - ${lows}[{d}]) / ${widths}[{d}]) AS BIGINT)"
                      for d in range(1, dims + 1))
    return f"hash({cells})"


def proportion_greater(k1: int, n1: int, k2: int, n2: int) -> float:
    """One-sided p-value that proportion k1/n1 exceeds k2/n2 (pooled two-proportion z-test)."""
    if n1 == 0 or n2 == 0:
        return 1.0
    p = (k1 + k2) / (n1 + n2)
    se = math.sqrt(p * (1 - p) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    return min(1.0, max(0.0, normal_sf((k1 / n1 - k2 / n2) / se)))


def span_fields(rows: Sequence[Sequence[Any]], span: Span, *, env_col: int = 0, episode_col: int = 1,
                first_col: int = 2, last_col: int = 3, phase_col: int | None = None) -> dict[str, Any]:
    """Finding span fields (episodes, global steps, env_index, phase) for ``span`` over episode ``rows``."""
    chosen = [rows[i] for i in span.members.tolist()]
    envs = {r[env_col] for r in chosen}
    out = {
        "episode_start": rows[span.start][episode_col],
        "episode_end": rows[span.end][episode_col],
        "step_start": min(r[first_col] for r in chosen),
        "step_end": max(r[last_col] for r in chosen),
        "env_index": next(iter(envs)) if len(envs) == 1 else None,
    }
    if phase_col is not None:
        phases = {r[phase_col] for r in chosen}
        out["phase"] = next(iter(phases)) if len(phases) == 1 else None
    return out
