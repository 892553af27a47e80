"""Behaviour detectors: what the policy does, read from the recorded actions and observations."""

from __future__ import annotations

import json
import math
from typing import Any, Iterator

import numpy as np

from rlaudit.analyzer.store import ident
from rlaudit.detectors.context import Context
from rlaudit.detectors.episode_stats import (
    dim_ranges,
    list_dims,
    num,
    persistent_span,
    quantised_key_sql,
    scalar_kind,
    normal_sf,
    span_fields,
)
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector


def _finite_bounds(spec: Any, dims: int) -> tuple[list[float], list[float]] | None:
    """Per-dimension finite bounds of a Box space spec from the manifest, or None."""
    if not isinstance(spec, dict) or spec.get("type") != "Box":
        return None

    def expand(v):
        if isinstance(v, (int, float)):
            return [float(v)] * dims
        if isinstance(v, list) and len(v) == dims and all(isinstance(x, (int, float)) for x in v):
            return [float(x) for x in v]
        return None

    low, high = expand(spec.get("low")), expand(spec.get("high"))
    if low is None or high is None or not all(math.isfinite(x) for x in low + high):
        return None
    return low, high


def key_sql(ctx: Context, column: str, resolution: float, *, declared: bool) -> tuple[str, dict[str, Any], str]:
    """A SQL expression identifying equal values of ``column`` (action or observation), its parameters, and how.

    Discrete, integer and binary values are compared exactly; float vectors
    are quantised per dimension to ``resolution`` of their range (the space's
    declared finite bounds when ``declared`` and available, else the range the
    run reached).
    """
    dims = list_dims(ctx, column)
    if dims is None:
        kind = scalar_kind(ctx, column) or ""
        if kind in ("BIGINT", "INTEGER", "SMALLINT", "TINYINT", "BOOLEAN"):
            return ident(column), {}, "exact values"
        return f"hash({ident(column)})", {}, "exact values"
    lows = highs = None
    how = "the reached range"
    if declared:
        bounds = _finite_bounds((ctx.manifest.get("spaces") or {}).get("observation" if column == "obs" else column),
                                dims)
        if bounds is not None:
            lows, highs = bounds
            how = "the declared bounds"
    if lows is None:
        lows, highs = dim_ranges(ctx, column, dims)
    if len(lows) != dims:
        return f"hash({ident(column)})", {}, "exact values"
    widths = [(h - lo) * resolution if h > lo else 1.0 for lo, h in zip(lows, highs)]
    return quantised_key_sql(column, dims), {"lows": lows, "widths": widths}, f"cells of {resolution:g} of {how}"


# -- state-cycling ----------------------------------------------------------------

def finite_sql(ctx: Context, column: str) -> str:
    """A SQL condition true where ``column`` holds no NaN or infinity (every element of a list)."""
    c = ident(column)
    if list_dims(ctx, column) is not None:
        return f"(list_min({c}) > '-inf'::DOUBLE AND list_max({c}) < 'inf'::DOUBLE)"
    if (scalar_kind(ctx, column) or "") in ("FLOAT", "DOUBLE"):
        return f"isfinite({c})"
    return "TRUE"


