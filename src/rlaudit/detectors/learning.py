"""Learning-health detectors: what the learning curve, the policy's entropy and the update log show."""

from __future__ import annotations

import math
from typing import Any, Iterator

import numpy as np

from rlaudit.detectors.changepoint import (
    ar1_noise,
    blocks,
    cusum_change,
    null_phi,
    rolling_mean,
    rolling_median,
    segment,
    segment_means,
    true_runs,
)
from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector
from rlaudit.detectors.stats import MAD_TO_SIGMA
from rlaudit.detectors.series import (
    PHASE_FILTER,
    curve_evidence,
    episode_series,
    episodes_at_steps,
    is_learning_run,
    metric_names,
    metric_series,
    num,
    robust_sd,
    training_phase,
)

BOOTSTRAP = "AR(1) parametric bootstrap of the CUSUM statistic (B=499)"


def _action_space(ctx: Context) -> dict[str, Any]:
    spaces = ctx.manifest.get("spaces")
    action = spaces.get("action") if isinstance(spaces, dict) else None
    return action if isinstance(action, dict) else {}


def _positions(ser, env_index: np.ndarray, episode: np.ndarray) -> np.ndarray:
    """Position in ``ser`` of each (env_index, episode); -1 where the series does not hold it."""
    wanted = np.asarray(env_index, dtype=np.int64) * (1 << 40) + np.asarray(episode, dtype=np.int64)
    keys = ser.env_index.astype(np.int64) * (1 << 40) + ser.episode.astype(np.int64)
    if keys.size == 0:
        return np.full(wanted.size, -1)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    i = np.clip(np.searchsorted(sorted_keys, wanted), 0, keys.size - 1)
    return np.where(sorted_keys[i] == wanted, order[i], -1)


# -- policy-collapse -------------------------------------------------------------


