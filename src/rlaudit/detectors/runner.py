"""Run selected detectors over every run of a store; collect findings and statuses.

The detectors of one run share a DuckDB cursor whose ``steps`` /
``episodes`` / ``metrics`` views read only that run's files
(:meth:`rlaudit.analyzer.Store.scoped`), so a per-run query never opens
another run's files. Runs can be audited in a thread pool (``jobs``;
DuckDB releases the GIL while it executes, but each query already uses
every core, so it pays only for many small runs). A detector whose needs are missing is *skipped*; one that
raises is *error*; the audit always completes. Afterwards every p-value in
the audit goes through Benjamini–Hochberg and each finding gets its q-value.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from rlaudit.detectors.context import Context, SkipDetector
from rlaudit.detectors.model import (
    STATUS_CLEAN,
    STATUS_ERROR,
    STATUS_FOUND,
    STATUS_SKIPPED,
    DetectorResult,
    Finding,
)
from rlaudit.detectors.registry import DetectorSpec
from rlaudit.detectors.stats import benjamini_hochberg

if TYPE_CHECKING:
    from rlaudit.analyzer.store import Run, Store

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class DetectionOutcome:
    findings: tuple[Finding, ...]
    results: tuple[DetectorResult, ...]
    params: Mapping[str, Mapping[str, Any]]
    seconds: Mapping[str, float]  # "detector run_id" -> seconds (timing, not part of the result)


def missing_need(store: "Store", spec: DetectorSpec, run: "Run | None", querier: Any = None) -> str | None:
    """Why ``spec`` cannot run on ``run`` (None when it can)."""
    querier = querier or store
    for need in spec.needs:
        if need == "episodes":
            continue
        if need == "metrics" or need.startswith("metrics:"):
            name = need.partition(":")[2]
            query = "SELECT count(*) FROM metrics WHERE true"
            params: dict[str, Any] = {}
            if run is not None:
                query += " AND run_id = $run_id"
                params["run_id"] = run.run_id
            if name:
                query += " AND name = $name"
                params["name"] = name
            if not querier.sql(query, **params).scalar():
                what = f"metric {name!r}" if name else "a metrics table"
                return f"needs {what}, which {_whose(run)} does not have (record it with Recorder.log_metrics)"
            continue
        if need.startswith("manifest:"):
            key = need.partition(":")[2]
            manifests = [run.manifest] if run is not None else [r.manifest for r in store.runs.values()]
            if not any(m.get(key) is not None or (isinstance(m.get("config"), dict) and m["config"].get(key) is not None)
                       for m in manifests):
                return f"needs manifest key {key!r}, which {_whose(run)} does not declare (pass it in Recorder(config=...))"
            continue
        if run is not None and run.episode_level is not None:
            return f"needs step column {need!r}; {run.episode_level}"
        has = run.has(need) if run is not None else any(r.has(need) for r in store.runs.values())
        if not has:
            return f"needs column {need!r}, which {_whose(run)} does not have"
    return None


def _whose(run: "Run | None") -> str:
    return f"run {run.run_id!r}" if run is not None else "no run in the store"


def run_detectors(
    store: "Store",
    specs: Sequence[DetectorSpec],
    params: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    jobs: int = 1,
    progress: Progress | None = None,
    reference: Sequence[str] = (),
) -> DetectionOutcome:
    """Run ``specs`` over ``store``; see the module docstring."""
    params = {s.name: s.resolve_params((params or {}).get(s.name)) for s in specs}
    if any("episodes" in s.needs for s in specs) and store.runs:
        store.materialize("episodes")
    # One group per run (its detectors share one run-scoped cursor), plus one per store-wide detector.
    run_specs = [s for s in specs if s.scope != "store"]
    groups: list[tuple[Run | None, list[DetectorSpec]]] = []
    if run_specs:
        groups.extend((store.runs[rid], run_specs) for rid in store.run_ids)
    groups.extend((None, [s]) for s in specs if s.scope == "store")
    total = sum(len(g) for _, g in groups)

    lock = threading.Lock()
    done = [0]

    def group(item):
        run, group_specs = item
        # a run's detectors see views over that run's files only (same SQL, no other files opened)
        q = store.scoped(run.run_id) if run is not None else store.cursor()
        try:
            return [one(spec, run, q) for spec in group_specs]
        finally:
            q.close()

    def one(spec, run, q):
        start = time.perf_counter()
        findings: list[Finding] = []
        reason = missing_need(store, spec, run, q)
        if reason is not None:
            result = DetectorResult(spec.name, run.run_id if run else None, STATUS_SKIPPED, reason=reason)
        else:
            ctx = Context(spec, store, q, run, reference=tuple(reference))
            try:
                for f in spec.func(ctx, **params[spec.name]) or ():
                    if not isinstance(f, Finding):
                        raise TypeError(f"yielded {type(f).__name__}, expected a Finding")
                    if f.detector != spec.name:
                        f = dataclasses.replace(f, detector=spec.name)
                    findings.append(f)
                status = STATUS_FOUND if findings else STATUS_CLEAN
                result = DetectorResult(spec.name, ctx.run_id, status, findings=len(findings))
            except SkipDetector as exc:
                findings = []
                result = DetectorResult(spec.name, ctx.run_id, STATUS_SKIPPED, reason=exc.reason)
            except Exception as exc:  # the audit always completes
                findings = []
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                result = DetectorResult(spec.name, ctx.run_id, STATUS_ERROR, reason=f"{type(exc).__name__}: {msg}".rstrip(": "))
            finally:
                ctx.close()
        seconds = time.perf_counter() - start
        if progress is not None:
            with lock:
                done[0] += 1
                progress(done[0], total, f"{spec.name} {run.run_id if run else '(store)'}")
        return findings, result, f"{spec.name} {result.run_id or '(store)'}", seconds

    if jobs <= 1 or len(groups) <= 1:
        nested = [group(g) for g in groups]
    else:
        with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="rlaudit-detector") as pool:
            nested = list(pool.map(group, groups))
    outcomes = [o for g in nested for o in g]

    findings = [f for fs, _, _, _ in outcomes for f in fs]
    with_p = [i for i, f in enumerate(findings) if f.p_value is not None]
    if with_p:
        qs = benjamini_hochberg([findings[i].p_value for i in with_p])
        for i, q in zip(with_p, qs):
            findings[i] = dataclasses.replace(findings[i], q_value=q)
    findings.sort(key=Finding.sort_key)
    results = sorted((r for _, r, _, _ in outcomes), key=DetectorResult.sort_key)
    seconds = {key: s for _, _, key, s in outcomes}
    return DetectionOutcome(tuple(findings), tuple(results), params, seconds)
