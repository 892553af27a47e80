"""Compare groups of runs (agents, rewards or regimes) with sound statistics.

:func:`compare` scores every run (mean return of its final evaluation, or of
its last ``k`` training episodes when some run has no evaluation), groups
the runs by manifest agent, reward or regime, and reports per group the IQM,
mean and median with stratified bootstrap intervals, and per group against
the baseline the mean difference with its interval, the probability of
improvement with its interval, Welch's t-test, the Mann–Whitney test, a
verdict (better / worse / tie) and the minimum detectable effect. The result
is a :class:`Comparison`; :meth:`Comparison.to_dict` is the ``comparison``
block of audit.json (docs/audit-format.md, docs/statistics.md).

Only like is compared with like: every run must share the env id, and the
agent, reward (name and parameters) and regime except the one grouped by.

Heuristic baselines: a run is a heuristic when its manifest config says
``"agent_kind": "heuristic"`` or when its agent is one of the career env's
heuristics (:data:`CAREER_HEURISTICS`); any other named agent is a learner.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import numpy as np

from rlaudit.analyzer import statistics as st
from rlaudit.errors import ConfigError, unknown_name

if TYPE_CHECKING:
    from rlaudit.analyzer.store import Run, Store

__all__ = [
    "BY", "CAREER_HEURISTICS", "Comparison", "RunCondition", "compare", "condition_of", "auto_comparison",
    "score_runs", "score_sql", "is_heuristic",
]

BY = ("agent", "reward", "regime")
#: The career env's heuristic baselines (rlaudit.agents.heuristics.HEURISTICS; a test keeps them equal).
CAREER_HEURISTICS = (
    "always_stay", "always_switch", "burnout_threshold", "conservative", "aggressive", "adaptive", "random",
)
DEFAULT_K = 10
ALPHA = 0.05
POWER = 0.8
SMALL_N = 10  # below this many runs per group the percentile intervals under-cover (docs/statistics.md)
PROFILE_POINTS = 21


# -- what a run is --------------------------------------------------------------------


def _config(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    c = manifest.get("config")
    return c if isinstance(c, Mapping) else {}


def _protocol(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    p = _config(manifest).get("protocol")
    return p if isinstance(p, Mapping) else {}


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=repr)


@dataclass(frozen=True)
class RunCondition:
    """The facts of a run that decide what it may be compared with."""

    run_id: str
    env_id: str | None
    agent: str | None
    heuristic: bool
    reward: str | None
    reward_params: Mapping[str, Any]
    regime: str | None
    env_params: Mapping[str, Any]
    seed: int | None

    def value(self, dimension: str) -> str | None:
        """The run's label in ``dimension`` (agent, reward, regime, env)."""
        if dimension == "agent":
            return self.agent
        if dimension == "reward":
            return self.reward
        if dimension == "regime":
            return self.regime
        return self.env_id

    def identity(self, dimension: str) -> str:
        """What must be equal for two runs to be alike in ``dimension`` (parameters included)."""
        if dimension == "reward":
            return _key([self.reward, self.reward_params])
        if dimension == "regime":
            return _key([self.regime, self.env_params])
        return _key(self.value(dimension))


def is_heuristic(manifest: Mapping[str, Any]) -> bool:
    """True when the run's agent is a heuristic baseline (see the module docstring)."""
    kind = _config(manifest).get("agent_kind")
    if isinstance(kind, str):
        return kind == "heuristic"
    agent = manifest.get("agent")
    return isinstance(agent, str) and agent in CAREER_HEURISTICS


