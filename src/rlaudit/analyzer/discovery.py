"""Find the runs behind the paths a user gives, and validate each file once.

Paths may be step files (``<run_id>.parquet``), directories holding them,
glob patterns, or unfinished ``<run_id>.parquet.parts`` folders. Every file is
checked here, at the boundary, by reading only its Parquet footer: a corrupt,
truncated, foreign or too-new file becomes a :class:`Problem` with a reason
and is left out; the other runs are still analysed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from rlaudit import schema
from rlaudit.errors import StoreError

@dataclass(frozen=True)
class Problem:
    """An input that was left out of the analysis, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass(frozen=True)
class RunSource:
    """One run found on disk: its files, manifest and column set."""

    run_id: str
    source: str  # "file" (a finished run) or "parts" (an unfinished .parquet.parts folder)
    path: str
    step_files: tuple[str, ...]
    metrics_files: tuple[str, ...]
    manifest: dict[str, Any]
    status: str
    steps: int
    size_bytes: int
    schema: pa.Schema = field(repr=False)

    @property
    def partial(self) -> bool:
        """True when the run was not finalised (read from its parts folder)."""
        return self.source == "parts" or self.status == schema.STATUS_IN_PROGRESS

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)


@dataclass
class Discovery:
    runs: list[RunSource]
    problems: list[Problem]
    inputs: list[str]


def _expand(paths: list[str]) -> tuple[list[Path], list[Problem]]:
    """Step files and parts folders under ``paths`` (the recorder's discovery rules)."""
    from rlaudit.layout import discover as discover_files

    files, parts = discover_files(paths)
    problems = []
    for text in paths:
        p = Path(text)
        if p.is_dir() and not p.name.endswith(schema.PARTS_SUFFIX):
            key = os.path.realpath(p)
            if not any(os.path.realpath(q.parent) == key for q in files + parts):
                problems.append(Problem(str(p), "directory holds no rlaudit runs (no *.parquet files or *.parquet.parts folders)"))
    return files + parts, problems


def _footer(path: Path) -> pq.FileMetaData:
    """The Parquet footer of ``path``; raises ValueError with a readable reason."""
    try:
        meta = pq.read_metadata(path)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise ValueError(f"not a readable Parquet file (corrupt or truncated: {str(exc).strip()})") from None
    size = path.stat().st_size
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        for j in range(rg.num_columns):
            col = rg.column(j)
            start = col.dictionary_page_offset if col.has_dictionary_page else col.data_page_offset
            if start is not None and start + col.total_compressed_size > size:
                raise ValueError(
                    f"truncated Parquet file: column chunk {col.path_in_schema!r} of row group {i} "
                    f"ends at byte {start + col.total_compressed_size:,} but the file has {size:,} bytes"
                )
    return meta


def _check_version(manifest: dict[str, Any] | None, meta: pq.FileMetaData) -> None:
    raw = (meta.metadata or {}).get(schema.SCHEMA_VERSION_KEY)
    version = None
    if manifest is not None and manifest.get("schema_version") is not None:
        version = manifest.get("schema_version")
    elif raw is not None:
        version = raw.decode(errors="replace")
    if version is None:
        return
    try:
        version_num = int(version)
    except (TypeError, ValueError):
        raise ValueError(f"schema version {version!r} is not a number; expected an integer <= {schema.SCHEMA_VERSION}") from None
    if version_num > schema.SCHEMA_VERSION:
        raise ValueError(
            f"written by a newer rlaudit (schema version {version_num}; this rlaudit reads versions "
            f"<= {schema.SCHEMA_VERSION}); upgrade rlaudit to analyse it"
        )


def _read_step_file(path: Path) -> tuple[dict[str, Any], pq.FileMetaData, pa.Schema]:
    meta = _footer(path)
    kv = meta.metadata or {}
    kind = kv.get(schema.FILE_KIND_KEY, b"steps")
    if schema.MANIFEST_KEY not in kv:
        raise ValueError(
            "a Parquet file not written by rlaudit (no 'rlaudit.manifest' key in its metadata); "
            "expected step files written by rlaudit.Recorder"
        )
    try:
        manifest = schema.manifest_from_metadata(kv)
    except ValueError as exc:
        raise ValueError(f"its rlaudit manifest is not valid JSON ({exc})") from None
    if not isinstance(manifest, dict):
        raise ValueError("its rlaudit manifest is not a JSON object")
    _check_version(manifest, meta)
    if kind != b"steps":
        raise ValueError(f"an rlaudit {kind.decode(errors='replace')} file, not a step file")
    arrow_schema = meta.schema.to_arrow_schema()
    _check_columns(arrow_schema)
    return manifest, meta, arrow_schema


def _check_columns(arrow_schema: pa.Schema) -> None:
    missing = [c for c in schema.REQUIRED_STEP_COLUMNS if c not in arrow_schema.names]
    if missing:
        raise ValueError(f"missing required step columns {', '.join(missing)} (found {', '.join(arrow_schema.names)})")


def _metrics_ok(path: Path) -> str | None:
    """None if ``path`` is a readable rlaudit metrics file, else the reason."""
    try:
        meta = _footer(path)
        _check_version(schema.manifest_from_metadata(meta.metadata), meta)
    except ValueError as exc:
        return str(exc)
    names = meta.schema.to_arrow_schema().names
    missing = [f.name for f in schema.METRICS_SCHEMA if f.name not in names]
    if missing:
        return f"not an rlaudit metrics file: missing columns {', '.join(missing)}"
    return None


