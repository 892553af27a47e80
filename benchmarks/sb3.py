"""Wall-clock overhead of TrajectoryCallback on Stable-Baselines3 PPO training.

PPO ``MlpPolicy`` on CartPole-v1 with SB3's default hyper-parameters,
20,480 timesteps, ``n_envs`` 1 and 8, one torch thread, seed 0.  Variants:

- ``bare``: no callback;
- ``rlaudit``: ``TrajectoryCallback`` with its defaults (log-prob, value and
  entropy per step, logger scalars), timed over ``learn()`` and ``close()``;
- ``rlaudit-steps``: ``TrajectoryCallback(policy_data=False)`` (steps only);
- ``rewardscope``: RewardScope's ``RewardScopeCallback`` (``verbose=0``), run
  by the ``--python`` interpreter when it can import ``reward_scope``.

Every (variant, n_envs, repetition) runs in a fresh subprocess and the
variants are interleaved (ABCD ABCD ...) so drifting machine load hits them
alike.  Reported: median seconds per variant and the overhead over the
median of ``bare`` in the same run, the same for the process's CPU time
(robust when other jobs load the machine: the callback's cost is CPU), and
the CPU other processes used while each run was timed (``foreign cores``).  ``--micro`` also times the
per-step extras in isolation (entropy from the acting distribution vs. a
recomputation, DQN Q-values).

    python benchmarks/sb3.py                                  # 3 repetitions (about 30 min)
    python benchmarks/sb3.py --python /tmp/benchvenv/bin/python --reps 5
    python benchmarks/sb3.py --quick                          # a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

SEED = 0


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return sum(fields[:8]) - fields[3] - fields[4]


def run_child(variant: str, n_envs: int, timesteps: int) -> dict:
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    out = tempfile.mkdtemp(prefix="rlaudit-sb3-bench-")
    try:
        venv = make_vec_env("CartPole-v1", n_envs=n_envs, seed=SEED)
        model = PPO("MlpPolicy", venv, seed=SEED, device="cpu", verbose=0)
        callback, finish = None, None
        if variant in ("rlaudit", "rlaudit-steps"):
            from rlaudit.integrations.sb3 import TrajectoryCallback

            callback = TrajectoryCallback(out, run_id="bench", policy_data=variant == "rlaudit")
            finish = callback.close
        elif variant == "rewardscope":
            from reward_scope.integrations import RewardScopeCallback

            callback = RewardScopeCallback(run_name="bench", storage_dir=out, verbose=0)
        ticks = os.sysconf("SC_CLK_TCK")
        busy0, cpu0, t0 = _busy_jiffies(), time.process_time(), time.perf_counter()
        model.learn(timesteps, callback=callback)
        if finish is not None:
            finish()
        wall = time.perf_counter() - t0
        own = time.process_time() - cpu0
        foreign = max(0.0, (_busy_jiffies() - busy0) / ticks - own) / wall
        steps = None
        if variant.startswith("rlaudit"):
            import rlaudit

            steps = rlaudit.open(out).total_steps
        venv.close()
        return {"variant": variant, "n_envs": n_envs, "seconds": wall, "cpu_seconds": own,
                "foreign_cores": round(foreign, 2),
                "recorded_steps": steps, "num_timesteps": int(model.num_timesteps)}
    finally:
        shutil.rmtree(out, ignore_errors=True)


def micro(repeats: int = 2000) -> dict:
    """µs per call of the per-step extras, on the policies SB3 builds for CartPole."""
    import numpy as np
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    from rlaudit.integrations.sb3 import TrajectoryCallback, epsilon_greedy

    torch.set_num_threads(1)
    out = {}
    out_dir = tempfile.mkdtemp(prefix="rlaudit-sb3-micro-")
    for n in (1, 8):
        venv = make_vec_env("CartPole-v1", n_envs=n, seed=SEED)
        ppo = PPO("MlpPolicy", venv, seed=SEED, device="cpu")
        obs = venv.reset()
        obs_tensor = ppo.policy.obs_to_tensor(obs)[0]

        def timed(fn):
            fn()
            t0 = time.perf_counter()
            for _ in range(repeats):
                fn()
            return (time.perf_counter() - t0) / repeats * 1e6

        with torch.no_grad():
            actions, values, log_probs = ppo.policy(obs_tensor)
            acts = actions.numpy()

            logp = log_probs.numpy()
            loc = {"actions": acts, "obs_tensor": obs_tensor}
            cb = TrajectoryCallback(out_dir, policy_data=True)
            cb.model = ppo

            def reuse():
                cb._entropy(loc, log_probs, logp)

            def recompute():
                with torch.no_grad():
                    ppo.policy.get_distribution(obs_tensor).entropy().numpy()

            def forward():
                with torch.no_grad():
                    ppo.policy(obs_tensor)

            out[f"ppo n_envs={n}: policy forward (what SB3 already pays)"] = timed(forward)
            out[f"ppo n_envs={n}: entropy from the acting distribution (default)"] = timed(reuse)
            out[f"ppo n_envs={n}: entropy recomputed"] = timed(recompute)
        dqn = DQN("MlpPolicy", venv, seed=SEED, device="cpu")
        qcb = TrajectoryCallback(out_dir)
        qcb.model = dqn
        qcb._watch_q_net()
        dqn._last_obs = obs
        greedy_actions = np.zeros(n, np.int64)

        def q_recomputed():  # exploration and warm-up steps
            qcb._q_seen = None
            epsilon_greedy(qcb._q_of_last_obs(n), greedy_actions, 0.1)

        def q_reused():  # greedy steps: SB3's predict() already ran the network
            dqn.predict(obs, deterministic=True)
            epsilon_greedy(qcb._q_of_last_obs(n), greedy_actions, 0.1)

        def predict_only():
            dqn.predict(obs, deterministic=True)

        out[f"dqn n_envs={n}: SB3 predict() (what SB3 already pays on greedy steps)"] = timed(predict_only)
        out[f"dqn n_envs={n}: predict() + Q-values from its forward pass (greedy steps)"] = timed(q_reused)
        out[f"dqn n_envs={n}: Q-values recomputed (exploration and warm-up steps)"] = timed(q_recomputed)
        venv.close()
    shutil.rmtree(out_dir, ignore_errors=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, metavar=("VARIANT", "N_ENVS", "TIMESTEPS"))
    ap.add_argument("--timesteps", type=int, default=20_480)
    ap.add_argument("--n-envs", default="1,8")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--python", default=sys.executable, help="interpreter that can import reward_scope")
    ap.add_argument("--variants", default="bare,rlaudit,rlaudit-steps,rewardscope")
    ap.add_argument("--micro", action="store_true", help="also time the per-step extras in isolation")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        variant, n_envs, timesteps = args.child
        print(json.dumps(run_child(variant, int(n_envs), int(timesteps))))
        return
    if args.quick:
        args.timesteps, args.reps, args.n_envs = 2048, 1, "1"

    wanted = args.variants.split(",")
    variants = [(v, sys.executable) for v in ("bare", "rlaudit", "rlaudit-steps") if v in wanted]
    if "rewardscope" in wanted:
        if subprocess.run([args.python, "-c", "import reward_scope"], capture_output=True).returncode == 0:
            variants.append(("rewardscope", args.python))
        else:
            print(f"reward_scope does not import with {args.python}; its row is left out", file=sys.stderr)
    n_envs_list = [int(x) for x in args.n_envs.split(",")]
    results: list[dict] = []
    for rep in range(args.reps):
        for n in n_envs_list:
            for variant, python in variants:
                proc = subprocess.run([python, __file__, "--child", variant, str(n), str(args.timesteps)],
                                      capture_output=True, text=True)
                if proc.returncode != 0:
                    tail = proc.stderr.strip().splitlines()[-1:] or [str(proc.returncode)]
                    print(f"rep {rep + 1}: {variant} n_envs={n} failed: {tail[0]}", file=sys.stderr)
                    continue
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                r["rep"] = rep
                results.append(r)
                print(f"rep {rep + 1}: n_envs={n} {variant:14s} {r['seconds']:7.2f} s  (CPU {r['cpu_seconds']:6.2f} s)  "
                      f"foreign cores {r['foreign_cores']}",
                      file=sys.stderr, flush=True)
    print(summarise(results, n_envs_list, [v for v, _ in variants], args.timesteps))
    extra = micro() if args.micro else None
    if extra:
        print("\n| per-step extra | µs per call |\n|---|---|")
        for name, us in extra.items():
            print(f"| {name} | {us:.1f} |")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"results": results, "micro": extra}, fh, indent=1)


def summarise(results: list[dict], n_envs_list: list[int], variants: list[str], timesteps: int) -> str:
    lines = [f"PPO CartPole-v1, {timesteps} timesteps, SB3 defaults, 1 torch thread",
             "", "| n_envs | variant | runs (s) | median s | overhead vs bare | median CPU s | CPU overhead | median foreign cores |",
             "|---|---|---|---|---|---|---|---|"]
    for n in n_envs_list:
        base_rows = [r for r in results if r["n_envs"] == n and r["variant"] == "bare"]
        base = statistics.median(r["seconds"] for r in base_rows) if base_rows else None
        base_cpu = statistics.median(r["cpu_seconds"] for r in base_rows) if base_rows else None
        for v in variants:
            rows = [r for r in results if r["n_envs"] == n and r["variant"] == v]
            if not rows:
                continue
            med = statistics.median(r["seconds"] for r in rows)
            cpu = statistics.median(r["cpu_seconds"] for r in rows)
            over = "—" if v == "bare" or base is None else f"{(med / base - 1) * 100:+.1f} %"
            cpu_over = "—" if v == "bare" or base_cpu is None else f"{(cpu / base_cpu - 1) * 100:+.1f} %"
            runs = " / ".join(f"{r['seconds']:.1f}" for r in rows)
            foreign = statistics.median(r["foreign_cores"] for r in rows)
            lines.append(f"| {n} | {v} | {runs} | {med:.2f} | {over} | {cpu:.2f} | {cpu_over} | {foreign:.2f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
