"""Small statistics shared by detectors and the audit (numpy only)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: Consistency constant of the MAD for a normal distribution (1 / Phi^-1(3/4)).
MAD_TO_SIGMA = 1.482602218505602
#: Mean absolute deviation to sigma for a normal distribution (sqrt(pi/2)).
MEANAD_TO_SIGMA = 1.2533141373155001


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (q-values), in the input order.

    q_(i) = min_{j >= i} m * p_(j) / j, capped at 1. Controls the false
    discovery rate under independence or positive regression dependency
    (Benjamini & Hochberg 1995).
    """
    p = np.asarray(p_values, dtype=float)
    m = p.size
    if m == 0:
        return []
    if np.any(~np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must be finite numbers in [0, 1]")
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(q_sorted, 1.0)
    return [float(x) for x in q]
