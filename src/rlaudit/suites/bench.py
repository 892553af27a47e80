"""The benchmark matrix: RL Failure Lab's 9 agents × 5 rewards, several seeds, recorded and audited.

:func:`bench_protocols` lists the runs (run id ``bench-<agent>-<reward>-s<seed>``;
100 training episodes and 10 greedy evaluation episodes each, the
reference's DQN and PPO settings). :func:`run_bench` records them (runs
already in the store are reused), audits the store, and summarises: per
reward, the agents ranked by the IQM of their evaluation scores with
stratified-bootstrap intervals (agents whose intervals overlap share a rank
range: a tie); per agent and per reward averages; and failure counts as
de-duplicated findings (runs with a finding of each detector, never
per-episode alarms). docs/stress-tests.md compares the numbers with the
reference's bands.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlaudit.agents.experiments import ExperimentProtocol
from rlaudit.errors import ConfigError, did_you_mean

AGENTS = ("dqn", "ppo", "random", "always_stay", "always_switch", "burnout_threshold", "conservative",
          "aggressive", "adaptive")
REWARDS = ("short_term_v1", "short_term_v2", "long_term_shaped_v1", "risk_sensitive_v1", "sparse_v1")
#: The reference's benchmark settings (rl-failure-lab §10): DQN buffer 5000, batch 32, decay 0.995 and its
#: damped target update; PPO n_steps 256, 4 epochs.
AGENT_PARAMS = {
    "dqn": {"buffer_size": 5000, "batch_size": 32, "epsilon_decay": 0.995, "tau": 0.005},
    "ppo": {"n_steps": 256, "n_epochs": 4},
}


@dataclass(frozen=True)
class BenchBudget:
    episodes: int = 100
    eval_episodes: int = 10
    max_steps: int = 200


DEFAULT_BENCH_BUDGET = BenchBudget()
QUICK_BENCH_BUDGET = BenchBudget(episodes=6, eval_episodes=2, max_steps=50)


def _check(kind: str, names: Sequence[str], choices: Sequence[str]) -> list[str]:
    for n in names:
        if n not in choices:
            raise ConfigError(f"unknown {kind} {n!r}{did_you_mean(n, choices)}; expected some of: {', '.join(choices)}")
    return list(names) or list(choices)


def bench_protocols(agents: Sequence[str] = (), rewards: Sequence[str] = (), seeds: int = 3,
                    budget: BenchBudget = DEFAULT_BENCH_BUDGET) -> list[ExperimentProtocol]:
    agents = _check("agent", agents, AGENTS)
    rewards = _check("reward", rewards, REWARDS)
    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive integer; found {seeds!r}")
    out = []
    for reward in rewards:
        for agent in agents:
            for seed in range(seeds):
                out.append(ExperimentProtocol(
                    agent=agent, reward=reward, seed=seed, episodes=budget.episodes, eval_interval=0,
                    eval_episodes=budget.eval_episodes, env_params={"max_steps": budget.max_steps},
                    agent_params=dict(AGENT_PARAMS.get(agent, {})), name=f"bench-{agent}-{reward}-s{seed}",
                    description="benchmark matrix run",
                ).validate())
    return out


def final_eval_scores(store: Any, run_ids: Sequence[str]) -> dict[str, float]:
    """Mean return of each run's last block of evaluation episodes (the evaluation after training)."""
    rows = store.sql(
        """
        WITH ev AS (
            SELECT run_id, episode, return,
                   episode - row_number() OVER (PARTITION BY run_id ORDER BY episode) AS block
            FROM episodes WHERE phase = 'eval' AND list_contains($runs, run_id)
        ), last AS (SELECT run_id, max(block) AS block FROM ev GROUP BY run_id)
        SELECT run_id, avg(return) FROM ev JOIN last USING (run_id, block) GROUP BY run_id ORDER BY run_id
        """,
        runs=list(run_ids),
    ).rows()
    return {r: float(v) for r, v in rows}


