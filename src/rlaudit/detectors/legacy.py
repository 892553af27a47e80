"""Legacy profiles: the rules of rlaudit's two predecessors, with their thresholds and their alarm counts.

``--preset legacy-rfl`` reproduces RL Failure Lab's four failure detectors as
its experiment runner used them (fed once per episode with the return, the
final burnout, the agent's entropy and the episode's last action; one
``detect`` call per episode, which reports the first rule that fires and
fires again on every episode while the condition holds).
``--preset legacy-rewardscope`` reproduces RewardScope's five step-level
detectors (per step, with their spam guards, windows and episode resets).
RewardScope's second layer (adaptive baselines that suppress or confirm
alerts) is not reproduced: these detectors raise every alert of its first
layer, i.e. its behaviour with ``use_adaptive_baselines=False``.

Each alarm of the original is one finding here (one per episode or per
alerting step), whose summary names the original rule and whose ``actual``
holds the original's signal values and severity, so that the alarms can be
compared one to one with rlaudit's own detectors. They are not part of the
``all`` preset. Their defects are reproduced on purpose; see
docs/failure-playbook.md and the predecessors' notes for what each one gets
wrong.
"""

from __future__ import annotations

import math
from collections import Counter, deque
from typing import Any, Iterator

import numpy as np

from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector

#: RL Failure Lab severities -> rlaudit tiers.
RFL_SEVERITY = {"low": "info", "medium": "warning", "high": "critical", "critical": "critical"}


def _episodes(ctx: Context, extra: str = "") -> list[tuple]:
    """(env_index, episode, return, first_global_step, last_global_step, *extra) per training episode, in order."""
    return ctx.sql(
        "SELECT env_index, episode, return, first_global_step, last_global_step" + extra
        + " FROM episodes WHERE run_id = $run_id AND phase = 'train' ORDER BY first_global_step, env_index"
    ).rows()


def _alarm(ctx: Context, rule: str, summary: str, severity: str, *, episode: int | None, env_index: int | None,
           step: int | None, score: float, actual: dict, expected: dict, cap: int, count: list[int]) -> Finding | None:
    count[0] += 1
    if count[0] > cap:
        return None
    return ctx.finding(
        f"{rule}: {summary}", score=score, severity=severity, episode_start=episode, episode_end=episode,
        step_start=step, step_end=step, env_index=env_index,
        actual={"original_rule": rule, **actual}, expected=expected,
    )


def _final_burnout(ctx: Context, column: str) -> dict[tuple[int, int], float]:
    struct, _, leaf = column.partition(".")
    rows = ctx.sql(
        f'SELECT env_index, episode, arg_max("{struct}"."{leaf}", t) FROM steps '
        "WHERE run_id = $run_id AND phase = 'train' GROUP BY env_index, episode"
    ).rows()
    return {(e, k): (0.0 if v is None else float(v)) for e, k, v in rows}


# ---------------------------------------------------------------------------
# RL Failure Lab
# ---------------------------------------------------------------------------


