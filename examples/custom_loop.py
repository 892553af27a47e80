"""A hand-written training loop recorded with ``rlaudit.Recorder`` (numpy only).

    python examples/custom_loop.py                  # 50k steps of CartPole-v1, store in runs/
    python examples/custom_loop.py --steps 3000     # a quick look
    rlaudit analyze runs/

The agent is REINFORCE with a linear softmax policy, trained on a shaped
reward: CartPole's +1 per step (term ``alive``) plus a penalty for drifting
from the centre (term ``centre``).  The loop shows the recorder's loop API:

- ``rec.reset(obs, seed=...)`` at every episode start (the seed makes the
  episode replayable);
- ``rec.step(action, next_obs, reward, terminated, truncated, info, ...)``
  after every ``env.step``, with the policy's log-prob and entropy and the
  reward terms;
- ``rec.phase = "eval"`` around greedy evaluation episodes;
- ``rec.log_metrics(...)`` after every update.

The ``with`` block finalises ``<store>/<run_id>.parquet`` (also when the loop
raises: the run is then marked with the error).
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np

import rlaudit


def softmax_policy(theta: np.ndarray, obs: np.ndarray) -> np.ndarray:
    logits = obs @ theta
    p = np.exp(logits - logits.max())
    return p / p.sum()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50_000)
    ap.add_argument("--episodes-per-update", type=int, default=8)
    ap.add_argument("--eval-every", type=int, default=10, help="updates between evaluations")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--gamma", type=float, default=0.99)
    ap.add_argument("--centre-penalty", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default="runs")
    ap.add_argument("--run-id", default=None)
    args = ap.parse_args()

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(args.seed)
    theta = np.zeros((env.observation_space.shape[0], env.action_space.n))
    config = {
        "agent": "reinforce-linear", "gamma": args.gamma, "seed": args.seed,
        "hyperparameters": {"lr": args.lr, "episodes_per_update": args.episodes_per_update},
        "reward": "cartpole-centred", "reward_params": {"centre_penalty": args.centre_penalty},
    }
    seeds = iter(range(args.seed * 1_000_000, (args.seed + 1) * 1_000_000))

    with rlaudit.Recorder(args.store, args.run_id, config=config, env_id="CartPole-v1",
                          observation_space=env.observation_space, action_space=env.action_space) as rec:

        def episode(greedy: bool) -> tuple[list, float]:
            """One episode; returns its (obs, action, reward) and its CartPole return."""
            seed = next(seeds)
            obs, info = env.reset(seed=seed)
            rec.reset(obs, seed=seed, info=info)
            trajectory, score, done = [], 0.0, False
            while not done:
                p = softmax_policy(theta, obs)
                action = int(np.argmax(p)) if greedy else int(rng.choice(len(p), p=p))
                next_obs, alive, terminated, truncated, info = env.step(action)
                centre = -args.centre_penalty * abs(float(next_obs[0]))
                reward = alive + centre
                rec.step(action, next_obs, reward, terminated, truncated, info,
                         logp=float(np.log(p[action])), entropy=float(-(p * np.log(p)).sum()),
                         reward_terms={"alive": alive, "centre": centre})
                trajectory.append((obs, action, reward))
                score += alive
                obs, done = next_obs, terminated or truncated
            return trajectory, score

        updates = 0
        while rec.global_step < args.steps:
            grad = np.zeros_like(theta)
            scores = []
            for _ in range(args.episodes_per_update):
                trajectory, score = episode(greedy=False)
                scores.append(score)
                ret = 0.0
                for obs, action, reward in reversed(trajectory):
                    ret = reward + args.gamma * ret
                    p = softmax_policy(theta, obs)
                    grad += np.outer(obs, np.eye(len(p))[action] - p) * ret
            step_size = args.lr / args.episodes_per_update
            theta += step_size * grad
            updates += 1
            rec.log_metrics(mean_return=float(np.mean(scores)), grad_norm=float(np.linalg.norm(grad)),
                            theta_norm=float(np.linalg.norm(theta)))
            if updates % args.eval_every == 0:
                rec.phase = "eval"
                for _ in range(3):
                    episode(greedy=True)
                rec.phase = "train"
    print(f"recorded run {rec.run_id}: {rec.path}")
    print(f"audit it with: rlaudit analyze {args.store}")


if __name__ == "__main__":
    main()
