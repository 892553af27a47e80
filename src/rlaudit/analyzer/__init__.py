"""The analyser: a DuckDB view of a trajectory store (:func:`open`, :class:`Store`)."""

from rlaudit.analyzer.discovery import Problem
from rlaudit.analyzer.store import VIEWS, Result, Run, Store, open

__all__ = ["open", "Store", "Result", "Run", "Problem", "VIEWS"]
