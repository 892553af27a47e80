"""What a detector body sees: its run, a query entry point, and finding helpers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Mapping, NoReturn

from rlaudit.detectors.model import EVIDENCE_ROW_CAP, Evidence, Finding

if TYPE_CHECKING:
    from rlaudit.analyzer.store import Result, Run, Store
    from rlaudit.detectors.registry import DetectorSpec


class SkipDetector(Exception):
    """Raised by :meth:`Context.skip`: the detector cannot judge this run (with the reason)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class Context:
    """Handed to a detector body as ``ctx``.

    ``ctx.run`` is the run under audit (None for ``scope="store"`` detectors,
    which see every run in ``ctx.runs``). Queries go through :meth:`sql`,
    which binds ``$run_id`` automatically. ``ctx.reference`` holds the run
    ids the user named as clean references (``--reference RUN``): a detector
    that learns a threshold learns it from them when given, else from the
    run's own early phase, never from the window it judges. Build findings with
    :meth:`finding` (fills detector, severity, run and the docstring's Fix)
    and evidence with :meth:`evidence`.
    """

    def __init__(self, spec: "DetectorSpec", store: "Store", querier: Any, run: "Run | None",
                 reference: tuple[str, ...] = ()):
        self.spec = spec
        self.store = store
        self._q = querier
        self.run = run
        self.reference = reference
        self._wide: Any = None

    @property
    def is_reference(self) -> bool:
        """True when the run under audit is itself one of the reference runs."""
        return self.run is not None and self.run.run_id in self.reference

    def reference_sql(self, query: str, /, **params: Any) -> "Result":
        """Run ``query`` over the reference runs (bound as the list ``$reference``) through the store-wide views.

        The run-scoped cursor a detector gets sees only its own run, so reference data is read here.
        """
        if self._wide is None:
            self._wide = self.store.cursor()
        return self._wide.sql(query, reference=list(self.reference), **params)

    def close(self) -> None:
        if self._wide is not None:
            self._wide.close()
            self._wide = None

    # -- facts about the run -----------------------------------------------

    @property
    def run_id(self) -> str | None:
        return self.run.run_id if self.run is not None else None

    @property
    def runs(self) -> Mapping[str, "Run"]:
        return self.store.runs

    @property
    def manifest(self) -> Mapping[str, Any]:
        return self.run.manifest if self.run is not None else {}

    def reward_bounds(self) -> tuple[float, float] | None:
        """The declared per-step reward bounds (manifest ``reward.bounds`` or ``config.reward_bounds``), if finite."""
        reward = self.manifest.get("reward")
        b = reward.get("bounds") if isinstance(reward, dict) else None
        if b is None and isinstance(self.manifest.get("config"), dict):
            b = self.manifest["config"].get("reward_bounds")
        try:
            lo, hi = float(b[0]), float(b[1])
        except (TypeError, ValueError, IndexError, KeyError):
            return None
        return (lo, hi) if math.isfinite(lo) and math.isfinite(hi) and lo <= hi else None

    def has(self, column: str) -> bool:
        """True when the run (or, store-wide, any run) stores ``column`` / ``"struct.field"``."""
        if self.run is not None:
            return self.run.has(column)
        return any(r.has(column) for r in self.store.runs.values())

    def struct_fields(self, column: str) -> tuple[str, ...]:
        if self.run is not None:
            return self.run.struct_fields.get(column, ())
        names: list[str] = []
        for r in self.store.runs.values():
            names.extend(n for n in r.struct_fields.get(column, ()) if n not in names)
        return tuple(names)

    # -- queries -------------------------------------------------------------

    def _bind(self, query: str, params: dict[str, Any]) -> dict[str, Any]:
        if "$run_id" in query and "run_id" not in params:
            params["run_id"] = self.run_id
        return params

    def sql(self, query: str, /, **params: Any) -> "Result":
        """Run a read-only query; ``$run_id`` is bound to this run unless given."""
        return self._q.sql(query, **self._bind(query, dict(params)))

    def evidence(self, query: str, /, *, cap: int = EVIDENCE_ROW_CAP, **params: Any) -> Evidence:
        """Run ``query`` and keep its first ``cap`` rows as evidence.

        The query must have a total ORDER BY so that re-running it returns the
        same rows in the same order; the SQL and parameters are stored with
        the rows so a reviewer can reproduce them with ``rlaudit sql``.
        """
        params = self._bind(query, dict(params))
        result = self._q.sql(query, **params)
        rows = result.head(cap + 1)
        total = len(rows)
        if total > cap:
            total = self._q.sql(f"SELECT count(*) FROM ({query}) AS evidence", **params).scalar()
            rows = rows[:cap]
        return Evidence(columns=tuple(result.columns), rows=tuple(rows), sql=query, params=params, total_rows=int(total))

    # -- results ---------------------------------------------------------------

    def finding(self, summary: str, *, score: float, evidence: Evidence | None = None, fix: str | None = None,
                severity: str | None = None, run_id: str | None = None, **fields: Any) -> Finding:
        """A :class:`Finding` of this detector on this run.

        ``fields`` are the other :class:`Finding` fields (spans, ``actual``,
        ``expected``, ``p_value``/``p_method``, ``env_index``, ``phase``).
        """
        return Finding(
            detector=self.spec.name,
            severity=severity or self.spec.severity,
            run_id=run_id if run_id is not None else self.run_id,
            summary=summary,
            fix=fix or self.spec.fix,
            score=score,
            evidence=evidence,
            **fields,
        )

    def skip(self, reason: str) -> NoReturn:
        """Stop: this detector cannot judge this run; the audit records it as skipped."""
        raise SkipDetector(reason)
