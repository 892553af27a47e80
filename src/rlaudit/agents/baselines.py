"""Heuristic baselines recorded under the same protocol as existing career-env runs.

``rlaudit compare --make-baselines`` calls :func:`record_baselines` with the
manifests of the runs it compares. For every career-env run (one whose
manifest holds its :class:`~rlaudit.agents.experiments.ExperimentProtocol`)
and every heuristic, it plans a run with the same seed, reward (and reward
parameters), regime (and environment parameters), training budget and
evaluation episodes. The same seed gives the same evaluation reset seeds
(``episode_seeds``), so the heuristic is evaluated on exactly the episodes
the recorded agent was evaluated on. A heuristic does not change while it
"trains", so it is evaluated once, after training (``eval_interval=0``), like
the demo's baselines. Runs already in the store (same agent, seed, reward,
regime and parameters) are skipped; a run id taken by a different run gets a
numeric suffix.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlaudit.agents.demo import HEURISTIC_BASELINES
from rlaudit.agents.experiments import ENV_ID, ExperimentProtocol, ExperimentResult, run_experiment


@dataclass
class BaselinePlan:
    """What :func:`plan_baselines` found: runs to record, runs already present, runs it cannot copy."""

    todo: list[ExperimentProtocol] = field(default_factory=list)
    present: list[str] = field(default_factory=list)  # run ids of baselines already recorded
    unsupported: list[tuple[str, str]] = field(default_factory=list)  # (run_id, reason)


def _protocol_of(manifest: Mapping[str, Any]) -> ExperimentProtocol | None:
    config = manifest.get("config")
    protocol = config.get("protocol") if isinstance(config, Mapping) else None
    env = manifest.get("env")
    env_id = env.get("id") if isinstance(env, Mapping) else env
    if env_id != ENV_ID or not isinstance(protocol, Mapping):
        return None
    return ExperimentProtocol.from_dict(dict(protocol))


def _identity(p: ExperimentProtocol) -> str:
    return json.dumps([p.agent, p.seed, p.reward, p.reward_params, p.regime, p.env_params, p.agent_params],
                      sort_keys=True)


def plan_baselines(manifests: Iterable[Mapping[str, Any]],
                   heuristics: Iterable[str] = HEURISTIC_BASELINES) -> BaselinePlan:
    """The heuristic runs that would give every recorded career-env run its baselines."""
    heuristics = list(heuristics)
    plan = BaselinePlan()
    recorded: dict[str, str] = {}  # identity -> run id
    protocols: list[ExperimentProtocol] = []
    for m in manifests:
        run_id = str(m.get("run_id"))
        protocol = _protocol_of(m)
        if protocol is None:
            plan.unsupported.append((run_id, f"not a {ENV_ID} run recorded by rlaudit train / run_experiment"))
            continue
        recorded[_identity(protocol)] = run_id
        protocols.append(protocol)
    planned: set[str] = set()
    for p in protocols:
        for agent in heuristics:
            baseline = ExperimentProtocol(
                agent=agent, reward=p.reward, regime=p.regime, seed=p.seed,
                episodes=p.episodes, steps=p.steps, eval_interval=0, eval_episodes=p.eval_episodes,
                reward_params=dict(p.reward_params), env_params=dict(p.env_params),
                auditor_columns=list(p.auditor_columns),
                description=f"heuristic baseline for runs with seed {p.seed} (rlaudit compare --make-baselines)",
            )
            key = _identity(baseline)
            if key in recorded:
                if recorded[key] not in plan.present:
                    plan.present.append(recorded[key])
            elif key not in planned:
                planned.add(key)
                plan.todo.append(baseline.validate())
    return plan


def record_baselines(
    manifests: Iterable[Mapping[str, Any]],
    store: str | Path,
    *,
    heuristics: Iterable[str] = HEURISTIC_BASELINES,
    on_done: Callable[[ExperimentResult], None] | None = None,
) -> tuple[BaselinePlan, list[ExperimentResult]]:
    """Plan the baselines of ``manifests`` and record the missing ones into ``store``."""
    plan = plan_baselines(manifests, heuristics)
    results = []
    for protocol in plan.todo:
        result = run_experiment(protocol, store, on_exists="suffix")
        results.append(result)
        if on_done is not None:
            on_done(result)
    return plan, results
