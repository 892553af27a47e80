"""Odd data never raises into the training loop: recorded, or counted and reported."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from gymnasium import spaces

from rlaudit import Recorder, RecordTrajectory
from rlaudit.errors import ConfigError, RecorderWarning, RunExistsError
from rlaudit.schema import manifest_from_metadata


class OddEnv(gym.Env):
    """Dict observation with an image, Box actions, NaN rewards and strange info."""

    def __init__(self):
        self.observation_space = spaces.Dict(
            {
                "image": spaces.Box(0, 255, (8, 8, 3), np.uint8),
                "pos": spaces.Box(-1.0, 1.0, (2,), np.float64),
                "mode": spaces.Discrete(3),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.k = 0

    def _obs(self):
        return {
            "image": np.full((8, 8, 3), self.k % 256, np.uint8),
            "pos": np.array([self.k, -self.k], np.float64) / 100,
            "mode": self.k % 3,
        }

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.k = 0
        return self._obs(), {"start": np.bool_(True)}

    def step(self, action):
        self.k += 1
        reward = float("nan") if self.k % 5 == 0 else (math.inf if self.k % 7 == 0 else 1.0)
        info = {
            "flag": np.bool_(self.k % 2),
            "count": np.int64(self.k),
            "ratio": np.float32(0.5),
            "nested": {"a": 1, "b": {"c": True}},
            "label": "x" * (self.k % 3),
            "vector": np.arange(3),  # not a scalar: counted, not stored
            "object": object(),
            "none": None,
        }
        if self.k > 10:
            info["late_key"] = 2.0  # appears mid-run
        return self._obs(), reward, False, self.k >= 25, info


def test_odd_env_is_recorded_without_exceptions(tmp_path):
    env = RecordTrajectory(OddEnv(), tmp_path, "odd", flush_steps=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        env.reset(seed=1)
        for _ in range(60):
            _, _, te, tr, _ = env.step(env.action_space.sample())
            if te or tr:
                env.reset()
        env.close()
    recorder_warnings = [w for w in caught if issubclass(w.category, RecorderWarning)]
    assert len(recorder_warnings) == 1  # one warning, the rest counted
    table = pq.read_table(tmp_path / "odd.parquet")
    assert table.num_rows == 60
    rows = table.to_pylist()
    assert math.isnan(rows[4]["reward"]) and math.isinf(rows[6]["reward"])
    assert rows[0]["obs"]["image"] == bytes([0]) * 192
    assert rows[3]["obs"]["pos"] == pytest.approx([0.03, -0.03])
    assert rows[0]["info"]["flag"] is True and rows[1]["info"]["flag"] is False
    assert rows[0]["info"]["count"] == 1.0 and rows[0]["info"]["nested.b.c"] is True
    assert rows[0]["info"]["late_key"] is None and rows[20]["info"]["late_key"] == 2.0
    assert len(rows[0]["action"]) == 2
    assert rows[24]["final_obs"]["mode"] == 25 % 3
    manifest = manifest_from_metadata(table.schema.metadata)
    dropped = manifest["dropped"]
    assert any("vector" in k for k in dropped) and any("object" in k for k in dropped)
    assert sum(v for k, v in dropped.items() if "'vector'" in k) == 60
    assert manifest["spaces"]["observation"]["spaces"]["image"]["shape"] == [8, 8, 3]


def test_bad_values_become_nulls_not_exceptions(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecorderWarning)
        with Recorder(tmp_path, "bad", observation_space=spaces.Box(-1, 1, (3,)),
                      action_space=spaces.Discrete(2)) as rec:
            rec.step(0, np.zeros(3), 1.0, False, False)  # no reset first
            rec.step("left", np.zeros(3), 1.0, False, False)  # action of the wrong type
            rec.step(1, np.zeros(5), 1.0, False, True)  # obs of the wrong shape (final_obs)
            rec.reset(np.zeros(3))
            rec.step(1, np.zeros(3), "not a number", False, False)  # a reward that is no number
            rec.log_metrics(0, loss="high", lr=0.1)
    rows = pq.read_table(tmp_path / "bad.parquet").to_pylist()
    assert rows[0]["obs"] is None
    assert rows[1]["action"] is None
    assert len(rows) >= 3
    assert rec.dropped  # every problem counted
    metrics = pq.read_table(tmp_path / "bad.metrics.parquet").to_pylist()
    assert [m["name"] for m in metrics] == ["lr"]


def test_reward_terms_from_info_prefix_and_component_fns(tmp_path):
    fns = {"alive": lambda obs, action, info: 1.0, "broken": lambda obs, action, info: 1 / 0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RecorderWarning)
        with Recorder(tmp_path, "terms", info_prefix="reward_", component_fns=fns) as rec:
            rec.reset(np.zeros(2, np.float32))
            for k in range(10):
                info = {"reward_salary": 0.5, "burnout": 0.1 * k}
                if k >= 5:
                    info["reward_penalty"] = -0.25
                rec.step(0, np.zeros(2, np.float32), 0.5 + (k >= 5) * -0.25, False, False, info)
    rows = pq.read_table(tmp_path / "terms.parquet").to_pylist()
    assert rows[0]["reward_terms"] == {"salary": 0.5, "alive": 1.0, "penalty": None}
    assert rows[7]["reward_terms"]["penalty"] == -0.25
    assert "reward_salary" not in rows[0]["info"] and rows[3]["info"]["burnout"] == pytest.approx(0.3)
    assert any("broken" in k for k in rec.dropped)


def test_existing_run_id_is_never_overwritten(tmp_path):
    with Recorder(tmp_path, "same") as rec:
        rec.reset(np.zeros(1))
        rec.step(0, np.zeros(1), 1.0, True, False)
    before = (tmp_path / "same.parquet").read_bytes()
    with pytest.raises(RunExistsError, match="already exists"):
        Recorder(tmp_path, "same")
    with Recorder(tmp_path, "same", on_exists="suffix") as other:
        other.reset(np.zeros(1))
    assert other.run_id == "same-1"
    assert (tmp_path / "same.parquet").read_bytes() == before
    auto1, auto2 = Recorder(tmp_path, env_id="CartPole-v1"), Recorder(tmp_path, env_id="CartPole-v1")
    assert auto1.run_id != auto2.run_id and auto1.run_id.startswith("CartPole-v1-")
    auto1.close()
    auto2.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"run_id": "../escape"}, "run_id must be"),
        ({"flush_steps": 0}, "flush_steps"),
        ({"phase": "test"}, "phase must be one of"),
        ({"on_exists": "overwrite"}, "on_exists"),
        ({"component_fns": {"x": 3}}, "callable"),
    ],
)
def test_bad_options_are_clear_errors(tmp_path, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Recorder(tmp_path, **kwargs)


def test_phase_switches_per_row(tmp_path):
    env = RecordTrajectory(gym.make("CartPole-v1"), tmp_path, "phases")
    env.reset(seed=0)
    for k in range(20):
        env.phase = "eval" if k >= 10 else "train"
        _, _, te, tr, _ = env.step(k % 2)
        if te or tr:
            env.reset()
    env.close()
    phases = pq.read_table(tmp_path / "phases.parquet", columns=["phase"]).column("phase").to_pylist()
    assert phases[:10] == ["train"] * 10 and phases[10:] == ["eval"] * 10


def test_import_does_not_load_torch():
    import subprocess
    import sys

    code = "import sys, rlaudit, rlaudit.recorder, rlaudit.schema; rlaudit.Recorder; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_second_env_mid_segment_keeps_every_counter_right(tmp_path):
    with Recorder(tmp_path, "two", flush_steps=7) as rec:
        rec.reset(np.zeros(2, np.float32), seed=5)
        for k in range(5):
            rec.step(0, np.full(2, k + 1, np.float32), 1.0, k == 2, False)
            if k == 2:
                rec.reset(np.full(2, 100, np.float32))
        rec.phase = "eval"
        rec.reset(np.full(2, -1, np.float32), env_index=1)
        for k in range(6):
            e = k % 2
            rec.step(0, np.full(2, 50 + k, np.float32), 1.0, False, False, env_index=e)
    rows = pq.read_table(tmp_path / "two.parquet").to_pylist()
    got = [(r["env_index"], r["episode"], r["t"], r["global_step"], r["phase"], r["obs"][0]) for r in rows]
    assert got == [
        (0, 0, 0, 0, "train", 0.0), (0, 0, 1, 1, "train", 1.0), (0, 0, 2, 2, "train", 2.0),
        (0, 1, 0, 3, "train", 100.0), (0, 1, 1, 4, "train", 4.0),
        (0, 1, 2, 5, "eval", 5.0), (1, 0, 0, 6, "eval", -1.0), (0, 1, 3, 7, "eval", 50.0),
        (1, 0, 1, 8, "eval", 51.0), (0, 1, 4, 9, "eval", 52.0), (1, 0, 2, 10, "eval", 53.0),
    ]
    assert rows[0]["reset_seed"] == 5


def test_manifest_keys_are_the_declared_and_documented_ones(tmp_path):
    from pathlib import Path

    from rlaudit.schema import MANIFEST_KEYS, OPTIONAL_MANIFEST_KEYS

    env = RecordTrajectory(gym.make("CartPole-v1"), tmp_path, "m", config={"agent": "random", "seed": 1})
    env.reset(seed=1)
    env.step(0)
    env.close()
    manifest = manifest_from_metadata(pq.read_schema(tmp_path / "m.parquet").metadata)
    assert set(manifest) == set(MANIFEST_KEYS)
    doc = (Path(__file__).resolve().parents[2] / "docs" / "schema.md").read_text()
    for key in MANIFEST_KEYS + OPTIONAL_MANIFEST_KEYS:
        assert f"`{key}`" in doc, f"docs/schema.md does not document the manifest key {key!r}"
