"""Recorder overhead, disk and memory, measured against the bare env and other recorders.

Every (variant, repetition) runs in a fresh subprocess; repetitions are
interleaved across variants so machine load hits them alike.  Reported per
variant: median µs per step over the bare env (loop + close), bytes per step
on disk, peak RSS above the bare env's, and the load from other processes.

    python benchmarks/recorder.py                   # the full matrix (about 15 min)
    python benchmarks/recorder.py --quick           # a smoke run
    python benchmarks/recorder.py --json out.json   # also write raw results

RewardScope (``pip install reward-scope``) and Minari (``pip install minari``)
rows are measured when their packages import (``--python`` can point at an
interpreter that has them); they run fewer steps because they are slow, and
are reported per step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 12345


# ---------------------------------------------------------------------------
# Child side: one variant, one process
# ---------------------------------------------------------------------------


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields[:8]) - idle


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


_RSS_AT_LOOP_START = [0.0]


def _mark_loop_start() -> None:
    """Peak RSS once imports are done and the env/recorder exist, just before the loop."""
    _RSS_AT_LOOP_START[0] = _rss_mib()


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class ImageEnv:
    """64x64x3 uint8 frames of a grey field with a moving white square (compressible)."""

    def __init__(self):
        import gymnasium as gym
        from gymnasium import spaces

        class _Env(gym.Env):
            observation_space = spaces.Box(0, 255, (64, 64, 3), np.uint8)
            action_space = spaces.Discrete(2)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.k = 0
                return self._frame(), {}

            def _frame(self):
                f = np.full((64, 64, 3), 96, np.uint8)
                x = (self.k * 3) % 56
                f[x : x + 8, x : x + 8] = 255
                return f

            def step(self, action):
                self.k += 1
                terminated = bool(self.np_random.random() < 1 / 22)
                return self._frame(), 1.0, terminated, self.k >= 200, {}

        self.env = _Env()


def _make_env(kind: str):
    import gymnasium as gym

    if kind == "img":
        return ImageEnv().env
    return gym.make("CartPole-v1")


def _single_loop(env, actions) -> None:
    env.reset(seed=SEED)
    step, reset = env.step, env.reset
    for a in actions:
        _, _, te, tr, _ = step(a)
        if te or tr:
            reset()


def _timed(env, steps: int, finish=None) -> tuple[float, float]:
    """(loop seconds, finish seconds) of ``steps`` seeded random steps of ``env``."""
    actions = np.random.default_rng(SEED).integers(0, 2, steps).tolist()
    _mark_loop_start()
    t0 = time.perf_counter()
    _single_loop(env, actions)
    t1 = time.perf_counter()
    if finish is not None:
        finish()
    return t1 - t0, time.perf_counter() - t1


def child_bare(kind, steps, out):
    return _timed(_make_env(kind), steps)


def child_rlaudit(kind, steps, out):
    from rlaudit import RecordTrajectory

    env = RecordTrajectory(_make_env(kind), out, "bench")
    return _timed(env, steps, env.close)


def child_floor(kind, steps, out):
    """The same values written into preallocated numpy arrays in a bare loop, flushed as row groups."""
    floor = _Stepper("floor", Path(out))
    _mark_loop_start()
    t0 = time.perf_counter()
    floor.run(steps)
    t1 = time.perf_counter()
    floor.close()
    return t1 - t0, time.perf_counter() - t1


def child_rewardscope(kind, steps, out):
    from reward_scope.integrations import RewardScopeWrapper

    env = RewardScopeWrapper(_make_env(kind), run_name="bench", storage_dir=str(out))
    return _timed(env, steps, env.close)


def child_minari(kind, steps, out):
    os.environ["MINARI_DATASETS_PATH"] = str(out)
    from minari import DataCollector

    env = DataCollector(_make_env(kind))

    def finish():
        env.create_dataset(dataset_id="bench/cartpole-v0", algorithm_name="random")
        env.close()

    return _timed(env, steps, finish)


def _vec_loop(envs, steps):
    n = envs.num_envs
    rng = np.random.default_rng(SEED)
    envs.reset(seed=SEED)
    for _ in range(steps // n):
        envs.step(rng.integers(0, 2, n))


def child_vec8_bare(kind, steps, out):
    import gymnasium as gym

    envs = gym.make_vec("CartPole-v1", 8, vectorization_mode="sync")
    _mark_loop_start()
    t0 = time.perf_counter()
    _vec_loop(envs, steps)
    return time.perf_counter() - t0, 0.0


def child_vec8_rlaudit(kind, steps, out):
    import gymnasium as gym

    from rlaudit import RecordVectorTrajectory

    envs = RecordVectorTrajectory(gym.make_vec("CartPole-v1", 8, vectorization_mode="sync"), out, "bench")
    _mark_loop_start()
    t0 = time.perf_counter()
    _vec_loop(envs, steps)
    t1 = time.perf_counter()
    envs.close()
    return t1 - t0, time.perf_counter() - t1


def child_flat(kind, steps, out):
    """Throughput per tenth of a long recorded run (cost must stay flat)."""
    from rlaudit import RecordTrajectory

    env = RecordTrajectory(_make_env(kind), out, "bench")
    rng = np.random.default_rng(SEED)
    tenth = steps // 10
    rates = []
    env.reset(seed=SEED)
    _mark_loop_start()
    t_start = time.perf_counter()
    for _ in range(10):
        actions = rng.integers(0, 2, tenth).tolist()
        t0 = time.perf_counter()
        for a in actions:
            _, _, te, tr, _ = env.step(a)
            if te or tr:
                env.reset()
        rates.append(tenth / (time.perf_counter() - t0))
    t1 = time.perf_counter()
    env.close()
    return t1 - t_start, time.perf_counter() - t1, {"tenths_steps_per_s": rates}


class _Stepper:
    """One variant's env (and recorder) kept alive, run ``k`` steps at a time."""

    def __init__(self, name: str, out: Path):
        import gymnasium as gym

        self.name = name
        self.rng = np.random.default_rng(SEED)
        env = gym.make("CartPole-v1")
        if name == "rlaudit":
            from rlaudit import RecordTrajectory

            env = RecordTrajectory(env, out, "bench")
        self.env = env
        self.i = 0
        if name == "floor":
            import pyarrow as pa
            import pyarrow.parquet as pq

            from rlaudit.recorder.writer import write_options

            self.pa, self.pq, self.write_options = pa, pq, write_options
            cap = self.cap = 65536
            self.cols = {
                "episode": np.zeros(cap, np.int64), "t": np.zeros(cap, np.int32), "global_step": np.zeros(cap, np.int64),
                "wall_time": np.zeros(cap), "action": np.zeros(cap, np.int64), "reward": np.zeros(cap),
                "terminated": np.zeros(cap, bool), "truncated": np.zeros(cap, bool),
            }
            self.obs_b = np.zeros((cap, 4), np.float32)
            self.writer = None
            self.path = out / "floor.parquet"
            self.n = self.episode = self.t = self.g = 0
            self.t0 = time.perf_counter()
        self.obs, _ = env.reset(seed=SEED)

    def run(self, k: int) -> None:
        actions = self.rng.integers(0, 2, k).tolist()
        env = self.env
        if self.name != "floor":
            for a in actions:
                _, _, te, tr, _ = env.step(a)
                if te or tr:
                    env.reset()
            return
        c = self.cols
        ep_b, t_b, gs_b, wall_b, act_b, rew_b, te_b, tr_b = (c[n] for n in ("episode", "t", "global_step", "wall_time", "action", "reward", "terminated", "truncated"))
        obs_b, perf, t0, obs = self.obs_b, time.perf_counter, self.t0, self.obs
        i, episode, t, g = self.n, self.episode, self.t, self.g
        for a in actions:
            nxt, r, te, tr, _ = env.step(a)
            obs_b[i] = obs
            act_b[i] = a
            rew_b[i] = r
            te_b[i] = te
            tr_b[i] = tr
            ep_b[i] = episode
            t_b[i] = t
            gs_b[i] = g
            wall_b[i] = perf() - t0
            i += 1
            t += 1
            g += 1
            obs = nxt
            if i == self.cap:
                self._flush(i)
                i = 0
            if te or tr:
                obs, _ = env.reset()
                episode += 1
                t = 0
        self.n, self.episode, self.t, self.g, self.obs = i, episode, t, g, obs

    def _flush(self, n: int) -> None:
        pa = self.pa
        table = pa.table({**{k: v[:n] for k, v in self.cols.items()},
                          "obs": pa.FixedSizeListArray.from_arrays(pa.array(self.obs_b[:n].reshape(-1)), 4)})
        if self.writer is None:
            self.writer = self.pq.ParquetWriter(self.path, table.schema, **self.write_options(table.schema))
        self.writer.write_table(table)

    def close(self) -> None:
        if self.name == "floor":
            if self.n:
                self._flush(self.n)
            self.writer.close()
        else:
            self.env.close()