@detector("legacy-rfl-reward-hacking", severity="critical", needs=("episodes", "info.burnout"))
def rfl_reward_hacking(ctx: Context, *, window: int = 50, min_correlation_samples: int = 30,
                       suspicious_ratio: float = 0.3, cap: int = 10_000) -> Iterator[Finding]:
    """RL Failure Lab's RewardHackingDetector: high return with high final burnout, or return anti-correlated with a good outcome.

    Finds:
        Per training episode (fed the return and the final ``info.burnout``),
        once ``min_correlation_samples`` episodes are in the ``window``: rule 1
        (HIGH) when the cumulative count of episodes with return > 0.5 and
        burnout > 0.6, divided by the window length, exceeds
        ``suspicious_ratio``; otherwise rule 2 (CRITICAL) when the Pearson
        correlation of the windowed returns with the outcome (1 when burnout <
        0.5 and return > 0) is below -0.3. Defaults are those of RL Failure
        Lab's experiment runner (window 50, minimum 30).

    Why it matters:
        It reproduces the predecessor's alarms one to one, so a user can see
        which of its alarms rlaudit's reward-hacking detector confirms.

    Evidence:
        One finding per alarmed episode with the rule, the suspicious ratio or
        correlation, and the windowed mean return and burnout.

    Not flagged:
        Episodes before the window holds the minimum; correlations that are
        undefined (a constant series), as in the original. The counter is
        cumulative and never windowed, as in the original, so the ratio can
        exceed 1.

    Fix:
        Compare with ``reward-hacking``: it tests the proxy return against the
        auditor signal with a change-point and trend test rather than fixed
        absolute thresholds.
    """
    burnout = _final_burnout(ctx, "info.burnout")
    rewards: deque = deque(maxlen=window)
    burnouts: deque = deque(maxlen=window)
    outcomes: deque = deque(maxlen=window)
    suspicious, count = 0, [0]
    for env, ep, ret, s0, s1 in _episodes(ctx):
        r, b = float(ret), burnout.get((env, ep), 0.0)
        rewards.append(r)
        burnouts.append(b)
        if r > 0.5 and b > 0.6:
            suspicious += 1
        outcomes.append(1.0 if (b < 0.5 and r > 0) else 0.0)
        if len(rewards) < min_correlation_samples:
            continue
        ratio = suspicious / len(rewards)
        found = None
        if ratio > suspicious_ratio:
            found = ("RewardHackingDetector rule 1 (suspicious ratio)", "high",
                     f"suspicious-episode ratio {ratio:.3g} > {suspicious_ratio:g}", ratio, {"suspicious_ratio": ratio})
        else:
            x, y = np.asarray(rewards), np.asarray(outcomes)
            if x.std() > 0 and y.std() > 0:
                corr = float(np.corrcoef(x, y)[0, 1])
                if corr < -0.3:
                    found = ("RewardHackingDetector rule 2 (reward-outcome correlation)", "critical",
                             f"correlation of return and good outcome {corr:.3g} < -0.3", -corr, {"correlation": corr})
        if found:
            rule, sev, text, score, signal = found
            f = _alarm(ctx, rule, text, RFL_SEVERITY[sev], episode=ep, env_index=env, step=s1, score=score,
                       actual={**signal, "original_severity": sev, "mean_reward": float(np.mean(rewards)),
                               "mean_burnout": float(np.mean(burnouts))},
                       expected={"suspicious_ratio": suspicious_ratio, "correlation": -0.3}, cap=cap, count=count)
            if f:
                yield f


