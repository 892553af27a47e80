"""Where runs live in a store, and how to read their manifests (read-only).

Shared by the recorder (``rlaudit runs``, ``rlaudit recover``) and the
analyser; it depends only on ``schema`` and ``errors``.
"""

from __future__ import annotations

import glob
import json
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import pyarrow.parquet as pq

from rlaudit import schema
from rlaudit.errors import SchemaError, StoreError


@dataclass(frozen=True)
class RunInfo:
    """One run found in a store."""

    run_id: str
    status: str  # complete / recovered / in_progress / crashed
    path: Path  # the .parquet file or the .parquet.parts folder
    steps: int
    episodes: int
    size_bytes: int
    manifest: dict[str, Any] = field(repr=False, compare=False)

    @property
    def partial(self) -> bool:
        return self.path.name.endswith(schema.PARTS_SUFFIX)

    @property
    def env_id(self) -> str | None:
        return (self.manifest.get("env") or {}).get("id")

    @property
    def agent(self) -> str | None:
        return self.manifest.get("agent")


def discover(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Step files and parts folders named by ``paths`` (files, folders, globs).

    A path that does not exist is an error; metrics files are skipped (they
    belong to the step file beside them).
    """
    files: list[Path] = []
    parts: list[Path] = []
    for raw in paths:
        text = os.fspath(raw)
        matches = [Path(m) for m in sorted(glob.glob(text))] if glob.has_magic(text) else [Path(text)]
        if not matches or not matches[0].exists():
            raise StoreError(
                f"{text}: no such file or folder; expected a run file (<run_id>.parquet), "
                "a store folder, a glob, or a <run_id>.parquet.parts folder"
            )
        for p in matches:
            if p.is_dir() and p.name.endswith(schema.PARTS_SUFFIX):
                parts.append(p)
            elif p.is_dir():
                for child in sorted(p.iterdir()):
                    if child.is_dir() and child.name.endswith(schema.PARTS_SUFFIX):
                        parts.append(child)
                    elif _is_step_file(child):
                        files.append(child)
            elif _is_step_file(p) or p.suffix == ".parquet" and not p.name.endswith(schema.METRICS_SUFFIX):
                files.append(p)
            elif p.name.endswith(schema.METRICS_SUFFIX):
                continue
            else:
                files.append(p)  # let the reader say why it is not a run file
    finished = {f.name[: -len(schema.STEPS_SUFFIX)] for f in files}
    # a parts folder whose final file exists is a finalisation cut short after the rename
    parts = [p for p in parts if p.name[: -len(schema.PARTS_SUFFIX)] not in finished]
    return _unique(files), _unique(parts)


def _unique(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


def _is_step_file(p: Path) -> bool:
    return p.is_file() and p.name.endswith(schema.STEPS_SUFFIX) and not p.name.endswith(schema.METRICS_SUFFIX) and not p.name.startswith(".")


def file_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a finished run file; SchemaError if it is not one."""
    try:
        meta = pq.read_schema(path).metadata
    except Exception as exc:
        raise SchemaError(f"{path}: not a readable Parquet file ({short_reason(exc)}); it may be truncated or corrupt") from None
    manifest = schema.manifest_from_metadata(meta)
    if manifest is None:
        raise SchemaError(f"{path}: a Parquet file without an rlaudit manifest; expected a run file written by rlaudit")
    _check_version(path, manifest)
    return manifest


def _check_version(path: Path, manifest: dict[str, Any]) -> None:
    version = manifest.get("schema_version")
    if not isinstance(version, int) or version > schema.SCHEMA_VERSION:
        raise SchemaError(
            f"{path}: schema version {version!r} is newer than this rlaudit supports "
            f"({schema.SCHEMA_VERSION}); upgrade rlaudit to read it"
        )


def short_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:200]


def process_alive(manifest: dict[str, Any]) -> bool | None:
    """Whether the process that records a run still runs (None: another host)."""
    host = (manifest.get("host") or {}).get("hostname")
    pid = manifest.get("pid")
    if not isinstance(pid, int):
        return False
    if host and host != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def parts_status(manifest: dict[str, Any]) -> str:
    return schema.STATUS_IN_PROGRESS if process_alive(manifest) is not False else schema.STATUS_CRASHED


def run_info(path: Path) -> RunInfo:
    if path.is_dir():
        manifest = read_parts_manifest(path)
        _check_version(path, manifest)
        segments = sorted(path.glob(schema.STEP_SEGMENT_GLOB))
        steps = 0
        for seg in segments:
            try:
                steps += pq.read_metadata(seg).num_rows
            except Exception:
                continue  # a segment cut by a kill; recover reports it
        size = sum(p.stat().st_size for p in path.iterdir() if p.is_file())
        return RunInfo(
            run_id=manifest["run_id"],
            status=parts_status(manifest),
            path=path,
            steps=steps,
            episodes=int((manifest.get("counts") or {}).get("episodes", 0)),
            size_bytes=size,
            manifest=manifest,
        )
    manifest = file_manifest(path)
    size = path.stat().st_size
    metrics = path.with_name(path.name[: -len(schema.STEPS_SUFFIX)] + schema.METRICS_SUFFIX)
    if metrics.exists():
        size += metrics.stat().st_size
    counts = manifest.get("counts") or {}
    return RunInfo(
        run_id=manifest.get("run_id", path.stem),
        status=manifest.get("status", schema.STATUS_COMPLETE),
        path=path,
        steps=int(counts.get("steps", pq.read_metadata(path).num_rows)),
        episodes=int(counts.get("episodes", 0)),
        size_bytes=size,
        manifest=manifest,
    )


def list_runs(paths: Iterable[str | os.PathLike]) -> tuple[list[RunInfo], list[str]]:
    """Every run under ``paths``, and a line per file that is not a readable run."""
    files, parts = discover(paths)
    infos: list[RunInfo] = []
    problems: list[str] = []
    for p in files + parts:
        try:
            infos.append(run_info(p))
        except SchemaError as exc:
            problems.append(str(exc))
        except OSError as exc:
            problems.append(f"{p}: {short_reason(exc)}")
    infos.sort(key=lambda i: i.run_id)
    return infos, problems


def final_paths(store: Path, run_id: str) -> tuple[Path, Path, Path]:
    return (
        store / f"{run_id}{schema.STEPS_SUFFIX}",
        store / f"{run_id}{schema.METRICS_SUFFIX}",
        store / f"{run_id}{schema.PARTS_SUFFIX}",
    )


def read_parts_manifest(parts_dir: Path) -> dict[str, Any]:
    path = parts_dir / schema.PARTS_MANIFEST
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SchemaError(f"{parts_dir}: no {schema.PARTS_MANIFEST}; expected a folder written by the rlaudit recorder") from None
    except (OSError, ValueError) as exc:
        raise SchemaError(f"{path}: unreadable manifest ({exc}); expected JSON written by the rlaudit recorder") from None