@detector("policy-collapse", severity="warning", needs=("action", "episodes"))
def policy_collapse(
    ctx: Context,
    *,
    floor: float = 0.1,
    min_episodes: int = 5,
    min_fraction: float = 0.05,
    min_gain: float = 0.5,
    window_steps: int = 200,
    cap: int = 40,
) -> Iterator[Finding]:
    """The policy became (nearly) deterministic early, before its returns improved.

    Finds:
        Training where the policy's normalised entropy fell from a
        stochastic start to below ``floor`` and stayed there for at least
        ``min_episodes`` episodes (and ``min_fraction`` of the run's
        training episodes), while the returns after the collapse are no
        better than before it (their median improved by less than
        ``min_gain`` robust standard deviations of the pre-collapse
        returns), or abruptly: from at least half its early level to below
        ``floor`` within ``min_episodes`` episodes, whatever the returns did
        (gradual convergence does not look like that). The entropy is the logged ``entropy`` column averaged over
        each training episode, divided by log(number of actions) for a
        Discrete action space; for a continuous action space it is turned
        into the ratio of the policy's geometric-mean standard deviation to
        its early level, exp((H - H_early) / action dimensions). Without an
        ``entropy`` column (or when it is never finite) the entropy of the
        empirical action distribution is used instead, over windows of
        consecutive episodes holding at least ``window_steps`` steps (Discrete
        actions only). Each episode's value is smoothed by a centred running
        median of three episodes. One finding per run, from the first
        episode of the collapse to its end (the run's end if it never
        recovered).

    Why it matters:
        A policy that stops exploring before it has found good behaviour
        stops learning: every later update is computed from the same few
        actions. Premature determinism is the usual outcome of an entropy
        bonus that is too small, a learning rate that is too large, or
        advantages that are not normalised, and it is often mistaken for
        convergence.

    Evidence:
        The entropy curve in global-step windows: per window the steps, the
        first and last episode, the mean (normalised) entropy and the mean
        reward per step; for the action fallback, the share of the most
        frequent action per window. The expected values are the entropy
        floor, the entropy of the early phase and the returns before the
        collapse.

    Not flagged:
        Policies deterministic from the start (heuristics and rule-based
        baselines log entropy 0; their entropy never fell); gradual
        collapses after which the returns clearly improved (convergence, as
        in a DQN whose exploration rate decayed while it learned); evaluation episodes
        (greedy by design); runs with fewer than 10 training episodes;
        action spaces with a single action.

    Fix:
        Raise the entropy coefficient (or the exploration rate and its
        floor), lower the learning rate, normalise advantages, or reset the
        policy head; compare with a run whose entropy stays higher for
        longer. Check that the logged entropy is the behaviour policy's
        (exploration included).
    """
    phase = training_phase(ctx)
    ser = episode_series(ctx, phase)
    if len(ser) < 10:
        ctx.skip(f"needs at least 10 finished training episodes, run has {len(ser)}")
    space = _action_space(ctx)
    discrete = space.get("type") == "Discrete"
    n_actions = space.get("n") if discrete else None
    use_entropy = False
    if ctx.has("entropy"):
        finite = ctx.sql(
            f"SELECT count(*) FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} AND isfinite(entropy)", phase=phase
        ).scalar()
        use_entropy = bool(finite)
    if discrete and not n_actions:  # a Discrete space inferred from the data: its size is not declared
        top = ctx.sql("SELECT max(action) FROM steps WHERE run_id = $run_id").scalar()
        n_actions = int(top) + 1 if top is not None else 0
    if use_entropy:
        t = ctx.sql(
            "SELECT env_index, episode, avg(entropy) AS h FROM steps "
            f"WHERE run_id = $run_id AND {PHASE_FILTER} AND isfinite(entropy) GROUP BY env_index, episode",
            phase=phase,
        ).arrow()
        h = np.full(len(ser), np.nan)
        at = _positions(ser, t.column("env_index").to_numpy(), t.column("episode").to_numpy())
        ok = at >= 0
        h[at[ok]] = t.column("h").to_numpy()[ok]
        keep = np.isfinite(h)
        pos = np.flatnonzero(keep)
        h = h[keep]
        if discrete:
            if not n_actions or n_actions < 2:
                ctx.skip("the action space has a single action: its entropy is always 0")
            norm = h / math.log(n_actions)
            what = f"normalised policy entropy (entropy / log {n_actions})"
        else:
            shape = space.get("shape") or [1]
            dims = max(1, int(np.prod(shape)))
            early = float(np.median(h[: max(3, len(h) // 10)]))
            norm = np.exp((h - early) / dims)
            what = "policy standard deviation relative to its early level"
        starts = ends = pos
    else:
        if not discrete:
            ctx.skip("no entropy column, and the action-distribution fallback needs a Discrete action space")
        counts = ctx.sql(
            f"SELECT env_index, episode, action, count(*) AS n FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} "
            "AND action IS NOT NULL GROUP BY ALL",
            phase=phase,
        ).arrow()
        if n_actions < 2:
            ctx.skip("the action space has a single action: its entropy is always 0")
        at = _positions(ser, counts.column("env_index").to_numpy(), counts.column("episode").to_numpy())
        act = counts.column("action").to_numpy()
        ok = (at >= 0) & (act >= 0) & (act < n_actions)
        hist = np.zeros((len(ser), n_actions))
        np.add.at(hist, (at[ok], act[ok]), counts.column("n").to_numpy()[ok])
        per = max(1, math.ceil(window_steps / max(1.0, float(np.median(ser.length)))))
        starts = np.arange(0, len(ser), per)
        ends = np.minimum(starts + per - 1, len(ser) - 1)
        pooled = np.add.reduceat(hist, starts, axis=0)
        p = pooled / np.maximum(pooled.sum(axis=1, keepdims=True), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            norm = -np.nansum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / math.log(n_actions)
        what = f"entropy of the empirical action distribution over windows of {per} episode(s), normalised by log {n_actions}"
    if norm.size < 4:
        ctx.skip(f"needs at least 4 entropy values, run has {norm.size}")
    smooth = rolling_median(norm, 3)
    early = float(np.median(smooth[: max(3, smooth.size // 10)]))
    if early < floor:
        return  # deterministic from the start: never collapsed
    need = max(min_episodes, math.ceil(min_fraction * len(ser)))
    collapse = None
    for a, b in true_runs(smooth < floor):
        if ends[b] - starts[a] + 1 >= need and a > 0:
            collapse = (a, b)
            break
    if collapse is None:
        return
    a, b = collapse
    onset, end = int(starts[a]), int(ends[b])
    if not use_entropy:
        # refine the onset inside the window before the collapse: the first episode from which each
        # episode's own action entropy stays below the floor
        lo = int(starts[a - 1])
        q = hist[lo:onset] / np.maximum(hist[lo:onset].sum(axis=1, keepdims=True), 1)
        with np.errstate(divide="ignore", invalid="ignore"):
            own = -np.nansum(np.where(q > 0, q * np.log(q), 0.0), axis=1) / math.log(n_actions)
        above = np.flatnonzero(own >= floor)
        onset = lo + (int(above[-1]) + 1 if above.size else 0)
    before, after = ser.ret[:onset], ser.ret[onset:]
    if before.size < 2:
        return
    scale = robust_sd(before) or abs(float(np.median(before))) * 0.1 or 1e-12
    gain = (float(np.median(after)) - float(np.median(before))) / scale
    # abrupt: from at least half the early entropy to below the floor within min_episodes values
    before_fall = float(np.max(smooth[max(0, a - min_episodes) : a]))
    abrupt = before_fall >= 0.5 * early
    if gain >= min_gain and not abrupt:
        return  # the returns clearly improved while the entropy decayed: convergence, not premature collapse
    low = float(np.median(smooth[a : b + 1]))
    width = max(1, math.ceil((int(ser.last_step[-1]) + 1) / 40))
    if use_entropy:
        scale_sql = f"/ ln({n_actions})" if discrete else ""
        evidence = ctx.evidence(
            "SELECT CAST(floor(global_step / $width) AS BIGINT) AS step_window, count(*) AS steps, "
            "min(episode) AS first_episode, max(episode) AS last_episode, "
            f"round(avg(entropy) {scale_sql}, 6) AS entropy, round(avg(reward), 6) AS mean_reward "
            f"FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} AND isfinite(entropy) GROUP BY step_window ORDER BY step_window",
            cap=cap, width=width, phase=phase,
        )
    else:
        evidence = ctx.evidence(
            "WITH c AS (SELECT CAST(floor(global_step / $width) AS BIGINT) AS step_window, action, count(*) AS n, "
            "min(episode) AS e0, max(episode) AS e1 "
            f"FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} AND action IS NOT NULL GROUP BY step_window, action), "
            "t AS (SELECT *, sum(n) OVER (PARTITION BY step_window) AS total FROM c) "
            "SELECT step_window, sum(n) AS steps, min(e0) AS first_episode, max(e1) AS last_episode, "
            "round(-sum(n / total * ln(n / total)) / ln($n_actions), 6) AS entropy, "
            "arg_max(action, n) AS top_action, round(max(n) / any_value(total), 6) AS top_share "
            "FROM t GROUP BY step_window ORDER BY step_window",
            cap=cap, width=width, phase=phase, n_actions=n_actions,
        )
    span = ser.span(onset, end)
    returns = f"{num(float(np.median(before)))} before, {num(float(np.median(after)))} after"
    why = (f"while the median return did not improve ({returns}; expected a gain of at least {min_gain:g} robust SDs "
           f"before the policy turns deterministic)") if gain < min_gain else (
           f"falling from {num(before_fall)} within {min_episodes} {'episodes' if use_entropy else 'windows'} "
           f"(median return {returns}; expected a gradual decay, as exploration converges, not a collapse)")
    yield ctx.finding(
        f"{what} fell to {num(low)} at episode {span['episode_start']} (from {num(early)} early) and stayed below "
        f"{floor:g} for {end - onset + 1} episodes, {why}",
        score=float(early - low),
        evidence=evidence,
        **span,
        actual={"entropy_after": low, "episodes_collapsed": end - onset + 1, "median_return_before": float(np.median(before)),
                "median_return_after": float(np.median(after)), "return_gain_sd": gain,
                "entropy_before_fall": before_fall, "abrupt": abrupt,
                "source": "entropy" if use_entropy else "actions"},
        expected={"entropy_floor": floor, "entropy_early": early, "min_return_gain_sd": min_gain},
    )


# -- regime-shift ----------------------------------------------------------------


def _significant_changes(y: np.ndarray, *, alpha: float, min_shift: float, min_segment: int, max_points: int):
    yb, size = blocks(y, max_points)
    changes = segment(yb, alpha=alpha, min_size=max(2, math.ceil(min_segment / size)), min_shift=min_shift)
    return yb, size, changes


@detector("regime-shift", severity="warning", needs=("episodes",))
def regime_shift(
    ctx: Context,
    *,
    alpha: float = 0.01,
    min_shift: float = 1.0,
    min_segment: int = 5,
    min_episodes: int = 20,
    max_points: int = 2000,
    cap: int = 50,
) -> Iterator[Finding]:
    """Abrupt changes in the level of the returns (or of the episode lengths) that learning does not explain.

    Finds:
        Change points in the per-episode training returns: binary
        segmentation with the offline CUSUM test, each split kept when its
        shift is at least ``min_shift`` residual standard deviations, both
        sides hold at least ``min_segment`` episodes, and its p-value is
        below ``alpha``. The p-value accounts for autocorrelation: the
        statistic is scaled by the long-run standard deviation of the
        residuals (lag-1 autocorrelation, bias-corrected) and calibrated by a
        parametric AR(1) bootstrap of the no-change null. In a learning run
        (the policy version changes, or training metrics were logged)
        upward shifts are learning and only count after a downward one:
        a fall in returns, or a curve that rises and falls again
        (oscillation). In a run whose policy is fixed (a heuristic, a frozen
        policy) every shift counts, and the episode lengths are tested the
        same way (a change in the dynamics). Series longer than
        ``max_points`` episodes are averaged over consecutive blocks first.
        One finding per run, from the first change to the end of the
        changed regime (the run's end unless the level came back).

    Why it matters:
        A learning curve that changes level abruptly means the data
        distribution changed under the learner: a non-stationary environment
        (a market regime, a curriculum step, a bug in a reset), a policy that
        oscillates between behaviours, or an update that broke the policy.
        Averages over such a run describe none of its regimes.

    Evidence:
        The learning curve in global-step windows (episodes, mean, min and
        max return per window); the change points with their episodes, the
        segment means and the p-values are in the finding's actual values.

    Not flagged:
        Gradual trends (the residual autocorrelation absorbs them); the
        improvement of a learning run; shifts smaller than ``min_shift``
        residual standard deviations; runs with fewer than ``min_episodes``
        finished training episodes; evaluation episodes.

    Fix:
        Look up what changed at the onset: the environment's parameters or
        curriculum, the learning-rate schedule, the replay buffer contents,
        the exploration schedule. Replay episodes from just before and just
        after the onset with the same policy to tell environment changes from
        policy changes; for oscillation, lower the learning rate or the
        target-network update rate.
    """
    phase = training_phase(ctx)
    ser = episode_series(ctx, phase)
    if len(ser) < min_episodes:
        ctx.skip(f"needs at least {min_episodes} finished training episodes, run has {len(ser)}")
    learner = is_learning_run(ctx)
    streams = [("return", ser.ret)] + ([] if learner else [("length", ser.length.astype(float))])
    flagged: list[tuple[str, int, Any, int]] = []  # (stream, episode position, change, block size)
    detail = []
    for stream, y in streams:
        yb, size, changes = _significant_changes(y, alpha=alpha, min_shift=min_shift, min_segment=min_segment,
                                                 max_points=max_points)
        kept = changes
        if learner:
            first_down = next((i for i, c in enumerate(changes) if c.shift < 0), None)
            kept = [] if first_down is None else changes[first_down:]
        for c in kept:
            flagged.append((stream, c.index * size, c, size))
        if kept:
            detail.append((stream, size, segment_means(yb, changes)))
    if not flagged:
        return
    flagged.sort(key=lambda f: f[1])
    stream0, onset, first, _ = flagged[0]
    # the changed regime ends where the level came back to the one before the onset, else at the run's end
    end = len(ser) - 1
    for stream, size, segs in detail:
        if stream == stream0:
            before = next((m for a, b, m in segs if b * size == onset), segs[0][2])
            last_a, _, last_m = segs[-1]
            if last_a * size > onset and abs(last_m - before) < min_shift * first.sd:
                end = last_a * size - 1
    ups = sum(1 for f in flagged if f[2].shift > 0)
    downs = len(flagged) - ups
    oscillating = ups >= 1 and downs >= 2 or downs >= 1 and ups >= 2
    span = ser.span(onset, end)
    kinds = ", ".join(f"{s} {'up' if c.shift > 0 else 'down'} at episode {int(ser.episode[min(i, len(ser) - 1)])}"
                      for s, i, c, _ in flagged[:6])
    yield ctx.finding(
        f"{'oscillating' if oscillating else 'abrupt'} change{'s' if len(flagged) > 1 else ''} in the {stream0} level "
        f"from episode {span['episode_start']}: {first.before:.4g} -> {first.after:.4g} "
        f"({abs(first.shift) / first.sd if first.sd else math.inf:.3g} residual SDs, p = {first.p_value:.3g}); "
        f"{len(flagged)} change point{'s' if len(flagged) > 1 else ''} ({kinds}); expected a stationary level"
        + (" apart from learning" if learner else ""),
        score=float(first.shift_sd if math.isfinite(first.shift_sd) else 1e9),
        evidence=curve_evidence(ctx, phase, int(ser.last_step[-1]), cap=cap),
        p_value=first.p_value,
        p_method=BOOTSTRAP,
        **span,
        actual={"stream": stream0, "level_before": first.before, "level_after": first.after, "shift_sd": first.shift_sd,
                "residual_sd": first.sd, "lag1_autocorrelation": first.phi, "changes": len(flagged),
                "change_points": [{"stream": s, "episode": int(ser.episode[min(i, len(ser) - 1)]),
                                   "shift": c.shift, "p_value": c.p_value} for s, i, c, _ in flagged],
                "oscillating": oscillating, "learning_run": learner},
        expected={"alpha": alpha, "min_shift_sd": min_shift, "min_segment_episodes": min_segment},
    )


# -- performance-collapse ----------------------------------------------------------


@detector("performance-collapse", severity="warning", needs=("episodes",))
def performance_collapse(
    ctx: Context,
    *,
    alpha: float = 0.01,
    min_drop: float = 0.3,
    min_shift: float = 2.0,
    min_segment: int = 5,
    smooth: float = 0.05,
    min_episodes: int = 20,
    max_points: int = 2000,
    cap: int = 50,
) -> Iterator[Finding]:
    """Returns fell from the best level the run reached and did not come back (forgetting).

    Finds:
        The learning curve (per-episode training returns) is smoothed by
        a centred running mean over ``smooth`` of the episodes (at least
        3); from its peak, the stretch that stays above halfway between the
        peak and the final level is the best level. A collapse is a single
        mean change in the curve from the start of that stretch to the end
        of the run (offline CUSUM) downwards, whose p-value is below
        ``alpha`` (autocorrelation-aware: long-run residual scale, and a
        parametric AR(1) bootstrap of the no-change null that repeats the
        whole search, since starting at the curve's peak makes any later
        stretch look lower), whose drop is at
        least ``min_shift`` residual standard deviations and at least
        ``min_drop`` of the distance the run had climbed (best level minus
        the lowest smoothed level before it; a run that started at its best
        only needs the first condition), with segments of at least
        ``min_segment`` episodes, and which is not recovered (the final
        smoothed level is still below the best level minus half the drop).
        One finding per run, from the first episode after the change to the
        run's end. Series longer than ``max_points`` episodes are averaged
        over blocks first.

    Why it matters:
        A run that loses what it had learned ends with a worse policy than
        one it held earlier: catastrophic forgetting, a collapse after the
        replay buffer lost its good episodes, a learning rate too high for
        late training, or a value function that diverged. The final
        checkpoint is then the wrong one to deploy or compare.

    Evidence:
        The learning curve in global-step windows (episodes, mean, min and
        max return per window). The best level, the final level, the drop
        and the p-value of the change are the actual values.

    Not flagged:
        Dips that recovered (the last segment is back near the best level;
        see ``regime-shift``); drops within the noise; runs whose returns
        never changed level; runs with fewer than ``min_episodes`` finished
        training episodes; evaluation episodes.

    Fix:
        Keep the best checkpoint (evaluate periodically) and compare its
        policy with the final one on the same reset seeds. Lower the
        learning rate late in training (a schedule), enlarge or prioritise
        the replay buffer, use target networks or smaller target updates,
        and check ``value-explosion`` and ``training-instability`` for the
        cause.
    """
    phase = training_phase(ctx)
    ser = episode_series(ctx, phase)
    if len(ser) < min_episodes:
        ctx.skip(f"needs at least {min_episodes} finished training episodes, run has {len(ser)}")
    yb, size = blocks(ser.ret, max_points)
    n = yb.size
    w = max(3, round(smooth * n))
    min_size = max(2, math.ceil(min_segment / size))
    found = _collapse(yb, w, min_size, min_shift, min_drop)
    if found is None:
        return
    lo, change, climbed, final = found
    if change.p_value >= alpha:
        return
    p = _collapse_p(change, n, w, min_size, min_shift, min_drop)
    if p >= alpha:
        return
    onset_block = lo + change.index
    best_level, after_level = change.before, change.after
    drop = best_level - after_level
    onset = onset_block * size
    span = ser.span(onset, len(ser) - 1)
    sd = change.sd
    yield ctx.finding(
        f"returns collapsed after the best level {num(best_level)} (episodes {int(ser.episode[lo * size])}–"
        f"{int(ser.episode[onset - 1])}): from episode {span['episode_start']} they fell to {num(after_level)} and stayed "
        f"low to the end of the run (drop {num(drop)}, {drop / sd if sd else math.inf:.3g} residual SDs, "
        f"{drop / climbed if climbed > 0 else math.inf:.3g} of the climb; p = {p:.3g}); "
        f"expected the run to keep its best level",
        score=float(drop / sd) if sd else 1e9,
        evidence=curve_evidence(ctx, phase, int(ser.last_step[-1]), cap=cap),
        p_value=p,
        p_method=BOOTSTRAP_SEARCH,
        **span,
        actual={"best_level": best_level, "level_after": after_level, "final_level": final, "drop": drop,
                "drop_sd": drop / sd if sd else None, "drop_of_climb": drop / climbed if climbed > 0 else None,
                "residual_sd": sd, "lag1_autocorrelation": change.phi},
        expected={"min_drop_of_climb": min_drop, "min_shift_sd": min_shift, "alpha": alpha},
    )


def _collapse(y: np.ndarray, w: int, min_size: int, min_shift: float, min_drop: float):
    """(start of the best stretch, the downward change after it, the climb, the final level), or None."""
    n = y.size
    curve = rolling_mean(y, w)
    peak = int(np.argmax(curve))
    final = float(y[-w:].mean())
    if peak >= n - w or final >= curve[peak]:
        return None
    # the stretch at (near) the best level: back from the peak while the curve stays above halfway to the final level
    half = (curve[peak] + final) / 2.0
    lo = peak
    while lo > 0 and curve[lo - 1] >= half:
        lo -= 1
    change = cusum_change(y[lo:], min_size)
    if change is None or change.shift >= 0:
        return None
    drop = change.before - change.after
    climbed = change.before - float(curve[: lo + 1].min())
    if drop < min_shift * change.sd or (climbed > 0 and drop < min_drop * climbed):
        return None
    if final > change.before - 0.5 * drop:
        return None  # recovered by the end of the run
    return lo, change, climbed, final


def _collapse_p(change, n: int, w: int, min_size: int, min_shift: float, min_drop: float,
                resamples: int = 199) -> float:
    """p-value of a collapse against AR(1) series without one, the search for the peak included.

    Each resample runs the whole procedure of :func:`_collapse` (smoothing,
    peak, best stretch, CUSUM after it); a resample where it finds nothing
    scores 0. Choosing the start at the curve's peak makes any later stretch
    look lower, so the plain CUSUM p-value of the chosen stretch would be
    too small.
    """
    e = ar1_noise(null_phi(change.phi, n), resamples, n, seed=n)
    exceed = 0
    for row in e:
        got = _collapse(row, w, min_size, min_shift, min_drop)
        if got is not None and got[1].statistic >= change.statistic:
            exceed += 1
    return (1 + exceed) / (resamples + 1)


BOOTSTRAP_SEARCH = "AR(1) parametric bootstrap of the whole peak search and CUSUM (B=199)"


# -- sparse-reward-stall ---------------------------------------------------------------


@detector("sparse-reward-stall", severity="warning", needs=("episodes", "reward"))
def sparse_reward_stall(
    ctx: Context,
    *,
    max_informative: float = 0.05,
    min_progress: float = 0.5,
    min_episodes: int = 20,
    cap: int = 10,
) -> Iterator[Finding]:
    """The reward almost never says anything, and training made no progress (credit-assignment failure).

    Finds:
        Learning runs (the policy version changes, or training metrics
        were logged) whose training reward equals one value (its most
        common value, usually 0) on all but at most ``max_informative`` of
        the steps (when that value is not 0, such as a constant -1 or +1
        per step, the episode returns must also be equal on all but
        ``max_informative`` of the episodes: a constant alive bonus informs
        through the episode length), and whose returns did not improve: the mean return of the
        last third of the training episodes exceeds that of the first third
        by less than ``min_progress`` pooled standard deviations. One finding
        per run, spanning the whole training phase.

    Why it matters:
        When almost every step pays the same, the learner sees no gradient
        until it stumbles on the rare informative outcome, and then has to
        credit it to decisions made many steps earlier. Without progress the
        run has learned nothing, whatever its losses say: more steps of the
        same setup rarely help.

    Evidence:
        The training episodes in thirds (episodes, first and last episode
        and step, mean return, episodes with an informative reward). The
        informative-step fraction, the mode of the reward and the progress
        in pooled standard deviations are the actual values.

    Not flagged:
        Dense rewards (more than ``max_informative`` of the steps differ from
        the mode); sparse-reward runs whose returns improved; runs of a fixed
        policy (heuristics, random baselines: they are not trying to learn),
        skipped with the reason; runs with fewer than ``min_episodes``
        finished training episodes.

    Fix:
        Add a dense, potential-based shaping term or intermediate milestones
        (and check with ``reward-hacking`` that they do not replace the
        task), use n-step returns or eligibility traces, hindsight relabelling
        for goal tasks, an exploration bonus (count- or curiosity-based), or
        a curriculum that starts near the goal.
    """
    if not is_learning_run(ctx):
        ctx.skip("not a learning run: the policy version never changed and no training metrics were logged")
    phase = training_phase(ctx)
    ser = episode_series(ctx, phase)
    if len(ser) < min_episodes:
        ctx.skip(f"needs at least {min_episodes} finished training episodes, run has {len(ser)}")
    n, distinct = ctx.sql(
        f"SELECT count(*), approx_count_distinct(reward) FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} "
        "AND isfinite(reward)",
        phase=phase,
    ).one()
    if not n or distinct > 64:
        return  # a dense reward takes many values
    mode, mode_n = ctx.sql(
        f"SELECT reward, count(*) AS c FROM steps WHERE run_id = $run_id AND {PHASE_FILTER} AND isfinite(reward) "
        "GROUP BY reward ORDER BY c DESC, reward LIMIT 1",
        phase=phase,
    ).one()
    informative = 1.0 - mode_n / n
    if informative > max_informative:
        return
    if mode != 0:
        # a constant non-zero reward (CartPole's +1 alive bonus) informs through the episode length:
        # sparse only when the returns themselves hardly vary
        returns, common = ctx.sql(
            f"SELECT sum(c), max(c) FROM (SELECT count(*) AS c FROM episodes WHERE run_id = $run_id AND {PHASE_FILTER} "
            "AND termination <> 'unfinished' GROUP BY return)",
            phase=phase,
        ).one()
        if not returns or 1.0 - common / returns > max_informative:
            return
    third = max(1, len(ser) // 3)
    first, last = ser.ret[:third], ser.ret[-third:]
    pooled = math.sqrt((float(first.var()) + float(last.var())) / 2.0)
    diff = float(last.mean() - first.mean())
    progress = diff / pooled if pooled > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    if progress >= min_progress:
        return
    evidence = ctx.evidence(
        "WITH e AS (SELECT *, ntile(3) OVER (ORDER BY last_global_step, env_index) AS third FROM episodes "
        f"WHERE run_id = $run_id AND {PHASE_FILTER} AND termination <> 'unfinished' AND isfinite(return)) "
        "SELECT third, count(*) AS episodes, min(episode) AS first_episode, max(episode) AS last_episode, "
        "min(first_global_step) AS first_step, max(last_global_step) AS last_step, round(avg(return), 6) AS mean_return, "
        "count(*) FILTER (WHERE return <> $mode * length) AS episodes_with_signal FROM e GROUP BY third ORDER BY third",
        cap=cap, phase=phase, mode=mode,
    )
    span = ser.span(0, len(ser) - 1)
    yield ctx.finding(
        f"the reward differs from {num(mode)} on only {informative:.2%} of {n:,} training steps, and the returns did not "
        f"improve: mean {num(float(first.mean()))} in the first third of the episodes, {num(float(last.mean()))} in the "
        f"last ({progress:.3g} pooled SDs; expected at least {min_progress:g})",
        score=float(min_progress - progress) if math.isfinite(progress) else float(min_progress),
        evidence=evidence,
        **span,
        actual={"informative_fraction": informative, "reward_mode": mode, "steps": n,
                "mean_return_first_third": float(first.mean()), "mean_return_last_third": float(last.mean()),
                "progress_sd": progress if math.isfinite(progress) else None},
        expected={"max_informative_fraction": max_informative, "min_progress_sd": min_progress},
    )


# -- training-instability -------------------------------------------------------------


def _blowup(v: np.ndarray, factor: float, need: int) -> tuple[int, int, float] | None:
    """The first sustained jump of ``v`` above ``factor`` times its level just before: (first, last, level).

    ``v`` is cut into blocks (2% of the updates, at least 5); a block whose
    median exceeds ``factor`` times the median of the last block that did not
    is blown, and the level stays frozen while blocks are blown. A slow rise
    (a value loss growing with the returns) moves the level along with it; a
    jump does not. Consecutive blown blocks covering at least ``need`` updates
    are reported, trimmed to the first and last update above the limit.
    """
    block = max(5, v.size // 50)
    nb = v.size // block
    if nb < 2:
        return None
    med = np.median(v[: nb * block].reshape(nb, block), axis=1)
    ref = med[0]
    run_start, run_ref = None, ref
    for b in range(1, nb + 1):
        hot = b < nb and ref > 0 and med[b] > factor * ref
        if hot and run_start is None:
            run_start, run_ref = b, ref
        if not hot:
            if run_start is not None and (b - run_start) * block >= need:
                lo, hi = run_start * block, b * block - 1
                if b == nb:
                    hi = v.size - 1
                above = np.flatnonzero(v[lo : hi + 1] > factor * run_ref) + lo
                return int(above[0]), int(above[-1]), float(run_ref)
            run_start = None
            if b < nb:
                ref = med[b]
    return None


def _sustained(mask: np.ndarray, need: int) -> tuple[int, int] | None:
    """The first run of True at least ``need`` long."""
    for a, b in true_runs(mask):
        if b - a + 1 >= need:
            return a, b
    return None


@detector("training-instability", severity="warning", needs=("metrics",))
def training_instability(
    ctx: Context,
    *,
    kl_max: float = 0.1,
    clip_max: float = 0.3,
    ev_min: float = 0.0,
    grad_z: float = 8.0,
    grad_window: int = 100,
    loss_blowup: float = 100.0,
    sustained: float = 0.05,
    min_sustained: int = 10,
    warmup: float = 0.1,
    cap: int = 30,
) -> Iterator[Finding]:
    """Optimisation going wrong, read from the metrics table: KL spikes, clipping, value-function failure, gradient and loss blow-ups.

    Finds:
        One finding per condition, each spanning its first to its last
        update (global_step, and the episodes containing them):

        - PPO KL spikes: updates whose ``approx_kl`` exceeds ``kl_max``
          (healthy PPO stays near 0.005–0.02; Stable-Baselines3 stops an
          epoch at 1.5 × target_kl).
        - Sustained clipping: ``clip_fraction`` above ``clip_max`` for a run
          of consecutive updates (healthy: 0.05–0.2 at clip range 0.2).
        - Value function not learning: ``explained_variance`` below
          ``ev_min`` for a run of consecutive updates after the warm-up.
        - Gradient-norm outliers: updates whose log ``grad_norm`` lies more
          than ``grad_z`` robust standard deviations (MAD) above the median
          of the previous block of ``grad_window`` updates.
        - Loss blow-up: ``loss`` (or ``value_loss``) jumps above
          ``loss_blowup`` times its level just before and stays there for a
          run of consecutive updates (levels are medians of blocks of 2% of
          the updates; a loss that rises slowly with the returns moves its
          level along and is not a blow-up).

        "A run of consecutive updates" means at least ``sustained`` of the
        updates and at least ``min_sustained``; the warm-up is the first
        ``warmup`` of the updates (at least 10). Metric names are read in
        rlaudit's style (``approx_kl``) and Stable-Baselines3's
        (``train/approx_kl``); ``grad_norm`` should be the norm before
        clipping.

    Why it matters:
        These are the standard failure signals of policy-gradient and
        value-based training. Large KL steps and heavy clipping mean the
        policy moves further per update than its trust region allows; a
        negative explained variance means the critic predicts returns worse
        than a constant, so advantages are noise; gradient and loss blow-ups
        precede NaNs, value divergence and performance collapse.

    Evidence:
        The offending updates (global_step, metric name, value), in step
        order, with the threshold they crossed in the expected values.

    Not flagged:
        Single transient loss spikes (DQN losses jump at every target
        update; only sustained blow-ups count); metrics the run did not log
        (each check runs only on what is there); non-finite metric values
        (left to ``non-finite``); runs with fewer than 10 logged updates of a
        metric, except for the KL check, whose limit is absolute (a short run
        of a few PPO updates is judged on its KL alone).

    Fix:
        KL spikes and clipping: lower the learning rate or the number of
        epochs per rollout, set target_kl, enlarge the minibatch. Negative
        explained variance: normalise returns or rewards, raise the value
        loss coefficient, check the value targets and GAE settings. Gradient
        outliers and loss blow-ups: clip gradients, lower the learning rate,
        use a Huber loss and reward scaling; then look for the first NaN.
    """
    checks: list[dict[str, Any]] = []

    def need_for(n: int) -> int:
        return max(min_sustained, math.ceil(sustained * n))

    def warm(n: int) -> int:
        return min(n, max(10, math.ceil(warmup * n)))

    kl = metric_series(ctx, metric_names("approx_kl"))
    if kl and kl[1].size:  # an absolute trust-region limit: needs no history
        name, steps, v = kl
        idx = np.flatnonzero(v > kl_max)
        if idx.size:
            checks.append(dict(kind="kl", name=name, steps=steps[idx], values=v[idx], cond="value > $limit", limit=kl_max,
                               text=f"{idx.size:,} of {v.size:,} updates have {name} above {kl_max:g} "
                                    f"(max {num(float(v.max()))}); expected at most {kl_max:g}",
                               score=float(v.max() / kl_max)))
    clip = metric_series(ctx, metric_names("clip_fraction"))
    if clip and clip[1].size >= 10:
        name, steps, v = clip
        run = _sustained(v > clip_max, need_for(v.size))
        if run:
            a, b = run
            checks.append(dict(kind="clip", name=name, steps=steps[a : b + 1], values=v[a : b + 1], cond="value > $limit",
                               limit=clip_max, lo=steps[a], hi=steps[b],
                               text=f"{name} stayed above {clip_max:g} for {b - a + 1:,} consecutive updates "
                                    f"(median {num(float(np.median(v[a:b + 1])))}); expected at most {clip_max:g}",
                               score=float(np.median(v[a : b + 1]) / clip_max)))
    ev = metric_series(ctx, metric_names("explained_variance"))
    if ev and ev[1].size >= 10:
        name, steps, v = ev
        w = warm(v.size)
        run = _sustained(v[w:] < ev_min, need_for(v.size))
        if run:
            a, b = run[0] + w, run[1] + w
            checks.append(dict(kind="ev", name=name, steps=steps[a : b + 1], values=v[a : b + 1], cond="value < $limit",
                               limit=ev_min, lo=steps[a], hi=steps[b],
                               text=f"{name} stayed below {ev_min:g} for {b - a + 1:,} consecutive updates after the "
                                    f"warm-up (median {num(float(np.median(v[a:b + 1])))}); expected the critic to "
                                    f"explain the returns", score=float(ev_min - np.median(v[a : b + 1]))))
    grad = metric_series(ctx, metric_names("grad_norm"))
    if grad and grad[1].size > grad_window:
        name, steps, v = grad
        lg = np.log(np.maximum(np.abs(v), 1e-30))
        # each update against the median and MAD of the previous block of grad_window updates
        nb = lg.size // grad_window
        blk = lg[: nb * grad_window].reshape(nb, grad_window)
        med = np.median(blk, axis=1)
        mad = np.median(np.abs(blk - med[:, None]), axis=1) * MAD_TO_SIGMA
        prev = np.arange(grad_window, lg.size) // grad_window - 1
        z = (lg[grad_window:] - med[prev]) / np.maximum(mad[prev], 1e-6)
        idx = np.flatnonzero(z > grad_z) + grad_window
        if idx.size:
            floor_ratio = float(np.exp(grad_z * np.median(mad)))
            checks.append(dict(kind="grad", name=name, steps=steps[idx], values=v[idx],
                               cond="list_contains($outliers, global_step)", limit=float(np.min(v[idx])),
                               text=f"{idx.size:,} of {v.size:,} updates have an outlying {name} (largest "
                                    f"{num(float(v[idx].max()))}, robust z up to {float(z.max()):.3g} against the "
                                    f"previous {grad_window} updates); expected log {name} within {grad_z:g} MADs "
                                    f"(about ×{floor_ratio:.3g}) of its recent median",
                               score=float(z.max())))
    loss = metric_series(ctx, metric_names("loss") + metric_names("value_loss"))
    if loss and loss[1].size >= 10:
        name, steps, v = loss
        blown = _blowup(np.abs(v), loss_blowup, need_for(v.size))
        if blown:
            a, b, base = blown
            checks.append(dict(kind="loss", name=name, steps=steps[a : b + 1], values=v[a : b + 1],
                               cond="abs(value) > $limit", limit=loss_blowup * base, lo=steps[a], hi=steps[b],
                               text=f"{name} jumped above {loss_blowup:g} × its preceding level {num(base)} and stayed "
                                    f"there for {b - a + 1:,} updates (median {num(float(np.median(np.abs(v[a:b + 1]))))}); "
                                    f"expected no sustained jump of that size", score=float(np.median(np.abs(v[a : b + 1])) / base)))
    for c in checks:
        s0, s1 = int(c.get("lo", c["steps"].min())), int(c.get("hi", c["steps"].max()))
        e0, e1 = episodes_at_steps(ctx, [s0, s1])
        params: dict[str, Any] = {"name": c["name"], "s0": s0, "s1": s1}
        if "$outliers" in c["cond"]:
            params["outliers"] = [int(x) for x in c["steps"]]
        else:
            params["limit"] = float(c["limit"])
        evidence = ctx.evidence(
            "SELECT global_step, name, value FROM metrics WHERE run_id = $run_id AND name = $name AND isfinite(value) "
            f"AND global_step BETWEEN $s0 AND $s1 AND {c['cond']} ORDER BY global_step",
            cap=cap, **params,
        )
        yield ctx.finding(
            c["text"],
            score=c["score"],
            evidence=evidence,
            step_start=s0,
            step_end=s1,
            episode_start=e0,
            episode_end=e1,
            actual={"check": c["kind"], "metric": c["name"], "updates": int(c["steps"].size),
                    "max": float(np.max(c["values"])), "min": float(np.min(c["values"]))},
            expected={"limit": float(c["limit"])},
        )
