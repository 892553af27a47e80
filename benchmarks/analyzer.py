"""Analyser benchmark: `rlaudit analyze` and the views on synthetic CartPole-like stores.

    python benchmarks/analyzer.py                     # 1M, 5M, 10M, 20M steps
    python benchmarks/analyzer.py --sizes 1,10 --repeat 3 --json /tmp/analyzer.json

Each store is generated once (under --dir, default /tmp/rlaudit-bench-analyzer)
through the real recorder's batched API: 4 runs, each a 64-env vectorised
CartPole (the classic dynamics in numpy) driven by an epsilon-greedy
heuristic, with logp / entropy / value recorded as a PPO agent would, and
one reward spike and one NaN observation planted in the first run so the
detectors' evidence paths run too.

Every measurement runs in a fresh subprocess (its peak RSS is that
measurement's), warm page cache, median of --repeat runs:

- scan limit: DuckDB `SELECT sum(reward)` over the store's files;
- episodes: the `episodes` view over the whole store, fetched as Arrow;
- analyze: the `rlaudit analyze` command with every registered detector,
  end to end (imports, discovery, detectors, audit.json), DuckDB threads = 2.

"Foreign cores" is CPU used by other processes during the measurement
(from /proc/stat); timings from a loaded machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

N_RUNS = 4
N_ENVS = 64


# ---------------------------------------------------------------------------
# store generation
# ---------------------------------------------------------------------------


class VectorCartPole:
    """Gymnasium's CartPole-v1 dynamics for many envs at once (numpy)."""

    def __init__(self, n: int, seed: int):
        import numpy as np

        self.np = np
        self.n = n
        self.rng = np.random.default_rng(seed)
        self.state = self.rng.uniform(-0.05, 0.05, size=(n, 4))
        self.t = np.zeros(n, dtype=np.int64)

    def reset_rows(self, rows):
        self.state[rows] = self.rng.uniform(-0.05, 0.05, size=(len(rows), 4))
        self.t[rows] = 0

    def step(self, action):
        np = self.np
        x, x_dot, theta, theta_dot = self.state.T
        force = np.where(action == 1, 10.0, -10.0)
        costheta, sintheta = np.cos(theta), np.sin(theta)
        temp = (force + 0.05 * theta_dot**2 * sintheta) / 1.1
        thetaacc = (9.8 * sintheta - costheta * temp) / (0.5 * (4.0 / 3.0 - 0.1 * costheta**2 / 1.1))
        xacc = temp - 0.05 * thetaacc * costheta / 1.1
        tau = 0.02
        x = x + tau * x_dot
        x_dot = x_dot + tau * xacc
        theta = theta + tau * theta_dot
        theta_dot = theta_dot + tau * thetaacc
        self.state = np.stack([x, x_dot, theta, theta_dot], axis=1)
        self.t += 1
        terminated = (np.abs(x) > 2.4) | (np.abs(theta) > 0.2095)
        truncated = (self.t >= 500) & ~terminated
        return self.state.astype(np.float32), np.ones(self.n), terminated, truncated


def generate_store(path: Path, steps: int) -> float:
    """Record ``steps`` steps in N_RUNS runs; returns seconds spent."""
    import numpy as np

    from rlaudit.recorder.core import Recorder

    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    per_run = steps // N_RUNS
    for r in range(N_RUNS):
        env = VectorCartPole(N_ENVS, seed=r)
        rng = np.random.default_rng(100 + r)
        eps = 0.1 + 0.2 * r  # runs differ in how well they balance
        with Recorder(tmp, f"cartpole-ppo-s{r}", env_id="CartPole-v1",
                      config={"agent": "ppo", "gamma": 0.99, "seed": r}) as rec:
            obs = env.state.astype(np.float32)
            rec.reset_batch(obs, seeds=1000 * r)
            batches = per_run // N_ENVS
            for b in range(batches):
                greedy = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
                explore = rng.random(N_ENVS) < eps
                action = np.where(explore, rng.integers(0, 2, N_ENVS), greedy)
                p = np.where(action == greedy, 1 - eps / 2, eps / 2)
                nxt, reward, term, trunc = env.step(action)
                if r == 0 and b == batches // 3:
                    reward = reward.copy()
                    reward[5] = 250.0  # one planted reward spike
                if r == 0 and b == batches // 2:
                    nxt = nxt.copy()
                    nxt[7, 1] = np.nan  # one planted NaN observation
                done = term | trunc
                final = nxt.copy()
                if done.any():
                    env.reset_rows(np.flatnonzero(done))
                    nxt = np.where(done[:, None], env.state.astype(np.float32), nxt)
                rec.step_batch(action, nxt, reward, term, trunc, autoreset_mode="same_step", final_obs=final,
                               logp=np.log(p), entropy=np.full(N_ENVS, 0.5), value=reward * 20.0)
                obs = nxt
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return time.perf_counter() - t0


def store_steps(path: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in path.glob("*.parquet") if not p.name.endswith(".metrics.parquet"))


# ---------------------------------------------------------------------------
# measurements (each in its own process)
# ---------------------------------------------------------------------------


