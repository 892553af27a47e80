"""Importers with real sources: a Minari dataset made by Minari's DataCollector, a monitor.csv
written by SB3's Monitor, event files written by torch's SummaryWriter; each imported store
analysed with rlaudit.open and run_audit."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.cli import main
from rlaudit.errors import ConfigError, RunExistsError, StoreError
from rlaudit.integrations.importers import IMPORTERS, import_source
from rlaudit.integrations.importers.monitor import EPISODE_LEVEL_REASON
from rlaudit.reports.audit import run_audit
from rlaudit.schema import manifest_from_metadata
from tests.analyzer.recording import record_run


class CartInfo(gym.Wrapper):
    """Adds scalar info entries (and one that is not a scalar) to CartPole's empty info."""

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info, cart_x=float(obs[0]), pole={"angle": float(obs[2])}, pair=np.array([obs[1], obs[3]]))
        return obs, reward, terminated, truncated, info

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, dict(info, cart_x=float(obs[0]), pole={"angle": float(obs[2])}, pair=np.array([obs[1], obs[3]]))


def test_registry_names_the_kinds_and_suggests():
    assert set(IMPORTERS) == {"minari", "monitor", "tensorboard"}
    with pytest.raises(ConfigError, match="did you mean 'monitor'"):
        import_source("monitr", "x", "y")


# -- Minari ----------------------------------------------------------------------------


@pytest.fixture(params=["arrow", "hdf5"])
def minari_dataset(request, tmp_path, monkeypatch):
    pytest.importorskip("minari")
    pytest.importorskip("jax", reason="Minari's DataCollector needs jax (the test extra installs minari[create])")
    pytest.importorskip("pyarrow" if request.param == "arrow" else "h5py")
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(CartInfo(gym.make("CartPole-v1")), record_infos=True, data_format=request.param)
    rng = np.random.default_rng(0)
    for seed in (11, 12, 13, 14):
        env.reset(seed=seed)
        while True:
            _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
            if terminated or truncated:
                break
    with pytest.warns(UserWarning):  # Minari asks for author, permalink, ... it is a test dataset
        dataset = env.create_dataset("cartpole/random-v0", algorithm_name="random-policy")
    env.close()
    return dataset


def test_minari_import_keeps_episodes_rewards_actions_observations(minari_dataset, tmp_path):
    store = tmp_path / "runs"
    result = import_source("minari", "cartpole/random-v0", store)
    assert result.run_id == "cartpole-random-v0"
    assert result.episodes == 4 and result.steps == minari_dataset.total_steps
    assert any("pair" in note for note in result.notes)  # the 2-vector info is not stored, and it says so

    with rlaudit.open(store) as s:
        run = s.runs["cartpole-random-v0"]
        assert run.manifest["source"]["kind"] == "minari"
        assert run.manifest["source"]["dataset_id"] == "cartpole/random-v0"
        assert run.manifest["env"]["id"] == "CartPole-v1" and run.manifest["env"]["max_episode_steps"] == 500
        assert run.manifest["agent"] == "random-policy"
        assert run.manifest["spaces"]["action"] == {"type": "Discrete", "n": 2, "start": 0}
        episodes = s.sql("SELECT episode, length, return, termination, reset_seed FROM episodes ORDER BY episode").rows()
        for (k, length, ret, termination, seed), ep in zip(episodes, minari_dataset.iterate_episodes()):
            assert k == ep.id and length == len(ep)
            assert ret == pytest.approx(float(np.sum(ep.rewards)))
            assert termination == ("terminated" if ep.terminations[-1] else "truncated")
            assert seed == 11 + k
            rows = s.sql(
                "SELECT action, reward, terminated, truncated, obs, final_obs, info.cart_x, info.\"pole.angle\" "
                "FROM steps WHERE episode = $k ORDER BY t", k=k).rows()
            assert [r[0] for r in rows] == list(ep.actions)
            assert [r[1] for r in rows] == list(ep.rewards)
            assert [r[2] for r in rows] == list(ep.terminations) and [r[3] for r in rows] == list(ep.truncations)
            np.testing.assert_allclose([r[4] for r in rows], ep.observations[:-1], rtol=1e-6)
            np.testing.assert_allclose(rows[-1][5], ep.observations[-1], rtol=1e-6)
            assert all(r[5] is None for r in rows[:-1])
            np.testing.assert_allclose([r[6] for r in rows], ep.infos["cart_x"][1:])  # step infos, not the reset's
            pole = ep.infos["pole"]  # arrow storage: one dict per step; hdf5: a dict of arrays
            angles = [d["angle"] for d in pole] if isinstance(pole, np.ndarray) else pole["angle"]
            np.testing.assert_allclose([r[7] for r in rows], angles[1:])
    audit = run_audit([store])
    assert not audit.errors and audit.runs[0].episodes == 4