@detector("state-cycling", severity="warning", needs=("obs", "reward"))
def state_cycling(
    ctx: Context,
    *,
    resolution: float = 1e-4,
    region: float = 0.05,
    min_loop_fraction: float = 0.5,
    min_effect: float = 0.05,
    alpha: float = 0.01,
    min_episodes: int = 5,
    gate_steps: int = 1_000_000,
    cap: int = 50,
) -> Iterator[Finding]:
    """Episodes that revisit the same states in a loop and earn more in the loop than the same states pay elsewhere.

    Finds:
        Each observation is reduced to a state key: exact for discrete,
        integer, image and structured observations; float vectors quantised
        per dimension into cells of ``resolution`` of the range the run
        reached. Steps with a NaN or infinite observation or reward are left
        out (``non-finite`` reports them). A step is a *loop step* when its
        state occurs more than once in its episode (per sub-environment).
        Episodes with at least ``min_loop_fraction`` loop steps are looping;
        the finding spans the persistent stretch of looping episodes
        (centred majority of 5, at least ``min_episodes``). The loop steps in
        it are compared with what the same part of the state space pays
        outside loops: each loop step's baseline is the mean reward of the
        run's non-loop steps in its *region* (a coarser cell, ``region`` of
        the reached range per dimension; the exact state for discrete
        observations), or, for a region the run never passes outside a
        loop, the mean of all the run's non-loop steps. Flagged when the
        loop steps earn more than their baselines by at least
        ``min_effect`` of the root-mean-square step reward, with a one-sided
        z-test p <= ``alpha``. Runs of more than ``gate_steps`` steps are
        first screened on every 8th episode (chosen by a hash of env_index
        and episode): without a looping episode there, the run is clean (a
        stretch of 40 looping episodes escapes the screen with probability
        0.5%).

    Why it matters:
        A policy that goes round in circles and is paid on every lap is
        farming a reward loop (the CoastRunners boat): the reward pays for
        passing through states, not for getting anywhere. Potential-based
        shaping pays nothing net around a loop, so a loop that pays more than
        the same states pay when the agent passes them without looping means
        a term that is not.

    Evidence:
        The looping episodes in order: env_index, episode,
        first_global_step, steps, loop steps, the most visits of one state,
        and the mean reward on loop and non-loop steps. The loop steps'
        baseline (what their regions pay outside loops) is the expected
        value.

    Not flagged:
        A competent controller settling into a limit cycle or a fixed point
        with the task's own reward: CartPole balancing (loop steps pay the
        same +1 as every other step), a Pendulum held upright (the hovering
        steps pay about 0, as the last steps of the swing-up through the
        same region do, even though the swing-up as a whole pays far less);
        exploration that revisits a few states; episodes with fewer than
        ``min_loop_fraction`` loop steps; runs whose every step is a loop
        step (nothing to compare the loop with) or whose step reward never
        varies; non-finite observations and rewards. Continuous states that
        never repeat within a cell are never loops.

    Fix:
        Find the rewarding transition inside the loop (the evidence episodes'
        most visited state, replayed from the reset seed) and make the term
        that pays it potential-based, pay it once per episode, or pay
        progress instead of visits.
    """
    key, params, how = key_sql(ctx, "obs", resolution, declared=False)
    region_key = key
    if "widths" in params:  # float vectors: the same cells, ``region / resolution`` times wider
        region_key = quantised_key_sql("obs", len(params["widths"]), widths="region_widths")
        params = {**params, "region_widths": [w * region / resolution for w in params["widths"]]}
    cte = f"""
        WITH v AS (SELECT env_index, episode, {key} AS state, any_value({region_key}) AS region, count(*) AS visits,
                          min(global_step) AS g0, max(global_step) AS g1, sum(reward) AS rs, sum(reward * reward) AS rq
                   FROM steps WHERE run_id = $run_id AND obs IS NOT NULL AND isfinite(reward)
                        AND {finite_sql(ctx, "obs")}
                   GROUP BY env_index, episode, state)"""
    query = cte + """
        SELECT env_index, episode, min(g0) AS first_global_step, max(g1) AS last_global_step,
               sum(visits) AS steps, coalesce(sum(visits) FILTER (WHERE visits > 1), 0) AS loop_steps,
               max(visits) AS max_visits,
               sum(rs) FILTER (WHERE visits > 1) / sum(visits) FILTER (WHERE visits > 1) AS loop_reward,
               sum(rs) FILTER (WHERE visits = 1) / sum(visits) FILTER (WHERE visits = 1) AS other_reward,
               coalesce(sum(rs) FILTER (WHERE visits > 1), 0) AS loop_sum,
               coalesce(sum(rq) FILTER (WHERE visits > 1), 0) AS loop_sq,
               coalesce(sum(rs) FILTER (WHERE visits = 1), 0) AS other_sum,
               coalesce(sum(rq) FILTER (WHERE visits = 1), 0) AS other_sq
        FROM v GROUP BY env_index, episode
    """
    n_steps = ctx.sql("SELECT count(*) FROM steps WHERE run_id = $run_id AND obs IS NOT NULL").scalar() or 0
    if n_steps == 0:
        ctx.skip("needs recorded observations; every obs is null")
    if n_steps > gate_steps:
        # large run: look at every 8th episode first (hashed, so spread over the run); a stretch of
        # looping episodes long enough to matter shows up there, and most runs stop here
        sample = query.replace("AND isfinite(reward)", "AND isfinite(reward) AND hash(env_index, episode) % 8 = 0", 1)
        looping = ctx.sql(f"SELECT count(*) FROM ({sample}) WHERE loop_steps >= $min_loop_fraction * steps",
                          min_loop_fraction=min_loop_fraction, **params).scalar()
        if not looping:
            return
    rows = ctx.sql(query + " ORDER BY first_global_step, env_index", **params).rows()
    if not rows:
        return
    arr = np.array([r[4:6] + r[9:13] for r in rows], dtype=float)
    steps, loops, lsum, lsq, osum, osq = arr.T
    n_other = float((steps - loops).sum())
    n_all = float(steps.sum())
    mean_all = float((lsum + osum).sum() / n_all)
    var_all = float((lsq + osq).sum() / n_all - mean_all ** 2)
    if n_other < 2 or var_all <= 1e-12 * max(1.0, mean_all ** 2):
        return
    rms = math.sqrt(float((lsq + osq).sum() / n_all))
    m_o = float(osum.sum() / n_other)
    v_o = max(float(osq.sum() / n_other - m_o ** 2), 0.0)
    span = persistent_span(loops >= min_loop_fraction * steps, min_episodes=min_episodes,
                           groups=[r[0] for r in rows])
    if span is None:
        return
    mb = span.members
    n_l = float(loops[mb].sum())
    if n_l < 2:
        return
    m_l = float(lsum[mb].sum() / n_l)
    baseline, var_diff = _loop_baseline(ctx, cte, params, {(rows[i][0], rows[i][1]) for i in mb.tolist()},
                                        m_o, v_o, n_other)
    excess = m_l - baseline
    effect = excess / rms
    se = math.sqrt(var_diff)
    p = (0.0 if excess > 0 else 1.0) if se == 0 else min(1.0, max(0.0, normal_sf(excess / se)))
    if effect < min_effect or p > alpha:
        return
    fields = span_fields(rows, span)
    evidence = ctx.evidence(
        "SELECT env_index, episode, first_global_step, steps, loop_steps, max_visits, "
        "round(loop_reward, 6) AS loop_reward, round(other_reward, 6) AS other_reward "
        f"FROM ({query}) AS ep WHERE first_global_step BETWEEN $step_start AND $step_end "
        "AND loop_steps >= $min_loop_fraction * steps ORDER BY first_global_step, env_index",
        cap=cap, step_start=fields["step_start"], step_end=fields["step_end"],
        min_loop_fraction=min_loop_fraction, **params,
    )
    yield ctx.finding(
        f"{len(mb)} episodes loop through revisited states ({n_l / steps[mb].sum():.0%} of their steps) and the "
        f"loop steps pay {num(m_l)} per step against {num(baseline)} for the same regions of the state space outside "
        f"loops ({effect:.2g} of the RMS step reward {num(rms)}); expected loops to pay no more than the same states "
        "pay elsewhere",
        score=float(effect),
        evidence=evidence,
        p_value=p,
        p_method="asymptotic (one-sided z on step rewards, loop steps vs non-loop steps of the same regions)",
        actual={"looping_episodes": len(mb), "loop_step_share": n_l / float(steps[mb].sum()),
                "loop_reward": m_l, "effect": effect, "state_key": how},
        expected={"baseline_reward": baseline, "other_reward": m_o, "min_effect": min_effect,
                  "min_loop_fraction": min_loop_fraction, "region": region},
        **fields,
    )


