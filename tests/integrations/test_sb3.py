"""TrajectoryCallback against real Stable-Baselines3 training.

The oracles are SB3's own: Monitor's episode lengths, the
``terminal_observation`` SB3 hands to callbacks, the policy's distribution
recomputed by a second callback, and SB3's logger.
"""

from __future__ import annotations

import json
import math
import os
import shutil

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("stable_baselines3")
torch = pytest.importorskip("torch")

from stable_baselines3 import A2C, DQN, PPO, SAC, TD3  # noqa: E402
from stable_baselines3.common.callbacks import BaseCallback, EvalCallback  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.vec_env import SubprocVecEnv  # noqa: E402

import rlaudit  # noqa: E402
from rlaudit.errors import RecorderWarning  # noqa: E402
from rlaudit.integrations.sb3 import TrajectoryCallback  # noqa: E402


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class Oracle(BaseCallback):
    """What SB3 itself says about each step: terminal observations and the policy's entropy."""

    def __init__(self):
        super().__init__()
        self.terminals: list[tuple[int, np.ndarray]] = []
        self.entropies: list[np.ndarray] = []
        self.q: list[np.ndarray] = []

    def _on_step(self) -> bool:
        for k, done in enumerate(self.locals["dones"]):
            if done:
                self.terminals.append((k, np.array(self.locals["infos"][k]["terminal_observation"])))
        obs_tensor = self.locals.get("obs_tensor")
        if obs_tensor is not None:
            with torch.no_grad():
                self.entropies.append(self.model.policy.get_distribution(obs_tensor).entropy().numpy())
        if hasattr(self.model, "q_net"):
            with torch.no_grad():
                self.q.append(self.model.q_net(self.model.policy.obs_to_tensor(self.model._last_obs)[0]).numpy())
        return True


def monitor_lengths(venv) -> dict[int, list[int]]:
    return {k: list(lengths) for k, lengths in enumerate(venv.env_method("get_episode_lengths"))}


def store_lengths(store, run_id: str, phase: str = "train") -> dict[int, list[int]]:
    rows = store.sql(
        "SELECT env_index, episode, count(*) AS n, bool_or(terminated OR truncated) AS ended FROM steps "
        "WHERE run_id = $run AND phase = $phase GROUP BY ALL ORDER BY env_index, episode",
        run=run_id, phase=phase,
    ).rows()
    out: dict[int, list[int]] = {}
    for env_index, _, n, ended in rows:
        if ended:
            out.setdefault(env_index, []).append(n)
    return out


def train_ppo(tmp_path, vec_env_cls=None, run_id="ppo"):
    venv = make_vec_env("CartPole-v1", n_envs=4, seed=0, vec_env_cls=vec_env_cls)
    cb = TrajectoryCallback(tmp_path, run_id=run_id)
    oracle = Oracle()
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=128, n_epochs=2, seed=0)
    model.learn(1024, callback=[cb, oracle])
    model.learn(1024, callback=[cb, oracle], reset_num_timesteps=False)
    lengths = monitor_lengths(venv)
    path = cb.close()
    venv.close()
    return cb, oracle, lengths, path


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ppo")
    cb, oracle, lengths, path = train_ppo(tmp)
    return tmp, cb, oracle, lengths, path


def test_ppo_episodes_match_monitor(ppo_run):
    tmp, cb, _, lengths, path = ppo_run
    assert path == tmp / "ppo.parquet" and path.exists()
    store = rlaudit.open(tmp)
    assert store_lengths(store, "ppo") == lengths
    assert sum(len(v) for v in lengths.values()) > 40
    assert cb.recorder.dropped == {}


def test_ppo_terminal_observations_are_sb3s(ppo_run):
    tmp, _, oracle, _, _ = ppo_run
    store = rlaudit.open(tmp)
    rows = store.sql(
        "SELECT env_index, final_obs FROM steps WHERE final_obs IS NOT NULL ORDER BY global_step, env_index"
    ).rows()
    assert len(rows) == len(oracle.terminals)
    for (k, final), (k_sb3, term) in zip(rows, oracle.terminals):
        assert k == k_sb3
        np.testing.assert_array_equal(np.array(final, np.float32), term)
    # the next episode starts from the reset observation, not the terminal one
    starts = store.sql(
        "SELECT a.final_obs, b.obs FROM steps a JOIN steps b ON a.env_index = b.env_index "
        "AND b.episode = a.episode + 1 AND b.t = 0 WHERE a.final_obs IS NOT NULL"
    ).rows()
    assert starts and all(not np.array_equal(f, o) for f, o in starts)