def paired_rounds(steps: int, rounds: int) -> dict:
    """bare / floor / rlaudit in one process, in short interleaved chunks.

    This kind of VM changes speed by tens of percent from one second to the
    next, more than the effect measured; chunks of ``steps // rounds`` steps in
    rotating order expose the three variants to the same conditions, and the
    median of the per-chunk differences is the overhead.  Each variant keeps
    one env (and recorder) for the whole run; its final flush and close are
    timed once and spread over all its steps.
    """
    chunk = max(1, steps // rounds)
    names = ["bare", "floor", "rlaudit"]
    outs = {n: Path(tempfile.mkdtemp(prefix=f"rlaudit-bench-paired-{n}-")) for n in names}
    steppers = {n: _Stepper(n, outs[n]) for n in names}
    per_round = []
    try:
        for r in range(rounds):
            times = {}
            for name in names[r % 3:] + names[: r % 3]:
                t0 = time.perf_counter()
                steppers[name].run(chunk)
                times[name] = (time.perf_counter() - t0) / chunk * 1e6
            per_round.append(times)
        close = {}
        for name in names:
            t0 = time.perf_counter()
            steppers[name].close()
            close[name] = (time.perf_counter() - t0) / (chunk * rounds) * 1e6
    finally:
        for out in outs.values():
            shutil.rmtree(out, ignore_errors=True)
    return {"steps": chunk * rounds, "chunk": chunk, "rounds": per_round, "close_us_per_step": close}


CHILDREN = {
    "bare": child_bare,
    "floor": child_floor,
    "rlaudit": child_rlaudit,
    "rewardscope": child_rewardscope,
    "minari": child_minari,
    "vec8_bare": child_vec8_bare,
    "vec8_rlaudit": child_vec8_rlaudit,
    "img_bare": child_bare,
    "img_rlaudit": child_rlaudit,
    "flat": child_flat,
}


def run_child(variant: str, steps: int) -> dict:
    if variant.startswith("paired"):
        return paired_rounds(steps, int(variant.split(":")[1]))
    kind = "img" if variant.startswith("img") else "cartpole"
    out = Path(tempfile.mkdtemp(prefix=f"rlaudit-bench-{variant}-"))
    rss_before = _rss_mib()
    busy0, cpu0, wall0 = _busy_jiffies(), time.process_time(), time.perf_counter()
    try:
        result = CHILDREN[variant](kind, steps, out)
        loop_s, close_s = result[0], result[1]
        extra = result[2] if len(result) > 2 else {}
        wall = time.perf_counter() - wall0
        hz = os.sysconf("SC_CLK_TCK")
        foreign = max(0.0, ((_busy_jiffies() - busy0) / hz - (time.process_time() - cpu0)) / wall)
        return {
            "variant": variant, "steps": steps, "loop_s": loop_s, "close_s": close_s,
            "total_s": loop_s + close_s, "bytes": _dir_bytes(out), "rss_before_mib": rss_before,
            "rss_peak_mib": _rss_mib(), "rss_loop_start_mib": _RSS_AT_LOOP_START[0], "foreign_cores": round(foreign, 2),
            "torch_imported": "torch" in sys.modules, **extra,
        }
    finally:
        shutil.rmtree(out, ignore_errors=True)


# ---------------------------------------------------------------------------
# Parent side: interleaved repetitions and the summary
# ---------------------------------------------------------------------------


def _spawn(python: str, variant: str, steps: int) -> dict | None:
    proc = subprocess.run(
        [python, __file__, "--child", variant, "--steps", str(steps)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        print(f"  {variant}: failed ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode})", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}"], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--slow-steps", type=int, default=5_000, help="steps for RewardScope (ms per step)")
    ap.add_argument("--minari-steps", type=int, default=20_000)
    ap.add_argument("--flat-steps", type=int, default=5_000_000)
    ap.add_argument("--python", default=sys.executable, help="interpreter for the RewardScope/Minari rows")
    ap.add_argument("--paired-rounds", type=int, default=60, help="interleaved chunks of the in-process bare/floor/rlaudit comparison")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_child(args.child, args.steps)))
        return
    if args.quick:
        args.steps, args.reps, args.slow_steps, args.minari_steps, args.flat_steps = 20_000, 1, 500, 2_000, 200_000
        args.paired_rounds = 6

    plan = [("bare", args.steps, sys.executable), ("floor", args.steps, sys.executable),
            ("rlaudit", args.steps, sys.executable),
            ("vec8_bare", args.steps, sys.executable), ("vec8_rlaudit", args.steps, sys.executable),
            ("img_bare", args.steps // 4, sys.executable), ("img_rlaudit", args.steps // 4, sys.executable)]
    if _available(args.python, "reward_scope"):
        plan.append(("rewardscope", args.slow_steps, args.python))
        plan.append(("bare_short", args.slow_steps, args.python))
    if _available(args.python, "minari"):
        plan.append(("minari", args.minari_steps, args.python))
    results: dict[str, list[dict]] = {}
    for rep in range(args.reps):
        for variant, steps, python in plan:
            child = "bare" if variant == "bare_short" else variant
            r = _spawn(python, child, steps)
            if r is not None:
                r["variant"] = variant
                results.setdefault(variant, []).append(r)
                print(f"rep {rep + 1}: {variant:13s} {r['total_s'] / steps * 1e6:9.2f} µs/step  foreign {r['foreign_cores']}", file=sys.stderr)
    paired = _spawn(sys.executable, f"paired:{args.paired_rounds}", max(args.steps, 600_000))
    flat = _spawn(sys.executable, "flat", args.flat_steps)
    summary = summarise(results, flat, paired)
    print(summary)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "flat": flat, "paired": paired}, indent=1))