def _loop_baseline(ctx: Context, cte: str, params: dict, members: set, m_o: float, v_o: float,
                   n_other: float) -> tuple[float, float]:
    """What the loop steps of ``members`` (env_index, episode) would earn outside loops, and the variance of the excess.

    Each loop step's baseline is the mean non-loop reward of its region, or the run's non-loop mean ``m_o``
    for a region never passed outside a loop. The variance combines the loop steps' within-region variance and
    the baselines' sampling variance.
    """
    rows = ctx.sql(cte + """,
             looped AS (SELECT DISTINCT region FROM v WHERE visits > 1)
        SELECT env_index, episode, region, visits > 1 AS is_loop, sum(visits), sum(rs), sum(rq)
        FROM v SEMI JOIN looped USING (region) GROUP BY ALL""", **params).rows()
    loop: dict[Any, list[float]] = {}
    other: dict[Any, list[float]] = {}
    for env, episode, reg, is_loop, n, rs, rq in rows:
        if is_loop and (env, episode) not in members:
            continue
        acc = (loop if is_loop else other).setdefault(reg, [0.0, 0.0, 0.0])
        acc[0] += n
        acc[1] += rs
        acc[2] += rq
    n_l = sum(a[0] for a in loop.values())
    n_cov = sum(a[0] for a in other.values())
    within_o = sum(a[2] - a[1] ** 2 / a[0] for a in other.values())
    v_region = max(within_o / n_cov, 0.0) if n_cov else 0.0
    expected = var_base = w_fallback = within_l = 0.0
    for reg, (n, rs, rq) in loop.items():
        within_l += rq - rs ** 2 / n
        w = n / n_l
        if reg in other:
            expected += n * other[reg][1] / other[reg][0]
            var_base += w * w * v_region / other[reg][0]
        else:
            expected += n * m_o
            w_fallback += w
    var_base += w_fallback ** 2 * v_o / n_other
    return expected / n_l, max(within_l / n_l, 0.0) / n_l + var_base


