"""Import the scalars of TensorBoard event files into a run's metrics table.

Read with tensorboard's ``EventAccumulator`` (the optional ``tensorboard``
extra). Every scalar becomes one metrics row: ``global_step`` = the event's
step, ``wall_time`` = seconds since the earliest event of the import, ``name``
= the tag, ``value``. Scalars written as tensors (TF2 ``tf.summary.scalar``)
are read too. Images, histograms, text and graphs are not carried over.

The metrics go to an existing finished run of the store (``run_id`` names one;
its ``<run_id>.metrics.parquet`` is written beside it, never replaced) or to
a new metrics-only run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from rlaudit import schema
from rlaudit.errors import RunExistsError, StoreError
from rlaudit.integrations.importers.common import ImportResult, check_free, refuse_reimport, require, resolved, run_id_from
from rlaudit.layout import final_paths
from rlaudit.recorder.core import Recorder
from rlaudit.recorder.writer import write_parquet_atomic

EVENT_FILE_MARK = "tfevents"


def event_folder(source: str) -> Path:
    """The one folder whose event files make up the import."""
    path = Path(source)
    if not path.exists():
        raise StoreError(f"no such file or folder: {source}; expected TensorBoard event files (events.out.tfevents.*)")
    if path.is_file():
        if EVENT_FILE_MARK not in path.name:
            raise StoreError(f"{source} is not a TensorBoard event file (expected a name like events.out.tfevents.*)")
        return path.parent
    folders = sorted({p.parent for p in path.rglob(f"*{EVENT_FILE_MARK}*") if p.is_file()})
    if not folders:
        raise StoreError(f"no TensorBoard event files (events.out.tfevents.*) under {source}")
    if len(folders) > 1:
        names = ", ".join(str(f.relative_to(path)) or "." for f in folders[:6])
        raise StoreError(
            f"event files in {len(folders)} folders under {source} ({names}); each folder is one TensorBoard run: "
            "import them one at a time"
        )
    return folders[0]


def read_scalars(folder: Path) -> tuple[list[tuple[int, float, str, float]], list[str]]:
    """(step, wall_time, tag, value) of every scalar in ``folder``, and the tags that were not scalars."""
    ea = require("tensorboard.backend.event_processing.event_accumulator", "tensorboard")
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    try:
        acc.Reload()
    except Exception as exc:
        raise StoreError(f"cannot read the event files in {folder}: {type(exc).__name__}: {exc}") from None
    tags = acc.Tags()
    rows: list[tuple[int, float, str, float]] = []
    for tag in tags.get("scalars", []):
        rows.extend((int(e.step), float(e.wall_time), tag, float(e.value)) for e in acc.Scalars(tag))
    skipped = []
    for tag in tags.get("tensors", []):
        if acc.SummaryMetadata(tag).plugin_data.plugin_name != "scalars":
            skipped.append(tag)
            continue
        from tensorboard.util import tensor_util

        for e in acc.Tensors(tag):
            value = np.asarray(tensor_util.make_ndarray(e.tensor_proto))
            if value.size != 1:
                skipped.append(tag)
                break
            rows.append((int(e.step), float(e.wall_time), tag, float(value.reshape(-1)[0])))
    for kind in ("images", "audio", "histograms"):
        skipped.extend(tags.get(kind, []))
    rows.sort(key=lambda r: (r[1], r[0], r[2]))
    return rows, sorted(set(skipped))


def metrics_table(run_id: str, rows: list[tuple[int, float, str, float]]) -> pa.Table:
    steps, walls, names, values = zip(*rows) if rows else ((), (), (), ())
    t0 = min(walls) if walls else 0.0
    return pa.table({
        "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(rows), np.int32)), pa.array([run_id])),
        "global_step": pa.array(steps, pa.int64()),
        "wall_time": pa.array([w - t0 for w in walls], pa.float64()),
        "name": pa.array(names, pa.string()).dictionary_encode(),
        "value": pa.array(values, pa.float64()),
    }).cast(schema.METRICS_SCHEMA)


def import_tensorboard(source: str, store: str | os.PathLike, *, run_id: str | None = None) -> ImportResult:
    """Import the scalars under ``source`` into ``run_id`` of ``store`` (existing: attached; else a new run)."""
    folder = event_folder(source)
    rows, skipped = read_scalars(folder)
    if not rows:
        raise StoreError(f"no scalars in the event files of {folder} (tags that are not scalars: {', '.join(skipped) or 'none'})")
    origin: dict[str, Any] = {"kind": "tensorboard", "path": resolved(folder),
                              "tags": sorted({r[2] for r in rows}), "first_wall_time": min(r[1] for r in rows)}
    store = Path(store)
    notes = [f"not scalars, not imported: {', '.join(skipped)}"] if skipped else []
    if run_id is not None:
        steps_path, metrics_path, parts = final_paths(store, run_id)
        if steps_path.exists():
            return _attach(store, run_id, steps_path, metrics_path, rows, origin, source, notes)
        if parts.exists():
            raise StoreError(f"run {run_id!r} in {store} is still being recorded (or was cut off); "
                             "attach metrics to a finished run, or run 'rlaudit recover' first")
    refuse_reimport(store, origin, run_id is not None)
    name = run_id or run_id_from(f"{folder.name}-tensorboard")
    check_free(store, name)
    with Recorder(store, name, config={"source": origin}, on_exists="error", handle_sigterm=False) as rec:
        rec.write_segment(metrics_table(rec.run_id, rows), kind="metrics")
    return ImportResult(kind="tensorboard", source=source, run_id=rec.run_id, path=str(rec.path),
                        metrics=len(rows), notes=tuple(notes + ["a metrics-only run: no steps"]))


def _attach(store: Path, run_id: str, steps_path: Path, metrics_path: Path, rows, origin, source, notes) -> ImportResult:
    """Write ``<run_id>.metrics.parquet`` beside an existing finished run (never over an existing one)."""
    import pyarrow.parquet as pq

    if metrics_path.exists():
        raise RunExistsError(
            f"run {run_id!r} already has a metrics table ({metrics_path}); it is never replaced: "
            "import into a new run (another --run-id)"
        )
    manifest = schema.manifest_from_metadata(pq.read_schema(steps_path).metadata)
    if manifest is None:
        raise StoreError(f"{steps_path} is not an rlaudit step file (no manifest); cannot attach metrics to it")
    manifest = dict(manifest, source=origin)
    manifest["counts"] = dict(manifest.get("counts") or {}, metrics=len(rows))
    write_parquet_atomic(metrics_path, metrics_table(run_id, rows), schema.manifest_to_metadata(manifest, "metrics"), fsync=True)
    return ImportResult(kind="tensorboard", source=source, run_id=run_id, path=str(metrics_path),
                        metrics=len(rows), attached=True, notes=tuple(notes))
