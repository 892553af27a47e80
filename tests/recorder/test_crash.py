"""A recording process killed with SIGKILL loses at most one flush interval."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlaudit.cli import main
from rlaudit.schema import manifest_from_metadata

SCRIPT = textwrap.dedent(
    """
    import sys, gymnasium as gym, numpy as np, rlaudit
    env = rlaudit.RecordTrajectory(gym.make("CartPole-v1"), sys.argv[1], "killed", flush_steps=500,
                                   config={"agent": "random", "seed": 3})
    rng = np.random.default_rng(0)
    env.reset(seed=3)
    while True:
        _, _, te, tr, _ = env.step(int(rng.integers(0, 2)))
        if te or tr:
            env.reset()
    """
)


def test_sigkill_mid_run_then_recover(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)])
    parts = tmp_path / "killed.parquet.parts"
    deadline = time.time() + 60
    while time.time() < deadline and len(list(parts.glob("part-*.parquet"))) < 4:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    segments = sorted(parts.glob("part-*.parquet"))
    assert len(segments) >= 4
    flushed = sum(pq.read_metadata(s).num_rows for s in segments)

    runner = CliRunner()
    listing = runner.invoke(main, ["runs", str(tmp_path)])
    assert listing.exit_code == 0, listing.output
    assert "killed" in listing.output and "crashed" in listing.output

    result = runner.invoke(main, ["recover", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "recovered" in result.output
    assert not parts.exists()
    final = tmp_path / "killed.parquet"
    table = pq.read_table(final)
    assert table.num_rows == flushed  # every flushed step is kept
    listing = runner.invoke(main, ["runs", str(tmp_path)])
    assert "recovered" in listing.output

    # round trip: the recorded actions replayed from the recorded seed give the recorded observations
    rows = table.to_pylist()
    assert [r["global_step"] for r in rows] == list(range(flushed))
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=rows[0]["reset_seed"])
    for r in rows:
        np.testing.assert_array_equal(np.array(r["obs"], np.float32), obs)
        obs, reward, te, tr, _ = env.step(r["action"])
        assert (reward, te, tr) == (r["reward"], r["terminated"], r["truncated"])
        if te or tr:
            np.testing.assert_array_equal(np.array(r["final_obs"], np.float32), obs)
            obs, _ = env.reset()


def test_recover_leaves_a_live_run_alone(tmp_path):
    import rlaudit

    rec = rlaudit.Recorder(tmp_path, "live")
    rec.reset(np.zeros(2, np.float32))
    rec.step(0, np.ones(2, np.float32), 1.0, False, False)
    rec.flush()
    result = CliRunner().invoke(main, ["recover", str(tmp_path)])
    assert "still being recorded" in result.output
    assert (tmp_path / "live.parquet.parts").exists()
    listing = CliRunner().invoke(main, ["runs", str(tmp_path)])
    assert "in_progress" in listing.output
    rec.close()
    assert (tmp_path / "live.parquet").exists()


@pytest.mark.parametrize("ending", ["sigterm", "exit"])
def test_sigterm_and_a_forgotten_close_still_finalise_the_run(tmp_path, ending):
    script = textwrap.dedent(
        """
        import sys, time, numpy as np, rlaudit
        rec = rlaudit.Recorder(sys.argv[1], "r", flush_steps=100)
        rec.reset(np.zeros(2, np.float32))
        for k in range(1000):
            rec.step(0, np.zeros(2, np.float32), 1.0, False, False)
        print("ready", flush=True)
        if sys.argv[2] == "sigterm":
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path), ending], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    if ending == "sigterm":
        proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert proc.returncode == (-signal.SIGTERM if ending == "sigterm" else 0)
    table = pq.read_table(tmp_path / "r.parquet")
    assert table.num_rows == 1000
    manifest = manifest_from_metadata(table.schema.metadata)
    assert manifest["status"] == "complete"
    assert manifest["error"] == ("terminated by SIGTERM" if ending == "sigterm" else "process exited without Recorder.close()")