def condition_of(run: "Run") -> RunCondition:
    m = run.manifest
    env = m.get("env")
    env_id = env.get("id") if isinstance(env, Mapping) else env
    kwargs = env.get("kwargs") if isinstance(env, Mapping) and isinstance(env.get("kwargs"), Mapping) else {}
    protocol = _protocol(m)
    agent = m.get("agent")
    if isinstance(agent, Mapping):
        agent = agent.get("name")
    reward = m.get("reward")
    reward_name = reward.get("name") if isinstance(reward, Mapping) else reward
    reward_params = reward.get("params") if isinstance(reward, Mapping) else None
    regime = protocol.get("regime", kwargs.get("regime"))
    env_params = protocol.get("env_params", kwargs.get("params"))
    seed = m.get("seed")
    return RunCondition(
        run_id=run.run_id,
        env_id=env_id if isinstance(env_id, str) else None,
        agent=agent if isinstance(agent, str) else None,
        heuristic=is_heuristic(m),
        reward=reward_name if isinstance(reward_name, str) else None,
        reward_params=dict(reward_params) if isinstance(reward_params, Mapping) else {},
        regime=regime if isinstance(regime, str) else None,
        env_params=dict(env_params) if isinstance(env_params, Mapping) else {},
        seed=int(seed) if isinstance(seed, int) and not isinstance(seed, bool) else None,
    )


# -- per-run scores ---------------------------------------------------------------------

_EVAL_SQL = """
WITH e AS (
    SELECT run_id, phase, return, first_global_step, last_global_step FROM episodes
    WHERE list_contains($runs, run_id) AND termination <> 'unfinished'
), last_eval AS (
    SELECT run_id, max(first_global_step) AS start FROM e WHERE phase = 'eval' GROUP BY run_id
), cut AS (
    SELECT l.run_id, coalesce(max(t.last_global_step), -1) AS after_step
    FROM last_eval l LEFT JOIN e t ON t.run_id = l.run_id AND t.phase = 'train' AND t.first_global_step < l.start
    GROUP BY l.run_id
)
SELECT e.run_id, any_value(r.agent) AS agent, count(*) AS episodes, avg(e.return) AS score
FROM e JOIN cut ON cut.run_id = e.run_id JOIN runs r ON r.run_id = e.run_id
WHERE e.phase = 'eval' AND e.first_global_step > cut.after_step
GROUP BY e.run_id ORDER BY e.run_id"""

_TRAIN_SQL = """
WITH t AS (
    SELECT run_id, return,
           row_number() OVER (PARTITION BY run_id ORDER BY last_global_step DESC, env_index DESC, episode DESC) AS back
    FROM episodes
    WHERE list_contains($runs, run_id) AND phase = 'train' AND termination <> 'unfinished'
)
SELECT t.run_id, any_value(r.agent) AS agent, count(*) AS episodes, avg(t.return) AS score
FROM t JOIN runs r ON r.run_id = t.run_id
WHERE t.back <= $k
GROUP BY t.run_id ORDER BY t.run_id"""


def score_sql(source: str) -> str:
    """The query (parameters ``$runs``, and ``$k`` for ``last_k_training``) giving one score per run.

    ``eval``: mean return of the run's final evaluation (the evaluation
    episodes recorded after the last training episode that precedes the last
    evaluation episode). ``last_k_training``: mean return of the last ``k``
    finished training episodes. Unfinished episodes never count.
    """
    if source == "eval":
        return _EVAL_SQL.strip()
    if source == "last_k_training":
        return _TRAIN_SQL.strip()
    raise ConfigError(f"unknown score source {source!r}; expected eval or last_k_training")


def score_params(source: str, runs: Sequence[str], k: int) -> dict[str, Any]:
    params: dict[str, Any] = {"runs": list(runs)}
    if source == "last_k_training":
        params["k"] = int(k)
    return params


@dataclass(frozen=True)
class Scores:
    source: str
    k: int | None
    note: str
    values: Mapping[str, float]  # run_id -> score
    left_out: Mapping[str, str]  # run_id -> reason


