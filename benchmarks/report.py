"""Report benchmark: audit (with its plot series) and HTML rendering time, and the report's size.

    python benchmarks/report.py --demo-store rlaudit-demo/       # the demo store (rlaudit demo)
    python benchmarks/report.py --runs 100 --steps 100000        # synthetic store, generated once
    python benchmarks/report.py --demo-store rlaudit-demo/ --runs 100 --steps 100000 --json /tmp/report.json

The synthetic store is recorded once (under --dir, default
/tmp/rlaudit-bench-report) through the real recorder's batched API: RUNS
runs of a 16-env vectorised CartPole (benchmarks/analyzer.py's numpy
dynamics) in ten groups of agents that differ in exploration, each group
over ten seeds, with logp / entropy / value per step and a loss metric
every 2,048 steps.

For each store, in this process, warm page cache, median of --repeat:

- audit: ``run_audit`` with every detector (DuckDB threads = 2), and the
  part of it spent computing ``series`` (the report's plot data);
- render: ``Audit.load(audit.json)`` + rendering + writing report.html;
- size: report.html and audit.json in bytes.

"Foreign cores" is CPU used by other processes while measuring (from
/proc/stat): timings from a loaded machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

N_ENVS = 16
GROUPS = 10


def generate_store(path: Path, runs: int, steps: int) -> float:
    """Record ``runs`` runs of ``steps`` steps each; returns seconds spent."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from analyzer import VectorCartPole

    from rlaudit.recorder.core import Recorder

    t0 = time.perf_counter()
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for r in range(runs):
        group, seed = r % GROUPS, r // GROUPS
        env = VectorCartPole(N_ENVS, seed=r)
        rng = np.random.default_rng(100 + r)
        eps = 0.05 + 0.05 * group
        with Recorder(tmp, f"cartpole-g{group}-s{seed}", env_id="CartPole-v1",
                      config={"agent": f"eps{eps:.2f}", "gamma": 0.99, "seed": seed}) as rec:
            obs = env.state.astype(np.float32)
            rec.reset_batch(obs, seeds=1000 * r)
            for b in range(steps // N_ENVS):
                greedy = (obs[:, 2] + 0.5 * obs[:, 3] > 0).astype(np.int64)
                explore = rng.random(N_ENVS) < eps
                action = np.where(explore, rng.integers(0, 2, N_ENVS), greedy)
                p = np.where(action == greedy, 1 - eps / 2, eps / 2)
                nxt, reward, term, trunc = env.step(action)
                done = term | trunc
                final = nxt.copy()
                if done.any():
                    env.reset_rows(np.flatnonzero(done))
                    nxt = np.where(done[:, None], env.state.astype(np.float32), nxt)
                rec.step_batch(action, nxt, reward, term, trunc, autoreset_mode="same_step", final_obs=final,
                               logp=np.log(p), entropy=np.full(N_ENVS, 0.3 + eps), value=np.full(N_ENVS, 50.0))
                obs = nxt
                if b % (2048 // N_ENVS) == 0:
                    rec.log_metrics(b * N_ENVS, loss=1.0 / (1 + b))
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)
    return time.perf_counter() - t0


def _busy_cpu() -> float:
    with open("/proc/stat") as fh:
        fields = [float(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(store: Path, out: Path, repeat: int) -> dict:
    from rlaudit.reports.audit import Audit, run_audit
    from rlaudit.reports.html import write_report

    audits, series, renders = [], [], []
    busy0, wall0, cpu0 = _busy_cpu(), time.perf_counter(), sum(os.times()[:2])
    for _ in range(repeat):
        t0 = time.perf_counter()
        audit = run_audit([store], threads=2)
        audits.append(time.perf_counter() - t0)
        series.append(audit.timings["series_s"])
        audit_path = audit.write(out)
        t0 = time.perf_counter()
        report = write_report(Audit.load(audit_path), out)
        renders.append(time.perf_counter() - t0)
    wall = time.perf_counter() - wall0
    foreign = max(0.0, (_busy_cpu() - busy0) - (sum(os.times()[:2]) - cpu0)) / wall
    return {
        "store": str(store), "runs": len(audit.runs), "steps": sum(r.steps for r in audit.runs),
        "audit_s": statistics.median(audits), "series_s": statistics.median(series),
        "render_s": statistics.median(renders), "report_bytes": report.stat().st_size,
        "audit_json_bytes": audit_path.stat().st_size, "findings": audit.counts(),
        "foreign_cores": round(foreign, 2), "repeat": repeat,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--demo-store", type=Path, default=None, help="A store written by `rlaudit demo`.")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--steps", type=int, default=100_000, help="Steps per synthetic run.")
    ap.add_argument("--no-synthetic", action="store_true", help="Measure only --demo-store.")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/rlaudit-bench-report"))
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = ap.parse_args()
    results = []
    if args.demo_store is not None:
        results.append({"name": "demo", **measure(args.demo_store, args.dir / "out-demo", args.repeat)})
        print(json.dumps(results[-1]), flush=True)
    if not args.no_synthetic:
        store = args.dir / f"store_{args.runs}x{args.steps}"
        if not store.exists():
            seconds = generate_store(store, args.runs, args.steps)
            print(f"generated {store} in {seconds:.0f} s", file=sys.stderr, flush=True)
        results.append({"name": f"{args.runs} runs x {args.steps} steps",
                        **measure(store, args.dir / f"out-{args.runs}x{args.steps}", args.repeat)})
        print(json.dumps(results[-1]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
