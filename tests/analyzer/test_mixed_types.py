"""A store mixing runs whose columns have no common type (Discrete and Box actions)."""

from __future__ import annotations

import gymnasium as gym

import rlaudit
from rlaudit.reports.audit import run_audit


def _record(store, env_id, steps=400):
    env = rlaudit.RecordTrajectory(gym.make(env_id), store, run_id=env_id.lower())
    env.action_space.seed(0)
    env.reset(seed=0)
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    env.close()


def test_discrete_and_box_actions_in_one_store(tmp_path):
    _record(tmp_path, "CartPole-v1")
    _record(tmp_path, "Pendulum-v1")
    with rlaudit.open(tmp_path) as store:
        # store-wide, the column reads as JSON text; nothing fails
        rows = store.sql("SELECT run_id, typeof(action), count(*) FROM steps GROUP BY ALL ORDER BY ALL").rows()
        assert rows == [("cartpole-v1", "VARCHAR", 400), ("pendulum-v1", "VARCHAR", 400)]
        assert store.sql("SELECT action FROM steps WHERE run_id = 'cartpole-v1' ORDER BY global_step LIMIT 1").scalar() in ("0", "1")
        # a run's scoped view keeps its own type
        for run_id, dtype in (("cartpole-v1", "BIGINT"), ("pendulum-v1", "FLOAT[]")):
            q = store.scoped(run_id)
            try:
                assert q.sql("SELECT DISTINCT typeof(action) FROM steps").rows() == [(dtype,)]
            finally:
                q.close()
    audit = run_audit([tmp_path])
    assert not [r for r in audit.results if r.status == "error"], audit.results