def score_runs(querier: Any, runs: Sequence[str], *, k: int = DEFAULT_K) -> Scores:
    """Score ``runs`` from evaluation episodes when every run has them, else from the last ``k`` training episodes."""
    runs = sorted(runs)
    have_eval = {
        rid for rid, n in querier.sql(
            "SELECT run_id, count(*) FROM episodes WHERE list_contains($runs, run_id) AND phase = 'eval' "
            "AND termination <> 'unfinished' GROUP BY run_id", runs=runs).rows() if n
    }
    if runs and all(r in have_eval for r in runs):
        source, used_k = "eval", None
        note = "score of a run: mean return of its final evaluation episodes"
    else:
        if k < 1:
            raise ConfigError(f"k must be at least 1, got {k}")
        source, used_k = "last_k_training", int(k)
        missing = [r for r in runs if r not in have_eval]
        named = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        note = (f"no evaluation episodes in {named}: the score of every run is the mean return of its last {k} "
                "training episodes (exploration included, so learners are scored below their greedy level)")
    rows = querier.sql(score_sql(source), **score_params(source, runs, k)).rows()
    values: dict[str, float] = {}
    left_out: dict[str, str] = {}
    for rid, _agent, _n, score in rows:
        if score is None or not math.isfinite(score):
            left_out[rid] = f"score is {score} (non-finite returns)"
        else:
            # DuckDB's parallel sums vary in the last bits between runs of the same query; 12
            # significant digits make scores (and ties between equal scores) reproducible
            values[rid] = float(f"{float(score):.12g}")
    for rid in runs:
        if rid not in values and rid not in left_out:
            left_out[rid] = "no finished episodes to score"
    if left_out:
        note += "; left out: " + ", ".join(f"{r} ({why})" for r, why in sorted(left_out.items()))
    return Scores(source, used_k, note, values, left_out)


# -- the comparison -------------------------------------------------------------------


@dataclass(frozen=True)
class GroupResult:
    name: str
    runs: tuple[str, ...]
    scores: tuple[float, ...]
    iqm: st.Interval
    mean: st.Interval
    median: st.Interval
    heuristic: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "runs": list(self.runs), "scores": list(self.scores),
                "iqm": self.iqm.to_dict(), "mean": self.mean.to_dict(), "median": self.median.to_dict()}


@dataclass(frozen=True)
class TestAgainstBaseline:
    group: str
    baseline: str
    difference: st.Interval
    prob_improvement: st.Interval
    welch_p: float
    mannwhitney_p: float
    verdict: str
    mde: float | None
    note: str | None
    welch_p_less: float = field(default=math.nan, compare=False)  # one-sided: group mean < baseline mean

    def to_dict(self) -> dict[str, Any]:
        return {"group": self.group, "baseline": self.baseline, "difference": self.difference.to_dict(),
                "prob_improvement": self.prob_improvement.to_dict(), "welch_p": self.welch_p,
                "mannwhitney_p": self.mannwhitney_p, "verdict": self.verdict, "mde": self.mde, "note": self.note}


@dataclass(frozen=True)
class Comparison:
    """The result of :func:`compare`; :meth:`to_dict` is audit.json's ``comparison``."""

    by: str
    baseline: str | None
    score: Mapping[str, Any]
    confidence: float
    resamples: int
    seed: int
    groups: tuple[GroupResult, ...]
    tests: tuple[TestAgainstBaseline, ...]
    profiles: Mapping[str, Any]
    env_id: str | None = None
    score_sql: str = ""
    score_params: Mapping[str, Any] = field(default_factory=dict)

    def group(self, name: str) -> GroupResult:
        for g in self.groups:
            if g.name == name:
                return g
        raise unknown_name("group", name, [g.name for g in self.groups])

    def test(self, name: str) -> TestAgainstBaseline:
        for t in self.tests:
            if t.group == name:
                return t
        raise unknown_name("tested group", name, [t.group for t in self.tests])

    def to_dict(self) -> dict[str, Any]:
        return {
            "by": self.by,
            "baseline": self.baseline,
            "score": dict(self.score),
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "groups": [g.to_dict() for g in self.groups],
            "tests": [t.to_dict() for t in self.tests],
            "profiles": {"thresholds": list(self.profiles["thresholds"]),
                         "groups": {k: list(v) for k, v in self.profiles["groups"].items()}},
        }


