"""Import an SB3 ``monitor.csv`` (written by ``stable_baselines3.common.monitor.Monitor``) as an episode-level run.

The file is a ``#{json}`` header line (``t_start``, ``env_id``) and one CSV row
per finished episode: ``r`` (return), ``l`` (length), ``t`` (seconds since
``t_start`` when it ended) and the Monitor's ``info_keywords`` /
``reset_keywords``. There are no steps, so the run is *episode-level*: one row
per episode standing at the episode's last step (``t = l - 1``,
``global_step`` = the steps taken before it, ``wall_time`` = ``t``,
``reward`` = the return), the extra columns in ``info``, termination unknown
(Monitor does not say whether an episode terminated or was truncated). The
manifest's ``episode_level`` says so; the analyser's ``episodes`` view gives
length and return per episode and detectors that need step columns are
skipped with that reason. A folder of monitor files (one per sub-env, as
``make_vec_env(..., monitor_dir=...)`` writes them) is one vector run.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401  (pa.compute)

from rlaudit import schema
from rlaudit.errors import StoreError
from rlaudit.integrations.importers.common import ImportResult, check_free, refuse_reimport, resolved, run_id_from
from rlaudit.recorder.core import Recorder

MONITOR_SUFFIX = "monitor.csv"
EPISODE_LEVEL_REASON = "imported from monitor.csv: episode-level data only"


def find_monitor_files(source: str) -> list[Path]:
    """The monitor file named by ``source``, or every ``*monitor.csv`` in a folder (one per sub-env)."""
    path = Path(source)
    if path.is_dir():
        found = list(path.glob(f"*{MONITOR_SUFFIX}"))
        if not found:
            raise StoreError(f"no *{MONITOR_SUFFIX} file in {source}; expected monitor files written by SB3's Monitor")
        # make_vec_env(monitor_dir=...) names them <rank>.monitor.csv
        return sorted(found, key=lambda p: (int(p.name.split(".")[0]) if p.name.split(".")[0].isdigit() else 1 << 62, p.name))
    if not path.exists():
        raise StoreError(f"no such file: {source}; expected a monitor.csv written by SB3's Monitor")
    return [path]


def read_monitor(path: Path) -> tuple[dict[str, Any], list[str], list[dict[str, str]]]:
    """(header, column names, rows as text) of a monitor file."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            first = fh.readline()
            if not first.startswith("#"):
                raise StoreError(
                    f"{path} is not an SB3 monitor file: expected a first line '#{{\"t_start\": ..., \"env_id\": ...}}', "
                    f"found {first[:60].rstrip()!r}"
                )
            try:
                header = json.loads(first[1:])
            except ValueError as exc:
                raise StoreError(f"{path}: the '#' header line is not JSON ({exc})") from None
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            missing = [c for c in ("r", "l", "t") if c not in columns]
            if missing:
                raise StoreError(f"{path}: expected the columns r, l, t of SB3's Monitor, missing {', '.join(missing)}")
            rows = list(reader)
    except UnicodeDecodeError as exc:
        raise StoreError(f"{path} is not a text file ({exc})") from None
    return header if isinstance(header, dict) else {}, columns, rows


def _number(text: str | None, what: str, line: int) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise StoreError(f"line {line} of the monitor file: {what} is {text!r}, expected a number") from None


def _info_column(values: list[str]) -> pa.Array:
    """An info column from CSV text: numbers as float64, True/False as bool, else strings; empty = null."""
    present = [v for v in values if v != ""]
    if present and all(v in ("True", "False") for v in present):
        return pa.array([None if v == "" else v == "True" for v in values], pa.bool_())
    try:
        return pa.array([None if v == "" else float(v) for v in values], pa.float64())
    except ValueError:
        return pa.array([None if v == "" else v for v in values], pa.string())