def test_ppo_two_learn_calls_are_one_continuous_run(ppo_run):
    tmp, *_ = ppo_run
    store = rlaudit.open(tmp)
    assert store.run_ids == ["ppo"]
    steps = store.sql("SELECT DISTINCT global_step FROM steps WHERE run_id = 'ppo' ORDER BY 1").rows()
    assert [s for (s,) in steps] == list(range(0, 2048, 4))
    # every sub-env's episodes run on across the second learn() call: t has no gap, episodes no restart
    gaps = store.sql(
        "SELECT count(*) FROM (SELECT env_index, episode, max(t) + 1 - count(*) AS gap FROM steps "
        "GROUP BY ALL) WHERE gap <> 0"
    ).scalar()
    assert gaps == 0


def test_ppo_policy_columns_and_metrics(ppo_run):
    tmp, cb, oracle, _, _ = ppo_run
    store = rlaudit.open(tmp)
    logp, entropy, value, version = store.sql(
        "SELECT count(logp), count(entropy), count(value), max(policy_version) FROM steps"
    ).one()
    assert logp == entropy == value == 2048
    assert version > 0
    # the entropy is that of the acting policy at each step (recomputed by SB3's own distribution)
    recorded = np.array([e for (e,) in store.sql("SELECT entropy FROM steps ORDER BY global_step, env_index").rows()])
    np.testing.assert_allclose(recorded, np.concatenate(oracle.entropies), rtol=1e-5)
    assert cb._entropy_fallbacks == 0
    assert store.sql("SELECT max(logp) FROM steps").scalar() <= 0
    names = {n for (n,) in store.sql("SELECT DISTINCT name FROM metrics").rows()}
    assert {"approx_kl", "clip_fraction", "explained_variance", "value_loss", "loss", "rollout/ep_rew_mean"} <= names
    # SB3 logs train values after its last dump of a learn() call; they are kept too
    kl_steps = [s for (s,) in store.sql("SELECT global_step FROM metrics WHERE name = 'approx_kl' ORDER BY 1").rows()]
    assert kl_steps[-1] == 2048
    manifest = store.sql("SELECT agent, gamma, num_envs, env_id FROM runs").one()
    assert manifest == ("PPO", 0.99, 4, "CartPole-v1")
    manifest = json.loads(store.sql("SELECT manifest FROM runs").scalar())
    assert manifest["hyperparameters"]["n_steps"] == 64 and manifest["hyperparameters"]["learning_rate"] == 0.0003
    assert manifest["env"]["vector"] == "DummyVecEnv" and manifest["env"]["autoreset_mode"] == "same_step"
    assert manifest["seed"] == 0 and manifest["versions"]["stable_baselines3"]


@pytest.mark.slow
def test_ppo_subprocess_envs(tmp_path):
    cb, oracle, lengths, path = train_ppo(tmp_path, vec_env_cls=SubprocVecEnv, run_id="ppo-subproc")
    store = rlaudit.open(path)
    assert store_lengths(store, "ppo-subproc") == lengths
    finals = store.sql("SELECT env_index, final_obs FROM steps WHERE final_obs IS NOT NULL ORDER BY global_step, env_index").rows()
    assert [k for k, _ in finals] == [k for k, _ in oracle.terminals]
    for (_, final), (_, term) in zip(finals, oracle.terminals):
        np.testing.assert_array_equal(np.array(final, np.float32), term)
    assert json.loads(store.sql("SELECT manifest FROM runs").scalar())["env"]["vector"] == "SubprocVecEnv"


def test_dqn_single_env(tmp_path):
    venv = make_vec_env("CartPole-v1", n_envs=1, seed=1)
    cb = TrajectoryCallback(tmp_path, run_id="dqn")
    oracle = Oracle()
    model = DQN("MlpPolicy", venv, learning_starts=300, exploration_fraction=0.5, train_freq=4,
                target_update_interval=250, seed=1)
    model.learn(1500, callback=[cb, oracle], log_interval=2)
    lengths = monitor_lengths(venv)
    cb.close()
    store = rlaudit.open(tmp_path)
    assert store_lengths(store, "dqn") == lengths
    rows = store.sql(
        "SELECT global_step, action, q, logp, entropy, value FROM steps ORDER BY global_step"
    ).rows()
    assert len(rows) == 1500
    # Q(s, ·) of the observation each action was chosen from, whether SB3 ran the network (greedy) or not
    np.testing.assert_allclose(np.array([q for _, _, q, *_ in rows]), np.concatenate(oracle.q), rtol=1e-6)
    assert 0 < cb._q_reused < 1500
    for gs, action, q, logp, entropy, value in rows:
        assert len(q) == 2 and value == pytest.approx(max(q), rel=1e-6)
        if gs < 300:  # warm-up: SB3 samples uniformly
            assert logp == pytest.approx(math.log(0.5)) and entropy == pytest.approx(math.log(2))
        else:
            assert logp <= 0 and 0 <= entropy <= math.log(2) + 1e-6
    late = [(a, q, lp) for gs, a, q, lp, _, _ in rows if gs >= 1000]  # epsilon is final (0.05) by now
    for a, q, lp in late:
        greedy = int(np.argmax(q))
        expected = 1 - 0.05 + 0.025 if a == greedy else 0.025
        assert lp == pytest.approx(math.log(expected), rel=1e-5)
    names = {n for (n,) in store.sql("SELECT DISTINCT name FROM metrics").rows()}
    assert {"epsilon", "loss", "rollout/exploration_rate"} <= names
    eps = store.sql("SELECT value FROM metrics WHERE name = 'epsilon' ORDER BY global_step").rows()
    assert eps[0][0] < 1 and eps[-1][0] == pytest.approx(0.05)
    assert len(oracle.terminals) == store.sql("SELECT count(final_obs) FROM steps").scalar()