def test_minari_reimport_is_refused_and_a_new_id_is_explicit(minari_dataset, tmp_path):
    store = tmp_path / "runs"
    import_source("minari", "cartpole/random-v0", store)
    folder = tmp_path / "minari" / "cartpole" / "random-v0"
    with pytest.raises(RunExistsError, match="already imported .* as run 'cartpole-random-v0'"):
        import_source("minari", str(folder), store)  # the same dataset named by its folder
    again = import_source("minari", str(folder), store, run_id="second")
    with pytest.raises(RunExistsError):
        import_source("minari", str(folder), store, run_id="second")
    with rlaudit.open(store) as s:
        counts = s.sql("SELECT run_id, count(*) FROM steps GROUP BY run_id ORDER BY run_id").rows()
    assert counts == [("cartpole-random-v0", again.steps), ("second", again.steps)]


def test_minari_unknown_dataset_says_where_it_looked(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "nothing"))
    with pytest.raises(StoreError, match="not a dataset under .*nothing"):
        import_source("minari", "cartpole/none-v0", tmp_path / "runs")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="data/metadata.json"):
        import_source("minari", str(tmp_path / "empty"), tmp_path / "runs")


# -- SB3 monitor.csv -------------------------------------------------------------------


@pytest.fixture
def monitor_file(tmp_path):
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(CartInfo(gym.make("CartPole-v1")), str(tmp_path / "logs" / "run"), info_keywords=("cart_x",))
    rng = np.random.default_rng(1)
    env.reset(seed=3)
    while len(env.get_episode_rewards()) < 6:
        _, _, terminated, truncated, _ = env.step(int(rng.integers(2)))
        if terminated or truncated:
            env.reset()
    env.close()
    return tmp_path / "logs" / "run.monitor.csv", env.get_episode_rewards(), env.get_episode_lengths()


