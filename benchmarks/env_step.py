"""Career env speed and heuristic returns.

    PYTHONPATH=src python benchmarks/env_step.py [--episodes 300] [--steps 100000]

Prints markdown: the time of one ``CareerEnv.step`` (raw env and through
``gymnasium.make``) for every reward, with CartPole-v1 timed the same way for
scale (a loaded machine slows both alike), then the heuristic baselines' mean
episode return with a 95% confidence interval for every reward in the stable
regime, their episode length and SWITCH share, and short_term_v1 returns in
every regime. Episode i is reset with seed i and the heuristic seeded with i,
so the tables are reproducible.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time

import gymnasium as gym
import numpy as np
from scipy import stats

from rlaudit.agents.heuristics import HEURISTICS, make_heuristic
from rlaudit.envs import ENV_ID, REGIMES, CareerEnv, list_rewards

REFERENCE_REWARDS = (
    "short_term_v1",
    "short_term_v2",
    "long_term_shaped_v1",
    "risk_sensitive_v1",
    "sparse_v1",
    "delayed_v1",
)
FIVE_REWARDS = REFERENCE_REWARDS[:5]  # the 45-run benchmark's rewards


def time_steps(env, actions: list[int]) -> float:
    """CPU seconds per step over ``actions``, resetting at episode ends.

    CPU time of this process (``time.process_time``), so time spent waiting for
    a core on a busy machine is not counted.
    """
    env.reset(seed=0)
    step, reset = env.step, env.reset
    start = time.process_time()
    for action in actions:
        _, _, terminated, truncated, _ = step(action)
        if terminated or truncated:
            reset()
    return (time.process_time() - start) / len(actions)


def time_table(n_steps: int, repeats: int) -> list[str]:
    """Best-of-``repeats`` step times; the variants take turns within each repeat,
    so a change of machine load touches all of them alike."""
    actions = np.random.default_rng(0).integers(0, 2, n_steps).tolist()
    variants = {}
    for reward in list_rewards():
        variants[reward, "raw"] = CareerEnv(reward=reward)
        variants[reward, "make"] = gym.make(ENV_ID, reward=reward)
    # calibration: the same loop on CartPole
    variants["*CartPole-v1, for scale*", "raw"] = gym.make("CartPole-v1").unwrapped
    variants["*CartPole-v1, for scale*", "make"] = gym.make("CartPole-v1")
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(repeats):
        for key, env in variants.items():
            best[key] = min(best[key], time_steps(env, actions))
    lines = [
        "| reward | raw `CareerEnv.step` (µs) | via `gymnasium.make` (µs) |",
        "|---|---|---|",
    ]
    for name in dict.fromkeys(name for name, _ in variants):
        lines.append(f"| {name} | {best[name, 'raw'] * 1e6:.2f} | {best[name, 'make'] * 1e6:.2f} |")
    return lines


def run_episodes(heuristic: str, reward: str, regime: str, episodes: int):
    env = CareerEnv(regime=regime, reward=reward)
    returns, lengths, switch_share = [], [], []
    for i in range(episodes):
        agent = make_heuristic(heuristic, seed=i)
        obs, _ = env.reset(seed=i)
        total, steps, switches = 0.0, 0, 0
        while True:
            action = agent.select_action(obs)
            obs, r, terminated, truncated, _ = env.step(action)
            total += r
            steps += 1
            switches += action
            if terminated or truncated:
                break
        returns.append(total)
        lengths.append(steps)
        switch_share.append(switches / steps)
    return np.array(returns), np.array(lengths), np.array(switch_share)


def mean_ci(values: np.ndarray) -> tuple[float, float]:
    """Mean and half-width of its 95% t-interval."""
    n = len(values)
    half = stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / np.sqrt(n) if n > 1 else float("nan")
    return float(values.mean()), float(half)


def fmt(values: np.ndarray) -> str:
    mean, half = mean_ci(values)
    return f"{mean:.1f} ± {half:.1f}"


def returns_tables(episodes: int) -> list[str]:
    rewards = list_rewards()
    results = {
        (h, r): run_episodes(h, r, "stable", episodes) for h in HEURISTICS for r in rewards
    }
    lines = [
        f"Stable regime, {episodes} episodes per cell, mean return ± 95% CI.",
        "",
        "| agent | " + " | ".join(rewards) + " | mean length | SWITCH share | mean of 5 rewards |",
        "|---|" + "---|" * (len(rewards) + 3),
    ]
    for h in HEURISTICS:
        cells = [fmt(results[h, r][0]) for r in rewards]
        _, lengths, share = results[h, "short_term_v1"]
        five = np.mean([results[h, r][0].mean() for r in FIVE_REWARDS])
        lines.append(
            f"| {h} | " + " | ".join(cells) + f" | {lengths.mean():.1f} | {share.mean():.2f} | {five:.1f} |"
        )
    lines += [
        "",
        f"short_term_v1 in every regime, {episodes} episodes per cell.",
        "",
        "| agent | " + " | ".join(REGIMES) + " |",
        "|---|" + "---|" * len(REGIMES),
    ]
    for h in HEURISTICS:
        cells = [fmt(run_episodes(h, "short_term_v1", regime, episodes)[0]) for regime in REGIMES]
        lines.append(f"| {h} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300, help="episodes per cell; 0 skips")
    parser.add_argument("--steps", type=int, default=100_000, help="steps per timing run; 0 skips")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs (best is kept)")
    args = parser.parse_args(argv)

    print(
        f"Measured {datetime.date.today().isoformat()} on {platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}, gymnasium {gym.__version__}.",
        end="\n\n",
    )
    if args.steps:
        print(
            f"CPU time per step, best of {args.repeats} runs of {args.steps} uniformly "
            "random actions (resets included, amortised).",
            end="\n\n",
        )
        print("\n".join(time_table(args.steps, args.repeats)), end="\n\n")
        sys.stdout.flush()
    if args.episodes:
        print("\n".join(returns_tables(args.episodes)))


if __name__ == "__main__":
    main()