@pytest.mark.parametrize("algo, env_id, steps, kwargs", [
    (A2C, "CartPole-v1", 400, {"n_steps": 5}),
    pytest.param(SAC, "Pendulum-v1", 300, {"learning_starts": 100, "batch_size": 32}, marks=pytest.mark.slow),
    pytest.param(TD3, "Pendulum-v1", 300, {"learning_starts": 100, "batch_size": 32}, marks=pytest.mark.slow),
], ids=["a2c", "sac", "td3"])
def test_other_algorithms(tmp_path, algo, env_id, steps, kwargs):
    venv = make_vec_env(env_id, n_envs=2 if algo is A2C else 1, seed=0)
    name = algo.__name__.lower()
    with TrajectoryCallback(tmp_path, run_id=name) as cb:
        algo("MlpPolicy", venv, seed=0, **kwargs).learn(steps, callback=cb)
        lengths = monitor_lengths(venv)
    store = rlaudit.open(tmp_path / f"{name}.parquet")
    assert store.total_steps == steps
    assert store_lengths(store, name) == {k: v for k, v in lengths.items() if v}
    assert store.sql("SELECT agent FROM runs").scalar() == algo.__name__
    assert store.sql("SELECT count(*) FROM metrics").scalar() > 0
    if algo is A2C:
        assert store.sql("SELECT count(entropy) FROM steps").scalar() == steps
    else:  # Pendulum: 200-step episodes end truncated, with their last observation
        assert store.sql("SELECT bool_and(truncated AND NOT terminated) FROM steps WHERE final_obs IS NOT NULL").scalar()
        width = store.sql("SELECT len(action) FROM steps LIMIT 1").scalar()
        assert width == 1


def test_reset_num_timesteps_keeps_one_run(tmp_path):
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=3)
    cb = TrajectoryCallback(tmp_path, run_id="twice")
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=1, seed=3)
    model.learn(256, callback=cb)
    model.learn(256, callback=cb)  # SB3 resets num_timesteps and the envs
    cb.close()
    store = rlaudit.open(tmp_path)
    steps = [s for (s,) in store.sql("SELECT DISTINCT global_step FROM steps ORDER BY 1").rows()]
    assert steps == list(range(0, 512, 2))
    # the reset of the second call starts new episodes in both sub-envs
    firsts = store.sql("SELECT count(*) FROM steps WHERE global_step = 256 AND t = 0").scalar()
    assert firsts == 2


def test_eval_callback_episodes_are_phase_eval(tmp_path):
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=4)
    cb = TrajectoryCallback(tmp_path, run_id="evaluated")
    eval_env = cb.eval_env(make_vec_env("CartPole-v1", n_envs=1, seed=100))
    oracle = Oracle()
    evaluator = EvalCallback(eval_env, eval_freq=100, n_eval_episodes=2, verbose=0)
    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=4)
    # the evaluator runs the policy before the recorder reads this step's distribution
    model.learn(512, callback=[evaluator, cb, oracle])
    lengths = monitor_lengths(venv)
    cb.close()
    store = rlaudit.open(tmp_path)
    assert store_lengths(store, "evaluated", "train") == lengths
    evals = store.sql("SELECT DISTINCT env_index FROM steps WHERE phase = 'eval'").rows()
    assert evals == [(2,)]
    ended = store.sql("SELECT count(*) FROM episodes WHERE phase = 'eval'").scalar()
    assert ended >= 2 * 2  # two evaluations (at 200 and 400 steps), two episodes each
    eval_lengths = store_lengths(store, "evaluated", "eval")[2]
    monitor_eval = eval_env.env_method("get_episode_lengths")[0]
    assert eval_lengths == list(monitor_eval)
    # training rows still carry the acting policy's entropy after the evaluator ran the policy
    recorded = [e for (e,) in store.sql(
        "SELECT entropy FROM steps WHERE phase = 'train' ORDER BY global_step, env_index").rows()]
    np.testing.assert_allclose(recorded, np.concatenate(oracle.entropies), rtol=1e-5)
    assert cb._entropy_fallbacks >= 1
    names = {n for (n,) in store.sql("SELECT DISTINCT name FROM metrics").rows()}
    assert "eval/mean_reward" in names