def _busy_cpu() -> float:
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def child(kind: str, store: str, out: str) -> None:
    """Run one measurement in this process and print a JSON line."""
    import resource

    t0 = time.perf_counter()
    if kind == "scan":
        import duckdb

        files = sorted(str(p) for p in Path(store).glob("*.parquet") if not p.name.endswith(".metrics.parquet"))
        con = duckdb.connect()
        con.execute("SET threads = 2")
        t0 = time.perf_counter()
        value = con.execute("SELECT sum(reward) FROM read_parquet(?)", [files]).fetchone()[0]
        detail = {"sum": value}
    elif kind == "episodes":
        import rlaudit

        s = rlaudit.open(store, threads=2)
        t0 = time.perf_counter()
        table = s.sql("SELECT * FROM episodes").arrow()
        detail = {"episodes": table.num_rows}
    elif kind == "analyze":
        from rlaudit.cli import main

        code = 0
        try:
            main(["analyze", store, "--out", out, "--threads", "2", "--no-progress"], standalone_mode=False)
        except SystemExit as exc:
            code = exc.code
        audit = json.loads((Path(out) / "audit.json").read_text())
        per_detector: dict[str, float] = {}
        for key, s in audit["timings"]["per_task_s"].items():
            name = key.split(" ")[0]
            per_detector[name] = per_detector.get(name, 0.0) + s
        detail = {"exit": code, "findings": audit["summary"]["findings"], "per_detector_s": per_detector,
                  "open_s": audit["timings"]["open_s"], "summary_s": audit["timings"]["summary_s"]}
    else:
        raise SystemExit(f"unknown measurement {kind}")
    seconds = time.perf_counter() - t0
    # VmHWM is this process's peak RSS; ru_maxrss would carry the parent's
    # peak over from before exec.
    rss = None
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    if rss is None:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    cpu = os.times()
    print(json.dumps({"seconds": seconds, "peak_rss_bytes": rss, "cpu_s": cpu.user + cpu.system, **detail}))


def measure(kind: str, store: Path, workdir: Path, repeat: int) -> dict:
    results = []
    for _ in range(repeat):
        busy0 = _busy_cpu()
        w0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, __file__, "_child", kind, str(store), str(workdir / "audit")],
            capture_output=True, text=True, check=True,
        )
        wall = time.perf_counter() - w0
        busy = _busy_cpu() - busy0
        line = json.loads(proc.stdout.strip().splitlines()[-1])
        line["process_wall_s"] = wall
        line["foreign_cores"] = max(0.0, busy - line.pop("cpu_s")) / wall  # CPU used by other processes
        results.append(line)
    secs = [r["seconds"] for r in results]
    walls = [r["process_wall_s"] for r in results]
    best = results[secs.index(statistics.median(secs))] if len(secs) % 2 else results[0]
    return {
        "median_s": statistics.median(secs),
        "min_s": min(secs),
        "max_s": max(secs),
        "median_process_wall_s": statistics.median(walls),
        "peak_rss_bytes": max(r["peak_rss_bytes"] for r in results),
        "foreign_cores": [round(r["foreign_cores"], 2) for r in results],
        "detail": {k: v for k, v in best.items() if k not in ("seconds", "peak_rss_bytes", "process_wall_s", "foreign_cores")},
    }


def machine() -> dict:
    import duckdb
    import pyarrow

    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pyarrow": pyarrow.__version__,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_child":
        child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,5,10,20", help="store sizes in millions of steps")
    ap.add_argument("--dir", default="/tmp/rlaudit-bench-analyzer", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None, help="write the results here too")
    ap.add_argument("--keep", action="store_true", help="keep the generated stores")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    report = {"machine": machine(), "sizes": {}}
    print(json.dumps(report["machine"]))
    for size in [float(s) for s in args.sizes.split(",")]:
        steps = int(size * 1_000_000)
        store = args.dir / f"store_{size:g}M"
        gen_s = None
        if not store.exists() or store_steps(store) != steps - steps % (N_RUNS * N_ENVS):
            gen_s = generate_store(store, steps)
        n = store_steps(store)
        size_bytes = sum(p.stat().st_size for p in store.iterdir())
        row = {"steps": n, "bytes": size_bytes, "generate_s": gen_s}
        for kind in ("scan", "episodes", "analyze"):
            row[kind] = measure(kind, store, args.dir, args.repeat)
        row["analyze_over_scan"] = row["analyze"]["median_s"] / row["scan"]["median_s"]
        report["sizes"][f"{size:g}M"] = row
        print(json.dumps({f"{size:g}M": row}))
        if not args.keep and size > 10:
            shutil.rmtree(store)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print("\nsize   steps        MB   scan s  episodes s  analyze s  process s  peak RSS MiB  analyze/scan  foreign cores")
    for name, row in report["sizes"].items():
        a = row["analyze"]
        print(f"{name:>5} {row['steps']:>11,} {row['bytes'] / 1e6:7.0f} {row['scan']['median_s']:8.3f} "
              f"{row['episodes']['median_s']:11.3f} {a['median_s']:10.2f} {a['median_process_wall_s']:10.2f} "
              f"{a['peak_rss_bytes'] / 2**20:13.0f} {row['analyze_over_scan']:13.0f}  {max(a['foreign_cores']):.2f}")


if __name__ == "__main__":
    main()
