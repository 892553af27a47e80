"""Front-ends that attach the recorder to other training libraries.

``rlaudit.integrations.sb3.TrajectoryCallback`` records Stable-Baselines3
training.  The training libraries are optional extras, imported only when an
integration is used.
"""

from __future__ import annotations

__all__ = ["TrajectoryCallback"]


def __getattr__(name: str):
    if name == "TrajectoryCallback":
        from rlaudit.integrations.sb3 import TrajectoryCallback

        return TrajectoryCallback
    raise AttributeError(f"module 'rlaudit.integrations' has no attribute {name!r}")