# -- action-repetition -------------------------------------------------------------

@detector("action-repetition", severity="warning", needs=("action",))
def action_repetition(
    ctx: Context,
    *,
    share: float = 0.95,
    max_period: int = 4,
    resolution: float = 1e-3,
    min_episodes: int = 10,
    min_steps: int = 100,
    gate_steps: int = 1_000_000,
    cap: int = 50,
) -> Iterator[Finding]:
    """A degenerate policy: one action, or one short repeating pattern of actions, for a long stretch of the run.

    Finds:
        Actions are compared exactly when discrete and quantised to
        ``resolution`` of the declared (else reached) range per dimension when
        continuous. Per episode, the share of its steps taking its most
        common action, and for periods p = 2..``max_period`` the share of
        steps repeating the action p steps earlier. The lags run along each
        sub-environment's whole stream of steps, across episode boundaries,
        so episodes of any length count (a 9-step CartPole episode of
        always-left is judged like a 500-step one). An episode is degenerate
        when its top action holds at least ``share`` of its steps, or a period
        p repeats on at least ``share`` of them while consecutive actions do
        not (a pattern, not a run). One finding spans the persistent stretch
        (centred majority of 5) of degenerate episodes with at least
        ``min_episodes`` episodes and ``min_steps`` steps; in a vector-env run
        persistence is judged in each sub-environment's own sequence of
        episodes, so one stuck sub-env is found among healthy ones. Runs of
        more than ``gate_steps`` steps look for patterns only when every 8th
        episode (chosen by a hash of env_index and episode; lags within the
        episode) shows one; otherwise the top-action shares alone decide.

    Why it matters:
        A policy that does the same thing whatever it observes has stopped
        using its input: collapsed entropy, a dead network, a bug that
        ignores the action, or an environment where one action wins
        (see ``degenerate-environment``). Per-episode checks miss it when
        episodes are short, and a sliding window cleared at every reset never
        fills.

    Evidence:
        The degenerate episodes in order: env_index, episode,
        first_global_step, steps, the most common action and its share, and
        the repeat shares at each period.

    Not flagged:
        Controllers whose action changes with the state even if one action
        is common (a MountainCar energy pump pushes right for long stretches
        but left as often; bang-bang control that alternates irregularly);
        random policies; stretches shorter than ``min_episodes`` episodes or
        ``min_steps`` steps. Whether the repetition is a failure depends on
        the task: a constant heuristic baseline is reported too, by design.

    Fix:
        Check the entropy and the action probabilities of the policy over the
        stretch (``policy-collapse`` if entropy was recorded); raise the
        entropy bonus or exploration, check that the action reaches the env,
        and check with ``degenerate-environment`` whether one action simply
        wins in this environment.
    """
    key, params, how = key_sql(ctx, "action", resolution, declared=True)
    max_period = max(2, int(max_period))
    lags = ", ".join(f"lag(k, {p}) OVER w AS k{p}" for p in range(1, max_period + 1))
    rep = ", ".join(f"avg(CASE WHEN k = k{p} THEN 1.0 ELSE 0.0 END) AS repeat_{p}" for p in range(1, max_period + 1))
    base = f"""
        WITH a AS (SELECT env_index, episode, global_step, action, {key} AS k
                   FROM steps WHERE run_id = $run_id AND action IS NOT NULL),
             c AS (SELECT env_index, episode, k, count(*) AS n, min(action) AS act FROM a GROUP BY ALL),
             top AS (SELECT env_index, episode, first(act ORDER BY n DESC, k) AS top_action, max(n) AS top_count
                     FROM c GROUP BY env_index, episode),"""
    query = base + f"""
             l AS (SELECT *, {lags} FROM a WINDOW w AS (PARTITION BY env_index ORDER BY global_step)),
             ep AS (SELECT env_index, episode, min(global_step) AS first_global_step,
                           max(global_step) AS last_global_step, count(*) AS steps, {rep}
                    FROM l GROUP BY env_index, episode)
        SELECT ep.env_index, ep.episode, ep.first_global_step, ep.last_global_step, ep.steps,
               top.top_action, round(top.top_count / ep.steps, 4) AS top_share,
               {", ".join(f"round(repeat_{p}, 4) AS repeat_{p}" for p in range(1, max_period + 1))}
        FROM ep JOIN top USING (env_index, episode)
    """
    n_steps = ctx.sql("SELECT count(*) FROM steps WHERE run_id = $run_id AND action IS NOT NULL").scalar() or 0
    if n_steps == 0:
        ctx.skip("needs recorded actions; every action is null")
    if n_steps > gate_steps and not _pattern_candidates(ctx, key, params, lags, max_period, share):
        # no repeating pattern in the screened episodes: the top-action shares alone decide (no sort)
        query = base + """
             ep AS (SELECT env_index, episode, min(global_step) AS first_global_step,
                           max(global_step) AS last_global_step, count(*) AS steps FROM a GROUP BY env_index, episode)
        SELECT ep.env_index, ep.episode, ep.first_global_step, ep.last_global_step, ep.steps,
               top.top_action, round(top.top_count / ep.steps, 4) AS top_share
        FROM ep JOIN top USING (env_index, episode)
    """
    rows = ctx.sql(query + " ORDER BY first_global_step, env_index", **params).rows()
    steps = np.array([r[4] for r in rows], float)
    top = np.array([r[6] for r in rows], float)
    reps = np.array([r[7:] for r in rows], float) if len(rows[0]) > 7 else np.zeros((len(rows), max_period))
    pattern = (reps[:, 1:].max(axis=1) >= share) & (reps[:, 0] < share)
    flags = (top >= share) | pattern
    span = persistent_span(flags, min_episodes=min_episodes, groups=[r[0] for r in rows])
    if span is None:
        return
    mb = span.members
    if steps[mb].sum() < min_steps:
        return
    actions: dict[str, int] = {}
    for i in mb.tolist():
        if top[i] >= share:
            label = str(rows[i][5])
            actions[label] = actions.get(label, 0) + int(steps[i])
    n_pattern = int(pattern[mb].sum())
    fields = span_fields(rows, span)
    if actions and sum(actions.values()) >= 0.5 * steps[mb].sum():
        what = "one action: " + max(actions, key=actions.get)
        if len(actions) > 1:
            what += f" (also {', '.join(a for a in sorted(actions) if a != max(actions, key=actions.get))} in some episodes)"
    else:
        periods = reps[mb][:, 1:].mean(axis=0)
        what = f"a repeating pattern of period {int(np.argmax(periods)) + 2}"
    evidence = ctx.evidence(
        f"SELECT * FROM ({query}) AS ep WHERE first_global_step BETWEEN $step_start AND $step_end "
        "ORDER BY first_global_step, env_index",
        cap=cap, step_start=fields["step_start"], step_end=fields["step_end"], **params,
    )
    share_in_span = float((top[mb] * steps[mb]).sum() / steps[mb].sum())
    yield ctx.finding(
        f"the policy repeats {what} over {len(mb)} episodes ({int(steps[mb].sum()):,} steps; "
        f"top action {share_in_span:.0%} of them); expected no action or pattern above {share:.0%}",
        score=share_in_span,
        evidence=evidence,
        actual={"episodes": len(mb), "steps": int(steps[mb].sum()), "top_actions": actions,
                "top_action_share": share_in_span, "pattern_episodes": n_pattern, "action_key": how},
        expected={"max_share": share, "max_period": max_period},
        **fields,
    )


