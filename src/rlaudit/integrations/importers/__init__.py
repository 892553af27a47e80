"""``rlaudit import KIND SOURCE --store DIR``: other tools' data as rlaudit runs.

Kinds:

``minari``       a Minari dataset (folder or local dataset id), step by step (optional extra ``minari``)
``monitor``      an SB3 ``monitor.csv``: an episode-level run (no extra needed)
``tensorboard``  the scalars of TensorBoard event files, into a run's metrics table (optional extra ``tensorboard``)

Every import writes through the recorder, records where the data came from
in the manifest (``source``) and never overwrites a run: an explicit run id
that exists is an error, and a source the store already holds is refused
unless a new ``run_id`` is given.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass

from rlaudit.errors import unknown_name
from rlaudit.integrations.importers.common import ImportResult

__all__ = ["IMPORTERS", "ImportResult", "Importer", "import_source"]


@dataclass(frozen=True)
class Importer:
    kind: str
    module: str  # rlaudit.integrations.importers.<module>
    function: str
    summary: str


IMPORTERS: dict[str, Importer] = {
    imp.kind: imp
    for imp in (
        Importer("minari", "minari", "import_minari", "a Minari dataset, step by step"),
        Importer("monitor", "monitor", "import_monitor", "an SB3 monitor.csv, episode-level"),
        Importer("tensorboard", "tensorboard", "import_tensorboard", "TensorBoard scalars into a metrics table"),
    )
}


def import_source(kind: str, source: str, store: str | os.PathLike, *, run_id: str | None = None) -> ImportResult:
    """Import ``source`` of ``kind`` into ``store``; see the module docstring."""
    if kind not in IMPORTERS:
        raise unknown_name("import kind", kind, IMPORTERS)
    imp = IMPORTERS[kind]
    module = importlib.import_module(f"{__name__}.{imp.module}")
    return getattr(module, imp.function)(source, store, run_id=run_id)
