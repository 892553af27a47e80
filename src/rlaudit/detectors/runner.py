"""Run selected detectors over every run of a store; collect findings and statuses.

Each (detector, run) pair is one task. Tasks run in a thread pool with one
DuckDB cursor per thread (DuckDB releases the GIL while it executes, and
each query already uses every core, so ``jobs`` > 1 pays when a store has
many small runs). A detector whose needs are missing is *skipped*; one that
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
) -> DetectionOutcome:
    """Run ``specs`` over ``store``; see the module docstring."""
    params = {s.name: s.resolve_params((params or {}).get(s.name)) for s in specs}
    if any("episodes" in s.needs for s in specs) and store.runs:
        store.materialize("episodes")
    tasks: list[tuple[DetectorSpec, Run | None]] = []
    for spec in specs:
        if spec.scope == "store":
            tasks.append((spec, None))
        else:
            tasks.extend((spec, store.runs[rid]) for rid in store.run_ids)

    local = threading.local()
    cursors = []
    lock = threading.Lock()
    done = [0]

    def querier():
        if jobs <= 1:
            return store
        cur = getattr(local, "cursor", None)
        if cur is None:
            cur = store.cursor()
            local.cursor = cur
            with lock:
                cursors.append(cur)
        return cur

    def one(task):
        spec, run = task
        start = time.perf_counter()
        findings: list[Finding] = []
        q = querier()
        reason = missing_need(store, spec, run, q)
        if reason is not None:
            result = DetectorResult(spec.name, run.run_id if run else None, STATUS_SKIPPED, reason=reason)
        else:
            ctx = Context(spec, store, q, run)
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
        seconds = time.perf_counter() - start
        if progress is not None:
            with lock:
                done[0] += 1
                progress(done[0], len(tasks), f"{spec.name} {run.run_id if run else '(store)'}")
        return findings, result, f"{spec.name} {result.run_id or '(store)'}", seconds

    try:
        if jobs <= 1 or len(tasks) <= 1:
            outcomes = [one(t) for t in tasks]
        else:
            with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="rlaudit-detector") as pool:
                outcomes = list(pool.map(one, tasks))
    finally:
        for cur in cursors:
            cur.close()

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
