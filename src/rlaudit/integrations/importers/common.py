"""What every importer shares: run ids, the already-imported check, optional packages, the result."""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlaudit.errors import ConfigError, RunExistsError, StoreError
from rlaudit.layout import final_paths, list_runs


@dataclass(frozen=True)
class ImportResult:
    """One import: the run it wrote and what the source could not carry over."""

    kind: str
    source: str
    run_id: str
    path: str
    steps: int = 0
    episodes: int = 0
    metrics: int = 0
    attached: bool = False  # metrics added to an existing run
    notes: tuple[str, ...] = field(default_factory=tuple)


def require(module: str, extra: str) -> Any:
    """Import an optional package, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"this importer needs the optional package {module.split('.')[0]!r} ({exc}); "
            f"install it with: pip install 'rlaudit[{extra}]'"
        ) from None


def run_id_from(text: str) -> str:
    """A valid run id made from a source name (``cartpole/random-v0`` -> ``cartpole-random-v0``)."""
    rid = re.sub(r"[^A-Za-z0-9._+=-]+", "-", text).strip("-._+=")[:200]
    return rid or "import"


def same_source(a: dict[str, Any] | None, b: dict[str, Any]) -> bool:
    if not isinstance(a, dict) or a.get("kind") != b.get("kind"):
        return False
    return a.get("path") == b.get("path")


def refuse_reimport(store: Path, source: dict[str, Any], explicit_run_id: bool) -> None:
    """Refuse to import a source the store already holds, unless the user named a new run id.

    Re-importing under a generated id would silently duplicate the data.
    """
    if explicit_run_id or not store.exists():
        return
    try:
        runs, _ = list_runs([store])
    except StoreError:
        return
    for run in runs:
        if same_source(run.manifest.get("source"), source):
            raise RunExistsError(
                f"{source['path']} was already imported into {store} as run {run.run_id!r}; "
                "pass --run-id NEW_ID to import it again under another id"
            )


def resolved(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def check_free(store: Path, run_id: str) -> None:
    """Refuse a run id the store already has, in the words of the import command."""
    if any(p.exists() for p in final_paths(store, run_id)):
        raise RunExistsError(
            f"run {run_id!r} already exists in {store}; runs are never overwritten: "
            "pass --run-id NEW_ID to import under another id"
        )
