"""Audit.series: the plot data computed from the store and carried in audit.json."""

from __future__ import annotations

import json

import numpy as np

import rlaudit
from rlaudit.reports import series as S
from tests.reports.store import EPISODES, LENGTH


def test_series_shape_and_values(audit, report_store):
    runs = audit.series["runs"]
    assert sorted(runs) == ["hostile", "ppo-s0", "ppo-s1", "ppo-s2"]
    s = runs["ppo-s1"]
    assert s["bin_width"] == S._bins_of(EPISODES * LENGTH)
    # every training episode is counted once in the learning curve, evaluation episodes in their own curve
    n_eval = sum(1 for k in range(EPISODES) if k % 8 == 7)
    assert sum(s["train_return"]["episodes"]) == EPISODES - n_eval
    assert sum(s["eval_return"]["episodes"]) == n_eval
    with rlaudit.open(report_store) as store:
        ret = store.sql("SELECT return FROM episodes WHERE run_id = 'ppo-s1' AND phase = 'eval' "
                        "ORDER BY episode DESC LIMIT 1").scalar()
        mean_reward = store.sql("SELECT avg(reward) FROM steps WHERE run_id = 'ppo-s1' AND phase = 'train'").scalar()
        actions = store.sql("SELECT action, count(*) FROM steps WHERE run_id = 'ppo-s1' AND phase = 'train' "
                            "GROUP BY ALL ORDER BY ALL").rows()
    # the final evaluation is the last evaluation block (one episode here)
    assert s["info"]["final_eval_return"] == S._r(ret)
    assert s["info"]["final_eval_episodes"] == 1
    assert s["info"]["seed"] == 1 and s["info"]["reward"] == "plant_v1" and s["info"]["gamma"] == 0.9
    # per-bin reward means weighted by steps give back the run's mean reward
    r = s["reward"]
    assert np.isclose(np.average(r["mean"], weights=r["steps"]), mean_reward, rtol=1e-4)
    # action shares sum to one per bin and reproduce the action counts
    share = np.array(s["actions"]["share"])
    assert np.allclose(share.sum(axis=0), 1, atol=1e-4)
    counts = (share * np.array(r["steps"])).sum(axis=1)
    assert np.allclose(counts, [n for _, n in actions], atol=0.5)
    assert s["entropy"]["policy"][0] > s["entropy"]["policy"][-1]  # entropy was recorded decreasing
    assert set(s["reward_terms"]["terms"]) == {"progress", "comfort"}
    assert s["value"]["source"] == "value" and len(s["value"]["estimate"]) == len(s["value"]["x"])
    assert set(s["metrics"]) == {"loss", "approx_kl"}


def test_visitation_and_trajectories(audit):
    s = audit.series["runs"]["ppo-s0"]
    vis = s["visitation"]
    assert vis["dims"] == [0, 1] and vis["labels"] == ["obs[0]", "obs[1]"]
    train_steps = sum(s["reward"]["steps"])
    assert sum(map(sum, vis["counts"])) == vis["steps"] == train_steps
    assert sum(sum(map(sum, grid)) for grid in vis["by_action"].values()) == train_steps
    assert vis["windows"] is None  # short runs are counted whole
    which = [t["which"] for t in s["trajectories"]]
    assert which == ["best", "worst", "last"]
    best = s["trajectories"][0]
    assert best["return"] == max(best["return"], *(t["return"] for t in s["trajectories"]))
    assert len(best["x"]) == len(best["y"]) == LENGTH


def test_groups_across_seeds(audit):
    groups = audit.series["groups"]
    assert [g["runs"] for g in groups] == [["ppo-s0", "ppo-s1", "ppo-s2"]]
    g = groups[0]
    assert all(lo <= m <= hi for lo, m, hi in zip(g["low"], g["mean"], g["high"]))
    assert set(g["n"]) <= {2, 3}


def test_series_is_in_audit_json_and_deterministic(report_store, audit):
    again = rlaudit.reports.run_audit([report_store])
    assert json.loads(again.to_json(timings=False))["series"] == json.loads(audit.to_json(timings=False))["series"]


def test_windows_sample_long_runs():
    assert S._windows(1000) == [(0, 1001)]
    w = S._windows(10 * S.VISIT_STEPS)
    assert len(w) == S.VISIT_WINDOWS and w[0][0] == 0 and w[-1][1] == 10 * S.VISIT_STEPS - 1
    assert sum(b - a + 1 for a, b in w) == S.VISIT_STEPS


def test_t_quantiles():
    assert S._t975(2) == 4.303 and abs(S._t975(60) - 2.000) < 0.002