@detector("legacy-rfl-policy-collapse", severity="critical", needs=("episodes", "action"))
def rfl_policy_collapse(ctx: Context, *, entropy_threshold: float = 0.1, dominance_threshold: float = 0.95,
                        min_samples: int = 50, n_actions: int = 2, cap: int = 10_000) -> Iterator[Finding]:
    """RL Failure Lab's PolicyCollapseDetector: low recent entropy, or one action dominating the episodes' last actions.

    Finds:
        Per training episode, fed the episode's mean ``entropy`` (0 when the
        run records none, as the original runner fed for heuristics) and the
        episode's last action: rule 1 (HIGH) once 10 entropies are stored,
        when the mean of the last 20 is below ``entropy_threshold``; otherwise
        rule 2 when at least ``min_samples`` actions were counted (cumulative,
        over ``n_actions`` actions) and the top action's share exceeds
        ``dominance_threshold`` (HIGH above 0.99, else MEDIUM). Defaults are
        those of the experiment runner (``min_samples`` 50).

    Why it matters:
        It reproduces the predecessor's alarms one to one; on deterministic
        heuristics it fires on every episode from the tenth, as the original
        did (91 alarms in a 100-episode run).

    Evidence:
        One finding per alarmed episode with the mean entropy or the dominant
        action's share.

    Not flagged:
        The first nine episodes; action dominance below the threshold.

    Fix:
        Compare with ``policy-collapse`` and ``action-repetition``, which use
        the step-level action histogram and do not mistake a deterministic
        heuristic for a collapsed learner.
    """
    has_entropy = ctx.has("entropy")
    extra = ", (SELECT avg(entropy) FROM steps s WHERE s.run_id = $run_id AND s.env_index = e.env_index " \
            "AND s.episode = e.episode)" if has_entropy else ", 0.0"
    last_action = dict(((e, k), a) for e, k, a in ctx.sql(
        "SELECT env_index, episode, arg_max(action, t) FROM steps WHERE run_id = $run_id AND phase = 'train' "
        "GROUP BY env_index, episode").rows())
    rows = ctx.sql(
        "SELECT env_index, episode, return, first_global_step, last_global_step" + extra
        + " FROM episodes e WHERE run_id = $run_id AND phase = 'train' ORDER BY first_global_step, env_index"
    ).rows()
    entropies: deque = deque(maxlen=100)
    counts = [0] * n_actions
    count = [0]
    for env, ep, _, s0, s1, ent in rows:
        entropies.append(0.0 if ent is None else float(ent))
        a = last_action.get((env, ep))
        if isinstance(a, (int, float)) and 0 <= int(a) < n_actions:
            counts[int(a)] += 1
        recent = list(entropies)[-20:]
        found = None
        if len(entropies) >= 10 and float(np.mean(recent)) < entropy_threshold:
            m = float(np.mean(recent))
            found = ("PolicyCollapseDetector rule 1 (entropy)", "high",
                     f"mean entropy of the last {len(recent)} episodes {m:.3g} < {entropy_threshold:g}",
                     entropy_threshold - m, {"mean_entropy": m})
        elif sum(counts) >= min_samples:
            share = max(counts) / sum(counts)
            if share > dominance_threshold:
                found = ("PolicyCollapseDetector rule 2 (action dominance)", "high" if share > 0.99 else "medium",
                         f"action {counts.index(max(counts))} is {share:.1%} of episodes' last actions "
                         f"> {dominance_threshold:.0%}", share, {"dominant_share": share})
        if found:
            rule, sev, text, score, signal = found
            f = _alarm(ctx, rule, text, RFL_SEVERITY[sev], episode=ep, env_index=env, step=s1, score=score,
                       actual={**signal, "original_severity": sev},
                       expected={"entropy_threshold": entropy_threshold, "dominance_threshold": dominance_threshold},
                       cap=cap, count=count)
            if f:
                yield f


_Q_MEAN = ("q_mean", "mean_q", "q_value", "value_mean")


