"""Replay benchmark: branch a 200-step career episode with 16 rollouts per branch.

    python benchmarks/replay.py
    python benchmarks/replay.py --rollouts 16 --repeat 7 --json /tmp/replay.json

A heuristic run (always_switch on short_term_v1, one 200-step training
episode) is recorded through the experiment runner into a temporary store.
Then ``rlaudit.analyzer.replay.replay`` replays the episode from its seed
(fidelity checked over all 200 steps) and branches at t = 0 with the
burnout_threshold baseline against the recorded policy: 16 rollouts per
branch, so 32 rollouts of 200 steps, plus the fidelity pass.

Reported: the first call in the process (store already open; includes
importing scipy.special and gymnasium's env construction), the median wall
time of ``--repeat`` further calls (the target is at most 1 s) and their
median CPU time (less sensitive to other processes).
"Foreign cores" is CPU used by other processes during the measurement (from
/proc/stat); timings from a loaded machine are not comparable.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def _cpu_jiffies() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        parts = [int(x) for x in fh.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts) - idle, sum(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", default=None, help="write the numbers to this file")
    args = parser.parse_args()

    import rlaudit
    from rlaudit.agents.experiments import ExperimentProtocol, run_experiment
    from rlaudit.agents.heuristics import make_heuristic
    from rlaudit.analyzer.replay import Branch, replay

    store_dir = tempfile.mkdtemp(prefix="rlaudit-bench-replay-")
    protocol = ExperimentProtocol(agent="always_switch", reward="short_term_v1", episodes=1, eval_episodes=0,
                                  name="bench-replay")
    result = run_experiment(protocol, store_dir)
    store = rlaudit.open(store_dir)
    manifest = store.runs[result.run_id].manifest
    recorded = make_heuristic("always_switch", seed=manifest["config"]["agent_seed"])
    baseline = Branch.of_policy("burnout_threshold", make_heuristic("burnout_threshold"))
    length = result.train_lengths[0]

    cpu: list[float] = []

    def once() -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        out = replay(store, result.run_id, 0, 0, branches=[baseline], recorded_policy=recorded,
                     rollouts=args.rollouts)
        elapsed = time.perf_counter() - t0
        cpu.append(time.process_time() - c0)
        assert out[0].fidelity.replayable and out[0].fidelity.max_abs_obs_error == 0.0
        return elapsed

    busy0, total0 = _cpu_jiffies()
    first = once()
    warm = [once() for _ in range(args.repeat)]
    busy1, total1 = _cpu_jiffies()
    cores = os.cpu_count() or 1
    busy_cores = (busy1 - busy0) / max(total1 - total0, 1) * cores
    numbers = {
        "episode_steps": length,
        "rollouts_per_branch": args.rollouts,
        "branches": 2,
        "first_call_s": first,
        "median_s": statistics.median(warm),
        "min_s": min(warm),
        "median_cpu_s": statistics.median(cpu[1:]),
        "target_s": 1.0,
        "busy_cores_during_run": busy_cores,
        "cores": cores,
    }
    store.close()
    print(f"replay of a {length}-step career episode, 2 branches x {args.rollouts} rollouts:")
    print(f"  first call {first:.3f} s; median of {args.repeat} {numbers['median_s']:.3f} s "
          f"(min {numbers['min_s']:.3f} s; target <= 1 s); median CPU time {numbers['median_cpu_s']:.3f} s")
    print(f"  busy cores during the measurement: {busy_cores:.1f} of {cores} (this process uses at most 1)")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
