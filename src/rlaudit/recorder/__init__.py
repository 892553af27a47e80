"""Recording: every environment step of a training run into one Parquet file."""

from rlaudit.recorder.core import Recorder
from rlaudit.recorder.wrappers import RecordTrajectory, RecordVectorTrajectory

__all__ = ["Recorder", "RecordTrajectory", "RecordVectorTrajectory"]
