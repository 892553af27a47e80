"""``rlaudit recover``: finalise the parts folders of runs whose process is gone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from rlaudit import schema
from rlaudit.errors import SchemaError
from rlaudit.layout import discover, final_paths, process_alive, read_parts_manifest, short_reason
from rlaudit.recorder.writer import finalize_run


def recover_runs(paths: Iterable[str | os.PathLike]) -> tuple[list[tuple[Path, int]], list[tuple[str, str]]]:
    """Finalise the parts folders of crashed runs; live runs are left alone."""
    _, parts = discover(paths)
    recovered: list[tuple[Path, int]] = []
    skipped: list[tuple[str, str]] = []
    for p in parts:
        try:
            manifest = read_parts_manifest(p)
        except SchemaError as exc:
            skipped.append((p.name, str(exc)))
            continue
        alive = process_alive(manifest)
        if alive:
            skipped.append((manifest["run_id"], f"still being recorded by process {manifest.get('pid')}"))
            continue
        if alive is None:
            skipped.append((manifest["run_id"], f"recorded on host {manifest['host']['hostname']}; recover it there"))
            continue
        steps_path = final_paths(p.parent, manifest["run_id"])[0]
        try:
            final = finalize_run(p, schema.STATUS_RECOVERED, {"error": "recording process ended without closing the run"})
        except Exception as exc:
            skipped.append((manifest["run_id"], short_reason(exc)))
            continue
        recovered.append((steps_path, int(final["counts"]["steps"])))
    return recovered, skipped
