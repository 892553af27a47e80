"""Two vector envs sharing one recorder: the second one's sub-envs come after the first's."""

from __future__ import annotations

import numpy as np

import rlaudit
from rlaudit import Recorder


def test_second_batch_records_as_later_env_indices(tmp_path):
    rec = Recorder(tmp_path, "shared")
    train_obs = np.zeros((2, 3), np.float32)
    rec.reset_batch(train_obs, seeds=10)
    rec.phase = "eval"
    rec.reset_batch(np.full((1, 3), 9, np.float32), seeds=[99], env_offset=2)
    rec.phase = "train"
    for t in range(1, 4):
        done = np.array([t == 2, False])
        rec.step_batch([0, 1], np.full((2, 3), t, np.float32), [1.0, 1.0], done, [False, False],
                       autoreset_mode="same_step", final_obs=np.full((2, 3), -t, np.float32))
        rec.phase = "eval"
        rec.step_batch([1], np.full((1, 3), 9 + t, np.float32), [2.0], [t == 3], [False], env_offset=2)
        rec.phase = "train"
    rec.close()

    store = rlaudit.open(tmp_path)
    rows = store.sql("SELECT env_index, episode, t, phase, obs, final_obs, reset_seed FROM steps "
                     "ORDER BY env_index, episode, t").rows()
    by_env = {}
    for env_index, episode, t, phase, obs, final, seed in rows:
        by_env.setdefault(env_index, []).append((episode, t, phase, obs[0], None if final is None else final[0], seed))
    assert by_env[0] == [(0, 0, "train", 0.0, None, 10), (0, 1, "train", 1.0, -2.0, None), (1, 0, "train", 2.0, None, None)]
    assert by_env[1] == [(0, 0, "train", 0.0, None, 11), (0, 1, "train", 1.0, None, None), (0, 2, "train", 2.0, None, None)]
    assert by_env[2] == [(0, 0, "eval", 9.0, None, 99), (0, 1, "eval", 10.0, None, None), (0, 2, "eval", 11.0, 12.0, None)]