def episode_table(run_id: str, columns: list[str], rows: list[dict[str, str]], path: Path, *,
                  env_index: int = 0, num_envs: int = 1, time_offset: float = 0.0) -> pa.Table:
    """The episode-level step table of one monitor file (see the module docstring).

    For sub-env ``env_index`` of ``num_envs`` (SB3 vector envs step every
    sub-env on every call and reset inside it), the episode's last step was
    vector call ``steps_so_far - 1``, so its ``global_step`` is that times ``num_envs``.
    """
    n = len(rows)
    returns = np.array([_number(r["r"], "r", i + 3) for i, r in enumerate(rows)], dtype=np.float64)
    lengths = np.array([_number(r["l"], "l", i + 3) for i, r in enumerate(rows)], dtype=np.float64)
    ended = np.array([_number(r["t"], "t", i + 3) for i, r in enumerate(rows)], dtype=np.float64)
    bad = [i for i, v in enumerate(lengths) if not (v >= 1 and math.isfinite(v) and v == int(v))]
    if bad:
        raise StoreError(f"{path} line {bad[0] + 3}: episode length l={lengths[bad[0]]}, expected a positive integer")
    lengths = lengths.astype(np.int64)
    last = (np.cumsum(lengths) - 1) * num_envs  # global_step of each episode's last step
    cols: dict[str, pa.Array] = {
        "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([run_id])),
        "env_index": pa.array(np.full(n, env_index, np.int32)),
        "episode": pa.array(np.arange(n, dtype=np.int64)),
        "t": pa.array((lengths - 1).astype(np.int32)),
        "global_step": pa.array(last.astype(np.int64)),
        "phase": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(list(schema.PHASES))),
        "wall_time": pa.array(ended + time_offset),
        "reward": pa.array(returns),
        "terminated": pa.nulls(n, pa.bool_()),  # Monitor does not record which flag ended the episode
        "truncated": pa.nulls(n, pa.bool_()),
        "reset_seed": pa.nulls(n, pa.int64()),
    }
    extra = [c for c in columns if c not in ("r", "l", "t")]
    if extra:
        cols["info"] = pa.StructArray.from_arrays([_info_column([r.get(c) or "" for r in rows]) for c in extra], names=extra)
    return pa.table(cols)


def import_monitor(source: str, store: str | os.PathLike, *, run_id: str | None = None) -> ImportResult:
    """Import SB3 monitor files as one episode-level run (id: ``<env>-monitor-<YYYYmmdd-HHMMSS of t_start>``).

    ``source`` is one monitor file, or a folder of them: the files of one
    vector env (``make_vec_env(..., monitor_dir=...)`` writes ``<rank>.monitor.csv``),
    imported as its sub-envs in rank order.
    """
    paths = find_monitor_files(source)
    files = [(path, *read_monitor(path)) for path in paths]
    env_ids = {h.get("env_id") for _, h, _, _ in files}
    if len(env_ids) > 1:
        raise StoreError(f"the monitor files in {source} come from different environments ({', '.join(map(str, env_ids))}); "
                         "import them one file at a time")
    env_id = env_ids.pop()
    env_id = env_id if isinstance(env_id, str) and env_id != "None" else None
    starts = [h.get("t_start") for _, h, _, _ in files]
    t_start = min((t for t in starts if isinstance(t, (int, float))), default=None)
    episodes = sum(len(rows) for _, _, _, rows in files)
    where = paths[0] if len(paths) == 1 else Path(source)
    origin = {"kind": "monitor", "path": resolved(where), "t_start": t_start, "env_id": env_id,
              "files": [p.name for p in paths], "columns": files[0][2], "episodes": episodes}
    store = Path(store)
    refuse_reimport(store, origin, run_id is not None)
    if run_id is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t_start)) if t_start is not None else where.stem
        run_id = run_id_from(f"{(env_id or 'run').split('/')[-1]}-monitor-{stamp}")
    check_free(store, run_id)
    n = len(files)
    tables = [  # parsed before the run is created
        episode_table(run_id, columns, rows, path, env_index=k, num_envs=n,
                      time_offset=(start - t_start) if isinstance(start, (int, float)) and t_start is not None else 0.0)
        for k, ((path, _, columns, rows), start) in enumerate(zip(files, starts))
    ]
    table = pa.concat_tables(tables, promote_options="permissive")
    table = table.take(pa.compute.sort_indices(table, [("global_step", "ascending"), ("env_index", "ascending")]))
    config = {"source": origin, "episode_level": {"reason": EPISODE_LEVEL_REASON}}
    with Recorder(store, run_id, config=config, env_id=env_id, env_meta={"num_envs": n},
                  on_exists="error", handle_sigterm=False) as rec:
        if table.num_rows:
            rec.write_segment(table, episodes=table.num_rows)
    notes = ("episode-level only: no observations, actions or per-step rewards; termination vs truncation unknown",)
    steps = sum(int(float(r["l"])) for _, _, _, rows in files for r in rows)
    return ImportResult(kind="monitor", source=source, run_id=rec.run_id, path=str(rec.path),
                        steps=steps, episodes=episodes, notes=notes)
