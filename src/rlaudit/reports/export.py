"""Exports of an :class:`~rlaudit.reports.audit.Audit` for teams that live in TensorBoard or W&B.

``rlaudit analyze ... --export tensorboard|wandb-json`` writes, into the
``--out`` directory:

``tensorboard/<run_id>/events.out.tfevents.0.rlaudit``
    TensorBoard event file per run (``_store`` for store-wide findings):
    scalars ``rlaudit/findings/<severity>`` and ``rlaudit/findings/total``,
    ``rlaudit/score/<detector>`` (the largest score of the detector's
    findings; 0 when it ran clean), and the text ``rlaudit/findings`` (each
    finding's severity, detector, summary, span and fix) and
    ``rlaudit/verdict``, all at step = the run's recorded steps. Event files
    are written here in pure Python (TFRecord framing, CRC-32C, protobuf
    ``Event``), so exporting needs no TensorBoard install; point
    ``tensorboard --logdir OUT/tensorboard`` at it.
``wandb/<run_id>/wandb-summary.json`` and ``wandb/wandb-summary.json``
    W&B-style flat summaries (``rlaudit/verdict``, ``rlaudit/findings/<severity>``,
    ``rlaudit/score/<detector>``, ...) with the findings as a table in W&B's
    table JSON shape (``{"_type": "table", "columns": [...], "data": [...]}``):
    load one with ``json.load`` and pass it to ``wandb.run.summary.update``.
    Nothing is sent anywhere.

Like ``audit.json``, an export replaces the files of an earlier export in the
same ``--out`` directory (atomically) and touches nothing else.
"""

from __future__ import annotations

import json
import math
import os
import struct
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

from rlaudit.detectors.model import SEVERITIES, STATUS_CLEAN, STATUS_FOUND, Finding
from rlaudit.errors import unknown_name
from rlaudit.reports.audit import Audit

EXPORTS = ("tensorboard", "wandb-json")
STORE_FOLDER = "_store"  # run ids start with a letter or digit, so this never names a run
EVENT_FILE = "events.out.tfevents.0.rlaudit"
FINDING_COLUMNS = ("run_id", "severity", "detector", "summary", "episode_start", "episode_end",
                   "step_start", "step_end", "env_index", "phase", "score", "p_value", "q_value", "fix")


def export(audit: Audit, out_dir: str | os.PathLike, kinds: Iterable[str]) -> list[Path]:
    """Write the exports named in ``kinds`` into ``out_dir``; the paths written."""
    kinds = list(dict.fromkeys(kinds))
    for kind in kinds:
        if kind not in EXPORTS:
            raise unknown_name("export", kind, EXPORTS)
    written: list[Path] = []
    for kind in kinds:
        if kind == "tensorboard":
            written += export_tensorboard(audit, out_dir)
        else:
            written += export_wandb_json(audit, out_dir)
    return written


# ---------------------------------------------------------------------------
# What both exports say about a run
# ---------------------------------------------------------------------------


def _groups(audit: Audit) -> list[tuple[str, str | None, int]]:
    """(folder, run_id, step) for every run, plus the store-wide group when it has results."""
    groups = [(run.run_id, run.run_id, run.steps) for run in audit.runs]
    if any(r.run_id is None for r in audit.results) or any(f.run_id is None for f in audit.findings):
        groups.append((STORE_FOLDER, None, max((r.steps for r in audit.runs), default=0)))
    return groups


def run_scalars(audit: Audit, run_id: str | None) -> dict[str, float]:
    """Finding counts per severity and the score per detector that ran on ``run_id``."""
    findings = [f for f in audit.findings if f.run_id == run_id]
    out: dict[str, float] = {f"rlaudit/findings/{s}": float(sum(f.severity == s for f in findings)) for s in SEVERITIES}
    out["rlaudit/findings/total"] = float(len(findings))
    for result in audit.results:
        if result.run_id != run_id or result.status not in (STATUS_FOUND, STATUS_CLEAN):
            continue
        scores = [f.score for f in findings if f.detector == result.detector and math.isfinite(f.score)]
        out[f"rlaudit/score/{result.detector}"] = max(scores, default=0.0)
    return out


def _span(f: Finding) -> str:
    parts = []
    if f.episode_start is not None:
        end = f.episode_end if f.episode_end is not None else f.episode_start
        parts.append(f"episodes {f.episode_start}–{end}" if end != f.episode_start else f"episode {f.episode_start}")
    if f.step_start is not None:
        end = f.step_end if f.step_end is not None else f.step_start
        parts.append(f"steps {f.step_start}–{end}" if end != f.step_start else f"step {f.step_start}")
    if f.env_index is not None:
        parts.append(f"env {f.env_index}")
    if f.phase is not None:
        parts.append(f.phase)
    return ", ".join(parts)


def findings_markdown(audit: Audit, run_id: str | None) -> str:
    """The findings of ``run_id`` as Markdown (TensorBoard's text plugin renders it)."""
    lines = []
    for f in (f for f in audit.findings if f.run_id == run_id):
        lines.append(f"- **{f.severity}** `{f.detector}`: {f.summary}")
        span = _span(f)
        if span:
            lines.append(f"  - where: {span}")
        if f.fix:
            lines.append(f"  - fix: {f.fix}")
    skipped = [r for r in audit.results if r.run_id == run_id and r.status not in (STATUS_FOUND, STATUS_CLEAN)]
    for r in skipped:
        lines.append(f"- {r.status} `{r.detector}`: {r.reason}")
    return "\n".join(lines) if lines else "No findings."


