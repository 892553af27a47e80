"""Per-episode and per-update series that the learning-health detectors share.

Everything heavy is one DuckDB aggregate; what comes back is one row per
episode (or per logged update), ordered as training produced them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from rlaudit.detectors.context import Context
from rlaudit.detectors.stats import MAD_TO_SIGMA


def num(x: float) -> str:
    """A number for a summary sentence."""
    return f"{x:.4g}"


@dataclass(frozen=True)
class EpisodeSeries:
    """Finished episodes of one phase of a run, in the order they ended (global_step, then env_index)."""

    phase: str | None
    env_index: np.ndarray
    episode: np.ndarray
    first_step: np.ndarray
    last_step: np.ndarray
    ret: np.ndarray
    length: np.ndarray

    def __len__(self) -> int:
        return int(self.episode.size)

    def span(self, i: int, j: int) -> dict[str, Any]:
        """Finding fields for series positions ``i..j`` (inclusive)."""
        i, j = int(i), int(min(j, len(self) - 1))
        envs = self.env_index[i : j + 1]
        return {
            "episode_start": int(self.episode[i]),
            "episode_end": int(self.episode[j]),
            "step_start": int(self.first_step[i]),
            "step_end": int(self.last_step[j]),
            "env_index": int(envs[0]) if envs.size and np.all(envs == envs[0]) else None,
            "phase": self.phase,
        }


def training_phase(ctx: Context) -> str | None:
    """``"train"`` when the run has training episodes, else None (all phases together)."""
    has_train = ctx.sql("SELECT count(*) FROM episodes WHERE run_id = $run_id AND phase = 'train'").scalar()
    return "train" if has_train else None


PHASE_FILTER = "($phase IS NULL OR phase = $phase)"


def episode_series(ctx: Context, phase: str | None) -> EpisodeSeries:
    """Finished episodes with a finite return, from the ``episodes`` view."""
    t = ctx.sql(
        "SELECT env_index, episode, first_global_step, last_global_step, return, length FROM episodes "
        f"WHERE run_id = $run_id AND {PHASE_FILTER} AND termination <> 'unfinished' AND isfinite(return) "
        "ORDER BY last_global_step, env_index",
        phase=phase,
    ).arrow()
    col = {name: t.column(name).to_numpy() for name in t.column_names}
    return EpisodeSeries(phase, col["env_index"].astype(np.int64), col["episode"].astype(np.int64),
                         col["first_global_step"].astype(np.int64), col["last_global_step"].astype(np.int64),
                         col["return"].astype(float), col["length"].astype(np.int64))


def curve_evidence(ctx: Context, phase: str | None, last_step: int, *, windows: int = 40, cap: int = 50):
    """The learning curve in about ``windows`` global-step windows: episodes, steps and mean return per window."""
    width = max(1, math.ceil((int(last_step) + 1) / windows))
    return ctx.evidence(
        "SELECT CAST(floor(last_global_step / $width) AS BIGINT) AS step_window, count(*) AS episodes, "
        "min(episode) AS first_episode, max(episode) AS last_episode, "
        "min(first_global_step) AS first_step, max(last_global_step) AS last_step, "
        "round(avg(return), 6) AS mean_return, round(min(return), 6) AS min_return, round(max(return), 6) AS max_return "
        f"FROM episodes WHERE run_id = $run_id AND {PHASE_FILTER} AND termination <> 'unfinished' AND isfinite(return) "
        "GROUP BY step_window ORDER BY step_window",
        cap=cap, width=width, phase=phase,
    )


def is_learning_run(ctx: Context) -> bool:
    """True when the acting policy changed during the run (policy_version varies) or training metrics were logged."""
    if ctx.run.metrics_files:
        return True
    if ctx.has("policy_version"):
        row = ctx.sql("SELECT min(policy_version), max(policy_version) FROM steps WHERE run_id = $run_id").one()
        return row is not None and row[0] is not None and row[1] > row[0]
    return False


def robust_sd(x: np.ndarray) -> float:
    """MAD-based SD, falling back to the plain SD when more than half the values are equal."""
    x = np.asarray(x, dtype=float)
    if x.size < 2:
        return 0.0
    mad = float(np.median(np.abs(x - np.median(x)))) * MAD_TO_SIGMA
    return mad if mad > 0 else float(x.std())


def metric_series(ctx: Context, names: Sequence[str]) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(name, global_steps, values) of the first of ``names`` the run logged, finite values only, in step order."""
    for name in names:
        t = ctx.sql(
            "SELECT global_step, value FROM metrics WHERE run_id = $run_id AND name = $name AND isfinite(value) "
            "ORDER BY global_step",
            name=name,
        ).arrow()
        if t.num_rows:
            return name, t.column("global_step").to_numpy().astype(np.int64), t.column("value").to_numpy().astype(float)
    return None


def metric_names(base: str) -> tuple[str, ...]:
    """The names a metric goes by: rlaudit's agents log ``approx_kl``, Stable-Baselines3 ``train/approx_kl``."""
    return (base, f"train/{base}")


def episodes_at_steps(ctx: Context, steps: Sequence[int]) -> list[int | None]:
    """The episode (of sub-env 0, or the lowest sub-env stepping then) that contains each global step."""
    out: list[int | None] = []
    for s in steps:
        row = ctx.sql(
            "SELECT episode FROM episodes WHERE run_id = $run_id AND first_global_step <= $s "
            "ORDER BY first_global_step DESC, env_index LIMIT 1",
            s=int(s),
        ).one()
        out.append(None if row is None else int(row[0]))
    return out