def _group_rng(seed: int, *names: str) -> np.random.Generator:
    """A generator per group (or pair) that does not depend on which other groups exist."""
    return np.random.default_rng([seed, *(zlib.crc32(n.encode("utf-8")) for n in names)])


def _label_conditions(conds: Sequence[RunCondition], dimension: str) -> dict[str, str]:
    """Group name per run: the label, plus the parameters that tell apart runs sharing a label."""
    def params(c: RunCondition) -> Mapping[str, Any]:
        return c.reward_params if dimension == "reward" else c.env_params if dimension == "regime" else {}

    by_label: dict[str, list[RunCondition]] = {}
    for c in conds:
        by_label.setdefault(c.value(dimension) or "", []).append(c)
    names = {}
    for label, members in by_label.items():
        keys = sorted({k for c in members for k in params(c)})
        differing = [k for k in keys if len({_key(params(c).get(k)) for c in members}) > 1]
        for c in members:
            shown = ", ".join(f"{k}={params(c).get(k)}" for k in differing)
            names[c.run_id] = f"{label}({shown})" if differing else label
    return names


def _check_alike(conds: Sequence[RunCondition], by: str) -> None:
    for dim in ("env", *[d for d in BY if d != by]):
        seen: dict[str, list[str]] = {}
        for c in conds:
            seen.setdefault(c.identity(dim), []).append(c.run_id)
        if len(seen) <= 1:
            continue
        labels = _label_conditions(conds, dim) if dim in ("reward", "regime") else {
            c.run_id: c.value(dim) or "none" for c in conds}
        parts = [f"{labels[rids[0]] or 'none'} ({len(rids)} run{'s' if len(rids) > 1 else ''}, e.g. {rids[0]})"
                 for rids in sorted(seen.values(), key=lambda rids: (labels[rids[0]] or "", rids))]
        if len(parts) > 4:
            parts = parts[:4] + [f"and {len(parts) - 4} more"]
        dim_name = "env id" if dim == "env" else dim
        hint = f" or use --by {dim}" if dim in BY else ""
        raise ConfigError(
            f"expected runs that differ only in {by}, found {len(seen)} different {dim_name}s: "
            f"{'; '.join(parts)}; pass the runs of one {dim_name}{hint}"
        )


def compare(
    store_or_paths: "Store | str | Sequence[str]",
    by: str = "agent",
    baseline: str | None = None,
    *,
    runs: Iterable[str] | None = None,
    resamples: int = 50_000,
    seed: int = 0,
    confidence: float = 0.95,
    k: int = DEFAULT_K,
    alpha: float = ALPHA,
    querier: Any = None,
) -> Comparison:
    """Compare groups of runs; see the module docstring.

    ``store_or_paths`` is an open :class:`~rlaudit.analyzer.Store` or paths to
    open. ``runs`` restricts the comparison to those run ids. ``baseline``
    names the group every other group is tested against; by default (with
    ``by="agent"``) the heuristic group with the highest mean score, else none.
    Every group needs at least two scored runs. ``alpha`` is the level of
    the tests behind the verdicts and of the minimum detectable effect.
    """
    from rlaudit.analyzer.store import Store
    from rlaudit.analyzer.store import open as open_store

    if isinstance(store_or_paths, Store):
        return _compare(store_or_paths, by, baseline, runs, resamples, seed, confidence, k, alpha, querier)
    paths = [store_or_paths] if isinstance(store_or_paths, (str, bytes)) or hasattr(store_or_paths, "__fspath__") \
        else list(store_or_paths)
    with open_store(*paths) as store:
        return _compare(store, by, baseline, runs, resamples, seed, confidence, k, alpha, querier)


