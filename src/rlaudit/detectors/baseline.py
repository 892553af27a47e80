"""Baseline detectors: is the learner any better than a simple rule?"""

from __future__ import annotations

from typing import Iterator

from rlaudit.analyzer.compare import comparable_cells, compare, condition_of, score_runs
from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector


@detector("below-baseline", severity="warning", needs=("episodes",), scope="store")
def below_baseline(ctx: Context, *, alpha: float = 0.05, min_runs: int = 2, resamples: int = 10_000,
                   seed: int = 0) -> Iterator[Finding]:
    """A learning agent whose runs do not beat the best heuristic baseline on the same task.

    Finds:
        For every set of runs that share env id, reward (with its parameters)
        and regime, each learning agent (any named agent that is not a
        heuristic: DQN, PPO, ...) whose runs are not significantly better
        than those of the best heuristic baseline, the heuristic group with
        the highest mean score. Scores are per run: the mean return of its
        final evaluation, or of its last 10 training episodes when some run
        has no evaluation. "Better" is the comparison's verdict: Welch's
        t-test rejects equal means at ``alpha`` and the two groups' 95 %
        IQM intervals (stratified bootstrap, ``resamples`` resamples drawn
        from ``seed``) do not overlap. One finding per learning agent and task.

    Why it matters:
        An agent that cannot beat a hand-written rule has not learned the
        task, whatever its learning curve looks like; reporting it against
        no baseline hides that. Deep RL results also vary strongly from seed
        to seed, so a single good seed proves little: the comparison is over
        seeds, with intervals.

    Evidence:
        One row per run of the learning agent and of the best heuristic:
        run_id, agent, number of scored episodes and the run's score, from
        the same query the comparison uses. The finding states both groups'
        mean and IQM with intervals, the mean difference, the probability of
        improvement, the one-sided Welch p-value of "the agent's mean is
        below the baseline's" (the p_value) and the minimum detectable
        effect for the number of seeds.

    Not flagged:
        Tasks without a heuristic group or without a learning group of at
        least ``min_runs`` scored runs each (2 at the least; the detector is skipped when no
        task has both: record baselines with ``rlaudit compare
        --make-baselines``); runs whose manifest names no agent; heuristic
        groups themselves; learning agents whose verdict is "better".

    Fix:
        Check the learning curve and the evaluation protocol first (enough
        training, greedy evaluation on the same seeds as the baseline).
        Then tune or train longer with more seeds, inspect the reward (an
        agent optimising a proxy can beat its reward yet lose on the score),
        or use the heuristic: if a rule does as well, the learner is not
        needed.
    """
    min_runs = max(2, min_runs)  # a test needs two runs per group
    cells = []
    for cell in comparable_cells(ctx.store):
        scored = score_runs(ctx, cell).values
        groups: dict[tuple[bool, str], list[str]] = {}
        for rid in cell:
            if rid in scored:
                c = condition_of(ctx.store.runs[rid])
                groups.setdefault((c.heuristic, c.agent or ""), []).append(rid)
        big = {key: rids for key, rids in groups.items() if len(rids) >= min_runs}
        if any(h for h, _ in big) and any(not h for h, _ in big):
            cells.append(sorted(r for rids in big.values() for r in rids))
    if not cells:
        ctx.skip(f"needs, for one task (env, reward, regime), a learning agent and a heuristic baseline with at "
                 f"least {min_runs} scored runs each; record baselines with 'rlaudit compare --make-baselines'")
    for cell in cells:
        comp = compare(ctx.store, by="agent", runs=cell, resamples=resamples, seed=seed, alpha=alpha, querier=ctx)
        base = comp.group(comp.baseline)
        for g in comp.groups:
            if g.heuristic:
                continue
            test = comp.test(g.name)
            if test.verdict == "better":
                continue
            runs = sorted(g.runs + base.runs)
            evidence = ctx.evidence(comp.score_sql, **{**comp.score_params, "runs": runs})
            c = condition_of(ctx.store.runs[g.runs[0]])
            task = f"{c.env_id or 'env'}, reward {c.reward or '?'}, regime {c.regime or '?'}"
            yield ctx.finding(
                f"{g.name} ({len(g.runs)} runs) does not beat the best heuristic {base.name} ({len(base.runs)} runs) "
                f"on {task}: mean score {g.mean.value:.4g} [{g.mean.low:.4g}, {g.mean.high:.4g}] vs "
                f"{base.mean.value:.4g} [{base.mean.low:.4g}, {base.mean.high:.4g}], verdict {test.verdict}; "
                f"expected a significantly higher score than the baseline",
                score=float(-test.difference.value),
                evidence=evidence,
                actual={"agent": g.name, "runs": list(g.runs), "mean": g.mean.to_dict(), "iqm": g.iqm.to_dict(),
                        "difference": test.difference.to_dict(), "prob_improvement": test.prob_improvement.to_dict(),
                        "welch_p_two_sided": test.welch_p, "mannwhitney_p": test.mannwhitney_p,
                        "verdict": test.verdict, "score_source": comp.score["source"]},
                expected={"baseline": base.name, "baseline_runs": list(base.runs), "baseline_mean": base.mean.to_dict(),
                          "baseline_iqm": base.iqm.to_dict(), "min_detectable_effect": test.mde,
                          "alpha": alpha},
                p_value=test.welch_p_less,
                p_method="welch one-sided (agent mean below baseline mean)",
            )