def _verdict(audit: Audit, run_id: str | None) -> str:
    for run in audit.runs:
        if run.run_id == run_id:
            return run.verdict
    worst = [f.severity for f in audit.findings if f.run_id == run_id]
    return max(worst, key=SEVERITIES.index) if worst else "clean"


def _created(audit: Audit) -> float:
    try:
        return datetime.fromisoformat(str(audit.timings.get("created_at"))).timestamp()
    except (TypeError, ValueError):
        return 0.0


# ---------------------------------------------------------------------------
# TensorBoard event files, written without TensorBoard
# ---------------------------------------------------------------------------


def _crc32c_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def _masked_crc(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC-32C, the data, its masked CRC-32C."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", _masked_crc(header)) + data + struct.pack("<I", _masked_crc(data))


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _event(wall_time: float, step: int, *, file_version: str | None = None, values: list[bytes] = ()) -> bytes:
    """A serialised tensorflow ``Event`` (wall_time=1, step=2, file_version=3, summary=5)."""
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version.encode())
    if values:
        out += _bytes_field(5, b"".join(_bytes_field(1, v) for v in values))  # Summary.value = 1
    return out


def _scalar_value(tag: str, value: float) -> bytes:
    """``Summary.Value`` with tag=1 and simple_value=2 (float)."""
    return _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", value)


def _text_value(tag: str, text: str) -> bytes:
    """``Summary.Value`` holding a string tensor (tensor=8) with the text plugin's metadata (metadata=9)."""
    plugin = _bytes_field(1, _bytes_field(1, b"text"))  # SummaryMetadata.plugin_data{plugin_name}
    shape = _bytes_field(2, _bytes_field(2, _key(1, 0) + _varint(1)))  # TensorShapeProto{dim{size: 1}}
    tensor = _key(1, 0) + _varint(7) + shape + _bytes_field(8, text.encode())  # dtype DT_STRING, string_val
    return _bytes_field(1, tag.encode()) + _bytes_field(9, plugin) + _bytes_field(8, tensor)


def export_tensorboard(audit: Audit, out_dir: str | os.PathLike) -> list[Path]:
    """One event file per run under ``out_dir/tensorboard/``; see the module docstring."""
    wall = _created(audit)
    written = []
    for folder, run_id, step in _groups(audit):
        values = [_scalar_value(tag, v) for tag, v in sorted(run_scalars(audit, run_id).items())]
        values.append(_text_value("rlaudit/findings", findings_markdown(audit, run_id)))
        values.append(_text_value("rlaudit/verdict", _verdict(audit, run_id)))
        data = tfrecord(_event(wall, 0, file_version="brain.Event:2")) + tfrecord(_event(wall, int(step), values=values))
        path = Path(out_dir) / "tensorboard" / folder / EVENT_FILE
        _write_atomic(path, data)
        written.append(path)
    return written


# ---------------------------------------------------------------------------
# W&B-style JSON summaries
# ---------------------------------------------------------------------------


def findings_table(findings: Iterable[Finding]) -> dict[str, Any]:
    """Findings in W&B's table JSON shape."""
    data = [[_json_value(getattr(f, c)) for c in FINDING_COLUMNS] for f in findings]
    return {"_type": "table", "columns": list(FINDING_COLUMNS), "data": data, "nrows": len(data), "ncols": len(FINDING_COLUMNS)}


def wandb_summary(audit: Audit, run_id: str | None) -> dict[str, Any]:
    """The flat W&B summary of one run (``run_id`` None: store-wide findings)."""
    out: dict[str, Any] = {"rlaudit/verdict": _verdict(audit, run_id)}
    out.update(run_scalars(audit, run_id))
    for r in audit.results:
        if r.run_id == run_id:
            out[f"rlaudit/status/{r.detector}"] = r.status
    out["rlaudit/findings_table"] = findings_table(f for f in audit.findings if f.run_id == run_id)
    out["rlaudit/rlaudit_version"] = audit.rlaudit_version
    return out


def store_summary(audit: Audit) -> dict[str, Any]:
    counts = audit.counts()
    out: dict[str, Any] = {f"rlaudit/findings/{s}": counts[s] for s in SEVERITIES}
    out["rlaudit/findings/total"] = len(audit.findings)
    out["rlaudit/runs"] = len(audit.runs)
    for run in audit.runs:
        out[f"rlaudit/verdict/{run.run_id}"] = run.verdict
    out["rlaudit/findings_table"] = findings_table(audit.findings)
    out["rlaudit/rlaudit_version"] = audit.rlaudit_version
    return out


def export_wandb_json(audit: Audit, out_dir: str | os.PathLike) -> list[Path]:
    """``wandb/<run_id>/wandb-summary.json`` per run and ``wandb/wandb-summary.json`` for the store."""
    root = Path(out_dir) / "wandb"
    written = []
    for folder, run_id, _ in _groups(audit):
        path = root / folder / "wandb-summary.json"
        _write_atomic(path, _dumps(wandb_summary(audit, run_id)))
        written.append(path)
    path = root / "wandb-summary.json"
    _write_atomic(path, _dumps(store_summary(audit)))
    written.append(path)
    return written


def _json_value(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def _dumps(data: dict[str, Any]) -> bytes:
    return (json.dumps(data, sort_keys=True, indent=1, allow_nan=False) + "\n").encode()


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
