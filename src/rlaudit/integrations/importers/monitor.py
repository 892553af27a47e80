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
skipped with that reason.
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

from rlaudit import schema
from rlaudit.errors import StoreError
from rlaudit.integrations.importers.common import ImportResult, refuse_reimport, resolved, run_id_from
from rlaudit.recorder.core import Recorder

MONITOR_SUFFIX = "monitor.csv"
EPISODE_LEVEL_REASON = "imported from monitor.csv: episode-level data only"


def find_monitor_file(source: str) -> Path:
    path = Path(source)
    if path.is_dir():
        found = sorted(path.glob(f"*{MONITOR_SUFFIX}"))
        if len(found) != 1:
            names = ", ".join(p.name for p in found) or "none"
            raise StoreError(
                f"expected one *{MONITOR_SUFFIX} file in {source}, found {len(found)} ({names}); "
                "pass the file to import"
            )
        return found[0]
    if not path.exists():
        raise StoreError(f"no such file: {source}; expected a monitor.csv written by SB3's Monitor")
    return path


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


def episode_table(run_id: str, columns: list[str], rows: list[dict[str, str]], path: Path) -> pa.Table:
    """The episode-level step table of a monitor file (see the module docstring)."""
    n = len(rows)
    returns = np.array([_number(r["r"], "r", i + 3) for i, r in enumerate(rows)], dtype=np.float64)
    lengths = np.array([_number(r["l"], "l", i + 3) for i, r in enumerate(rows)], dtype=np.float64)
    ended = np.array([_number(r["t"], "t", i + 3) for i, r in enumerate(rows)], dtype=np.float64)
    bad = [i for i, v in enumerate(lengths) if not (v >= 1 and math.isfinite(v) and v == int(v))]
    if bad:
        raise StoreError(f"{path} line {bad[0] + 3}: episode length l={lengths[bad[0]]}, expected a positive integer")
    lengths = lengths.astype(np.int64)
    last = np.cumsum(lengths) - 1  # global_step of each episode's last step
    cols: dict[str, pa.Array] = {
        "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([run_id])),
        "env_index": pa.array(np.zeros(n, np.int32)),
        "episode": pa.array(np.arange(n, dtype=np.int64)),
        "t": pa.array((lengths - 1).astype(np.int32)),
        "global_step": pa.array(last.astype(np.int64)),
        "phase": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int8)), pa.array(list(schema.PHASES))),
        "wall_time": pa.array(ended),
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
    """Import an SB3 monitor file as an episode-level run (id: ``<env>-monitor-<YYYYmmdd-HHMMSS of t_start>``)."""
    path = find_monitor_file(source)
    header, columns, rows = read_monitor(path)
    env_id = header.get("env_id") if isinstance(header.get("env_id"), str) and header.get("env_id") != "None" else None
    t_start = header.get("t_start")
    origin = {"kind": "monitor", "path": resolved(path), "t_start": t_start, "env_id": env_id,
              "columns": columns, "episodes": len(rows)}
    store = Path(store)
    refuse_reimport(store, origin, run_id is not None)
    if run_id is None:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(t_start)) if isinstance(t_start, (int, float)) else path.stem
        run_id = run_id_from(f"{(env_id or 'run').split('/')[-1]}-monitor-{stamp}")
    config = {"source": origin, "episode_level": {"reason": EPISODE_LEVEL_REASON}}
    table = episode_table(run_id, columns, rows, path)  # parsed before the run is created
    with Recorder(store, run_id, config=config, env_id=env_id, on_exists="error", handle_sigterm=False) as rec:
        if table.num_rows:
            rec.write_segment(table, episodes=table.num_rows)
    notes = ("episode-level only: no observations, actions or per-step rewards; termination vs truncation unknown",)
    return ImportResult(kind="monitor", source=source, run_id=rec.run_id, path=str(rec.path),
                        steps=int(sum(int(float(r["l"])) for r in rows)), episodes=len(rows), notes=notes)