@detector("legacy-rfl-value-explosion", severity="critical", needs=("episodes", "metrics"))
def rfl_value_explosion(ctx: Context, *, q_value_threshold: float = 1000.0, growth_rate_threshold: float = 2.0,
                        min_samples: int = 20, cap: int = 10_000) -> Iterator[Finding]:
    """RL Failure Lab's ValueExplosionDetector: NaN, |Q| above 1000, Q growth, or a large loss.

    Finds:
        Per training episode, fed the mean of the episode's mean-Q metric
        (``q_mean``, ``mean_q``, ``q_value`` or ``value_mean``), its
        ``q_max`` and ``loss`` (both Qs go into one 100-entry window): rule 1
        (CRITICAL, sticky) after any NaN or Inf in Q or loss; rule 2 (HIGH)
        once ``min_samples`` Q entries are stored and the largest |Q| exceeds
        ``q_value_threshold``; rule 3 (MEDIUM) when the mean of the last 10
        entries differs from the mean of the first 10 by more than
        ``growth_rate_threshold`` times the latter; rule 4 (HIGH) when the
        mean of the last 10 losses exceeds 1000.

    Why it matters:
        It reproduces the predecessor's alarms; its runner never fed Q values,
        so there it could not fire.

    Evidence:
        One finding per alarmed episode with the signal that fired.

    Not flagged:
        Episodes without Q metrics; windows shorter than ``min_samples``.

    Fix:
        Compare with ``value-explosion``, which bounds values by
        r_max / (1 - gamma) and compares them with observed returns-to-go.
    """
    names = {n for (n,) in ctx.sql("SELECT DISTINCT name FROM metrics WHERE run_id = $run_id").rows()}
    q_name = next((n for n in _Q_MEAN if n in names), None)
    if q_name is None and "loss" not in names:
        ctx.skip("needs a Q metric (q_mean, mean_q, q_value or value_mean) or a loss metric")
    per_ep = ctx.sql(
        "SELECT e.env_index, e.episode, e.last_global_step, "
        "avg(m.value) FILTER (WHERE m.name = $q), max(m.value) FILTER (WHERE m.name = 'q_max'), "
        "avg(m.value) FILTER (WHERE m.name = 'loss'), "
        "bool_or(NOT isfinite(m.value)) FILTER (WHERE m.name IN ($q, 'q_max', 'loss')) "
        "FROM episodes e JOIN metrics m ON m.run_id = e.run_id "
        "AND m.global_step BETWEEN e.first_global_step AND e.last_global_step "
        "WHERE e.run_id = $run_id AND e.phase = 'train' GROUP BY ALL ORDER BY e.last_global_step, e.env_index",
        q=q_name or "",
    ).rows()
    qs: deque = deque(maxlen=100)
    losses: deque = deque(maxlen=100)
    nan = False
    count = [0]
    for env, ep, s1, qm, qx, loss, bad in per_ep:
        for v in (qm, qx):
            if v is not None:
                qs.append(float(v))
        if loss is not None:
            losses.append(float(loss))
        nan = nan or bool(bad)
        found = None
        if nan:
            found = ("ValueExplosionDetector rule 1 (NaN)", "critical", "a Q value or loss was NaN or infinite", 1.0, {})
        elif len(qs) >= min_samples and max(abs(v) for v in qs) > q_value_threshold:
            m = max(abs(v) for v in qs)
            found = ("ValueExplosionDetector rule 2 (|Q| threshold)", "high", f"max |Q| {m:.4g} > {q_value_threshold:g}",
                     m / q_value_threshold, {"max_abs_q": m})
        elif len(qs) >= min_samples:
            early, late = float(np.mean(list(qs)[:10])), float(np.mean(list(qs)[-10:]))
            if early != 0 and abs(late - early) / abs(early) > growth_rate_threshold:
                g = abs(late - early) / abs(early)
                found = ("ValueExplosionDetector rule 3 (growth)", "medium",
                         f"Q grew by {g:.3g}x of its early mean > {growth_rate_threshold:g}", g, {"growth": g})
        if found is None and len(losses) >= 10 and float(np.mean(list(losses)[-10:])) > 1000:
            m = float(np.mean(list(losses)[-10:]))
            found = ("ValueExplosionDetector rule 4 (loss)", "high", f"mean of the last 10 losses {m:.4g} > 1000",
                     m / 1000, {"mean_loss": m})
        if found:
            rule, sev, text, score, signal = found
            f = _alarm(ctx, rule, text, RFL_SEVERITY[sev], episode=ep, env_index=env, step=s1, score=score,
                       actual={**signal, "original_severity": sev},
                       expected={"q_value_threshold": q_value_threshold, "growth_rate_threshold": growth_rate_threshold},
                       cap=cap, count=count)
            if f:
                yield f


@detector("legacy-rfl-nonstationarity", severity="warning", needs=("episodes",))
def rfl_nonstationarity(ctx: Context, *, variance_threshold: float = 2.0, oscillation_threshold: int = 3,
                        min_samples: int = 30, cap: int = 10_000) -> Iterator[Finding]:
    """RL Failure Lab's NonstationarityDetector: return variance above an absolute threshold, oscillating or not.

    Finds:
        Per training episode (fed the return; window 100), once
        ``min_samples`` returns are stored: when their population variance
        exceeds ``variance_threshold``, MEDIUM "oscillating" if at least 5
        trends are stored and they change sign at least
        ``oscillation_threshold`` times, else LOW "high variance". A trend is
        +1 when the mean of the last 10 returns beats the mean of the 10
        before, else -1 (10 trends kept). Defaults are the runner's
        (``min_samples`` 30).

    Why it matters:
        It reproduces the predecessor's alarms one to one; its absolute
        variance threshold fires on almost any run with long episodes.

    Evidence:
        One finding per alarmed episode with the variance, the coefficient of
        variation, the sign changes and the mean return.

    Not flagged:
        Runs whose return variance stays below the threshold.

    Fix:
        Compare with ``regime-shift``, which tests for change points on a
        scale-free statistic.
    """
    rewards: deque = deque(maxlen=100)
    trends: deque = deque(maxlen=10)
    count = [0]
    for env, ep, ret, s0, s1 in _episodes(ctx):
        rewards.append(float(ret))
        if len(rewards) >= 10:
            r = list(rewards)
            recent = float(np.mean(r[-10:]))
            previous = float(np.mean(r[-20:-10])) if len(r) >= 20 else recent
            trends.append(1 if recent > previous else -1)
        if len(rewards) < min_samples:
            continue
        var = float(np.var(list(rewards)))
        if not var > variance_threshold:
            continue
        t = list(trends)
        changes = sum(1 for a, b in zip(t, t[1:]) if a != b)
        mean = float(np.mean(list(rewards)))
        signal = {"variance": var, "cv": math.sqrt(var) / abs(mean) if mean else None, "sign_changes": changes,
                  "mean_reward": mean}
        if len(t) >= 5 and changes >= oscillation_threshold:
            rule, sev, text = "NonstationarityDetector (oscillating)", "medium", \
                f"return variance {var:.4g} > {variance_threshold:g} with {changes} trend sign changes"
        else:
            rule, sev, text = "NonstationarityDetector (high variance)", "low", \
                f"return variance {var:.4g} > {variance_threshold:g}"
        f = _alarm(ctx, rule, text, RFL_SEVERITY[sev], episode=ep, env_index=env, step=s1,
                   score=var / variance_threshold, actual={**signal, "original_severity": sev},
                   expected={"variance_threshold": variance_threshold, "oscillation_threshold": oscillation_threshold},
                   cap=cap, count=count)
        if f:
            yield f