def test_monitor_import_is_episode_level(monitor_file, tmp_path):
    path, returns, lengths = monitor_file
    store = tmp_path / "runs"
    record_run(store, "recorded", [[1.0] * 5, [2.0] * 3])  # a step-level run in the same store
    result = import_source("monitor", str(path.parent), store)  # the folder holding one monitor file
    assert result.episodes == 6 and result.steps == sum(lengths)
    assert result.run_id.startswith("CartPole-v1-monitor-")

    csv_cart_x = [float(line.split(",")[3]) for line in path.read_text().splitlines()[2:]]
    with rlaudit.open(store) as s:
        run = s.runs[result.run_id]
        assert run.episode_level == EPISODE_LEVEL_REASON
        assert run.manifest["source"]["kind"] == "monitor" and run.manifest["source"]["env_id"] == "CartPole-v1"
        assert not run.has("reward") and s.runs["recorded"].has("reward")
        for materialize in (False, True):
            if materialize:
                s.materialize()
            rows = s.sql("SELECT episode, length, return, termination, first_global_step, last_global_step "
                         "FROM episodes WHERE run_id = $r ORDER BY episode", r=result.run_id).rows()
            assert [r[1] for r in rows] == lengths
            assert [r[2] for r in rows] == pytest.approx(returns)
            assert {r[3] for r in rows} == {"unknown"}
            ends = np.cumsum(lengths)
            assert [r[4] for r in rows] == list(ends - lengths) and [r[5] for r in rows] == list(ends - 1)
            assert s.sql("SELECT length, return, termination FROM episodes WHERE run_id = 'recorded' ORDER BY episode"
                         ).rows() == [(5, 5.0, "terminated"), (3, 6.0, "terminated")]
        cart_x = s.sql("SELECT info.cart_x FROM steps WHERE run_id = $r ORDER BY episode", r=result.run_id).rows()
        assert [c[0] for c in cart_x] == pytest.approx(csv_cart_x)

    audit = run_audit([store])
    step_level = {d.name for d in audit.detectors  # detectors that need a step column
                  if any(n not in ("episodes", "metrics") and not n.startswith(("manifest:", "metrics:")) for n in d.needs)}
    mine = {r.detector: r for r in audit.results if r.run_id == result.run_id}
    assert step_level and step_level <= set(mine)
    for name in step_level:  # every detector that reads step columns is skipped, saying why
        assert mine[name].status == "skipped" and EPISODE_LEVEL_REASON in mine[name].reason, name
    assert "reward-spike" in step_level and "truncation-exploitation" in step_level
    episode_level = set(mine) - step_level
    assert all(EPISODE_LEVEL_REASON not in (mine[n].reason or "") for n in episode_level)
    assert not [r for r in mine.values() if r.status == "error"]
    assert all(EPISODE_LEVEL_REASON not in (r.reason or "") for r in audit.results if r.run_id == "recorded")
    assert any(r.status == "clean" for r in audit.results if r.run_id == "recorded")
    assert next(r for r in audit.runs if r.run_id == result.run_id).episodes == 6

    with pytest.raises(RunExistsError, match="already imported"):
        import_source("monitor", str(path), store)


def test_monitor_files_of_a_vector_env_become_its_sub_envs(tmp_path):
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env("CartPole-v1", n_envs=3, seed=0, monitor_dir=str(tmp_path / "logs"))
    venv.reset()
    rng = np.random.default_rng(2)
    calls = 0
    ends: dict[int, list[int]] = {0: [], 1: [], 2: []}  # vector call at which each sub-env's episode ended
    while min(len(v) for v in ends.values()) < 4:
        _, _, dones, _ = venv.step(rng.integers(0, 2, 3))
        for k in np.flatnonzero(dones):
            ends[int(k)].append(calls)
        calls += 1
    venv.close()
    lengths = {k: [int(line.split(",")[1]) for line in (tmp_path / "logs" / f"{k}.monitor.csv").read_text().splitlines()[2:]]
               for k in range(3)}

    result = import_source("monitor", str(tmp_path / "logs"), tmp_path / "runs")
    assert result.episodes == sum(len(v) for v in ends.values())
    with rlaudit.open(tmp_path / "runs") as s:
        run = s.runs[result.run_id]
        assert run.manifest["num_envs"] == 3 and run.manifest["source"]["files"] == [f"{k}.monitor.csv" for k in range(3)]
        for k in range(3):
            rows = s.sql("SELECT length, first_global_step, last_global_step FROM episodes WHERE env_index = $k "
                         "ORDER BY episode", k=k).rows()
            assert [r[0] for r in rows] == lengths[k]
            assert [r[2] for r in rows] == [3 * c for c in ends[k]]  # global_step of the call that ended it
            assert [r[1] for r in rows] == [3 * (c - n + 1) for c, n in zip(ends[k], lengths[k])]
        order = s.sql("SELECT global_step FROM steps").rows()
        assert [r[0] for r in order] == sorted(r[0] for r in order)


