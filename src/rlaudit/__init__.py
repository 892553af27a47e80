"""rlaudit: record every step of RL training to Parquet, audit it afterwards.

The public names are imported lazily so that ``import rlaudit`` stays light
(no torch, no DuckDB until the analyser is used).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "__version__",
    "RecordTrajectory",
    "RecordVectorTrajectory",
    "Recorder",
    "open",
]

_LAZY = {
    "RecordTrajectory": "rlaudit.recorder.wrappers",
    "RecordVectorTrajectory": "rlaudit.recorder.wrappers",
    "Recorder": "rlaudit.recorder.core",
    "open": "rlaudit.analyzer.store",
}


def __getattr__(name: str):
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rlaudit' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
