"""Build small trajectory stores through the real recorder, for analyser and detector tests.

Every step's observation encodes where it is (``[episode, t, env_index, x]``)
so tests can check that views and evidence point at the right rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rlaudit import schema
from rlaudit.recorder.core import Recorder


def record_run(
    store: Path,
    run_id: str,
    episodes: Sequence[Sequence[float]],
    *,
    truncate_last: bool = False,
    unfinished_last: bool = False,
    seeds: Sequence[int | None] | None = None,
    terms: Callable[[int, int, float], dict[str, float]] | None = None,
    entropy: Callable[[int, int], float] | None = None,
    logp: Callable[[int, int], float] | None = None,
    obs: Callable[[int, int], Sequence[float]] | None = None,
    action: Callable[[int, int], int] | None = None,
    metrics: Sequence[tuple[int, dict[str, float]]] = (),
    phase: Callable[[int], str] | None = None,
    config: dict | None = None,
) -> Path:
    """Record one single-env run whose episode ``k`` pays ``episodes[k]`` step by step.

    Episodes end with ``terminated``; the last one with ``truncated`` if
    ``truncate_last``, or not at all if ``unfinished_last``.
    """
    rec = Recorder(store, run_id, env_id="Plant-v0", config=config or {"gamma": 0.99})
    with rec:
        for k, rewards in enumerate(episodes):
            if phase is not None:
                rec.phase = phase(k)
            seed = None if seeds is None else seeds[k]
            rec.reset(np.asarray(obs(k, 0) if obs else [k, 0, 0, 0], dtype=np.float32), seed=seed)
            n = len(rewards)
            last = k == len(episodes) - 1
            for t, r in enumerate(rewards):
                end = t == n - 1
                term = end and not (last and (truncate_last or unfinished_last))
                trunc = end and last and truncate_last
                kw = {}
                if terms is not None:
                    kw["reward_terms"] = terms(k, t, r)
                if entropy is not None:
                    kw["entropy"] = entropy(k, t)
                if logp is not None:
                    kw["logp"] = logp(k, t)
                nxt = np.asarray(obs(k, t + 1) if obs else [k, t + 1, 0, 0], dtype=np.float32)
                rec.step(action(k, t) if action else t % 2, nxt, float(r), term, trunc, **kw)
        for gs, scalars in metrics:
            rec.log_metrics(gs, **scalars)
    return store / f"{run_id}.parquet"


def record_vector_run(store: Path, run_id: str, lengths: Sequence[Sequence[int]], *, reward: float = 1.0) -> Path:
    """A vector-env run: sub-env ``e`` plays episodes of ``lengths[e][k]`` steps.

    Every sub-env steps together; a sub-env that finished its episodes keeps
    stepping in a last, unfinished episode until the longest one is done.
    Step reward is ``reward * (e + 1)`` so per-env returns differ.
    """
    n_envs = len(lengths)
    total = max(sum(ls) for ls in lengths)
    rec = Recorder(store, run_id, env_id="PlantVector-v0", config={"gamma": 0.99})
    with rec:
        ep = [0] * n_envs
        t = [0] * n_envs
        obs = np.array([[e, 0, 0, 0] for e in range(n_envs)], dtype=np.float32)
        rec.reset_batch(obs, seeds=[100 * e for e in range(n_envs)])
        for _ in range(total):
            done = np.zeros(n_envs, dtype=bool)
            nxt = obs.copy()
            for e in range(n_envs):
                t[e] += 1
                limit = lengths[e][ep[e]] if ep[e] < len(lengths[e]) else None
                done[e] = limit is not None and t[e] == limit
                nxt[e] = [e, t[e], ep[e], 0]
            rewards = np.array([reward * (e + 1) for e in range(n_envs)])
            rec.step_batch(np.zeros(n_envs, dtype=np.int64), nxt, rewards, done, np.zeros(n_envs, dtype=bool),
                           autoreset_mode="disabled")
            if done.any():
                for e in np.flatnonzero(done):
                    ep[e] += 1
                    t[e] = 0
                    nxt[e] = [e, 0, ep[e], 0]
                rec.reset_batch(nxt, seeds=[100 * e + ep[e] for e in range(n_envs)], mask=done)
            obs = nxt
    return store / f"{run_id}.parquet"


def record_crashed_run(store: Path, run_id: str, steps: int, flush_steps: int) -> Path:
    """A run whose process dies (os._exit) mid-run, leaving its .parquet.parts folder."""
    code = textwrap.dedent(f"""
        import os, numpy as np
        from rlaudit.recorder.core import Recorder
        rec = Recorder({str(store)!r}, {run_id!r}, env_id="Plant-v0", flush_steps={flush_steps}, handle_sigterm=False)
        rec.reset(np.zeros(4, np.float32), seed=7)
        ep = 0
        for i in range({steps}):
            t = i % 10
            rec.step(0, np.array([ep, t + 1, 0, 0], np.float32), 1.0, t == 9, False)
            if t == 9:
                ep += 1
                rec.reset(np.array([ep, 0, 0, 0], np.float32), seed=7 + ep)
        os._exit(0)
    """)
    subprocess.run([sys.executable, "-c", code], check=True)
    return store / f"{run_id}{schema.PARTS_SUFFIX}"


def rewrite_manifest(path: Path, out: Path, **changes) -> Path:
    """Copy a run file to ``out`` with manifest keys changed (e.g. a newer schema version)."""
    table = pq.read_table(path)
    manifest = schema.manifest_from_metadata(table.schema.metadata)
    manifest.update(changes)
    meta = dict(table.schema.metadata)
    meta.update(schema.manifest_to_metadata(manifest))
    pq.write_table(table.replace_schema_metadata(meta), out)
    return out


def write_foreign(path: Path) -> Path:
    """A valid Parquet file that rlaudit did not write."""
    pq.write_table(pa.table({"reward": [1.0, 2.0], "note": ["a", "b"]}), path)
    return path


def audit_json_without_timings(path: Path) -> bytes:
    """The bytes of an audit.json up to its trailing ``timings`` field."""
    data = path.read_bytes()
    marker = b',\n "timings": '
    assert data.count(marker) == 1, "timings must be the last top-level field"
    head = data[: data.index(marker)]
    assert json.loads(data)["timings"]
    return head