# ---------------------------------------------------------------------------
# RewardScope
# ---------------------------------------------------------------------------


def _steps(ctx: Context, columns: str) -> list[tuple]:
    return ctx.sql(f"SELECT global_step, env_index, episode, t, {columns} FROM steps "
                   "WHERE run_id = $run_id ORDER BY global_step, env_index").rows()


def _action_key(a: Any) -> str:
    if isinstance(a, (list, tuple)):
        return str([round(float(x), 1) for x in np.ravel(np.asarray(a, dtype=float))])
    return str(a)


def _rs_alert(ctx, rule, text, *, step, env, ep, severity, actual, expected, cap, count):
    return _alarm(ctx, rule, text, "warning", episode=ep, env_index=env, step=step, score=severity,
                  actual={**actual, "original_severity": severity}, expected=expected, cap=cap, count=count)


@detector("legacy-rewardscope-action-repetition", severity="warning", needs=("action",))
def rs_action_repetition(ctx: Context, *, window: int = 50, repetition_threshold: float = 0.9,
                         guard_steps: int = 50, cap: int = 10_000) -> Iterator[Finding]:
    """RewardScope's ActionRepetitionDetector: one action fills 90% of the last 50 actions of an episode.

    Finds:
        Per step: the episode's last ``window`` actions (the buffer is
        cleared at every episode end; arrays rounded to 1 decimal) are full,
        at least ``guard_steps`` steps passed since the last alert (the spam
        guard), and the most common action's share is at least
        ``repetition_threshold``. Severity min(1, share).

    Why it matters:
        It reproduces the predecessor's alerts one to one; it cannot fire in
        episodes shorter than ``window`` steps.

    Evidence:
        One finding per alert with the repetition rate, the action and the
        episode's action entropy so far.

    Not flagged:
        Episodes shorter than the window; steps inside the spam guard.

    Fix:
        Compare with ``action-repetition``, which reads the step-level action
        histogram of the whole run.
    """
    buf: deque = deque(maxlen=window)
    counts: Counter = Counter()
    episode_counts: Counter = Counter()
    last_alert = -(10 ** 12)
    key_prev = None
    count = [0]
    for step, env, ep, t, action in _steps(ctx, "action"):
        if (env, ep) != key_prev:
            buf.clear()
            counts.clear()
            episode_counts.clear()
            key_prev = (env, ep)
        a = _action_key(action)
        if len(buf) == window:
            old = buf[0]
            counts[old] -= 1
        buf.append(a)
        counts[a] += 1
        episode_counts[a] += 1
        if len(buf) < window or step - last_alert < guard_steps:
            continue
        top, n = counts.most_common(1)[0]
        rate = n / window
        if rate >= repetition_threshold:
            last_alert = step
            total = sum(episode_counts.values())
            ent = -sum(c / total * math.log(c / total) for c in episode_counts.values() if c)
            f = _rs_alert(ctx, "ActionRepetitionDetector", f"action {top} is {rate:.0%} of the last {window} actions",
                          step=step, env=env, ep=ep, severity=min(1.0, rate),
                          actual={"repetition_rate": rate, "most_common_action": top, "action_entropy": ent},
                          expected={"repetition_threshold": repetition_threshold}, cap=cap, count=count)
            if f:
                yield f


