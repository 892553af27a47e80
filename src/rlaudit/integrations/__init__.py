"""Bridges to other tools: importers of other trajectory formats, and training-library callbacks.

Integrations may use the recorder, the schema and the store layout; they never
import the analyser, detectors, reports or the CLI. Optional packages
(minari, tensorboard, stable-baselines3) are imported inside the functions
that need them, with an install hint when they are missing.

``rlaudit.integrations.sb3.TrajectoryCallback`` records Stable-Baselines3 training.
"""

from __future__ import annotations

__all__ = ["TrajectoryCallback"]


def __getattr__(name: str):
    if name == "TrajectoryCallback":
        from rlaudit.integrations.sb3 import TrajectoryCallback

        return TrajectoryCallback
    raise AttributeError(f"module 'rlaudit.integrations' has no attribute {name!r}")