def _pattern_candidates(ctx: Context, key: str, params: dict, lags: str, max_period: int, share: float) -> int:
    """Screened episodes (every 8th, by hash) that repeat a pattern of period 2..max_period (lags within the episode)."""
    periods = ", ".join(f"repeat_{p}" for p in range(2, max_period + 1))
    # steps without a p-th predecessor in the episode are left out (avg ignores NULL)
    rep = ", ".join(f"avg(CASE WHEN k{p} IS NULL THEN NULL WHEN k = k{p} THEN 1.0 ELSE 0.0 END) AS repeat_{p}"
                    for p in range(1, max_period + 1))
    return ctx.sql(
        f"""
        SELECT count(*) FROM (
            SELECT env_index, episode, {rep} FROM (
                SELECT *, {lags} FROM (
                    SELECT env_index, episode, global_step, {key} AS k FROM steps
                    WHERE run_id = $run_id AND action IS NOT NULL AND hash(env_index, episode) % 8 = 0)
                WINDOW w AS (PARTITION BY env_index, episode ORDER BY global_step))
            GROUP BY env_index, episode)
        WHERE greatest({periods}) >= $share AND repeat_1 < $share
        """,
        share=share, **params,
    ).scalar()


# -- degenerate-environment ---------------------------------------------------------