def _median(rows, key):
    return statistics.median(r[key] for r in rows)


def summarise(results: dict[str, list[dict]], flat: dict | None, paired: dict | None = None) -> str:
    def per_step(v):
        rows = results.get(v)
        return None if not rows else statistics.median(r["total_s"] / r["steps"] * 1e6 for r in rows)

    lines = ["| variant | steps × reps | µs/step (median) | added µs/step vs bare | added ÷ rlaudit's added | bytes/step | peak RSS MiB | peak RSS above bare MiB | growth during the run MiB | foreign cores |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    bases = {"cartpole": per_step("bare"), "vec8": per_step("vec8_bare"), "img": per_step("img_bare"), "short": per_step("bare_short")}
    rss_base = {"cartpole": results.get("bare"), "vec8": results.get("vec8_bare"), "img": results.get("img_bare"), "short": results.get("bare_short")}
    rl_added = (per_step("rlaudit") or 0) - (bases["cartpole"] or 0)
    for v, rows in results.items():
        group = "vec8" if v.startswith("vec8") else "img" if v.startswith("img") else "short" if v in ("rewardscope", "bare_short") else "cartpole"
        base = bases[group] if v != "minari" else bases["cartpole"]
        us = per_step(v)
        added = us - base if base is not None else float("nan")
        ratio = added / rl_added if rl_added > 0 and not v.startswith(("vec8", "img", "bare")) else float("nan")
        rss = _median(rows, "rss_peak_mib")
        base_rows = rss_base[group] if v != "minari" else rss_base["cartpole"]
        rss_above = rss - _median(base_rows, "rss_peak_mib") if base_rows else float("nan")
        bps = _median(rows, "bytes") / rows[0]["steps"]
        foreign = ", ".join(str(r["foreign_cores"]) for r in rows)
        growth = statistics.median(r["rss_peak_mib"] - r["rss_loop_start_mib"] for r in rows)
        lines.append(f"| {v} | {rows[0]['steps']:,} × {len(rows)} | {us:.2f} | {added:.2f} | {ratio:.1f} | {bps:.1f} | {rss:.0f} | {rss_above:.1f} | {growth:.1f} | {foreign} |")
    if "floor" in results and "rlaudit" in results:
        floor_added = per_step("floor") - bases["cartpole"]
        lines.append("")
        lines.append(f"rlaudit wrapper added {rl_added:.2f} µs/step; floor added {floor_added:.2f} µs/step; ratio {rl_added / floor_added:.2f}")
        lines.append(f"torch imported by the recorder: {any(r['torch_imported'] for r in results['rlaudit'])}")
    if paired:
        rounds, close = paired["rounds"], paired["close_us_per_step"]
        bare = statistics.median(r["bare"] for r in rounds)
        floor_added = statistics.median(r["floor"] - r["bare"] for r in rounds) + close["floor"]
        rl_added = statistics.median(r["rlaudit"] - r["bare"] for r in rounds) + close["rlaudit"]
        q = statistics.quantiles([r["rlaudit"] - r["bare"] for r in rounds], n=4)
        qf = statistics.quantiles([r["floor"] - r["bare"] for r in rounds], n=4)
        lines.append("")
        lines.append(f"paired, one process, {paired['steps']:,} steps per variant in {len(rounds)} interleaved chunks of {paired['chunk']:,}: "
                     f"bare {bare:.2f} µs/step; floor adds {floor_added:.2f} µs/step (chunk IQR {qf[0]:.2f}–{qf[2]:.2f}); "
                     f"RecordTrajectory adds {rl_added:.2f} µs/step (chunk IQR {q[0]:.2f}–{q[2]:.2f}); "
                     f"ratio {rl_added / floor_added:.2f}; close per step: floor {close['floor']:.3f}, rlaudit {close['rlaudit']:.3f} µs")
    if flat:
        rates = flat["tenths_steps_per_s"]
        lines.append(f"flat: {flat['steps']:,} steps; first tenth {rates[0]:,.0f} steps/s, last tenth {rates[-1]:,.0f} steps/s "
                     f"({(rates[-1] / rates[0] - 1) * 100:+.1f} %); all tenths: {', '.join(f'{r:,.0f}' for r in rates)}; "
                     f"bytes/step {flat['bytes'] / flat['steps']:.1f}; peak RSS {flat['rss_peak_mib']:.0f} MiB")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