def _compare(store, by, baseline, runs, resamples, seed, confidence, k, alpha, querier) -> Comparison:
    if by not in BY:
        raise unknown_name("grouping --by", by, BY)
    if not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"--resamples must be a positive integer, got {resamples!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie strictly between 0 and 1, got {confidence!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"--seed must be an integer >= 0, got {seed!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}")
    querier = querier or store
    run_ids = store.run_ids if runs is None else sorted(dict.fromkeys(runs))
    for rid in run_ids:
        if rid not in store.runs:
            raise unknown_name("run", rid, store.run_ids)
    conds = [condition_of(store.runs[rid]) for rid in run_ids]
    missing = [c.run_id for c in conds if c.value(by) is None]
    if missing:
        where = {"agent": 'config={"agent": ...}', "reward": 'config={"reward": ...}',
                 "regime": 'env kwargs {"regime": ...}'}[by]
        raise ConfigError(
            f"expected every run to name its {by} in the manifest, found none in {', '.join(missing[:5])}; "
            f"record it ({where}) or leave those runs out"
        )
    _check_alike(conds, by)
    scores = score_runs(querier, run_ids, k=k)
    names = _label_conditions(conds, by)
    members: dict[str, list[str]] = {}
    for c in conds:
        if c.run_id in scores.values:
            members.setdefault(names[c.run_id], []).append(c.run_id)
    if len(members) < 2:
        raise ConfigError(
            f"expected at least two {by} groups to compare, found {len(members)} "
            f"({', '.join(sorted(members)) or 'none'}); add runs of another {by}"
        )
    small = {g: len(r) for g, r in members.items() if len(r) < 2}
    if small:
        raise ConfigError(
            "expected at least 2 scored runs (seeds) per group, found "
            + ", ".join(f"{g}: {n}" for g, n in sorted(small.items()))
            + "; record more seeds (or --make-baselines for heuristic baselines)"
        )
    heuristic = {names[c.run_id]: c.heuristic for c in conds}
    groups: list[GroupResult] = []
    for name in sorted(members):
        rids = sorted(members[name])
        values = np.array([scores.values[r] for r in rids])
        iv = st.bootstrap_intervals(values, resamples=resamples, confidence=confidence, rng=_group_rng(seed, name))
        groups.append(GroupResult(name, tuple(rids), tuple(float(v) for v in values),
                                  iv["iqm"], iv["mean"], iv["median"], heuristic=heuristic[name]))
    by_name = {g.name: g for g in groups}
    baseline_note = None
    if baseline is None and by == "agent":
        candidates = [g for g in groups if g.heuristic]
        if candidates:
            best = max(candidates, key=lambda g: (g.mean.value, g.name))
            baseline = best.name
            baseline_note = f"baseline: the best heuristic, {best.name}"
    elif baseline is not None and baseline not in by_name:
        raise unknown_name(f"baseline {by} group", baseline, sorted(by_name))
    tests = []
    if baseline is not None:
        base = by_name[baseline]
        for g in groups:
            if g.name != baseline:
                tests.append(_test(g, base, resamples=resamples, confidence=confidence, seed=seed,
                                   alpha=alpha, extra=baseline_note))
    all_scores = np.array([v for g in groups for v in g.scores])
    lo, hi = float(all_scores.min()), float(all_scores.max())
    thresholds = [lo] if lo == hi else [float(t) for t in np.linspace(lo, hi, PROFILE_POINTS)]
    profiles = {"thresholds": thresholds,
                "groups": {g.name: st.performance_profile(g.scores, thresholds) for g in groups}}
    env_id = conds[0].env_id if conds else None
    return Comparison(
        by=by, baseline=baseline,
        score={"source": scores.source, "k": scores.k, "note": scores.note},
        confidence=confidence, resamples=resamples, seed=seed,
        groups=tuple(groups), tests=tuple(tests), profiles=profiles, env_id=env_id,
        score_sql=score_sql(scores.source), score_params=score_params(scores.source, sorted(scores.values), k),
    )


