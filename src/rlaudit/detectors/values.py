"""Value-function detectors: value estimates against what the rewards make possible and what the run realised."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from rlaudit.detectors.changepoint import long_run_sd, rolling_mean, true_runs
from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector
from rlaudit.detectors.series import PHASE_FILTER, episodes_at_steps, metric_names, num, training_phase

#: Metrics that carry value estimates (rlaudit's agents and Stable-Baselines3-style names).
VALUE_METRICS = tuple(n for base in ("q_max", "q_mean", "value_mean", "value_max") for n in metric_names(base))


@detector("value-explosion", severity="critical", needs=("episodes", "manifest:gamma"))
def value_explosion(
    ctx: Context,
    *,
    bound_slack: float = 0.25,
    runaway: float = 10.0,
    over: float = 0.5,
    stall: float = 0.5,
    min_closing: float = 0.1,
    min_episodes: int = 20,
    min_stall_episodes: int = 50,
    max_episodes: int = 5000,
    cap: int = 30,
) -> Iterator[Finding]:
    """Value estimates beyond what the rewards allow, growing without bound, or far from the returns the run realised.

    Finds:
        The agent's value estimates (the ``value`` column, else the greedy
        max of the ``q`` column, and the value metrics ``q_max``, ``q_mean``,
        ``value_mean``, ``value_max`` with or without a ``train/`` prefix)
        checked in this order; the first condition that holds is reported
        (one finding per run):

        - Beyond the bound: with per-step reward bounds [lo, hi] in the
          manifest (``reward.bounds``) and discount gamma, no return can lie
          outside [min(0, lo), max(0, hi)] / (1 - gamma); estimates beyond
          it by more than ``bound_slack`` of that range are soft divergence.
          Without declared bounds this check is skipped (the finding says
          so) and the others still run.
        - Runaway growth: estimates whose magnitude exceeds ``runaway``
          times the largest |discounted return| the run realised (the
          rewards alone: truncated episodes are not bootstrapped here, so
          exploding estimates cannot raise their own limit).
        - Over-estimation: the estimate at each training episode's first
          step against the realised discounted return from that step (a
          time-limit truncation is bootstrapped with the value at the last
          step), as bias / mean |return|; flagged when its running mean
          (5% of the episodes) stays above ``over`` through the end of the
          run and its autocorrelation-aware 95% interval excludes 0.
        - Value stall: the same relative bias below minus ``stall`` through the
          end of the run, in a run of at least ``min_stall_episodes``
          compared episodes, while the estimates rose by less than
          ``min_closing`` of the middle third's gap from the middle to the
          last third of the episodes (a critic still catching up is not
          stalled).

        Runs with more than ``max_episodes`` training episodes compare every
        k-th episode number (enough for a bias estimate, and one cheap pass).
        The span runs from the first episode in the condition to its last
        (bound), from where the estimates last left the scale of the
        realised returns to the last runaway episode (runaway), or over the
        final stretch where the bias held (over-estimation, stall).

    Why it matters:
        Soft divergence (estimates beyond any achievable return) is the
        deadly triad at work: bootstrapping, off-policy data and function
        approximation feeding each other; it precedes NaNs and performance
        collapse. Systematic over-estimation makes the greedy policy chase
        actions whose value is an artefact of the max operator. A value
        function stuck far below the realised returns gives advantages that
        are mostly bias, so the policy learns slowly or not at all.

    Evidence:
        Bound and runaway: the steps whose estimate is out of range
        (global_step, episode, t, estimate), largest first. Over-estimation
        and stall: per episode in the flagged stretch, the first-step
        estimate, the realised discounted return and their difference.

    Not flagged:
        Estimates inside the bound that track the realised returns; value
        functions still catching up (the gap closing); runs without a
        ``value``/``q`` column or value metrics (skipped); runs with fewer than
        ``min_episodes`` finished training episodes for the return
        comparison; non-finite estimates (left to ``non-finite``).

    Fix:
        Use a target network (or slower target updates), Double Q-learning
        or clipped double Q, Huber loss and gradient clipping, smaller
        learning rates, and reward scaling or clipping; check the declared
        gamma is the one the agent uses. For a stalled value function, raise
        the value-loss coefficient or learning rate, normalise returns, and
        check the value targets (GAE lambda, bootstrapping at truncation).
    """
    gamma = ctx.run.gamma
    if gamma is None or not 0.0 <= gamma < 1.0:
        ctx.skip(f"needs a discount gamma in [0, 1) in the manifest, found {gamma!r}")
    if ctx.has("value"):
        est, est_hi, est_lo, source = "value", "value", "value", "value"
    elif ctx.has("q"):
        est, est_hi, est_lo, source = "list_max(q)", "list_max(q)", "list_min(q)", "q"
    else:
        est = None
    metric_names_present = [r[0] for r in ctx.sql(
        "SELECT DISTINCT name FROM metrics WHERE run_id = $run_id AND list_contains($names, name) ORDER BY name",
        names=list(VALUE_METRICS)).rows()]
    if est is None and not metric_names_present:
        ctx.skip("needs value estimates: a 'value' or 'q' column, or a q_max / q_mean / value_mean metric")
    phase = training_phase(ctx)
    bounds = ctx.reward_bounds()
    bound_note = None if bounds else "not checked: the manifest declares no per-step reward bounds (reward.bounds)"

    # -- beyond the bound --------------------------------------------------------------
    if bounds:
        lo, hi = bounds
        v_lo, v_hi = min(0.0, lo) / (1.0 - gamma), max(0.0, hi) / (1.0 - gamma)
        slack = bound_slack * (v_hi - v_lo)
        limit_lo, limit_hi = v_lo - slack, v_hi + slack
        if est is not None:
            cond = f"isfinite({est_hi}) AND isfinite({est_lo}) AND ({est_hi} > $hi OR {est_lo} < $lo)"
            row = ctx.sql(
                f"SELECT count(*), min(global_step), max(global_step), min(episode), max(episode), "
                f"max(greatest(abs({est_hi}), abs({est_lo}))) FROM steps WHERE run_id = $run_id AND {cond}",
                hi=limit_hi, lo=limit_lo,
            ).one()
            if row[0]:
                n, s0, s1, e0, e1, worst = row
                evidence = ctx.evidence(
                    f"SELECT global_step, env_index, episode, t, phase, {est_hi} AS estimate_max, {est_lo} AS estimate_min "
                    f"FROM steps WHERE run_id = $run_id AND {cond} "
                    f"ORDER BY greatest(abs({est_hi}), abs({est_lo})) DESC, global_step, env_index",
                    cap=cap, hi=limit_hi, lo=limit_lo,
                )
                yield ctx.finding(
                    f"{source} estimates leave the achievable range on {n:,} steps (largest |estimate| {num(worst)} at "
                    f"episodes {e0}–{e1}); expected within [{num(v_lo)}, {num(v_hi)}] = per-step reward bounds "
                    f"[{num(lo)}, {num(hi)}] / (1 - gamma {gamma:g})",
                    score=float(worst / max(abs(v_lo), abs(v_hi), 1e-12)), evidence=evidence,
                    episode_start=e0, episode_end=e1, step_start=s0, step_end=s1,
                    actual={"check": "bound", "source": source, "steps": n, "max_abs_estimate": worst},
                    expected={"value_low": v_lo, "value_high": v_hi, "reward_bounds": [lo, hi], "gamma": gamma,
                              "slack": bound_slack},
                )
                return
        if metric_names_present:
            row = ctx.sql(
                "SELECT count(*), min(global_step), max(global_step), max(abs(value)) FROM metrics "
                "WHERE run_id = $run_id AND list_contains($names, name) AND isfinite(value) AND (value > $hi OR value < $lo)",
                names=metric_names_present, hi=limit_hi, lo=limit_lo,
            ).one()
            if row[0]:
                n, s0, s1, worst = row
                e0, e1 = episodes_at_steps(ctx, [s0, s1])
                evidence = ctx.evidence(
                    "SELECT global_step, name, value FROM metrics WHERE run_id = $run_id AND list_contains($names, name) "
                    "AND isfinite(value) AND (value > $hi OR value < $lo) ORDER BY abs(value) DESC, global_step, name",
                    cap=cap, names=metric_names_present, hi=limit_hi, lo=limit_lo,
                )
                yield ctx.finding(
                    f"value metrics leave the achievable range on {n:,} updates (largest |value| {num(worst)}); expected "
                    f"within [{num(v_lo)}, {num(v_hi)}] = per-step reward bounds [{num(lo)}, {num(hi)}] / (1 - gamma {gamma:g})",
                    score=float(worst / max(abs(v_lo), abs(v_hi), 1e-12)), evidence=evidence,
                    episode_start=e0, episode_end=e1, step_start=s0, step_end=s1,
                    actual={"check": "bound", "source": "metrics", "updates": n, "max_abs_estimate": worst},
                    expected={"value_low": v_lo, "value_high": v_hi, "reward_bounds": [lo, hi], "gamma": gamma,
                              "slack": bound_slack},
                )
                return
    if est is None:
        return  # the return comparisons need per-step estimates

    # -- per-episode estimates against realised discounted returns --------------------
    # at most max_episodes episodes (every k-th episode number of each sub-env) keep this one cheap pass
    total = ctx.sql(f"SELECT count(*) FROM episodes WHERE run_id = $run_id AND {PHASE_FILTER}", phase=phase).scalar()
    every = max(1, math.ceil(total / max_episodes))
    t = ctx.sql(
        "SELECT env_index, episode, min(global_step) AS s0, max(global_step) AS s1, "
        f"arg_min({est}, t) AS v0, arg_max({est}, t) AS v_last, "
        "sum(reward * pow($gamma, t)) AS g, arg_max(reward, t) AS r_last, pow($gamma, max(t)) AS g_last, "
        "bool_or(truncated) AND NOT bool_or(terminated) AS cut, bool_or(terminated) OR bool_or(truncated) AS done "
        f"FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} AND episode % $every = 0 GROUP BY env_index, episode "
        "HAVING done AND isfinite(g) AND isfinite(v0) AND isfinite(v_last) ORDER BY s1, env_index",
        gamma=gamma, phase=phase, every=every,
    ).arrow()
    if t.num_rows < min_episodes:
        ctx.skip(f"needs at least {min_episodes} finished training episodes with estimates, run has {t.num_rows}")
    c = {name: t.column(name).to_numpy(zero_copy_only=False) for name in t.column_names}
    g = c["g"].astype(float)
    # the runaway scale is what the rewards realised; bootstrapping it with the estimates under test would let
    # exploding estimates raise their own limit
    realised_scale = float(np.max(np.abs(g)))
    cut = c["cut"].astype(bool)
    # a time-limit truncation: replace the last reward by the value estimate of the last state
    g = np.where(cut, g - c["g_last"] * c["r_last"] + c["g_last"] * c["v_last"], g)
    v0 = c["v0"].astype(float)
    episodes, envs, s0s, s1s = c["episode"], c["env_index"], c["s0"], c["s1"]

    def span(i: int, j: int) -> dict[str, Any]:
        e = envs[i : j + 1]
        return {"episode_start": int(episodes[i]), "episode_end": int(episodes[j]), "step_start": int(s0s[i]),
                "step_end": int(s1s[j]), "env_index": int(e[0]) if np.all(e == e[0]) else None, "phase": phase}

    scale = realised_scale
    if scale > 0:
        size = f"greatest(abs({est_hi}), abs({est_lo}))"
        cond = f"{PHASE_FILTER} AND isfinite({est_hi}) AND isfinite({est_lo}) AND {size} > $limit"
        row = ctx.sql(
            f"SELECT count(*), min(global_step), max(global_step), arg_min(episode, global_step), "
            f"arg_max(episode, global_step), min(env_index), max(env_index), max({size}) "
            f"FROM steps WHERE run_id = $run_id AND {cond}",
            phase=phase, limit=runaway * scale,
        ).one()
        if row[0]:
            n, s0, s1, e0, e1, i0, i1, worst = row
            # the runaway began where the estimates last left the scale of the realised returns before s0
            left = ctx.sql(
                f"WITH e AS (SELECT global_step, episode, {size} AS size FROM steps WHERE run_id = $run_id "
                f"AND {PHASE_FILTER} AND isfinite({est_hi}) AND isfinite({est_lo}) AND global_step <= $s0) "
                "SELECT global_step, episode FROM e WHERE size > $scale AND global_step > "
                "coalesce((SELECT max(global_step) FROM e WHERE size <= $scale), -1) ORDER BY global_step LIMIT 1",
                phase=phase, s0=s0, scale=scale,
            ).one()
            if left is not None:
                s0, e0 = left
            evidence = ctx.evidence(
                f"SELECT global_step, env_index, episode, t, phase, {est_hi} AS estimate_max, {est_lo} AS estimate_min "
                f"FROM steps WHERE run_id = $run_id AND {cond} ORDER BY {size} DESC, global_step, env_index",
                cap=cap, phase=phase, limit=runaway * scale,
            )
            yield ctx.finding(
                f"{source} estimates ran away: they left the scale of the realised discounted returns (largest "
                f"{num(scale)}) at episode {e0} and {n:,} steps hold an |estimate| above {runaway:g} × that "
                f"(largest {num(worst)}); expected estimates on the scale of the returns",
                score=float(worst / scale), evidence=evidence, episode_start=e0, episode_end=e1, step_start=s0,
                step_end=s1, env_index=i0 if i0 == i1 else None, phase=phase,
                actual={"check": "runaway", "source": source, "steps": n, "max_abs_estimate": worst},
                expected={"max_abs_estimate": runaway * scale, "largest_realised_return": scale, "bound": bound_note},
            )
            return
    denom = float(np.mean(np.abs(g)))
    if denom <= 0:
        return
    rel = (v0 - g) / denom
    n = rel.size
    smooth = rolling_mean(rel, max(3, n // 20))
    need = max(5, n // 10)
    for kind, mask in (("over", smooth > over), ("stall", smooth < -stall)):
        runs = true_runs(mask)
        if not runs or runs[-1][1] != n - 1 or runs[-1][1] - runs[-1][0] + 1 < need:
            continue
        i, j = runs[-1]
        seg = rel[i : j + 1]
        _, _, sd_lr = long_run_sd(seg - seg.mean())
        half = 1.96 * sd_lr / math.sqrt(seg.size)
        mean = float(seg.mean())
        if kind == "over" and mean - half <= 0:
            continue
        if kind == "stall":
            if n < min_stall_episodes:
                continue
            # how far the estimates themselves moved towards the returns from the middle to the last third
            third = max(1, n // 3)
            gap = float(np.mean(g[third : 2 * third] - v0[third : 2 * third]))
            rise = float(v0[-third:].mean() - v0[third : 2 * third].mean())
            closing = rise / gap if gap > 0 else 0.0
            if mean + half >= 0 or closing >= min_closing:
                continue
        sp = span(i, j)
        evidence = ctx.evidence(
            "WITH e AS (SELECT env_index, episode, min(global_step) AS first_step, max(global_step) AS last_step, "
            f"arg_min({est}, t) AS estimate_first_step, sum(reward * pow($gamma, t)) AS discounted_return, "
            f"bool_or(truncated) AND NOT bool_or(terminated) AS truncated FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} "
            "AND global_step BETWEEN $s0 AND $s1 GROUP BY env_index, episode) "
            "SELECT *, estimate_first_step - discounted_return AS difference FROM e ORDER BY last_step, env_index",
            cap=cap, gamma=gamma, phase=phase, s0=sp["step_start"], s1=sp["step_end"],
        )
        word = "over-estimate" if kind == "over" else "fall short of"
        yield ctx.finding(
            f"{source} estimates {word} the realised discounted returns from episode {sp['episode_start']} to the end: "
            f"mean bias {mean:+.3g} of the mean |return| {num(denom)} (95% CI {mean - half:+.3g} to {mean + half:+.3g}) "
            f"over {seg.size:,} episodes; expected a relative bias within ±{over if kind == 'over' else stall:g}",
            score=abs(mean), evidence=evidence, **sp,
            actual={"check": kind, "source": source, "relative_bias": mean, "ci_low": mean - half, "ci_high": mean + half,
                    "episodes": int(seg.size), "mean_abs_return": denom},
            expected={"max_relative_bias": over if kind == "over" else -stall, "gamma": gamma, "bound": bound_note,
                      **({"min_closing": min_closing, "closing": closing} if kind == "stall" else {})},
        )
        return