class OddInfoEnv(gym.Wrapper):
    """CartPole whose infos carry arrays, objects, non-string keys, and NaN now and then."""

    def __init__(self):
        super().__init__(gym.make("CartPole-v1"))
        self.k = 0

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.k += 1
        info = dict(info, vector=np.arange(3), thing=object(), nested={"a": self.k, "b": [1, 2]}, label="x")
        info[7] = "int key"
        info["score"] = float("nan") if self.k % 7 == 0 else float(self.k)
        return obs, reward, terminated, truncated, info


def test_bad_data_never_reaches_training(tmp_path):
    venv = make_vec_env(OddInfoEnv, n_envs=2, seed=5)
    with pytest.warns(RecorderWarning):
        with TrajectoryCallback(tmp_path, run_id="odd") as cb:
            PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=5).learn(256, callback=cb)
    store = rlaudit.open(tmp_path)
    assert store.total_steps == 256
    assert store.sql("SELECT count(*) FROM steps WHERE isnan(info.score)").scalar() > 0
    info = store.sql("SELECT info FROM steps LIMIT 1").scalar()
    assert info["nested.a"] == 1.0 and info["label"] == "x" and info["7"] == "int key"
    assert any("not a scalar" in reason for reason in cb.recorder.dropped)


def test_store_removed_mid_training_is_counted_not_raised(tmp_path):
    venv = make_vec_env("CartPole-v1", n_envs=2, seed=6)
    cb = TrajectoryCallback(tmp_path, run_id="gone", flush_steps=64)

    class RemoveStore(BaseCallback):
        def _on_step(self):
            if self.num_timesteps == 128:
                shutil.rmtree(tmp_path / "gone.parquet.parts")
            return True

    model = PPO("MlpPolicy", venv, n_steps=64, batch_size=64, n_epochs=1, seed=6)
    with pytest.warns(RecorderWarning):
        model.learn(512, callback=[RemoveStore(), cb])
        cb.close()
    assert model.num_timesteps == 512
    assert any("could not be written" in reason for reason in cb.recorder.dropped)


def test_missing_sb3_is_a_config_error_with_an_install_hint():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['stable_baselines3'] = None\n"
        "from rlaudit.errors import ConfigError\n"
        "try:\n"
        "    from rlaudit.integrations.sb3 import TrajectoryCallback\n"
        "except ConfigError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'rlaudit[sb3]'" in out


@pytest.mark.slow
def test_unclosed_runs_are_finalised_with_what_happened(tmp_path):
    """An inline callback nobody closes, and a learn() that raised: both files are written at exit."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    script = textwrap.dedent(f"""
        import gymnasium as gym
        import torch
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env
        from rlaudit.integrations.sb3 import TrajectoryCallback

        torch.set_num_threads(1)

        class Breaks(gym.Wrapper):
            steps = 0
            def step(self, action):
                Breaks.steps += 1
                if Breaks.steps == 150:
                    raise RuntimeError("simulator fell over")
                return self.env.step(action)

        PPO("MlpPolicy", make_vec_env("CartPole-v1", 2), n_steps=32, batch_size=64, n_epochs=1).learn(
            128, callback=TrajectoryCallback({str(tmp_path)!r}, run_id="inline"))
        cb = TrajectoryCallback({str(tmp_path)!r}, run_id="broken")
        try:
            PPO("MlpPolicy", make_vec_env(lambda: Breaks(gym.make("CartPole-v1")), 1), n_steps=32,
                batch_size=32, n_epochs=1).learn(1000, callback=cb)
        except RuntimeError:
            pass
    """)
    src = Path(__file__).resolve().parents[2] / "src"
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True,
                   env={**os.environ, "PYTHONPATH": str(src)})
    store = rlaudit.open(tmp_path)
    runs = {r[0]: r[1:] for r in store.sql("SELECT run_id, status, steps, manifest FROM runs").rows()}
    assert runs["inline"][:2] == ("complete", 128)
    assert json.loads(runs["inline"][2])["error"] is None
    status, steps, manifest = runs["broken"]
    assert status == "complete" and steps == 149
    assert json.loads(manifest)["error"].startswith("learn() did not return")


def test_a_mistyped_option_is_said_at_once(tmp_path):
    with pytest.raises(rlaudit.errors.ConfigError, match="did you mean 'flush_steps'"):
        TrajectoryCallback(tmp_path, flush_step=100)