def verdict(welch_p: float, difference: float, group: st.Interval, base: st.Interval, alpha: float = ALPHA) -> str:
    """better / worse when Welch's test rejects at ``alpha`` *and* the groups' IQM intervals do not overlap; else tie."""
    if welch_p < alpha and not group.overlaps(base):
        if difference > 0 and group.low > base.high:
            return "better"
        if difference < 0 and group.high < base.low:
            return "worse"
    return "tie"


def _test(g: GroupResult, base: GroupResult, *, resamples: int, confidence: float, seed: int, alpha: float,
          extra: str | None) -> TestAgainstBaseline:
    x, y = np.array(g.scores), np.array(base.scores)
    rng = _group_rng(seed, g.name, base.name)
    diff = st.mean_difference_interval(x, y, resamples=resamples, confidence=confidence, rng=rng)
    poi = st.poi_interval(x, y, resamples=resamples, confidence=confidence, rng=rng)
    w = st.welch(x, y)
    w_less = st.welch(x, y, alternative="less")
    mw = st.mann_whitney(x, y)
    v = verdict(w.p_value, diff.value, g.iqm, base.iqm, alpha)
    mde = st.min_detectable_effect(x, y, alpha=alpha, power=POWER)
    notes = []
    if extra:
        notes.append(extra)
    if v == "tie":
        notes.append(
            f"tie: with {x.size} and {y.size} runs a mean difference below {mde:.4g} is unlikely to be detected "
            f"(Welch, {POWER:.0%} power, alpha {alpha:g}), and an undetected difference is no evidence of equality"
        )
    if min(x.size, y.size) < SMALL_N:
        notes.append(f"fewer than {SMALL_N} runs per group: bootstrap intervals cover less than "
                     f"{confidence:.0%} (docs/statistics.md)")
    smallest_p = 2.0 / math.comb(x.size + y.size, x.size)  # exact two-sided Mann-Whitney, no ties
    if smallest_p >= alpha:
        notes.append(f"Mann-Whitney cannot reach p < {alpha:g} with {x.size} and {y.size} runs "
                     f"(smallest possible p {smallest_p:.3g})")
    return TestAgainstBaseline(
        group=g.name, baseline=base.name, difference=diff, prob_improvement=poi,
        welch_p=w.p_value, mannwhitney_p=mw.p_value, verdict=v, mde=mde,
        note="; ".join(notes) if notes else None, welch_p_less=w_less.p_value,
    )


# -- automatic comparison inside an audit ------------------------------------------------


def comparable_cells(store: "Store") -> list[list[str]]:
    """Run ids grouped by everything but the agent (env, reward with parameters, regime with parameters)."""
    cells: dict[tuple[str, ...], list[str]] = {}
    for rid in store.run_ids:
        c = condition_of(store.runs[rid])
        if c.agent is None:
            continue
        cells.setdefault((c.identity("env"), c.identity("reward"), c.identity("regime")), []).append(rid)
    return list(cells.values())


def auto_comparison(store: "Store", *, resamples: int = 50_000, seed: int = 0, querier: Any = None) -> Comparison | None:
    """The agent comparison an audit shows: the like-with-like cell with the most runs holding at
    least two agent groups of at least two scored runs; None when no cell qualifies."""
    querier = querier or store
    best: list[str] | None = None
    for cell in comparable_cells(store):
        scored = score_runs(querier, cell).values
        agents: dict[str, list[str]] = {}
        for rid in cell:
            if rid in scored:
                agents.setdefault(condition_of(store.runs[rid]).agent or "", []).append(rid)
        kept = [r for rids in agents.values() if len(rids) >= 2 for r in rids]
        if sum(1 for rids in agents.values() if len(rids) >= 2) >= 2 and (best is None or len(kept) > len(best)):
            best = kept
    if best is None:
        return None
    try:
        return compare(store, by="agent", runs=best, resamples=resamples, seed=seed, querier=querier)
    except ConfigError:  # e.g. a run of the cell has non-finite returns and its group shrinks below two
        return None