def test_monitor_cli_and_bad_files(monitor_file, tmp_path):
    path, _, lengths = monitor_file
    store = tmp_path / "runs"
    out = CliRunner().invoke(main, ["import", "monitor", str(path), "--store", str(store), "--run-id", "mon", "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["run_id"] == "mon"
    manifest = manifest_from_metadata(pq.read_schema(store / "mon.parquet").metadata)
    assert manifest["episode_level"]["reason"] == EPISODE_LEVEL_REASON
    assert manifest["counts"]["steps"] == 6 and manifest["counts"]["episodes"] == 6

    bad = tmp_path / "bad.monitor.csv"
    bad.write_text("r,l,t\n1,1,0.1\n")
    out = CliRunner().invoke(main, ["import", "monitor", str(bad), "--store", str(store)])
    assert out.exit_code == 2 and "not an SB3 monitor file" in out.output
    bad.write_text('#{"t_start": 1.0, "env_id": "X"}\nr,l,t\n1.0,zero,0.1\n')
    out = CliRunner().invoke(main, ["import", "monitor", str(bad), "--store", str(store)])
    assert out.exit_code == 2 and "expected a number" in out.output
    assert sorted(p.name for p in store.iterdir()) == ["mon.parquet"]  # nothing written for a bad file


# -- TensorBoard ----------------------------------------------------------------------


@pytest.fixture
def event_folder(tmp_path):
    pytest.importorskip("tensorboard")
    from torch.utils.tensorboard import SummaryWriter

    folder = tmp_path / "tb" / "PPO_1"
    writer = SummaryWriter(str(folder))
    for step in range(0, 500, 50):
        writer.add_scalar("train/loss", 1.0 / (step + 1), step)
        writer.add_scalar("rollout/ep_rew_mean", step / 10.0, step)
    writer.add_text("notes", "not a scalar", 0)
    writer.close()
    return folder


def test_tensorboard_scalars_become_a_metrics_only_run(event_folder, tmp_path):
    store = tmp_path / "runs"
    result = import_source("tensorboard", str(event_folder.parent), store)
    assert result.run_id == "PPO_1-tensorboard" and result.metrics == 20
    assert any("notes" in n for n in result.notes)
    with rlaudit.open(store) as s:
        rows = s.sql("SELECT global_step, value FROM metrics WHERE name = 'train/loss' ORDER BY global_step").rows()
        assert rows == [(step, pytest.approx(1.0 / (step + 1))) for step in range(0, 500, 50)]
        assert s.sql("SELECT min(wall_time) FROM metrics").scalar() == 0.0
        assert s.runs[result.run_id].manifest["source"]["kind"] == "tensorboard"
    with pytest.raises(RunExistsError, match="already imported"):
        import_source("tensorboard", str(event_folder), store)


def test_tensorboard_attaches_to_an_existing_run_once(event_folder, tmp_path):
    store = tmp_path / "runs"
    record_run(store, "trained", [[1.0] * 10] * 3)
    result = import_source("tensorboard", str(event_folder), store, run_id="trained")
    assert result.attached and result.path.endswith("trained.metrics.parquet")
    with rlaudit.open(store) as s:
        assert list(s.runs) == ["trained"]
        assert s.sql("SELECT count(*) FROM metrics WHERE run_id = 'trained'").scalar() == 20
        assert s.sql("SELECT max(value) FROM metrics WHERE name = 'rollout/ep_rew_mean'").scalar() == pytest.approx(45.0)
    before = (store / "trained.metrics.parquet").read_bytes()
    with pytest.raises(RunExistsError, match="never replaced"):
        import_source("tensorboard", str(event_folder), store, run_id="trained")
    assert (store / "trained.metrics.parquet").read_bytes() == before


def test_tensorboard_several_runs_in_one_folder_are_refused(event_folder, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(event_folder.parent / "PPO_2"))
    writer.add_scalar("train/loss", 1.0, 0)
    writer.close()
    with pytest.raises(StoreError, match="2 folders"):
        import_source("tensorboard", str(event_folder.parent), tmp_path / "runs")


class DictObs(gym.ObservationWrapper):
    """CartPole with a Dict observation: positions and velocities."""

    def __init__(self, env):
        super().__init__(env)
        box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)
        self.observation_space = gym.spaces.Dict({"pos": box, "vel": box})

    def observation(self, obs):
        return {"pos": obs[[0, 2]].astype(np.float32), "vel": obs[[1, 3]].astype(np.float32)}


def test_minari_dict_observations_become_struct_columns(tmp_path, monkeypatch):
    pytest.importorskip("minari")
    pytest.importorskip("jax", reason="Minari's DataCollector needs jax (the test extra installs minari[create])")
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(DictObs(gym.make("CartPole-v1")), data_format="arrow")
    for seed in (1, 2):
        env.reset(seed=seed)
        while True:
            _, _, terminated, truncated, _ = env.step(1)
            if terminated or truncated:
                break
    with pytest.warns(UserWarning):
        dataset = env.create_dataset("cartpole/dict-v0")
    env.close()
    result = import_source("minari", "cartpole/dict-v0", tmp_path / "runs")
    with rlaudit.open(tmp_path / "runs") as s:
        assert s.runs[result.run_id].manifest["spaces"]["observation"]["type"] == "Dict"
        for ep in dataset.iterate_episodes():
            rows = s.sql("SELECT obs.pos, obs.vel, final_obs.pos FROM steps WHERE episode = $k ORDER BY t", k=int(ep.id)).rows()
            np.testing.assert_allclose([r[0] for r in rows], ep.observations["pos"][:-1])
            np.testing.assert_allclose([r[1] for r in rows], ep.observations["vel"][:-1])
            np.testing.assert_allclose(rows[-1][2], ep.observations["pos"][-1])


@pytest.mark.parametrize("kind, module, extra", [
    ("minari", "minari", "minari"),
    ("tensorboard", "tensorboard.backend.event_processing.event_accumulator", "tensorboard"),
])
def test_missing_optional_package_names_the_extra(kind, module, extra, tmp_path, monkeypatch):
    source = tmp_path / "events.out.tfevents.1.host"
    source.write_bytes(b"")
    monkeypatch.setitem(__import__("sys").modules, module, None)  # as if the package were not installed
    with pytest.raises(ConfigError, match=rf"pip install 'rlaudit\[{extra}\]'"):
        import_source(kind, str(source), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_write_segment_takes_one_kind_of_rows_of_its_own_run(tmp_path):
    from rlaudit.integrations.importers.monitor import episode_table
    from rlaudit.recorder.core import Recorder

    rows = [{"r": "3.0", "l": "3", "t": "0.5"}]
    with Recorder(tmp_path, "a", handle_sigterm=False) as rec:
        with pytest.raises(ConfigError, match="holds rows of"):
            rec.write_segment(episode_table("b", ["r", "l", "t"], rows, tmp_path), episodes=1)
        rec.write_segment(episode_table("a", ["r", "l", "t"], rows, tmp_path), episodes=1)
    manifest = manifest_from_metadata(pq.read_schema(tmp_path / "a.parquet").metadata)
    assert manifest["counts"]["steps"] == 1 and manifest["counts"]["episodes"] == 1
    with Recorder(tmp_path, "c", handle_sigterm=False) as rec:
        rec.reset(np.zeros(2, np.float32))
        rec.step(0, np.zeros(2, np.float32), 1.0, True, False)
        with pytest.raises(ConfigError, match="use one way per run"):
            rec.write_segment(episode_table("c", ["r", "l", "t"], rows, tmp_path), episodes=1)


def test_episode_level_rows_beside_runs_with_reward_terms(tmp_path):
    store = tmp_path / "runs"
    record_run(store, "terms", [[1.0, 2.0], [3.0]], terms=lambda k, t, r: {"task": r, "bonus": 0.5})
    log = tmp_path / "x.monitor.csv"
    log.write_text('#{"t_start": 1700000000.0, "env_id": "Plant-v0"}\nr,l,t\n4.5,3,0.25\n-1.0,2,0.5\n')
    result = import_source("monitor", str(log), store)
    with rlaudit.open(store) as s:
        rows = s.sql("SELECT run_id, episode, length, return, term_returns.task, term_returns.bonus, termination, "
                     "first_global_step, last_global_step FROM episodes ORDER BY run_id, episode").rows()
    assert rows == [
        (result.run_id, 0, 3, 4.5, None, None, "unknown", 0, 2),
        (result.run_id, 1, 2, -1.0, None, None, "unknown", 3, 4),
        ("terms", 0, 2, 3.0, 3.0, 1.0, "terminated", 0, 1),
        ("terms", 1, 1, 3.0, 3.0, 0.5, "terminated", 2, 2),
    ]