def _run_id_of(manifest: dict[str, Any], path: Path, suffix: str) -> str:
    run_id = manifest.get("run_id")
    if isinstance(run_id, str) and run_id:
        return run_id
    return path.name[: -len(suffix)] if path.name.endswith(suffix) else path.stem


def _from_file(path: Path, problems: list[Problem]) -> RunSource | None:
    try:
        manifest, meta, arrow_schema = _read_step_file(path)
    except ValueError as exc:
        problems.append(Problem(str(path), str(exc)))
        return None
    run_id = _run_id_of(manifest, path, schema.STEPS_SUFFIX)
    metrics_path = path.with_name(path.name[: -len(schema.STEPS_SUFFIX)] + schema.METRICS_SUFFIX)
    metrics: tuple[str, ...] = ()
    if metrics_path.exists():
        reason = _metrics_ok(metrics_path)
        if reason is None:
            metrics = (str(metrics_path),)
        else:
            problems.append(Problem(str(metrics_path), reason))
    return RunSource(
        run_id=run_id,
        source="file",
        path=str(path),
        step_files=(str(path),),
        metrics_files=metrics,
        manifest=manifest,
        status=str(manifest.get("status") or schema.STATUS_COMPLETE),
        steps=meta.num_rows,
        size_bytes=path.stat().st_size + sum(os.path.getsize(m) for m in metrics),
        schema=arrow_schema,
    )


def _from_parts(folder: Path, problems: list[Problem]) -> RunSource | None:
    manifest_path = folder / schema.PARTS_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        problems.append(Problem(str(folder), f"unfinished run folder without {schema.PARTS_MANIFEST}; cannot tell which run it holds"))
        return None
    except ValueError as exc:
        problems.append(Problem(str(manifest_path), f"manifest is not valid JSON ({exc})"))
        return None
    run_id = _run_id_of(manifest, folder, schema.PARTS_SUFFIX)
    step_files: list[str] = []
    schemas: list[pa.Schema] = []
    rows = 0
    size = 0
    for seg in sorted(folder.glob(schema.STEP_SEGMENT_GLOB)):
        try:
            meta = _footer(seg)
            _check_version(manifest, meta)
            seg_schema = meta.schema.to_arrow_schema()
            _check_columns(seg_schema)
        except ValueError as exc:
            problems.append(Problem(str(seg), f"segment of unfinished run {run_id!r} left out: {exc}"))
            continue
        step_files.append(str(seg))
        schemas.append(seg_schema)
        rows += meta.num_rows
        size += seg.stat().st_size
    metrics = []
    for seg in sorted(folder.glob(schema.METRICS_SEGMENT_GLOB)):
        reason = _metrics_ok(seg)
        if reason is None:
            metrics.append(str(seg))
            size += seg.stat().st_size
        else:
            problems.append(Problem(str(seg), f"metrics segment of unfinished run {run_id!r} left out: {reason}"))
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        problems.append(Problem(str(folder), f"segments have incompatible column types: {exc}"))
        return None
    return RunSource(
        run_id=run_id,
        source="parts",
        path=str(folder),
        step_files=tuple(step_files),
        metrics_files=tuple(metrics),
        manifest=manifest,
        status=_parts_status(manifest),
        steps=rows,
        size_bytes=size,
        schema=unified,
    )


def _parts_status(manifest: dict[str, Any]) -> str:
    """in_progress while the recording process lives, crashed once it is gone."""
    from rlaudit.layout import parts_status

    return parts_status(manifest)


def discover(paths: Iterable[str | os.PathLike]) -> Discovery:
    """Validate every run under ``paths``.

    Raises :class:`StoreError` for a path that does not exist or when no run at
    all could be read; every other defect is reported as a :class:`Problem`.
    """
    inputs = [os.fspath(p) for p in paths]
    if not inputs:
        raise StoreError("no paths given; expected run files, directories, globs or .parquet.parts folders")
    candidates, problems = _expand(inputs)
    runs: list[RunSource] = []
    by_id: dict[str, int] = {}
    for p in candidates:
        if p.is_dir():
            run = _from_parts(p, problems)
        elif p.name.endswith(schema.METRICS_SUFFIX):
            continue  # read beside its run file
        else:
            run = _from_file(p, problems)
        if run is None:
            continue
        if run.run_id in by_id:
            kept = runs[by_id[run.run_id]]
            if kept.source == "parts" and run.source == "file":
                runs[by_id[run.run_id]] = run
                problems.append(Problem(kept.path, f"run {run.run_id!r} also has a finished file {run.path}; the folder was left out"))
            else:
                problems.append(Problem(run.path, f"duplicate run id {run.run_id!r} (already read from {kept.path}); left out"))
            continue
        by_id[run.run_id] = len(runs)
        runs.append(run)
    if not runs:
        detail = "; ".join(str(p) for p in problems) or "nothing found"
        raise StoreError(
            f"no readable rlaudit runs in {', '.join(inputs)} ({detail}); expected <run_id>.parquet files "
            "or <run_id>.parquet.parts folders written by the recorder"
        )
    return Discovery(runs=runs, problems=problems, inputs=inputs)
