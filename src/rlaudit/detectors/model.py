"""The findings model: what a detector reports and how each detector run ended.

Everything here is a frozen dataclass of plain values (str, int, float,
bool, None, tuples, dicts of those) so an audit serialises to deterministic
JSON (``rlaudit.reports.audit``) and renders to HTML without further work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from rlaudit.errors import ConfigError

#: Severity tiers, least to most severe.
SEVERITIES = ("info", "warning", "critical")
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}

#: How a (detector, run) pair ended.
STATUS_FOUND = "found"
STATUS_CLEAN = "clean"
STATUS_SKIPPED = "skipped"
STATUS_ERROR = "error"
STATUSES = (STATUS_FOUND, STATUS_CLEAN, STATUS_SKIPPED, STATUS_ERROR)

#: Evidence tables keep at most this many rows unless a detector asks for fewer.
EVIDENCE_ROW_CAP = 50

#: Recognised p-value methods (a finding may name another, e.g. "permutation(B=999)").
P_METHODS = ("asymptotic", "exact", "permutation", "conformal", "bootstrap", "bayes")


def check_severity(severity: str) -> str:
    if severity not in SEVERITY_RANK:
        raise ConfigError(f"unknown severity {severity!r}; expected one of {', '.join(SEVERITIES)}")
    return severity


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data (numpy scalars, arrays, dates, bytes...)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return value
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", 0) == 0:
        return plain(item())
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return plain(tolist())
    iso = getattr(value, "isoformat", None)
    if callable(iso):
        return iso()
    try:  # Decimal and friends
        return float(value)
    except (TypeError, ValueError):
        return repr(value)


@dataclass(frozen=True)
class Evidence:
    """A capped table of the rows that support a finding, and how to get them again.

    ``sql`` with ``params`` re-executed through :meth:`rlaudit.analyzer.Store.sql`
    (or ``rlaudit sql``) returns ``rows`` (the first ``len(rows)`` of them when
    ``total_rows`` exceeds the cap).
    """

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    total_rows: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "columns", tuple(str(c) for c in self.columns))
        object.__setattr__(self, "rows", tuple(tuple(plain(v) for v in r) for r in self.rows))
        object.__setattr__(self, "params", {str(k): plain(v) for k, v in dict(self.params).items()})
        if self.total_rows is None:
            object.__setattr__(self, "total_rows", len(self.rows))

    @property
    def truncated(self) -> bool:
        return self.total_rows is not None and self.total_rows > len(self.rows)


@dataclass(frozen=True)
class Finding:
    """One condition a detector found in one run, with where, why and what to do.

    A persistent condition is one finding spanning its onset to its end
    (``episode_start..episode_end``, ``step_start..step_end`` in
    ``global_step``), never one finding per episode. ``env_index`` and
    ``phase`` are None when the condition spans several sub-environments or
    phases. ``p_value`` is set only where a null hypothesis is meaningful and
    ``p_method`` names how it was computed; ``q_value`` is filled by the
    audit (Benjamini–Hochberg over every p-value in the audit).
    """

    detector: str
    severity: str
    run_id: str | None
    summary: str
    fix: str
    score: float
    evidence: Evidence | None = None
    env_index: int | None = None
    phase: str | None = None
    episode_start: int | None = None
    episode_end: int | None = None
    step_start: int | None = None
    step_end: int | None = None
    actual: Mapping[str, Any] = field(default_factory=dict)
    expected: Mapping[str, Any] = field(default_factory=dict)
    p_value: float | None = None
    p_method: str | None = None
    q_value: float | None = None

    def __post_init__(self):
        check_severity(self.severity)
        if not self.summary:
            raise ValueError("a finding needs a one-sentence summary")
        if (self.p_value is None) != (self.p_method is None):
            raise ValueError("p_value and p_method go together: give both or neither")
        if self.p_value is not None and not (0.0 <= self.p_value <= 1.0):
            raise ValueError(f"p_value must lie in [0, 1], got {self.p_value}")
        score = float(self.score)
        if math.isnan(score):
            raise ValueError("score must not be NaN")
        object.__setattr__(self, "score", score)
        object.__setattr__(self, "actual", {str(k): plain(v) for k, v in dict(self.actual).items()})
        object.__setattr__(self, "expected", {str(k): plain(v) for k, v in dict(self.expected).items()})
        for name in ("env_index", "episode_start", "episode_end", "step_start", "step_end"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, int(v))

    @property
    def severity_rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def sort_key(self) -> tuple:
        return (
            self.run_id or "",
            -self.severity_rank,
            self.detector,
            self.step_start if self.step_start is not None else -1,
            self.episode_start if self.episode_start is not None else -1,
            self.env_index if self.env_index is not None else -1,
            self.summary,
        )


@dataclass(frozen=True)
class DetectorResult:
    """How one detector ended on one run (or on the whole store for store-wide detectors)."""

    detector: str
    run_id: str | None
    status: str
    findings: int = 0
    reason: str | None = None

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def sort_key(self) -> tuple:
        return (self.run_id or "", self.detector)
