"""``Audit``: the result of auditing a store, as data, and its ``audit.json`` form.

An :class:`Audit` is frozen dataclasses of plain values; the terminal
summary and the HTML report are renderings of it. :meth:`Audit.to_json` is
deterministic: keys sorted, runs / findings / results in a stable order,
floats rounded to 12 significant digits (so that the last bits of parallel
float sums cannot change the file), NaN and infinities written as the
strings ``"nan"``, ``"inf"``, ``"-inf"``. Everything that varies between
two audits of the same store (wall-clock timings, the creation time) lives
in the ``timings`` field, written last. docs/audit-format.md documents the
schema.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from rlaudit import __version__
from rlaudit.detectors.model import (
    SEVERITIES,
    SEVERITY_RANK,
    STATUS_ERROR,
    DetectorResult,
    Evidence,
    Finding,
    check_severity,
)
from rlaudit.errors import ConfigError, SchemaError, unknown_name

AUDIT_FORMAT = "rlaudit-audit"
AUDIT_VERSION = 1
AUDIT_FILENAME = "audit.json"


@dataclass(frozen=True)
class InputFile:
    path: str
    kind: str  # "steps", "metrics"
    run_id: str
    size_bytes: int


@dataclass(frozen=True)
class InputProblem:
    path: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    status: str
    partial: bool
    source: str
    path: str
    steps: int
    episodes: int
    env_id: str | None
    agent: str | None
    verdict: str  # clean | warnings | critical (see verdict())
    findings: Mapping[str, int]  # severity -> count
    #: conformal rank of the run's strongest finding against clean benchmark runs (rlaudit.detectors.calibration)
    risk: float | None = None


@dataclass(frozen=True)
class DetectorInfo:
    name: str
    severity: str
    summary: str
    origin: str
    needs: tuple[str, ...]
    params: Mapping[str, Any]


@dataclass(frozen=True)
class Audit:
    """An audit of a trajectory store; see the module docstring."""

    rlaudit_version: str
    inputs: tuple[str, ...]
    files: tuple[InputFile, ...]
    problems: tuple[InputProblem, ...]
    runs: tuple[RunSummary, ...]
    detectors: tuple[DetectorInfo, ...]
    results: tuple[DetectorResult, ...]
    findings: tuple[Finding, ...]
    plugin_problems: tuple[InputProblem, ...] = ()
    #: run ids the user named as clean references (``--reference``); detectors learn thresholds from them
    reference: tuple[str, ...] = ()
    #: per-run signals for the report's plots (learning curves, entropy, ...), as plain data
    series: Mapping[str, Any] = field(default_factory=dict)
    #: baseline comparison across runs (``rlaudit compare``), or None when not computed
    comparison: Mapping[str, Any] | None = None
    #: counterfactual replays (``rlaudit replay``), each a plain mapping
    counterfactuals: tuple[Mapping[str, Any], ...] = ()
    timings: Mapping[str, Any] = field(default_factory=dict)

    # -- summaries -------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Number of findings per severity."""
        out = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def status_counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return dict(sorted(out.items()))

    @property
    def errors(self) -> tuple[DetectorResult, ...]:
        return tuple(r for r in self.results if r.status == STATUS_ERROR)

    def reaches(self, fail_on: str) -> bool:
        """True when some finding is at least as severe as ``fail_on``."""
        threshold = SEVERITY_RANK[check_severity(fail_on)]
        return any(f.severity_rank >= threshold for f in self.findings)

    def exit_code(self, fail_on: str = "critical") -> int:
        """1 when a finding reaches ``fail_on``; else 2 when an input was left out or a
        detector raised (the audit is incomplete); else 0."""
        if self.reaches(fail_on):
            return 1
        if self.problems or self.errors or self.plugin_problems:
            return 2
        return 0

    # -- serialisation ---------------------------------------------------------

    def to_dict(self, *, timings: bool = True) -> dict[str, Any]:
        body = {
            "format": AUDIT_FORMAT,
            "audit_version": AUDIT_VERSION,
            "rlaudit_version": self.rlaudit_version,
            "inputs": {
                "paths": list(self.inputs),
                "files": [_asdict(f) for f in self.files],
                "problems": [_asdict(p) for p in self.problems],
                "run_ids": [r.run_id for r in self.runs],
                "reference_runs": list(self.reference),
                "steps": sum(r.steps for r in self.runs),
                "size_bytes": sum(f.size_bytes for f in self.files),
            },
            "plugin_problems": [_asdict(p) for p in self.plugin_problems],
            "summary": {"findings": self.counts(), "statuses": self.status_counts()},
            "runs": [_asdict(r) for r in self.runs],
            "detectors": [_asdict(d) for d in self.detectors],
            "results": [_asdict(r) for r in self.results],
            "findings": [_finding_dict(f) for f in self.findings],
            "series": dict(self.series),
            "comparison": None if self.comparison is None else dict(self.comparison),
            "counterfactuals": [dict(c) for c in self.counterfactuals],
        }
        body = _clean(body)
        out = {k: body[k] for k in sorted(body)}
        if timings:
            out["timings"] = _clean(dict(self.timings))
        return out

    def to_json(self, *, timings: bool = True) -> str:
        """Deterministic JSON; ``timings`` is the last top-level key."""
        body = self.to_dict(timings=False)
        text = json.dumps(body, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False)
        if timings:
            tail = json.dumps(_clean(dict(self.timings)), sort_keys=True, indent=1, allow_nan=False)
            tail = tail.replace("\n", "\n ")
            text = text[:-2] + f',\n "timings": {tail}\n}}'
        return text + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write ``audit.json`` (atomically: temporary file, then rename)."""
        path = Path(path)
        if path.is_dir() or not path.suffix:
            path = path / AUDIT_FILENAME
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(self.to_json(), encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Audit":
        if data.get("format") != AUDIT_FORMAT:
            raise SchemaError(f"not an rlaudit audit (format {data.get('format')!r}, expected {AUDIT_FORMAT!r})")
        if int(data.get("audit_version", 0)) > AUDIT_VERSION:
            raise SchemaError(
                f"audit written by a newer rlaudit (audit version {data['audit_version']}, this rlaudit reads "
                f"<= {AUDIT_VERSION}); upgrade rlaudit"
            )
        inputs = data["inputs"]
        return cls(
            rlaudit_version=data["rlaudit_version"],
            inputs=tuple(inputs["paths"]),
            files=tuple(InputFile(**f) for f in inputs["files"]),
            problems=tuple(InputProblem(**p) for p in inputs["problems"]),
            runs=tuple(RunSummary(**r) for r in data["runs"]),
            detectors=tuple(DetectorInfo(**{**d, "needs": tuple(d["needs"])}) for d in data["detectors"]),
            results=tuple(DetectorResult(**r) for r in data["results"]),
            findings=tuple(_finding_from(f) for f in data["findings"]),
            plugin_problems=tuple(InputProblem(**p) for p in data.get("plugin_problems", ())),
            reference=tuple(inputs.get("reference_runs", ())),
            series=data.get("series") or {},
            comparison=data.get("comparison"),
            counterfactuals=tuple(data.get("counterfactuals") or ()),
            timings=data.get("timings", {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Audit":
        path = Path(path)
        if path.is_dir():
            path = path / AUDIT_FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SchemaError(f"no audit at {path}; run 'rlaudit analyze' first") from None
        except ValueError as exc:
            raise SchemaError(f"{path} is not valid JSON ({exc})") from None
        return cls.from_dict(data)


# ---------------------------------------------------------------------------
# JSON helpers
# ---------------------------------------------------------------------------


def _asdict(obj: Any) -> dict[str, Any]:
    return {k: getattr(obj, k) for k in obj.__dataclass_fields__}


def _finding_dict(f: Finding) -> dict[str, Any]:
    d = _asdict(f)
    d["evidence"] = None if f.evidence is None else {
        "columns": list(f.evidence.columns),
        "rows": [list(r) for r in f.evidence.rows],
        "total_rows": f.evidence.total_rows,
        "truncated": f.evidence.truncated,
        "sql": f.evidence.sql,
        "params": dict(f.evidence.params),
    }
    return d


def _finding_from(d: Mapping[str, Any]) -> Finding:
    d = dict(d)
    ev = d.pop("evidence", None)
    evidence = None
    if ev is not None:
        evidence = Evidence(
            columns=tuple(ev["columns"]), rows=tuple(tuple(r) for r in ev["rows"]),
            sql=ev["sql"], params=ev.get("params", {}), total_rows=ev.get("total_rows"),
        )
    return Finding(evidence=evidence, **d)


def _clean(value: Any) -> Any:
    """Plain JSON values: sorted-key dicts, lists, rounded finite floats, strings for NaN/Inf."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return float(f"{value:.12g}")
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Building an audit
# ---------------------------------------------------------------------------


