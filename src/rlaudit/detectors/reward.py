"""Reward-family detectors: what the reward signal itself shows."""

from __future__ import annotations

from typing import Iterator

from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector
from rlaudit.detectors.stats import MAD_TO_SIGMA, MEANAD_TO_SIGMA


def _num(x: float) -> str:
    return f"{x:.4g}"


@detector("reward-spike", severity="warning", needs=("reward",))
def reward_spike(
    ctx: Context,
    *,
    z: float = 10.0,
    min_steps: int = 100,
    max_fraction: float = 0.001,
    recurring_episodes: float = 0.05,
    cap: int = 20,
) -> Iterator[Finding]:
    """Isolated steps whose reward is extreme for the run, and the states they come from.

    Finds:
        Steps whose reward lies more than ``z`` robust standard deviations
        from the run's median step reward, when such steps are rare on their
        side of the median (at most ``max_fraction`` of the run's steps above
        it, or below it) and isolated (in fewer than ``recurring_episodes`` of
        its episodes). The scale is the larger of the median absolute
        deviation and the mean absolute deviation of the run's finite step
        rewards (each scaled to a normal standard deviation): the MAD alone
        is zero or nearly so when most steps share one reward (a constant
        alive bonus, a controller holding the optimum), and a rare spike
        hardly moves the mean absolute deviation. One finding per run,
        spanning the first to the last spike.

    Why it matters:
        A handful of steps with outsized reward dominate returns, value
        targets and advantages: the learner is pulled towards whatever state
        produced them. Isolated extreme rewards are the signature of reward
        bugs (an unclipped term, a division by a near-zero quantity, a bonus
        paid twice) and of exploits the agent found.

    Evidence:
        The spike steps, most extreme first: global_step, env_index, episode,
        t, phase, reward, robust z, and the action and observation that led
        to it (where in state space the spikes come from). The run's median
        reward and robust scale are the expected values.

    Not flagged:
        Runs with fewer than ``min_steps`` finite rewards; runs whose reward
        never varies; reward levels that recur in at least
        ``recurring_episodes`` of the episodes (a goal bonus paid at the end of
        most episodes is part of the task, not a spike); extremes too frequent
        on their side to be isolated (more than ``max_fraction`` of steps: a
        heavy tail or a multi-level reward; a heavy lower tail does not hide
        an isolated upward spike); the reward of an episode's terminating
        step (reaching the goal, crashing: the episode's outcome), unless it
        lies outside the per-step reward bounds the run declares. Step
        rewards are compared with step rewards, never with episode returns.
        NaN and Inf rewards are left to ``non-finite``.

    Fix:
        Replay the listed episodes from their reset seeds up to the spike and
        inspect the reward terms at that step. Clip or bound the offending
        reward term, fix the computation that produced the outlier, or, if
        the bonus is intended, make it regular and declare it; then check
        whether the policy now seeks the state that paid it.
    """
    stats = ctx.sql(
        """
        WITH r AS (SELECT reward FROM steps WHERE run_id = $run_id AND isfinite(reward)),
             m AS (SELECT count(*) AS n, median(reward) AS med FROM r)
        SELECT m.n, m.med, median(abs(r.reward - m.med)) AS mad, fsum(abs(r.reward - m.med)) / count(*) AS meanad
        FROM r CROSS JOIN m GROUP BY m.n, m.med
        """
    ).one()
    if stats is None or stats[0] < min_steps:
        ctx.skip(f"needs at least {min_steps} finite rewards, run has {0 if stats is None else stats[0]}")
    n, med, mad, meanad = stats
    # the larger of the two: a reward concentrated on one value (MAD ~ 0, a controller holding the optimum)
    # must not make every other step extreme; isolated spikes are too rare to move either
    # rounded: a parallel sum's last bits depend on thread scheduling, the audit must not
    scale = float(f"{max(mad * MAD_TO_SIGMA, meanad * MEANAD_TO_SIGMA):.10g}")
    if not scale > 0:
        return  # the reward never varies: nothing can be extreme
    scale_name = "MAD" if mad * MAD_TO_SIGMA >= meanad * MEANAD_TO_SIGMA else "mean absolute deviation"
    low, high = ctx.reward_bounds() or (None, None)
    params = dict(median=med, scale=scale, z=z, low=low, high=high)
    extreme = (f"isfinite(reward) AND abs(reward - $median) > $z * $scale "
               f"AND NOT (terminated AND ($low IS NULL OR reward BETWEEN $low AND $high))")
    # episodes are numbered from 0 within each sub-env, so this counts them without a distinct pass
    all_episodes = ctx.sql(
        "SELECT sum(n) FROM (SELECT max(episode) + 1 AS n FROM steps WHERE run_id = $run_id GROUP BY env_index)"
    ).scalar()
    directions = []
    for direction, count, episodes in ctx.sql(
        f"SELECT CAST(sign(reward - $median) AS INTEGER) AS direction, count(*), count(DISTINCT (env_index, episode)) "
        f"FROM steps WHERE run_id = $run_id AND {extreme} GROUP BY direction", **params,
    ).rows():
        if count > max_fraction * n:
            continue  # too frequent on this side to be isolated: a heavy tail or another reward level
        if all_episodes and episodes >= recurring_episodes * all_episodes and episodes > 1:
            continue  # a recurring reward level, e.g. a goal bonus
        directions.append(direction)
    if not directions:
        return
    extreme += " AND list_contains($directions, CAST(sign(reward - $median) AS INTEGER))"
    params["directions"] = sorted(directions)
    cand = ctx.sql(
        f"""
        WITH c AS (SELECT * FROM steps WHERE run_id = $run_id AND {extreme})
        SELECT count(*) AS n,
               count(DISTINCT (env_index, episode)) AS episodes,
               min(global_step), max(global_step), min(episode), max(episode),
               min(env_index), max(env_index), min(phase), max(phase),
               max(abs(reward - $median)) / $scale AS max_z,
               arg_max(reward, abs(reward - $median)) AS worst,
               arg_max(global_step, abs(reward - $median)) AS worst_step
        FROM c
        """,
        **params,
    ).one()
    count, episodes, s0, s1, e0, e1, i0, i1, p0, p1, max_z, worst, worst_step = cand
    extra = [c for c in ("action", "obs") if ctx.has(c)]
    evidence = ctx.evidence(
        "SELECT global_step, env_index, episode, t, phase, reward, "
        "round((reward - $median) / $scale, 3) AS robust_z"
        + "".join(f", {c}" for c in extra)
        + f" FROM steps WHERE run_id = $run_id AND {extreme} "
        "ORDER BY abs(reward - $median) DESC, global_step, env_index",
        cap=cap, **params,
    )
    yield ctx.finding(
        f"{count:,} isolated reward spike{'s' if count != 1 else ''} in {n:,} steps "
        f"(largest {_num(worst)} at global_step {worst_step:,}, robust z {max_z:.3g}); "
        f"expected rewards within {z:g} robust SDs of the median {_num(med)} (scale {_num(scale)}, from the {scale_name})",
        score=float(max_z),
        evidence=evidence,
        episode_start=e0,
        episode_end=e1,
        step_start=s0,
        step_end=s1,
        env_index=i0 if i0 == i1 else None,
        phase=p0 if p0 == p1 else None,
        actual={"spikes": count, "episodes_with_spikes": episodes, "max_robust_z": max_z, "largest_reward": worst},
        expected={"max_robust_z": z, "median_reward": med, "robust_scale": scale, "scale_from": scale_name,
                  "max_spike_fraction": max_fraction, "declared_reward_bounds": None if low is None else [low, high]},
    )