@detector("legacy-rewardscope-state-cycling", severity="warning", needs=("obs",))
def rs_state_cycling(ctx: Context, *, similarity_threshold: float = 0.8, guard_steps: int = 50,
                     cap: int = 10_000) -> Iterator[Finding]:
    """RewardScope's StateCyclingDetector: the last L observations repeat the L before them.

    Finds:
        Per step, on the post-step observation rounded to 2 decimals (the
        buffer of 100 is cleared at episode end): once 6 are buffered and the
        spam guard of ``guard_steps`` steps has passed, for every cycle length
        L from 3 to min(20, n // 2 - 1) the share of the last L observations
        equal to the L before; the best L above 0.5 (ties: the shortest)
        alerts when its similarity is at least ``similarity_threshold``.

    Why it matters:
        It reproduces the predecessor's alerts one to one; any controller
        settling into a limit cycle fires constantly, as it did.

    Evidence:
        One finding per alert with the cycle length, the similarity, the
        recent reward and the episode's state revisit rate.

    Not flagged:
        Steps inside the spam guard; episodes with fewer than 6 observations.

    Fix:
        Compare with ``state-cycling``, which asks whether the loops collect
        reward rather than whether states repeat.
    """
    rows = ctx.sql(
        "SELECT global_step, env_index, episode, t, reward, "
        "coalesce(lead(obs) OVER (PARTITION BY env_index, episode ORDER BY t), final_obs) AS next_obs "
        "FROM steps WHERE run_id = $run_id ORDER BY global_step, env_index"
    ).rows()
    buf: deque = deque(maxlen=100)
    seen: set = set()
    total = 0
    last_alert = -(10 ** 12)
    key_prev = None
    count = [0]
    for step, env, ep, t, reward, obs in rows:
        if (env, ep) != key_prev:
            buf.clear()
            seen.clear()
            total = 0
            key_prev = (env, ep)
        h = None if obs is None else tuple(round(float(x), 2) for x in np.ravel(np.asarray(obs, dtype=float)))
        buf.append(h)
        seen.add(h)
        total += 1
        n = len(buf)
        if n < 6 or step - last_alert < guard_steps:
            continue
        items = list(buf)
        best_len, best_sim = 0, 0.0
        for L in range(3, min(20, n // 2 - 1) + 1):
            sim = sum(1 for a, b in zip(items[-L:], items[-2 * L:-L]) if a == b) / L
            if sim > 0.5 and sim > best_sim:
                best_len, best_sim = L, sim
        if best_sim >= similarity_threshold:
            last_alert = step
            f = _rs_alert(ctx, "StateCyclingDetector", f"the last {best_len} observations repeat the {best_len} before "
                          f"them ({best_sim:.0%})", step=step, env=env, ep=ep, severity=min(1.0, best_sim),
                          actual={"cycle_length": best_len, "similarity": best_sim, "recent_reward": reward,
                                  "state_revisit_rate": 1 - len(seen) / total},
                          expected={"similarity_threshold": similarity_threshold}, cap=cap, count=count)
            if f:
                yield f


@detector("legacy-rewardscope-component-imbalance", severity="warning", needs=("episodes", "reward_terms"))
def rs_component_imbalance(ctx: Context, *, dominance_ratio: float = 0.8, episodes: int = 5, same_dominant: int = 4,
                           cap: int = 10_000) -> Iterator[Finding]:
    """RewardScope's ComponentImbalanceDetector: one reward term carries 80% of five consecutive episodes.

    Finds:
        At each episode end, from the episode's signed term totals made
        absolute, the dominant term and its ratio max / sum; over the last
        ``episodes`` episodes, an alert when the same term dominated at least
        ``same_dominant`` of them and the mean ratio is at least
        ``dominance_ratio``. It fires on every episode while this holds.

    Why it matters:
        It reproduces the predecessor's alerts one to one; a task with one
        legitimately dominant term fires from the fifth episode, as it did.

    Evidence:
        One finding per alert with the dominant term, the mean ratio and the
        episode's term totals.

    Not flagged:
        Runs without reward terms; the first four episodes.

    Fix:
        Compare with ``reward-term-dominance``, which separates a designed
        dominant term from a drifting share.
    """
    rows = ctx.sql(
        "SELECT env_index, episode, last_global_step, term_returns FROM episodes "
        "WHERE run_id = $run_id ORDER BY last_global_step, env_index"
    ).rows()
    recent: deque = deque(maxlen=episodes)
    count = [0]
    for env, ep, s1, terms in rows:
        totals = {k: abs(float(v)) for k, v in (terms or {}).items() if v is not None and k != "residual"}
        s = sum(totals.values())
        if not totals or s == 0:
            continue
        dom = max(totals, key=totals.get)
        recent.append((dom, totals[dom] / s))
        if len(recent) < episodes:
            continue
        top, n = Counter(d for d, _ in recent).most_common(1)[0]
        ratio = float(np.mean([r for _, r in recent]))
        if n >= same_dominant and ratio >= dominance_ratio:
            f = _rs_alert(ctx, "ComponentImbalanceDetector", f"term {top!r} dominated {n} of the last {episodes} "
                          f"episodes with mean ratio {ratio:.2f}", step=s1, env=env, ep=ep, severity=min(1.0, ratio),
                          actual={"dominant_component": top, "dominance_ratio": ratio, "component_totals": totals},
                          expected={"dominance_ratio": dominance_ratio}, cap=cap, count=count)
            if f:
                yield f


@detector("legacy-rewardscope-reward-spiking", severity="warning", needs=("reward",))
def rs_reward_spiking(ctx: Context, *, window: int = 500, z: float = 5.0, min_rewards: int = 50,
                      guard_steps: int = 100, cap: int = 10_000) -> Iterator[Finding]:
    """RewardScope's RewardSpikingDetector: a step reward 5 standard deviations from the last 500.

    Finds:
        Per step, with the step's reward appended to a ``window`` of step
        rewards that runs across episodes: once ``min_rewards`` are buffered,
        the spam guard of ``guard_steps`` steps has passed and the window's
        standard deviation is not 0, an alert when |r - mean| / std is at
        least ``z``. Severity min(1, z / 10).

    Why it matters:
        It reproduces the predecessor's alerts one to one; it cannot fire on a
        constant-reward task, as the original could not.

    Evidence:
        One finding per alert with the reward, the window mean and standard
        deviation and the z-score.

    Not flagged:
        Steps inside the spam guard; windows with zero variance.

    Fix:
        Compare with ``reward-spike``, which uses a robust scale and reports
        each run's spikes as one finding.
    """
    rows = _steps(ctx, "reward")
    r = np.array([float(x[4]) for x in rows], dtype=float)
    if r.size == 0:
        return
    finite = np.where(np.isfinite(r), r, 0.0)
    c1 = np.concatenate([[0.0], np.cumsum(finite)])
    c2 = np.concatenate([[0.0], np.cumsum(finite * finite)])
    idx = np.arange(r.size)
    lo = np.maximum(0, idx + 1 - window)
    n = idx + 1 - lo
    mean = (c1[idx + 1] - c1[lo]) / n
    var = np.maximum((c2[idx + 1] - c2[lo]) / n - mean * mean, 0.0)
    std = np.sqrt(var)
    with np.errstate(divide="ignore", invalid="ignore"):
        zs = np.where(std > 1e-12, np.abs(r - mean) / std, 0.0)
    last_alert = -(10 ** 12)
    count = [0]
    for i in np.flatnonzero((n >= min_rewards) & (zs >= z)):
        step, env, ep, t, reward = rows[i]
        if step - last_alert < guard_steps:
            continue
        last_alert = step
        f = _rs_alert(ctx, "RewardSpikingDetector", f"reward {reward:.4g} is {zs[i]:.3g} SDs from the window mean "
                      f"{mean[i]:.4g}", step=step, env=env, ep=ep, severity=min(1.0, float(zs[i]) / 10),
                      actual={"reward": reward, "mean": float(mean[i]), "std": float(std[i]), "z_score": float(zs[i])},
                      expected={"z": z}, cap=cap, count=count)
        if f:
            yield f


def _bounds(space: Any) -> tuple[np.ndarray, np.ndarray] | None:
    if not isinstance(space, dict) or space.get("type") != "Box" or "low" not in space:
        return None
    shape = tuple(space.get("shape") or ())
    low = np.broadcast_to(np.asarray(space["low"], dtype=float), shape).ravel()
    high = np.broadcast_to(np.asarray(space["high"], dtype=float), shape).ravel()
    return low, high


def _at_boundary(value: Any, bounds, threshold: float) -> bool:
    if value is None or bounds is None:
        return False
    low, high = bounds
    v = np.ravel(np.asarray(value, dtype=float))
    if v.shape != low.shape:
        return False
    ok = np.isfinite(low) & np.isfinite(high)  # dimensions with infinite bounds are skipped
    lo, hi, x = low[ok], high[ok], v[ok]
    margin = (1 - threshold) * (hi - lo)
    return bool(np.any((x <= lo + margin) | (x >= hi - margin)))


@detector("legacy-rewardscope-boundary-exploitation", severity="warning", needs=("obs",))
def rs_boundary_exploitation(ctx: Context, *, boundary_threshold: float = 0.95, frequency: float = 0.5,
                             guard_steps: int = 100, cap: int = 10_000) -> Iterator[Finding]:
    """RewardScope's BoundaryExploitationDetector: observations or actions near the space bounds "half the time".

    Finds:
        Per step, with the bounds of the recorded Box observation and action
        spaces: a value is at the boundary when any finite-bounded dimension
        lies within 1 - ``boundary_threshold`` of its range from an edge. Hits
        and steps accumulate (never windowed) until an alert; the frequency is
        hits / min(steps, 100); after 100 steps and outside the spam guard of
        ``guard_steps`` steps an alert fires when the observation or action
        frequency is at least ``frequency``, and the counts restart.

    Why it matters:
        It reproduces the predecessor's alerts one to one, including its
        counting defect: any steady rate of boundary hits eventually alerts.

    Evidence:
        One finding per alert with both frequencies.

    Not flagged:
        Discrete and unbounded spaces (no finite bounds); runs whose manifest
        records no spaces.

    Fix:
        Compare with ``boundary-exploitation``, which asks whether reward
        concentrates at the edges of the reached range.
    """
    spaces = ctx.manifest.get("spaces") or {}
    obs_b, act_b = _bounds(spaces.get("observation")), _bounds(spaces.get("action"))
    if obs_b is None and act_b is None:
        ctx.skip("needs a Box observation or action space with finite bounds in the manifest")
    rows = ctx.sql(
        "SELECT global_step, env_index, episode, t, action, "
        "coalesce(lead(obs) OVER (PARTITION BY env_index, episode ORDER BY t), final_obs) AS next_obs "
        "FROM steps WHERE run_id = $run_id ORDER BY global_step, env_index"
    ).rows()
    obs_hits = act_hits = steps = 0
    last_alert = -(10 ** 12)
    count = [0]
    for step, env, ep, t, action, obs in rows:
        steps += 1
        obs_hits += _at_boundary(obs, obs_b, boundary_threshold)
        act_hits += _at_boundary(action, act_b, boundary_threshold)
        if steps < 100 or step - last_alert < guard_steps:
            continue
        fo, fa = obs_hits / min(steps, 100), act_hits / min(steps, 100)
        if max(fo, fa) >= frequency:
            last_alert = step
            f = _rs_alert(ctx, "BoundaryExploitationDetector", f"boundary frequency observation {fo:.0%}, action {fa:.0%}",
                          step=step, env=env, ep=ep, severity=min(1.0, max(fo, fa)),
                          actual={"observation_boundary_freq": fo, "action_boundary_freq": fa},
                          expected={"frequency": frequency}, cap=cap, count=count)
            obs_hits = act_hits = steps = 0
            if f:
                yield f
