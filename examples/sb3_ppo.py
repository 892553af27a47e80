"""Record Stable-Baselines3 PPO training with rlaudit, evaluation episodes included.

    pip install 'rlaudit[sb3]'
    python examples/sb3_ppo.py                     # 100k timesteps, 8 envs, store in runs/
    python examples/sb3_ppo.py --timesteps 2048    # a quick look
    rlaudit analyze runs/

One callback records every step of every sub-environment (with the true last
observation of each episode), PPO's log-prob, value and entropy per step, and
SB3's logger scalars (approx_kl, clip_fraction, losses, ...) in the metrics
table.  The evaluation env handed to EvalCallback is wrapped by the callback,
so its episodes land in the same run with phase "eval".
"""

from __future__ import annotations

import argparse
import warnings

import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import EvalCallback
from stable_baselines3.common.env_util import make_vec_env

from rlaudit.integrations.sb3 import TrajectoryCallback


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--timesteps", type=int, default=100_000)
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default="runs")
    ap.add_argument("--run-id", default=None, help="default: <env>-<date>-<time>")
    args = ap.parse_args()
    torch.set_num_threads(1)  # small MLPs: one thread is fastest

    envs = make_vec_env(args.env, n_envs=args.n_envs, seed=args.seed)
    # n_steps * n_envs timesteps per update; keep several updates even in a short run
    n_steps = max(16, min(256, args.timesteps // (4 * args.n_envs)))
    model = PPO("MlpPolicy", envs, n_steps=n_steps, batch_size=min(256, n_steps * args.n_envs), seed=args.seed)

    # EvalCallback warns when its env's class differs from the training env's; the recording wrapper is one
    warnings.filterwarnings("ignore", "Training and eval env are not of the same type")
    with TrajectoryCallback(args.store, run_id=args.run_id, config={"example": "sb3_ppo"}) as recorder:
        eval_env = recorder.eval_env(make_vec_env(args.env, n_envs=1, seed=args.seed + 1000))
        evaluation = EvalCallback(eval_env, eval_freq=max(1, args.timesteps // (4 * args.n_envs)),
                                  n_eval_episodes=5, verbose=0)
        model.learn(args.timesteps, callback=[recorder, evaluation])
    print(f"recorded run {recorder.run_id}: {recorder.path}")
    print(f"audit it with: rlaudit analyze {args.store}")


if __name__ == "__main__":
    main()
