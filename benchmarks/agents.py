"""Agents and experiment runner: learning, speed, determinism, demo time.

    PYTHONPATH=src python benchmarks/agents.py [--seeds 0 1 2 3 4] [--episodes 100]
        [--skip-learners] [--skip-threads] [--demo]

Prints markdown:

1. Heuristic runs recorded through the runner (100 episodes, recorder on):
   steps per second, against the same loop without the recorder.
2. DQN and PPO on short_term_v1 (stable), one run per seed: greedy evaluation
   (10 episodes) every 10 training episodes; the final evaluation, the first
   evaluation reaching 170, wall and CPU time, steps, updates.
3. Torch threads: a DQN run with 1 and with 2 intra-op threads (time, and
   whether two runs with the same setting record identical step tables).
4. With --demo: the wall time of `rlaudit demo` into a fresh folder.

Wall time is what a user waits; CPU time (time.process_time, this process
only) is what the run costs when the machine is shared with other work.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from rlaudit.agents.experiments import ExperimentProtocol, make_env, run_experiment
from rlaudit.agents.heuristics import make_heuristic


def steps_table(path):
    return pq.read_table(path).drop_columns(["wall_time"])


def heuristic_speed(store: Path) -> list[str]:
    lines = [
        "| heuristic | steps | recorded steps/s (wall) | recorded steps/s (CPU) | loop without recorder, steps/s (CPU) |",
        "|---|---|---|---|---|",
    ]
    for name in ("always_switch", "burnout_threshold", "random"):
        protocol = ExperimentProtocol(agent=name, episodes=100, eval_interval=0, eval_episodes=0, seed=0)
        cpu0 = time.process_time()
        result = run_experiment(protocol, store / "heuristics")
        cpu = time.process_time() - cpu0
        # The same episodes without recording, for the recorder's share.
        env, _ = make_env(protocol)
        agent = make_heuristic(name, seed=0)
        rng = np.random.default_rng(0)
        cpu0 = time.process_time()
        n = 0
        for _ in range(100):
            obs, _ = env.reset(seed=int(rng.integers(0, 2**31)))
            done = False
            while not done:
                action, _ = agent.act(obs)
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
                n += 1
        bare = n / (time.process_time() - cpu0)
        lines.append(
            f"| {name} | {result.total_steps:,} | {result.total_steps / result.wall_time:,.0f} "
            f"| {result.total_steps / cpu:,.0f} | {bare:,.0f} |"
        )
    return lines


def learner_runs(store: Path, seeds: list[int], episodes: int) -> list[str]:
    lines = [
        (
            "| agent | seed | final greedy eval | first eval ≥ 170 (after episode) | last-10 training return "
            "| steps | updates | wall s | CPU s |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for agent in ("dqn", "ppo"):
        finals = []
        for seed in seeds:
            protocol = ExperimentProtocol(agent=agent, seed=seed, episodes=episodes, eval_interval=10, eval_episodes=10)
            cpu0 = time.process_time()
            r = run_experiment(protocol, store / "learners")
            cpu = time.process_time() - cpu0
            reached = next((e.after_episode for e in r.evaluations if e.mean >= 170), None)
            finals.append(r.final_eval_mean)
            lines.append(
                f"| {agent} | {seed} | {r.final_eval_mean:.2f} | {reached if reached is not None else 'never'} "
                f"| {np.mean(r.train_returns[-10:]):.2f} | {r.train_steps:,} | {r.updates:,} "
                f"| {r.wall_time:.1f} | {cpu:.1f} |"
            )
        ok = sum(f >= 170 for f in finals)
        lines.append(f"| {agent} | all | mean {np.mean(finals):.2f}, ≥ 170 in {ok}/{len(finals)} seeds | | | | | | |")
    return lines


def thread_check(store: Path) -> list[str]:
    lines = ["| torch threads | wall s (run 1) | wall s (run 2) | identical step tables |", "|---|---|---|---|"]
    for threads in (1, 2):
        paths, walls = [], []
        for k in range(2):
            protocol = ExperimentProtocol(agent="dqn", seed=0, episodes=30, eval_interval=0, eval_episodes=5)
            r = run_experiment(protocol, store / f"threads{threads}-{k}", torch_threads=threads)
            paths.append(r.path)
            walls.append(r.wall_time)
        same = steps_table(paths[0]).equals(steps_table(paths[1]))
        lines.append(f"| {threads} | {walls[0]:.1f} | {walls[1]:.1f} | {'yes' if same else 'NO'} |")
    return lines


def demo_time(store: Path) -> list[str]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rlaudit.cli", "demo", "--store", str(store / "demo")],
                   check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return [f"`rlaudit demo`: {wall:.0f} s wall, {cpu:.0f} s CPU over all processes."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--skip-learners", action="store_true")
    parser.add_argument("--skip-threads", action="store_true")
    parser.add_argument("--demo", action="store_true", help="also time `rlaudit demo`")
    args = parser.parse_args()

    print(f"# Agents benchmark ({datetime.date.today()}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})\n")
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        print("## Heuristic runs recorded (100 episodes, short_term_v1, stable)\n")
        print("\n".join(heuristic_speed(store)), "\n", flush=True)
        if not args.skip_learners:
            print(f"## DQN and PPO, {args.episodes} training episodes, short_term_v1, stable\n")
            print("\n".join(learner_runs(store, args.seeds, args.episodes)), "\n", flush=True)
        if not args.skip_threads:
            print("## Torch intra-op threads (DQN, 30 episodes)\n")
            print("\n".join(thread_check(store)), "\n", flush=True)
        if args.demo:
            print("## Demo\n")
            print("\n".join(demo_time(store)), "\n", flush=True)


if __name__ == "__main__":
    main()
