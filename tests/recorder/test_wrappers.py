"""The Gymnasium front-ends record what the env did, and agree with the loop API."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium.vector import AutoresetMode

from rlaudit import Recorder, RecordTrajectory, RecordVectorTrajectory
from rlaudit.schema import manifest_from_metadata

COMPARED = ["env_index", "episode", "t", "global_step", "phase", "obs", "action", "reward",
            "terminated", "truncated", "final_obs", "reset_seed"]


def _actions(n, seed=0):
    return np.random.default_rng(seed).integers(0, 2, n)


def test_wrapper_and_loop_api_record_identical_tables(tmp_path):
    actions = _actions(700)
    env = RecordTrajectory(gym.make("CartPole-v1"), tmp_path, "wrapped", flush_steps=128)
    env.reset(seed=7)
    for a in actions:
        _, _, te, tr, _ = env.step(int(a))
        if te or tr:
            env.reset(seed=None)
    env.close()

    raw = gym.make("CartPole-v1")
    with Recorder(tmp_path, "loop", flush_steps=128, observation_space=raw.observation_space,
                  action_space=raw.action_space) as rec:
        obs, info = raw.reset(seed=7)
        rec.reset(obs, seed=7, info=info)
        for a in actions:
            obs, r, te, tr, info = raw.step(int(a))
            rec.step(int(a), obs, r, te, tr, info)
            if te or tr:
                obs, info = raw.reset()
                rec.reset(obs, info=info)

    wrapped = pq.read_table(tmp_path / "wrapped.parquet").select(COMPARED)
    loop = pq.read_table(tmp_path / "loop.parquet").select(COMPARED)
    assert wrapped.num_rows == len(actions)
    assert wrapped.equals(loop)
    manifest = manifest_from_metadata(pq.read_schema(tmp_path / "wrapped.parquet").metadata)
    assert manifest["env"]["id"] == "CartPole-v1"
    assert manifest["env"]["max_episode_steps"] == 500
    assert manifest["spaces"]["observation"]["type"] == "Box"
    assert manifest["spaces"]["action"] == {"type": "Discrete", "n": 2, "start": 0}


def _replay_sub_envs(table, seed, num_envs):
    """Re-run each sub-env alone with the recorded actions; compare obs and final_obs."""
    for e in range(num_envs):
        rows = [r for r in table.to_pylist() if r["env_index"] == e]
        env = gym.make("CartPole-v1")
        obs, _ = env.reset(seed=seed + e)
        episode = 0
        assert rows[0]["reset_seed"] == seed + e
        for r in rows:
            assert r["episode"] == episode
            np.testing.assert_array_equal(np.array(r["obs"], np.float32), obs)
            obs, rew, te, tr, _ = env.step(r["action"])
            assert (r["reward"], r["terminated"], r["truncated"]) == (rew, te, tr)
            if te or tr:
                np.testing.assert_array_equal(np.array(r["final_obs"], np.float32), obs)
                obs, _ = env.reset()
                episode += 1
            else:
                assert r["final_obs"] is None


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize("vectorization", ["sync", "async"])
def test_vector_env_episodes_autoreset_and_final_obs(tmp_path, mode, vectorization):
    num_envs, seed, calls = 4, 11, 400
    envs = gym.make_vec("CartPole-v1", num_envs, vectorization_mode=vectorization,
                        vector_kwargs={"autoreset_mode": mode})
    envs = RecordVectorTrajectory(envs, tmp_path, "vec", flush_steps=97)
    envs.reset(seed=seed)
    rng = np.random.default_rng(0)
    autoreset_calls = 0
    prev_done = np.zeros(num_envs, bool)
    for _ in range(calls):
        _, _, te, tr, _ = envs.step(rng.integers(0, 2, num_envs))
        if mode == AutoresetMode.NEXT_STEP:
            autoreset_calls += int(prev_done.sum())
        prev_done = te | tr
    envs.close()
    assert envs.recorder.dropped == {}
    table = pq.read_table(tmp_path / "vec.parquet")
    # no transition recorded for NEXT_STEP autoreset calls
    assert table.num_rows == calls * num_envs - autoreset_calls
    manifest = manifest_from_metadata(table.schema.metadata)
    assert manifest["env"]["num_envs"] == num_envs
    assert manifest["env"]["autoreset_mode"] == ("next_step" if mode == AutoresetMode.NEXT_STEP else "same_step")
    _replay_sub_envs(table, seed, num_envs)


def test_vector_batch_policy_data_and_metrics(tmp_path):
    envs = RecordVectorTrajectory(gym.make_vec("CartPole-v1", 3, vectorization_mode="sync"), tmp_path, "p")
    envs.reset(seed=0)
    for k in range(50):
        envs.set_policy_info(logp=np.full(3, -0.69), value=np.arange(3.0), q=np.ones((3, 2)), policy_version=k)
        envs.step(np.zeros(3, int))
        envs.log_metrics(k * 3, loss=1.0 / (k + 1))
    envs.close()
    t = pq.read_table(tmp_path / "p.parquet")
    rows = t.to_pylist()
    assert all(r["logp"] == pytest.approx(-0.69) for r in rows)
    assert {r["value"] for r in rows} == {0.0, 1.0, 2.0}
    assert all(r["q"] == [1.0, 1.0] for r in rows)
    m = pq.read_table(tmp_path / "p.metrics.parquet")
    assert m.num_rows == 50 and m.column("name").to_pylist()[0] == "loss"
