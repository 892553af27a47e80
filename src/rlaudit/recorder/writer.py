"""Segment files, the parts-folder manifest, and the atomic merge into one file.

Everything here touches the disk; the per-step buffering lives in ``core``.
``finalize_run`` is shared by ``Recorder.close`` and ``rlaudit recover``.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from rlaudit import schema
from rlaudit.errors import SchemaError, StoreError
from rlaudit.layout import final_paths, read_parts_manifest
from rlaudit.recorder.concat import NotConcatenable, concat_segments

# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, text: str, fsync: bool = False) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_parts_manifest(parts_dir: Path, manifest: dict[str, Any]) -> None:
    write_json_atomic(parts_dir / schema.PARTS_MANIFEST, schema.dumps_manifest(manifest))


# ---------------------------------------------------------------------------
# Parquet options
# ---------------------------------------------------------------------------


def _leaf_paths(field: pa.Field, prefix: str = "") -> Iterable[tuple[str, pa.DataType]]:
    path = f"{prefix}{field.name}"
    t = field.type
    if pa.types.is_struct(t):
        for child in t:
            yield from _leaf_paths(child, path + ".")
    elif pa.types.is_fixed_size_list(t) or pa.types.is_list(t):
        yield from _leaf_paths(pa.field("element", t.value_type), path + ".list.")
    else:
        yield path, t


def write_options(table_schema: pa.Schema) -> dict[str, Any]:
    """ParquetWriter options for a step table: encodings chosen per leaf column."""
    dictionary: list[str] = []
    encoding: dict[str, str] = {}
    for field in table_schema:
        for path, t in _leaf_paths(field):
            top = path.split(".", 1)[0]
            if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_fixed_size_binary(t):
                dictionary.append(path)  # low-cardinality strings; repeated image frames
            elif top in schema.DELTA_COLUMNS and pa.types.is_integer(t):
                encoding[path] = "DELTA_BINARY_PACKED"
            elif pa.types.is_floating(t) and not pa.types.is_float16(t):
                encoding[path] = "BYTE_STREAM_SPLIT"
    return dict(
        compression=schema.COMPRESSION,
        compression_level=schema.COMPRESSION_LEVEL,
        use_dictionary=dictionary or False,
        column_encoding=encoding or None,
        write_statistics=True,
    )


def write_parquet_atomic(path: Path, table: pa.Table, metadata: dict[bytes, bytes] | None = None, fsync: bool = False) -> None:
    """Write ``table`` to ``path`` through a temporary file and a rename."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    try:
        pq.write_table(table, tmp, **write_options(table.schema))
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


# ---------------------------------------------------------------------------
# Schema union (keys that first appear mid-run are kept)
# ---------------------------------------------------------------------------

# Scalar promotion for info / reward-term leaves: bool < float64 < string.
_RANK = {pa.bool_(): 0, pa.int64(): 1, pa.float32(): 1, pa.float64(): 1, pa.string(): 2}


def text_of(value: object) -> str:
    """Text of an info value in a text column: bools and numbers go through float."""
    return value if type(value) is str else str(float(value))


def unify_types(a: pa.DataType, b: pa.DataType) -> pa.DataType:
    if a == b:
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_struct(a) and pa.types.is_struct(b):
        fields = {f.name: f.type for f in a}
        for f in b:
            fields[f.name] = unify_types(fields[f.name], f.type) if f.name in fields else f.type
        return pa.struct([pa.field(name, t) for name, t in fields.items()])
    if a in _RANK and b in _RANK:
        rank = max(_RANK[a], _RANK[b])
        return pa.string() if rank == 2 else pa.float64()
    raise SchemaError(f"column type {b} cannot be merged with {a}")


def unify_schemas(schemas: Iterable[pa.Schema]) -> pa.Schema:
    types: dict[str, pa.DataType] = {}
    for s in schemas:
        for f in s:
            types[f.name] = unify_types(types[f.name], f.type) if f.name in types else f.type
    order = {name: k for k, name in enumerate(schema.STEP_COLUMN_ORDER)}
    names = sorted(types, key=lambda n: (order.get(n, len(order)), n))
    return pa.schema([pa.field(n, types[n]) for n in names])


def conform_array(arr: pa.Array, target: pa.DataType) -> pa.Array:
    if arr.type == target:
        return arr
    if pa.types.is_struct(target) and pa.types.is_struct(arr.type):
        present = {arr.type.field(k).name: k for k in range(arr.type.num_fields)}
        children = [
            conform_array(arr.field(present[f.name]), f.type) if f.name in present else pa.nulls(len(arr), f.type)
            for f in target
        ]
        mask = arr.is_null() if arr.null_count else None
        return pa.StructArray.from_arrays(children, fields=list(target), mask=mask)
    if pa.types.is_string(target) and not pa.types.is_string(arr.type):
        return pa.array([None if v is None else text_of(v) for v in arr.to_pylist()], pa.string())
    return arr.cast(target)


def conform(table: pa.Table, target: pa.Schema) -> pa.Table:
    arrays = []
    for field in target:
        if field.name in table.column_names:
            col = table.column(field.name)
            arrays.append(col if col.type == field.type else conform_array(col.combine_chunks(), field.type))
        else:
            arrays.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=target)


# ---------------------------------------------------------------------------
# Merge parts into the final files
# ---------------------------------------------------------------------------