VERDICTS = ("clean", "warnings", "critical")


def verdict(severities: Iterable[str]) -> str:
    """A run's verdict: 'critical' with a critical finding, else 'warnings' with a warning, else 'clean'.

    Info findings alone keep a run clean: they describe, they do not accuse.
    """
    worst = max((SEVERITY_RANK[s] for s in severities), default=SEVERITY_RANK["info"])
    return VERDICTS[max(0, worst - SEVERITY_RANK["info"])]


def run_audit(
    paths: Iterable[str | os.PathLike],
    *,
    presets: Iterable[str] = (),
    detectors: Iterable[str] = (),
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
    jobs: int = 1,
    threads: int | None = None,
    memory_limit: str | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    registry: Any = None,
    reference: Iterable[str] = (),
) -> Audit:
    """Open the store under ``paths``, run the selected detectors, return the :class:`Audit`.

    Usage errors (unknown detector or preset, bad ``--set`` value, a path
    that does not exist, no readable run) raise before anything is analysed.
    """
    from rlaudit.analyzer.compare import auto_comparison
    from rlaudit.analyzer.store import open as open_store
    from rlaudit.detectors.calibration import load_calibration, strongest_scores
    from rlaudit.detectors.registry import get_registry
    from rlaudit.detectors.runner import run_detectors
    from rlaudit.reports.series import compute_series

    t0 = time.perf_counter()
    registry = registry or get_registry()
    specs = registry.select(presets, detectors)
    params = registry.resolve_params(specs, overrides or {})
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    t_open = time.perf_counter()
    reference = tuple(dict.fromkeys(reference))
    with open_store(*list(paths), threads=threads, memory_limit=memory_limit) as store:
        for rid in reference:
            if rid not in store.runs:
                raise unknown_name("reference run", rid, store.run_ids)
        t_detect = time.perf_counter()
        outcome = run_detectors(store, specs, params, jobs=jobs, progress=progress, reference=reference)
        t_series = time.perf_counter()
        series = compute_series(store)
        t_summary = time.perf_counter()
        episodes = store.episode_counts()
        by_run: dict[str, list[str]] = {}
        for f in outcome.findings:
            by_run.setdefault(f.run_id or "", []).append(f.severity)
        calibration = load_calibration()
        scores = strongest_scores(outcome.findings)
        runs = []
        for rid in store.run_ids:
            run = store.runs[rid]
            env = run.manifest.get("env")
            env_id = env.get("id") if isinstance(env, dict) else env
            agent = run.manifest.get("agent")
            if isinstance(agent, dict):
                agent = agent.get("name")
            sev = by_run.get(rid, [])
            runs.append(RunSummary(
                run_id=rid, status=run.status, partial=run.partial, source=run.source, path=run.path,
                steps=run.steps, episodes=int(episodes.get(rid, 0)),
                env_id=env_id if isinstance(env_id, str) else None,
                agent=agent if isinstance(agent, str) else None,
                verdict=verdict(sev), findings={s: sev.count(s) for s in SEVERITIES},
                risk=None if calibration is None else calibration.risk(scores.get(rid, {})),
            ))
        files = []
        for rid in store.run_ids:
            run = store.runs[rid]
            files += [InputFile(p, "steps", rid, os.path.getsize(p)) for p in run.step_files]
            files += [InputFile(p, "metrics", rid, os.path.getsize(p)) for p in run.metrics_files]
        problems = tuple(InputProblem(p.path, p.reason) for p in store.problems)
        inputs = store.inputs
        t_compare = time.perf_counter()
        comparison = auto_comparison(store)
        t_compared = time.perf_counter()
        total_steps = store.total_steps
    t_end = time.perf_counter()
    infos = tuple(
        DetectorInfo(name=s.name, severity=s.severity, summary=s.summary, origin=s.origin,
                     needs=tuple(s.needs), params=dict(outcome.params[s.name]))
        for s in specs
    )
    return Audit(
        rlaudit_version=__version__,
        inputs=tuple(inputs),
        files=tuple(files),
        problems=problems,
        runs=tuple(runs),
        detectors=infos,
        results=outcome.results,
        findings=outcome.findings,
        plugin_problems=tuple(InputProblem(origin, reason) for origin, reason in registry.load_problems),
        reference=reference,
        series=series,
        comparison=None if comparison is None else comparison.to_dict(),
        timings={
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "total_s": t_end - t0,
            "open_s": t_detect - t_open,
            "detectors_s": t_series - t_detect,
            "series_s": t_summary - t_series,
            "summary_s": t_end - t_summary,
            "comparison_s": t_compared - t_compare,
            "steps_per_s": total_steps / (t_end - t0) if t_end > t0 else None,
            "jobs": jobs,
            "per_task_s": dict(sorted(outcome.seconds.items())),
        },
    )


# ---------------------------------------------------------------------------
# The comparison block outside an audit
# ---------------------------------------------------------------------------

COMPARISON_FILENAME = "comparison.json"


def comparison_json(comparison: Mapping[str, Any]) -> str:
    """The ``comparison`` block as deterministic JSON (the rules of :meth:`Audit.to_json`)."""
    return json.dumps(_clean(dict(comparison)), sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def write_comparison(out_dir: str | os.PathLike, comparison: Mapping[str, Any]) -> tuple[Path, Path | None]:
    """Write ``comparison.json`` into ``out_dir``; when it holds an ``audit.json``, replace that
    audit's ``comparison`` (everything else in it is kept). Returns both paths (None: no audit)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / COMPARISON_FILENAME
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(comparison_json(comparison), encoding="utf-8")
    os.replace(tmp, path)
    audit_path = out / AUDIT_FILENAME
    if not audit_path.exists():
        return path, None
    audit = Audit.load(audit_path)
    dataclasses.replace(audit, comparison=dict(comparison)).write(audit_path)
    return path, audit_path
