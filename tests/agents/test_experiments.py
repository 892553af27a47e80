"""Experiment protocols and the recorded runs they produce."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from rlaudit.agents.experiments import ExperimentProtocol, run_experiment
from rlaudit.errors import ConfigError, RunExistsError


def steps_table(path):
    """The step table without the wall-clock column (the only thing allowed to differ)."""
    table = pq.read_table(path)
    return table.drop_columns(["wall_time"])


def metrics_table(path):
    return pq.read_table(str(path).replace(".parquet", ".metrics.parquet")).drop_columns(["wall_time"])


def manifest(path):
    return json.loads(pq.read_schema(path).metadata[b"rlaudit.manifest"])


# --- protocol -----------------------------------------------------------------


def test_protocol_defaults_and_run_id():
    p = ExperimentProtocol(agent="dqn", reward="sparse_v1", regime="boom", seed=4).validate()
    assert p.run_id == "dqn-sparse_v1-boom-s4"
    assert ExperimentProtocol(name="my-run").run_id == "my-run"


def test_protocol_round_trips_through_json():
    p = ExperimentProtocol(
        agent="dqn", seed=3, episodes=None, steps=5000, agent_params={"hidden_sizes": [32, 32], "tau": 0.5},
        reward_params={"burnout_weight": 0.0}, env_params={"burnout_rate": 0.2}, name="x1",
        auditor_columns=["info.burnout"], description="why",
    )
    again = ExperimentProtocol.from_dict(json.loads(json.dumps(p.to_dict())))
    assert again == p


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"agent": "pop"}, r"unknown agent 'pop' \(did you mean 'ppo'\?\); expected one of: dqn, ppo, random"),
        ({"reward": "short_term_v3"}, r"unknown reward 'short_term_v3' \(did you mean 'short_term_v\d'\?\); expected one of"),
        ({"regime": "recesion"}, r"unknown regime 'recesion' \(did you mean 'recession'\?\); expected one of: stable, boom"),
        ({"seed": -1}, r"seed must be an integer ≥ 0; found -1"),
        ({"seed": 1.5}, r"seed must be an integer ≥ 0; found 1.5"),
        ({"steps": 100}, r"exactly one training budget, episodes or steps; found episodes=100, steps=100"),
        ({"episodes": None}, r"exactly one training budget.*found episodes=None, steps=None"),
        ({"episodes": 0}, r"episodes must be a positive integer; found 0"),
        ({"eval_interval": -2}, r"eval_interval must be an integer ≥ 0; found -2"),
        ({"name": "../escape"}, r"protocol name is the run id and a file name.*found '../escape'"),
        ({"agent_params": [1]}, r"agent_params must be a mapping"),
        ({"agent": "ppo", "agent_params": {"clip": 0.1}}, r"unknown ppo parameter 'clip'"),
        ({"agent": "burnout_threshold", "agent_params": {"treshold": 0.5}}, r"'treshold'.*did you mean 'threshold'"),
        ({"reward_params": {"burnout_wieght": 0}}, r"burnout_wieght.*did you mean 'burnout_weight'"),
        ({"env_params": {"burnout_rate": 5.0}}, r"burnout_rate"),
        ({"auditor_columns": "info.burnout"}, r"auditor_columns must be a list of column names"),
    ],
)
def test_invalid_protocols_say_what_was_expected_and_found(fields, message):
    with pytest.raises(ConfigError, match=message):
        ExperimentProtocol(**fields).validate()


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match=r"unknown protocol field 'episode' \(did you mean 'episodes'\?\)"):
        ExperimentProtocol.from_dict({"agent": "ppo", "episode": 3})
    with pytest.raises(ConfigError, match="must be a mapping"):
        ExperimentProtocol.from_dict(["ppo"])


# --- recorded runs --------------------------------------------------------------


def small(agent="burnout_threshold", **kw):
    values = {"agent": agent, "episodes": 6, "eval_interval": 3, "eval_episodes": 2, "seed": 7}
    values.update(kw)
    return ExperimentProtocol(**values)


def test_a_run_records_training_and_evaluation_with_the_protocol(tmp_path):
    protocol = small()
    result = run_experiment(protocol, tmp_path)
    assert result.run_id == "burnout_threshold-short_term_v1-stable-s7"
    table = pq.read_table(result.path)
    assert table.num_rows == result.total_steps

    m = manifest(result.path)
    assert m["status"] == "complete"
    assert m["config"]["protocol"] == protocol.to_dict()
    assert m["auditor_columns"] == ["info.burnout", "info.salary"]
    assert m["env"]["id"] == "rlaudit/Career-v0"
    assert m["env"]["kwargs"] == {"regime": "stable", "reward": "short_term_v1"}

    rows = table.select(["episode", "t", "phase", "reset_seed", "reward"]).to_pylist()
    starts = [r for r in rows if r["t"] == 0]
    phases = [r["phase"] for r in starts]
    # 3 training episodes, an evaluation of 2, 3 more, the final evaluation of 2
    assert phases == ["train"] * 3 + ["eval"] * 2 + ["train"] * 3 + ["eval"] * 2
    train_seeds = [r["reset_seed"] for r in starts if r["phase"] == "train"]
    eval_seeds = [r["reset_seed"] for r in starts if r["phase"] == "eval"]
    assert len(set(train_seeds)) == 6  # a fresh seed per training episode
    assert eval_seeds[:2] == eval_seeds[2:]  # every evaluation faces the same episodes
    assert not set(eval_seeds) & set(train_seeds)

    # headline numbers agree with the recorded rewards
    per_episode = {}
    for r in rows:
        per_episode[r["episode"]] = per_episode.get(r["episode"], 0.0) + r["reward"]
    returns = [per_episode[e] for e in sorted(per_episode)]
    assert result.train_returns == pytest.approx(returns[0:3] + returns[5:8])
    assert result.evaluations[-1].returns == pytest.approx(returns[8:10])
    assert result.final_eval_mean == pytest.approx(np.mean(returns[8:10]))
    assert [e.after_episode for e in result.evaluations] == [3, 6]
    # reward terms and auditor signals are recorded
    assert set(table.schema.field("reward_terms").type.names) == {"salary", "burnout_penalty", "termination_penalty"}
    assert "burnout" in table.schema.field("info").type.names


def test_same_protocol_same_steps_bit_for_bit_heuristic(tmp_path):
    a = run_experiment(small(agent="random"), tmp_path / "a")
    b = run_experiment(small(agent="random"), tmp_path / "b")
    c = run_experiment(small(agent="random", seed=8, name=a.run_id), tmp_path / "c")
    assert steps_table(a.path).equals(steps_table(b.path))
    assert not steps_table(a.path).equals(steps_table(c.path))


@pytest.mark.parametrize("agent", ["dqn", "ppo"])
def test_same_protocol_same_steps_and_metrics_learners(tmp_path, agent):
    pytest.importorskip("torch")
    params = {"batch_size": 16} if agent == "dqn" else {"n_steps": 64, "minibatch_size": 16}
    short = {"max_steps": 60}
    protocol = small(agent=agent, episodes=4, eval_interval=2, agent_params=params, env_params=short)
    a = run_experiment(protocol, tmp_path / "a")
    b = run_experiment(protocol, tmp_path / "b")
    c = run_experiment(small(agent=agent, episodes=4, eval_interval=2, agent_params=params, env_params=short,
                             seed=8, name=a.run_id), tmp_path / "c")
    ta, tb = steps_table(a.path), steps_table(b.path)
    assert ta.equals(tb)
    assert metrics_table(a.path).equals(metrics_table(b.path))
    assert not ta.equals(steps_table(c.path))
    assert a.updates > 0
    # policy data is recorded on every step
    for column in ("logp", "entropy", "value", "policy_version"):
        assert ta.column(column).null_count == 0
    assert pc.max(ta.column("logp")).as_py() <= 0.0
    if agent == "dqn":
        assert ta.column("q").null_count == 0
        names = set(metrics_table(a.path).column("name").to_pylist())
        assert {"loss", "q_mean", "q_max", "td_error", "epsilon", "grad_norm", "learning_rate"} <= names
    else:
        names = set(metrics_table(a.path).column("name").to_pylist())
        assert {"approx_kl", "clip_fraction", "explained_variance", "entropy", "value_loss"} <= names
    versions = ta.filter(pc.equal(ta.column("phase"), "train")).column("policy_version").to_pylist()
    assert versions == sorted(versions) and versions[-1] > 0


def test_evaluation_schedule_does_not_change_training(tmp_path):
    pytest.importorskip("torch")
    params = {"n_steps": 64, "minibatch_size": 16}
    with_eval = run_experiment(small(agent="ppo", episodes=4, eval_interval=1, agent_params=params), tmp_path / "a")
    without = run_experiment(small(agent="ppo", episodes=4, eval_episodes=0, agent_params=params), tmp_path / "b")
    keep = ["episode", "t", "obs", "action", "reward", "logp", "value", "policy_version"]

    def train_rows(path):
        t = pq.read_table(path)
        t = t.filter(pc.equal(t.column("phase"), "train")).select(keep[1:])
        return t

    assert train_rows(with_eval.path).equals(train_rows(without.path))
    assert with_eval.train_returns == without.train_returns
    assert len(with_eval.evaluations) == 4 and without.evaluations == []
    assert without.final_eval_mean is None


def test_step_budget_finishes_the_episode_in_progress(tmp_path):
    result = run_experiment(small(agent="always_switch", episodes=None, steps=450, eval_episodes=0), tmp_path)
    assert result.train_lengths == [200, 200, 200]  # 450 steps reached inside the third episode
    assert result.train_steps == 600


def test_an_existing_run_is_never_overwritten(tmp_path):
    first = run_experiment(small(agent="always_stay"), tmp_path)
    before = (tmp_path / f"{first.run_id}.parquet").read_bytes()
    with pytest.raises(RunExistsError, match="already exists"):
        run_experiment(small(agent="always_stay"), tmp_path)
    assert (tmp_path / f"{first.run_id}.parquet").read_bytes() == before
    again = run_experiment(small(agent="always_stay"), tmp_path, on_exists="suffix")
    assert again.run_id == f"{first.run_id}-1"


def test_reference_phenomena_always_switch_and_always_stay(tmp_path):
    switch = run_experiment(small(agent="always_switch", episodes=10, eval_episodes=0), tmp_path)
    stay = run_experiment(small(agent="always_stay", episodes=10, eval_episodes=0), tmp_path)
    recession = run_experiment(small(agent="always_switch", regime="recession", episodes=10, eval_episodes=0), tmp_path)
    assert 170 < np.mean(switch.train_returns) < 185
    assert -9 < np.mean(stay.train_returns) < -5 and 11 <= np.mean(stay.train_lengths) <= 15
    assert abs(np.mean(recession.train_returns)) < 2


def test_result_serialises(tmp_path):
    result = run_experiment(small(agent="adaptive"), tmp_path)
    data = json.loads(json.dumps(result.to_dict()))
    assert data["run_id"] == result.run_id
    assert data["final_eval_mean"] == pytest.approx(result.final_eval_mean)
    assert data["protocol"]["agent"] == "adaptive"
    assert "final greedy evaluation" in result.summary()
    assert math.isfinite(result.wall_time)


# --- learning (slow) ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["dqn", "ppo"])
def test_learners_beat_a_random_policy(tmp_path, agent):
    pytest.importorskip("torch")
    random = run_experiment(small(agent="random", episodes=40, eval_interval=0, eval_episodes=10, seed=0), tmp_path)
    learner = run_experiment(small(agent=agent, episodes=40, eval_interval=0, eval_episodes=10, seed=0), tmp_path)
    assert random.final_eval_mean < 20
    assert learner.final_eval_mean > random.final_eval_mean + 100
    assert np.mean(learner.train_returns[-10:]) > np.mean(learner.train_returns[:5])