def _peers(ctx: Context) -> list[str]:
    """Other runs in the store of the same environment (id and kwargs) and reward (name and parameters)."""
    def signature(manifest: Any) -> str:
        env = manifest.get("env") or {}
        env = env if isinstance(env, dict) else {"id": env}
        return json.dumps([env.get("id"), env.get("kwargs"), manifest.get("reward")], sort_keys=True, default=str)

    mine = signature(ctx.manifest)
    return sorted(rid for rid, run in ctx.runs.items() if rid != ctx.run_id and signature(run.manifest) == mine)

@detector("degenerate-environment", severity="warning", needs=("action", "episodes"))
def degenerate_environment(
    ctx: Context,
    *,
    near: float = 0.9,
    min_constant: int = 3,
    min_other: int = 10,
    resolution: float = 1e-3,
    cap: int = 50,
) -> Iterator[Finding]:
    """A trivial constant policy reaches nearly the best return seen: learning is pointless here.

    Finds:
        Constant episodes: finished episodes of at least two steps in which
        every action is the same (exactly for discrete actions, within
        ``resolution`` of the declared or reached range for continuous
        ones), grouped by that action. When one action has at least
        ``min_constant`` constant episodes, its median return is placed on a
        scale from the 10th percentile of all returns (0) to the 90th
        percentile of the returns of varied play (1): the run's non-constant
        episodes, plus every episode of the other runs in the store with the
        same environment (id and kwargs) and reward (name and parameters),
        and of the reference runs when the audit names some. At ``near`` or
        above, the constant policy does about as well as the best play seen.
        Needs at least ``min_other`` episodes of varied play to compare with. The p-value is conformal: the
        fraction of varied episodes (plus one) returning at least the
        constant policy's median.

    Why it matters:
        When always doing one thing scores like the trained agent, the task
        does not require the observation: the environment or the reward
        makes the problem trivial (the career env's short_term_v1 reward
        under a stable market, where always-switch is nearly optimal). Every
        comparison of learners on it measures noise, and a learner that
        "solves" it has learned nothing.

    Evidence:
        The constant episodes of that action in order: env_index, episode,
        first_global_step, phase, length, return and the action; the
        percentiles of all returns are the expected values.

    Not flagged:
        Constant policies that score poorly (always-left in CartPole falls
        in about 9 steps; always-stay in the career env burns out), also
        when the run's own varied play is no better (a poor heuristic next to
        a better run of the same environment in the store); runs with fewer
        than ``min_other`` episodes of varied play (skipped: a constant
        heuristic alone has nothing to be compared with; audit it together
        with a learner's runs, or name them with ``--reference``). When the
        returns have no spread at all (every episode returns the same), a
        constant policy that matches them is flagged at the top of the scale:
        nothing the agent does changes the return. Judged against the runs in the audit: a store
        holding only a poor policy's runs cannot show that better play
        exists.

    Fix:
        Make the environment or reward demand the observation: add the risk,
        cost or variation that a constant policy ignores (switching risk,
        job availability, a cost per action), or pick a harder regime. Keep a
        constant-policy baseline in every comparison and report learners
        relative to it.
    """
    key, params, how = key_sql(ctx, "action", resolution, declared=True)
    query = f"""
        WITH a AS (SELECT env_index, episode, min(k) = max(k) AS same, min(k) AS key,
                          arg_min(action, global_step) AS first_action
                   FROM (SELECT env_index, episode, global_step, action, {key} AS k FROM steps
                         WHERE run_id = $run_id AND action IS NOT NULL) GROUP BY env_index, episode)
        SELECT e.env_index, e.episode, e.first_global_step, e.last_global_step, e.phase, e.length, e.return,
               a.same AND e.length >= 2 AS constant, CAST(a.key AS VARCHAR) AS key, a.first_action
        FROM episodes e JOIN a USING (env_index, episode)
        WHERE e.run_id = $run_id AND e.termination <> 'unfinished' AND isfinite(e.return)
    """
    rows = ctx.sql(query + " ORDER BY first_global_step, env_index", **params).rows()
    returns = np.array([r[6] for r in rows], float)
    constant = np.array([bool(r[7]) for r in rows], dtype=bool)
    others = returns[~constant]
    pool = returns
    ref_note = ""
    peers = _peers(ctx)
    if peers or (ctx.reference and not ctx.is_reference):
        ref = ctx.reference_sql(
            "SELECT return FROM episodes WHERE (list_contains($reference, run_id) OR list_contains($peers, run_id)) "
            "AND run_id <> $own AND termination <> 'unfinished' AND isfinite(return)",
            peers=peers, own=ctx.run_id).rows()
        if ref:
            ref_returns = np.array([r[0] for r in ref], float)
            others = np.concatenate([others, ref_returns])
            pool = np.concatenate([returns, ref_returns])
            ref_note = f", {len(ref)} of them from other runs of this environment and reward"
    if others.size < min_other:
        ctx.skip(f"needs at least {min_other} finished episodes that use more than one action (here, in other runs "
                 f"of the same environment and reward, or in the reference runs) to compare constant play with; "
                 f"found {others.size}")
    lo, hi = float(np.quantile(pool, 0.1)), float(np.quantile(others, 0.9))
    # no spread: every policy seen returns the same, so a constant one matching it is as good as the best
    width = hi - lo if hi > lo else None
    by_key: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        if r[7]:
            by_key.setdefault(r[8], []).append(i)
    best = None
    for k, idx in by_key.items():
        if len(idx) < min_constant:
            continue
        level = float(np.median(returns[idx]))
        scaled = (level - lo) / width if width else float(level >= hi - resolution * max(1.0, abs(hi)))
        if scaled >= near and (best is None or scaled > best[1]):
            best = (k, scaled, level, idx)
    if best is None:
        return
    k, scaled, level, idx = best
    p = float((1 + (others >= level).sum()) / (others.size + 1))
    first, last = rows[idx[0]], rows[idx[-1]]
    action = first[9]
    envs = {rows[i][0] for i in idx}
    phases = {rows[i][4] for i in idx}
    evidence = ctx.evidence(
        f"SELECT env_index, episode, first_global_step, phase, length, return, first_action AS action "
        f"FROM ({query}) AS ep WHERE constant AND key = $key ORDER BY first_global_step, env_index",
        cap=cap, key=k, **params,
    )
    where = (f"{scaled:.0%} of the way from the 10th percentile of all returns ({num(lo)}) to the 90th percentile "
             f"of the returns of varied play ({num(hi)}, {others.size} episodes{ref_note})") if width else (
             f"what every episode returns: all returns and the 90th percentile of varied play ({others.size} "
             f"episodes{ref_note}) are {num(hi)}")
    yield ctx.finding(
        f"always taking action {action} ({len(idx)} constant episodes) returns a median {num(level)}, {where}; "
        f"expected a constant policy well below the best returns (under {near:.0%})",
        score=float(scaled),
        evidence=evidence,
        p_value=p,
        p_method=f"conformal (against {others.size} episodes of varied play)",
        episode_start=first[1], episode_end=last[1],
        step_start=min(rows[i][2] for i in idx), step_end=max(rows[i][3] for i in idx),
        env_index=next(iter(envs)) if len(envs) == 1 else None,
        phase=next(iter(phases)) if len(phases) == 1 else None,
        actual={"action": action, "constant_episodes": len(idx), "median_return": level, "scaled": scaled,
                "action_key": how},
        expected={"max_scaled": near, "return_p10": lo, "return_p90": hi},
    )
