"""Report sections for the stress suite (``stress.json``) and the benchmark matrix (``bench.json``).

Both files are plain data written by ``rlaudit stress`` and ``rlaudit bench``;
this module turns them into the view model of the report's "Stress suite"
and "Benchmark matrix" sections (tables and SVG interval charts). Nothing is
recomputed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping

from rlaudit.errors import SchemaError
from rlaudit.reports import plots

STRESS_FILENAME = "stress.json"
BENCH_FILENAME = "bench.json"


def load_suite(path: str | Path, kind: str) -> dict[str, Any]:
    """``stress.json`` or ``bench.json`` (``kind`` "stress" or "bench"); SchemaError if it is something else."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SchemaError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != f"rlaudit-{kind}":
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise SchemaError(f"{path}: expected an rlaudit {kind} result (format 'rlaudit-{kind}'), found {found!r}")
    return data


def find_suites(folder: str | Path) -> dict[str, dict[str, Any]]:
    """The suite results saved in ``folder`` (a store written by ``rlaudit stress`` / ``rlaudit bench``)."""
    folder = Path(folder)
    out = {}
    for kind, name in (("stress", STRESS_FILENAME), ("bench", BENCH_FILENAME)):
        if (folder / name).is_file():
            out[kind] = load_suite(folder / name, kind)
    return out


def _finite(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def stress_view(data: Mapping[str, Any]) -> dict[str, Any]:
    tests = []
    for t in data.get("tests", []):
        measures = []
        for key, s in (t.get("summary") or {}).items():
            measures.append({"name": key, "mean": _finite(s.get("mean")), "low": _finite(s.get("low")),
                             "high": _finite(s.get("high")), "sd": _finite(s.get("sd")), "n": s.get("n")})
        chart = None
        rows = [{"label": f"seed {seed}", "value": _finite(v)}
                for seed, ps in zip(t.get("seeds", []), t.get("per_seed", []))
                for v in [next(iter(ps.values()), None)]] if t.get("per_seed") else []
        if len(rows) > 1 and measures:
            chart = plots.intervals(rows + [{"label": "mean, 95% CI", "value": measures[0]["mean"],
                                             "low": measures[0]["low"], "high": measures[0]["high"],
                                             "color": "#333"}],
                                    title=f"{t['id']}: {measures[0]['name']}", xlabel=measures[0]["name"])
        tests.append({"t": t, "measures": measures, "chart": chart})
    return {"data": data, "tests": tests}


def bench_view(data: Mapping[str, Any]) -> dict[str, Any]:
    rewards = []
    for reward in data.get("rewards", []):
        rows = data.get("rankings", {}).get(reward, [])
        chart = plots.intervals([{"label": r["name"], "value": _finite(r.get("iqm")), "low": _finite(r.get("low")),
                                  "high": _finite(r.get("high"))} for r in rows],
                                title=f"{reward}: IQM of final evaluation return", xlabel="return") if rows else None
        rewards.append({"name": reward, "rows": rows, "chart": chart})
    detectors = sorted({d for counts in (data.get("failures") or {}).values() for d in counts})
    return {"data": data, "rewards": rewards, "detectors": detectors}


def suites_view(suites: Mapping[str, Mapping[str, Any]] | None) -> dict[str, Any] | None:
    if not suites:
        return None
    return {
        "stress": stress_view(suites["stress"]) if suites.get("stress") else None,
        "bench": bench_view(suites["bench"]) if suites.get("bench") else None,
    }