def read_segments(paths: list[Path]) -> tuple[list[tuple[Path, pq.ParquetFile]], list[tuple[Path, str]]]:
    """Open every readable segment; unreadable ones (cut by a kill) are listed."""
    files, bad = [], []
    for p in paths:
        try:
            files.append((p, pq.ParquetFile(p)))
        except Exception as exc:  # a truncated segment: report, keep the rest
            bad.append((p, str(exc)))
    return files, bad


#: Segments this large on average (or half a full flush, for large rows such
#: as images) are joined byte-wise; smaller ones are re-encoded so the final
#: file does not keep many tiny row groups.
MIN_CONCAT_ROWS = 4096


def _merge(segments: list[tuple[Path, pq.ParquetFile]], out: Path, metadata: dict[bytes, bytes], row_group_rows: int) -> int:
    """Join segment files into ``out`` (atomic); returns rows written.

    Segments with one schema are concatenated without decoding
    (``concat.py``); otherwise every segment is read, brought to the union
    schema and written again.
    """
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    files = [f for _, f in segments]
    joined = False
    try:
        rows_total = sum(f.metadata.num_rows for f in files)
        if rows_total >= len(files) * min(MIN_CONCAT_ROWS, max(row_group_rows // 2, 1)):
            try:
                rows = concat_segments([p for p, _ in segments], tmp, metadata)
                joined = True
            except NotConcatenable:
                pass
        if not joined:
            rows = _rewrite(files, tmp, metadata, row_group_rows)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return rows


def _rewrite(files: list[pq.ParquetFile], tmp: Path, metadata: dict[bytes, bytes], row_group_rows: int) -> int:
    target = unify_schemas(f.schema_arrow for f in files).with_metadata(metadata)
    rows = 0
    with pq.ParquetWriter(tmp, target, **write_options(target)) as writer:
        pending: list[pa.Table] = []
        pending_rows = 0
        for f in files:
            t = conform(f.read(use_threads=False), target)  # threads cost memory, not time, here
            pending.append(t)
            pending_rows += t.num_rows
            if pending_rows >= row_group_rows:
                writer.write_table(pa.concat_tables(pending), row_group_size=max(pending_rows, 1))
                rows += pending_rows
                pending, pending_rows = [], 0
        if pending_rows:
            writer.write_table(pa.concat_tables(pending), row_group_size=pending_rows)
            rows += pending_rows
    return rows


def _ended_rows(f: pq.ParquetFile) -> int:
    """Rows of a segment that end an episode (terminated or truncated)."""
    names = set(f.schema_arrow.names)
    if not {"terminated", "truncated"} <= names:
        return 0
    import pyarrow.compute as pc  # only at the end of a run

    t = f.read(columns=["terminated", "truncated"], use_threads=False)
    return int(pc.sum(pc.or_(t["terminated"], t["truncated"])).as_py() or 0)


def finalize_run(parts_dir: Path, status: str, updates: dict[str, Any] | None = None) -> dict[str, Any]:
    """Merge a parts folder into ``<run_id>.parquet`` (+ metrics) and remove it.

    Returns the final manifest.  Crash-safe at every point: the parts folder
    is removed only after both final files are renamed into place and synced.
    """
    manifest = read_parts_manifest(parts_dir)
    manifest.update(updates or {})
    # rows of a full flush: the row-group size of a re-encoded file
    row_group_rows = int((manifest.get("recorder") or {}).get("flush_rows") or 65536)
    run_id = manifest["run_id"]
    store = parts_dir.parent
    steps_path, metrics_path, _ = final_paths(store, run_id)
    if steps_path.exists():
        raise StoreError(f"{steps_path} already exists; refusing to overwrite it (the parts folder {parts_dir} is left as it is)")

    step_files, bad_steps = read_segments(sorted(parts_dir.glob(schema.STEP_SEGMENT_GLOB)))
    metric_files, bad_metrics = read_segments(sorted(parts_dir.glob(schema.METRICS_SEGMENT_GLOB)))
    steps = sum(f.metadata.num_rows for _, f in step_files)
    episodes = (updates or {}).get("counts", {}).get("episodes")
    if episodes is None:  # a recovered run: count the episodes the data holds
        episodes = sum(_ended_rows(f) for _, f in step_files)
    manifest["status"] = status
    manifest.setdefault("counts", {})
    manifest["counts"]["steps"] = steps
    manifest["counts"]["episodes"] = episodes
    manifest["counts"]["segments"] = len(step_files)
    manifest["counts"]["metrics"] = sum(f.metadata.num_rows for _, f in metric_files)
    if bad_steps or bad_metrics:
        manifest["unreadable_segments"] = sorted(p.name for p, _ in bad_steps + bad_metrics)
    manifest.pop("pid", None)
    manifest.pop("updated_at", None)
    if not manifest.get("ended_at"):
        manifest["ended_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    if metric_files:
        _merge(metric_files, metrics_path, schema.manifest_to_metadata(manifest, "metrics"), row_group_rows)
    if step_files:
        _merge(step_files, steps_path, schema.manifest_to_metadata(manifest, "steps"), row_group_rows)
    else:
        empty = pa.schema(list(schema.CORE_STEP_FIELDS))
        write_parquet_atomic(steps_path, empty.empty_table(), schema.manifest_to_metadata(manifest, "steps"), fsync=True)
    _fsync_dir(store)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return manifest