@dataclass
class BenchReport:
    store: str
    seeds: int
    budget: BenchBudget
    agents: list[str]
    rewards: list[str]
    scores: dict[str, dict[str, list[float]]]  # reward -> agent -> per-seed scores
    rankings: dict[str, list[dict[str, Any]]]  # reward -> rows sorted by IQM
    agent_average: dict[str, float]
    reward_average: dict[str, float]
    failures: dict[str, dict[str, int]]  # agent -> detector -> runs with a finding
    recorded: int
    reused: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "rlaudit-bench", "version": 1, "store": self.store, "seeds": self.seeds,
            "budget": {"episodes": self.budget.episodes, "eval_episodes": self.budget.eval_episodes,
                       "max_steps": self.budget.max_steps},
            "agents": self.agents, "rewards": self.rewards, "scores": self.scores, "rankings": self.rankings,
            "agent_average": self.agent_average, "reward_average": self.reward_average,
            "failures": self.failures, "recorded_runs": self.recorded, "reused_runs": self.reused,
        }


def rank_groups(scores: dict[str, list[float]], *, resamples: int = 20_000, seed: int = 0) -> list[dict[str, Any]]:
    """Groups sorted by IQM, each with its stratified-bootstrap interval and a rank range.

    A group's rank range runs from 1 + the number of groups whose interval lies wholly above its own to
    the number of groups whose interval does not lie wholly below it: overlapping intervals share ranks.
    """
    from rlaudit.analyzer.statistics import bootstrap_interval

    rows = []
    for name, values in scores.items():
        x = np.asarray(values, dtype=float)
        interval = bootstrap_interval(x, resamples=resamples, seed=seed)  # IQM, stratified percentile bootstrap
        rows.append({"name": name, "n": int(x.size), "iqm": interval.value, "low": interval.low,
                     "high": interval.high, "mean": float(x.mean())})
    for row in rows:
        above = sum(1 for o in rows if o is not row and o["low"] > row["high"])
        not_below = sum(1 for o in rows if o is not row and not (o["high"] < row["low"]))
        row["rank_best"] = above + 1
        row["rank_worst"] = not_below + 1
        row["tie"] = row["rank_best"] != row["rank_worst"]
    rows.sort(key=lambda r: (-r["iqm"], r["name"]))
    return rows


def run_bench(
    store: str | Path,
    *,
    agents: Sequence[str] = (),
    rewards: Sequence[str] = (),
    seeds: int = 3,
    budget: BenchBudget = DEFAULT_BENCH_BUDGET,
    workers: int | None = None,
    on_done: Callable[[str, Any, str | None], None] | None = None,
    audit_progress: Callable[[int, int, str], None] | None = None,
) -> tuple[BenchReport, Any]:
    """Record (or reuse) the matrix, audit the store, rank and count; returns (report, audit)."""
    import rlaudit
    from rlaudit.agents.recording import record_protocols
    from rlaudit.reports.audit import run_audit

    protocols = bench_protocols(agents, rewards, seeds, budget)
    agents = _check("agent", agents, AGENTS)
    rewards = _check("reward", rewards, REWARDS)
    summary = record_protocols(protocols, store, workers=workers, on_done=on_done)
    audit = run_audit([store], progress=audit_progress, jobs=2)
    wanted = {p.run_id: p for p in protocols}
    with rlaudit.open(store) as s:
        score = final_eval_scores(s, list(wanted))
    missing = [r for r in wanted if r not in score]
    if missing:
        raise ConfigError(f"run {missing[0]!r} has no evaluation episodes in {store}; "
                          f"check it with 'rlaudit runs {store}'")
    scores: dict[str, dict[str, list[float]]] = {r: {a: [] for a in agents} for r in rewards}
    for rid, p in wanted.items():
        scores[p.reward][p.agent].append(score[rid])
    rankings = {r: rank_groups(scores[r]) for r in rewards}
    agent_average = {a: float(np.mean([np.mean(scores[r][a]) for r in rewards])) for a in agents}
    reward_average = {r: float(np.mean([np.mean(scores[r][a]) for a in agents])) for r in rewards}
    failures: dict[str, dict[str, set[str]]] = {a: {} for a in agents}
    for f in audit.findings:
        p = wanted.get(f.run_id or "")
        if p is not None:
            failures[p.agent].setdefault(f.detector, set()).add(f.run_id)
    counts = {a: {d: len(runs) for d, runs in sorted(failures[a].items())} for a in agents}
    report = BenchReport(str(store), seeds, budget, agents, rewards, scores, rankings, agent_average,
                         reward_average, counts, len(summary.results), len(summary.skipped))
    return report, audit


def fmt(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.3g}"
