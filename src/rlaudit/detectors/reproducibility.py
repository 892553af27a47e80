"""Reproducibility detectors: runs that should be identical and are not."""

from __future__ import annotations

import json
from typing import Any, Iterator

from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector

#: Manifest keys that describe what a run is (its configuration), not how or when it was recorded.
CONFIG_KEYS = ("env", "spaces", "num_envs", "seed", "agent", "hyperparameters", "gamma", "reward", "config")
#: Keys of ``config`` (and of a protocol in it) that name or describe a run without changing it.
NAMING_KEYS = {"name", "run_id", "description"}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in NAMING_KEYS}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def config_key(manifest: dict[str, Any]) -> str | None:
    """A canonical text of what the run's configuration is; None when the run has no seed (nothing to reproduce)."""
    seed = manifest.get("seed")
    if seed is None and isinstance(manifest.get("config"), dict):
        seed = manifest["config"].get("seed")
    if seed is None:
        return None
    return json.dumps({k: _strip(manifest.get(k)) for k in CONFIG_KEYS}, sort_keys=True, default=repr)


_DIFFERS = (
    "(a.length <> b.length OR a.termination <> b.termination OR a.reset_seed IS DISTINCT FROM b.reset_seed "
    "OR NOT (a.return = b.return OR abs(a.return - b.return) <= $tol * (1 + abs(a.return) + abs(b.return))))"
)


def _comparison_sql(with_obs: bool) -> str:
    """Episodes of ``$run_id`` that differ from the same episode of ``$reference`` (first observations too)."""
    first = ("WITH fa AS (SELECT env_index, episode, obs FROM steps WHERE run_id = $reference AND t = 0), "
             "fb AS (SELECT env_index, episode, obs FROM steps WHERE run_id = $run_id AND t = 0) ") if with_obs else ""
    columns = ", fa.obs AS first_obs_reference, fb.obs AS first_obs_run" if with_obs else ""
    joins = (" LEFT JOIN fa ON fa.env_index = a.env_index AND fa.episode = a.episode"
             " LEFT JOIN fb ON fb.env_index = b.env_index AND fb.episode = b.episode") if with_obs else ""
    differs = f"({_DIFFERS} OR fa.obs IS DISTINCT FROM fb.obs)" if with_obs else _DIFFERS
    return (
        f"{first}SELECT a.env_index, a.episode, a.phase, a.first_global_step, a.last_global_step, "
        "a.length AS length_reference, b.length AS length_run, a.termination AS termination_reference, "
        "b.termination AS termination_run, a.reset_seed AS seed_reference, b.reset_seed AS seed_run, "
        f"a.return AS return_reference, b.return AS return_run{columns} "
        f"FROM episodes a JOIN episodes b ON a.env_index = b.env_index AND a.episode = b.episode{joins} "
        f"WHERE a.run_id = $reference AND b.run_id = $run_id AND {differs}"
    )


@detector("irreproducible", severity="warning", needs=("episodes",), scope="store")
def irreproducible(ctx: Context, *, tolerance: float = 1e-9, cap: int = 30) -> Iterator[Finding]:
    """Runs with the same configuration and seed whose trajectories differ (unseeded randomness).

    Finds:
        Groups of runs whose manifests agree on everything that defines a
        run (env id and kwargs, spaces, number of envs, seed, agent,
        hyper-parameters, gamma, reward and its parameters, the config dict,
        ignoring run names and descriptions) and that have a seed. Each
        later run of a group (by run id order after the first created) is
        compared with the group's first run episode by episode (same
        sub-env, same episode number): length, how the episode ended, the
        reset seed, the return (equal up to a relative ``tolerance``) and the
        episode's first observation (exactly: the same seed gives the same
        reset state, so an unseeded reset shows even when every episode
        returns the same). One finding per deviating run, from the first
        episode that differs to the last.

    Why it matters:
        A seed that does not reproduce a run means some randomness is not
        controlled by it: an unseeded environment reset, a global RNG, a
        non-deterministic GPU kernel, thread scheduling or data loading
        order. Then differences between configurations cannot be told from
        seed noise, and a failure cannot be replayed to be debugged.

    Evidence:
        The episodes that differ, with both runs' length, termination, reset
        seed, return and first observation side by side, in (env_index,
        episode) order.

    Not flagged:
        Runs without a seed; runs whose configurations differ in anything
        but their name; episodes only one of the runs has (a longer budget);
        return differences within ``tolerance`` (floating-point summation
        order).

    Fix:
        Seed every source of randomness from the run's seed: env resets
        (``reset(seed=...)`` for the first episode and a seeded generator for
        the rest), the agent's and the libraries' generators (numpy, torch,
        Python's random), and the action-space samplers. Turn on
        deterministic algorithms (``torch.use_deterministic_algorithms``) and
        fix thread counts; then replay the first differing episode of both
        runs from its reset seed to find the first step that differs.
    """
    groups: dict[str, list[str]] = {}
    for run_id in sorted(ctx.runs):
        key = config_key(ctx.runs[run_id].manifest)
        if key is not None:
            groups.setdefault(key, []).append(run_id)
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda r: (str(ctx.runs[r].manifest.get("created_at") or ""), r))
        first = members[0]
        for other in members[1:]:
            query = _comparison_sql(ctx.has("obs"))
            row = ctx.sql(
                f"SELECT count(*), min(first_global_step), max(last_global_step), min(episode), max(episode), "
                f"min(env_index), max(env_index) FROM ({query}) AS d",
                reference=first, run_id=other, tol=tolerance,
            ).one()
            n, s0, s1, e0, e1, i0, i1 = row
            if not n:
                continue
            compared = ctx.sql(
                "SELECT count(*) FROM episodes a JOIN episodes b ON a.env_index = b.env_index AND a.episode = b.episode "
                "WHERE a.run_id = $reference AND b.run_id = $run_id",
                reference=first, run_id=other,
            ).scalar()
            evidence = ctx.evidence(query + " ORDER BY a.env_index, a.episode", cap=cap, reference=first, run_id=other,
                                    tol=tolerance)
            yield ctx.finding(
                f"run {other!r} has the configuration and seed of {first!r} but {n:,} of their {compared:,} shared "
                f"episodes differ, from episode {e0} (global_step {s0:,}); expected identical trajectories",
                run_id=other,
                score=n / compared if compared else 1.0,
                evidence=evidence,
                episode_start=e0,
                episode_end=e1,
                step_start=s0,
                step_end=s1,
                env_index=i0 if i0 == i1 else None,
                actual={"reference_run": first, "differing_episodes": n, "shared_episodes": compared},
                expected={"differing_episodes": 0, "tolerance": tolerance},
            )
