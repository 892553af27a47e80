"""Importers and exporters: how fast other tools' data becomes rlaudit runs, and audits become exports.

    PYTHONPATH=src python benchmarks/importers.py [--steps 200000] [--episodes 100000] [--scalars 100000]

Prints markdown, one row per case: the source size, wall and CPU time, and
throughput. Sources are made here in a temporary folder with the tools' own
writers: a Minari dataset (CartPole observations, random actions) built from
episode buffers with ``minari.create_dataset_from_buffers`` (arrow format),
an SB3-format monitor.csv written with SB3's ``ResultsWriter``, and event
files written with torch's ``SummaryWriter``. The export case audits the
imported Minari run and writes both exports.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def _timed(fn):
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w0, time.process_time() - c0


def make_minari(root: Path, steps: int) -> str:
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    os.environ["MINARI_DATASETS_PATH"] = str(root / "minari")
    rng = np.random.default_rng(0)
    buffers, done = [], 0
    while done < steps:
        length = int(min(rng.integers(10, 200), steps - done)) or 1
        obs = rng.standard_normal((length + 1, 4)).astype(np.float32)
        buffers.append(EpisodeBuffer(
            observations=list(obs), actions=list(rng.integers(0, 2, length)), rewards=[1.0] * length,
            terminations=[False] * (length - 1) + [True], truncations=[False] * length, seed=int(rng.integers(1 << 31)),
        ))
        done += length
    env = gym.make("CartPole-v1")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("bench/cartpole-v0", buffers, env=env, algorithm_name="random",
                                           data_format="arrow", ref_min_score=0.0, ref_max_score=500.0)
    return "bench/cartpole-v0"


def make_monitor(root: Path, episodes: int) -> Path:
    from stable_baselines3.common.monitor import ResultsWriter

    rng = np.random.default_rng(1)
    writer = ResultsWriter(str(root / "bench"), header={"t_start": time.time(), "env_id": "CartPole-v1"},
                           extra_keys=("is_success",))
    lengths = rng.integers(10, 500, episodes)
    elapsed = np.cumsum(lengths) * 1e-4
    for length, t in zip(lengths, elapsed):
        writer.write_row({"r": float(length), "l": int(length), "t": round(float(t), 6), "is_success": bool(length > 400)})
    writer.close()
    return root / "bench.monitor.csv"


def make_events(root: Path, scalars: int) -> Path:
    from torch.utils.tensorboard import SummaryWriter

    folder = root / "tb" / "PPO_1"
    writer = SummaryWriter(str(folder))
    for k in range(scalars // 4):
        for tag in ("train/loss", "train/approx_kl", "train/entropy_loss", "rollout/ep_rew_mean"):
            writer.add_scalar(tag, float(np.sin(k)), k * 64)
    writer.close()
    return folder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200_000, help="Minari dataset size in steps")
    ap.add_argument("--episodes", type=int, default=100_000, help="monitor.csv rows")
    ap.add_argument("--scalars", type=int, default=100_000, help="TensorBoard scalar events")
    args = ap.parse_args()

    from rlaudit.integrations.importers import import_source
    from rlaudit.reports.audit import run_audit
    from rlaudit.reports.export import export

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}\n")
    print("| case | source | wall s | CPU s | throughput |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        store = root / "runs"
        dataset = make_minari(root, args.steps)
        result, wall, cpu = _timed(lambda: import_source("minari", dataset, store))
        print(f"| import minari | {result.steps:,} steps, {result.episodes:,} episodes | {wall:.2f} | {cpu:.2f} | {result.steps / wall:,.0f} steps/s |")

        path = make_monitor(root, args.episodes)
        result, wall, cpu = _timed(lambda: import_source("monitor", str(path), store))
        print(f"| import monitor | {result.episodes:,} episodes | {wall:.2f} | {cpu:.2f} | {result.episodes / wall:,.0f} episodes/s |")

        folder = make_events(root, args.scalars)
        result, wall, cpu = _timed(lambda: import_source("tensorboard", str(folder), store))
        print(f"| import tensorboard | {result.metrics:,} scalars | {wall:.2f} | {cpu:.2f} | {result.metrics / wall:,.0f} scalars/s |")

        audit = run_audit([store])
        written, wall, cpu = _timed(lambda: export(audit, root / "audit", ["tensorboard", "wandb-json"]))
        print(f"| export tensorboard + wandb-json | {len(audit.runs)} runs, {len(audit.findings)} findings | {wall:.3f} | {cpu:.3f} | {len(written)} files |")


if __name__ == "__main__":
    main()
