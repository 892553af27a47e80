"""``report.html``: one self-contained HTML rendering of an :class:`~rlaudit.reports.audit.Audit`.

Everything drawn comes from the audit (``audit.json``): findings, runs,
``series`` (plot data), ``comparison`` and ``counterfactuals``. Nothing is
recomputed from the store. The page has inline CSS, inline SVG and a few
lines of inline script (copy buttons, open details before printing); it
requests nothing over the network. Templates are jinja2 with autoescaping
and strict undefined, so every string from the store is escaped.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Mapping

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from rlaudit.detectors.model import SEVERITY_RANK
from rlaudit.reports import plots
from rlaudit.reports.audit import Audit

REPORT_FILENAME = "report.html"
TEMPLATES = Path(__file__).with_name("templates")

#: verdicts as shown; older audits wrote the most severe finding's tier
VERDICTS = {"clean": "clean", "info": "clean", "warning": "warnings", "warnings": "warnings", "critical": "critical"}

#: the series a detector's finding is drawn on (first match of a name fragment), default the training return
FINDING_SIGNALS = (
    ("reward", "reward"), ("non-finite", "reward"), ("entropy", "entropy"), ("action", "actions"),
    ("value", "value"), ("q-", "value"), ("eval", "eval_return"),
)


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = fmt_num
    env.filters["cell"] = fmt_cell
    env.filters["intv"] = fmt_interval
    return env


# ---------------------------------------------------------------------------
# formatting
# ---------------------------------------------------------------------------


def fmt_num(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        if v != 0 and (abs(v) >= 1e6 or abs(v) < 1e-3):
            return f"{v:.{digits - 1}e}"
        return f"{v:.{digits}g}"
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return v
    return str(v)


def fmt_cell(v: Any) -> str:
    if isinstance(v, (list, tuple)):
        text = "[" + ", ".join(fmt_cell(x) for x in v) + "]"
    elif isinstance(v, dict):
        text = "{" + ", ".join(f"{k}: {fmt_cell(x)}" for k, x in v.items()) + "}"
    elif v is None:
        return "NULL"
    else:
        text = fmt_num(v, 6)
    return text if len(text) <= 80 else text[:79] + "…"


def fmt_interval(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "–"
    return f"{fmt_num(d.get('value'))} [{fmt_num(d.get('low'))}, {fmt_num(d.get('high'))}]"


def sql_literal(v: Any) -> str:
    """A DuckDB literal for a bound parameter, so the query runs as-is in ``rlaudit sql``."""
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return f"'{v!r}'::DOUBLE" if not math.isfinite(v) else f"{v!r}::DOUBLE"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(sql_literal(x) for x in v) + "]"
    if isinstance(v, str) and v in ("nan", "inf", "-inf"):
        return f"'{v}'::DOUBLE"
    return "'" + str(v).replace("'", "''") + "'"


def inline_sql(sql: str, params: Mapping[str, Any]) -> str:
    """``sql`` with its ``$name`` parameters replaced by literals."""
    if not params:
        return sql
    names = sorted(params, key=len, reverse=True)
    pattern = re.compile(r"\$(" + "|".join(re.escape(n) for n in names) + r")\b")
    return pattern.sub(lambda m: sql_literal(params[m.group(1)]), sql)


def anchor(prefix: str, *parts: Any) -> str:
    """A stable HTML id: a readable slug plus a hash of the identifying fields."""
    text = json.dumps(parts, sort_keys=True, default=str)
    digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
    slug = re.sub(r"[^A-Za-z0-9]+", "-", str(parts[0]) if parts else "").strip("-")[:40]
    return f"{prefix}-{slug}-{digest}" if slug else f"{prefix}-{digest}"


def _span_text(f) -> str:
    parts = []
    if f.episode_start is not None:
        parts.append(f"episode {f.episode_start}" if f.episode_start == f.episode_end
                     else f"episodes {f.episode_start}–{f.episode_end}")
    if f.step_start is not None:
        parts.append(f"global_step {f.step_start:,}" if f.step_start == f.step_end
                     else f"global_step {f.step_start:,}–{f.step_end:,}")
    if f.env_index is not None:
        parts.append(f"env {f.env_index}")
    if f.phase is not None:
        parts.append(f.phase)
    return ", ".join(parts) or "whole run"


# ---------------------------------------------------------------------------
# charts from the series
# ---------------------------------------------------------------------------


def _num_or_none(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def finding_signal(detector: str) -> str:
    for fragment, signal in FINDING_SIGNALS:
        if fragment in detector:
            return signal
    return "train_return"


def finding_chart(f, run_series: Mapping[str, Any] | None) -> Markup | None:
    """The finding's signal from the run's series, its span shaded, evidence rows as dots."""
    if not run_series:
        return None
    signal = finding_signal(f.detector)
    span = None
    if f.step_start is not None:
        span = (f.step_start, f.step_end if f.step_end is not None else f.step_start)
    dots: list[tuple[float, float]] = []
    ev = f.evidence
    if ev is not None and "global_step" in ev.columns:
        xi = ev.columns.index("global_step")
        col = {"reward": "reward", "entropy": "entropy", "value": "value"}.get(signal.split("_")[0])
        if col and col in ev.columns:
            yi = ev.columns.index(col)
            for row in ev.rows:
                x, y = _num_or_none(row[xi]), _num_or_none(row[yi])
                if x is not None and y is not None:
                    dots.append((x, y))
    title = f"{signal.replace('_', ' ')} of {f.run_id}"
    data = run_series.get(signal)
    if not data:
        data, signal = run_series.get("train_return"), "train_return"
        dots = []
    if not data:
        return None
    return _signal_chart(signal, data, title=title, span=span, dots=dots, height=160)


def _signal_chart(signal: str, data: Mapping[str, Any], *, title: str, span=None, dots=(), height=plots.HEIGHT):
    x = data["x"]
    if signal in ("train_return", "eval_return"):
        lines = [{"name": "mean", "x": x, "y": data["mean"], "low": data["low"], "high": data["high"]}]
        return plots.lines(lines, title=title, ylabel="return", span=span, dots=dots, height=height)
    if signal == "reward":
        lines = [{"name": "mean per step", "x": x, "y": data["mean"]},
                 {"name": "min/max", "x": x, "y": data["max"], "dash": True, "color": "#888"},
                 {"x": x, "y": data["min"], "dash": True, "color": "#888"}]
        return plots.lines(lines, title=title, ylabel="reward", span=span, dots=dots, height=height)
    if signal == "entropy":
        lines = []
        if data.get("policy") is not None:
            lines.append({"name": "policy entropy", "x": x, "y": data["policy"]})
        if data.get("action") is not None:
            lines.append({"name": "action entropy (nats)", "x": x, "y": data["action"], "color": plots.color(3)})
        return plots.lines(lines, title=title, ylabel="nats", span=span, dots=dots, height=height)
    if signal == "actions":
        return plots.stacked(x, list(zip(data["actions"], data["share"])), title=title)
    if signal == "value":
        lines = [{"name": f"{data.get('source', 'value')} estimate at t=0", "x": x, "y": data["estimate"]},
                 {"name": "realised discounted return", "x": x, "y": data["realised"]}]
        return plots.lines(lines, title=title, ylabel="return", span=span, dots=dots, height=height)
    return None


def _run_charts(rid: str, s: Mapping[str, Any]) -> dict[str, Any]:
    """Every chart of one run; None where the run has no data for it."""
    charts: dict[str, Any] = {}
    curves = []
    if s.get("train_return"):
        d = s["train_return"]
        curves.append({"name": "training (mean, IQR)", "x": d["x"], "y": d["mean"], "low": d["low"], "high": d["high"]})
    if s.get("eval_return"):
        d = s["eval_return"]
        curves.append({"name": "evaluation (mean, range)", "x": d["x"], "y": d["mean"], "low": d["low"],
                       "high": d["high"], "dash": True, "points": True, "color": plots.color(2)})
    charts["returns"] = plots.lines(curves, title="episode return", ylabel="return") if curves else None
    charts["reward"] = _signal_chart("reward", s["reward"], title="reward per step") if s.get("reward") else None
    charts["entropy"] = _signal_chart("entropy", s["entropy"], title="entropy") if s.get("entropy") else None
    charts["actions"] = _signal_chart("actions", s["actions"], title="action shares") if s.get("actions") else None
    terms = s.get("reward_terms")
    charts["terms"] = None
    if terms:
        lines = [{"name": name, "x": terms["x"], "y": vals} for name, vals in terms["terms"].items()]
        charts["terms"] = plots.lines(lines, title="reward terms (mean per step)", ylabel="per step")
    charts["value"] = _signal_chart("value", s["value"], title="value estimate vs realised return") \
        if s.get("value") else None
    vis = s.get("visitation")
    charts["visitation"] = []
    charts["phase"] = None
    if vis:
        xl, yl = vis["labels"]
        charts["visitation"].append(plots.heatmap(vis["counts"], vis["range"][0], vis["range"][1],
                                                  title="all actions", xlabel=xl, ylabel=yl))
        for a, counts in vis["by_action"].items():
            charts["visitation"].append(plots.heatmap(counts, vis["range"][0], vis["range"][1],
                                                      title=f"action {a}", xlabel=xl, ylabel=yl))
        trajs = s.get("trajectories") or []
        if trajs:
            paths = [{"name": f"{t['which']} (ep {t['episode']}, return {fmt_num(t['return'])})", "x": t["x"],
                      "y": t["y"]} for t in trajs]
            charts["phase"] = plots.heatmap(vis["counts"], vis["range"][0], vis["range"][1], size=240,
                                            title="", xlabel=xl, ylabel=yl, paths=paths)
    metrics = s.get("metrics") or {}
    charts["metrics"] = [plots.lines([{"x": m["x"], "y": m["y"]}], title=name, ylabel=None, width=300, height=150)
                         for name, m in metrics.items()]
    return charts


# ---------------------------------------------------------------------------
# the view model
# ---------------------------------------------------------------------------


def build_context(audit: Audit, *, source: str | None = None) -> dict[str, Any]:
    series = audit.series or {}
    per_run = series.get("runs") or {}
    run_anchor = {r.run_id: anchor("run", r.run_id) for r in audit.runs}
    findings = sorted(audit.findings, key=lambda f: (-SEVERITY_RANK[f.severity], f.run_id or "", f.detector,
                                                     f.step_start if f.step_start is not None else -1, f.summary))
    fviews = []
    for f in findings:
        ev = None
        if f.evidence is not None:
            ev = {"columns": f.evidence.columns, "rows": f.evidence.rows, "total": f.evidence.total_rows,
                  "truncated": f.evidence.truncated, "sql": inline_sql(f.evidence.sql, f.evidence.params),
                  "params": f.evidence.params}
        fviews.append({
            "f": f, "id": anchor("finding", f.detector, f.run_id, f.env_index, f.phase, f.episode_start,
                                 f.step_start, f.step_end, f.summary),
            "run_anchor": run_anchor.get(f.run_id or ""), "span": _span_text(f), "evidence": ev,
            "chart": finding_chart(f, per_run.get(f.run_id or "")),
        })
    by_run: dict[str, list] = {}
    for fv in fviews:
        by_run.setdefault(fv["f"].run_id or "", []).append(fv)
    results_by_run: dict[str, list] = {}
    for r in audit.results:
        if r.status in ("skipped", "error"):
            results_by_run.setdefault(r.run_id or "", []).append(r)
    runs = []
    for r in audit.runs:
        s = per_run.get(r.run_id) or {}
        info = s.get("info") or {}
        runs.append({
            "r": r, "id": run_anchor[r.run_id], "verdict": VERDICTS.get(r.verdict, r.verdict), "info": info,
            "findings": by_run.get(r.run_id, []), "quiet": results_by_run.get(r.run_id, []),
            "charts": _run_charts(r.run_id, s) if s else None,
            "windows": (s.get("visitation") or {}).get("windows"),
        })
    groups = []
    for i, g in enumerate(series.get("groups") or []):
        lines = [{"x": (per_run.get(rid, {}).get("train_return") or {}).get("x", []),
                  "y": (per_run.get(rid, {}).get("train_return") or {}).get("mean", []), "color": "#bbb"}
                 for rid in g["runs"]]
        lines.append({"name": f"mean of {len(g['runs'])} runs, 95% t-interval", "x": g["x"], "y": g["mean"],
                      "low": g["low"], "high": g["high"], "color": plots.color(0)})
        groups.append({"g": g, "chart": plots.lines(lines, title=g["name"], ylabel="return")})
    verdicts: dict[str, int] = {}
    for run in runs:
        verdicts[run["verdict"]] = verdicts.get(run["verdict"], 0) + 1
    return {
        "audit": audit, "source": source, "created_at": (audit.timings or {}).get("created_at"),
        "counts": audit.counts(), "statuses": audit.status_counts(), "verdicts": verdicts,
        "findings": fviews, "runs": runs, "groups": groups, "store_findings": by_run.get("", []),
        "store_quiet": results_by_run.get("", []),
        "comparison": _comparison(audit.comparison), "counterfactuals": _counterfactuals(audit.counterfactuals),
        "run_anchor": run_anchor,
    }


def _comparison(c: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not c:
        return None
    groups = c.get("groups") or []
    charts = []
    for stat in ("iqm", "mean", "median"):
        rows = [{"label": g["name"], **(g.get(stat) or {})} for g in groups if g.get(stat)]
        if rows:
            charts.append(plots.intervals(rows, title=stat.upper() if stat == "iqm" else stat, xlabel="score"))
    tests = c.get("tests") or []
    prob = None
    if tests:
        rows = [{"label": f"{t['group']} vs {t['baseline']}", **(t.get("prob_improvement") or {})} for t in tests]
        prob = plots.intervals(rows, title="probability of improvement", xlabel="P(group > baseline)", ref_x=0.5)
    diff = None
    if tests:
        rows = [{"label": f"{t['group']} − {t['baseline']}", **(t.get("difference") or {})} for t in tests]
        diff = plots.intervals(rows, title="difference of means", xlabel="score difference", ref_x=0.0)
    profile = None
    prof = c.get("profiles") or {}
    if prof.get("thresholds") and prof.get("groups"):
        lines = [{"name": name, "x": prof["thresholds"], "y": vals} for name, vals in prof["groups"].items()]
        profile = plots.lines(lines, title="performance profiles", xlabel="score threshold τ",
                              ylabel="fraction of runs > τ", yrange=(0.0, 1.0))
    return {"c": c, "charts": charts, "prob": prob, "diff": diff, "profile": profile, "tests": tests,
            "groups": groups}


def _counterfactuals(items) -> dict[str, Any] | None:
    if not items:
        return None
    replays, opes = [], []
    for item in items:
        if item.get("kind") == "replay":
            diffs = item.get("differences") or []
            rows = [{"label": d["signal"], "value": d.get("mean"), "low": d.get("low"), "high": d.get("high")}
                    for d in diffs]
            replays.append({"c": item, "chart": plots.intervals(rows, title=f"{item['branch']} − {item['against']}",
                                                                xlabel="paired difference", ref_x=0.0)
                            if rows else None})
        elif item.get("kind") == "ope":
            opes.append(item)
    return {"replays": replays, "opes": opes}


def render(audit: Audit, *, source: str | None = None, suites: Mapping[str, Any] | None = None) -> str:
    """The report as one HTML string; ``suites`` adds the stress-suite and benchmark sections
    (``{"stress": ..., "bench": ...}``, see :mod:`rlaudit.reports.suites`)."""
    from rlaudit.reports.suites import suites_view

    template = _environment().get_template("report.html.j2")
    return template.render(**build_context(audit, source=source), suites=suites_view(suites))


def write_report(audit: Audit, path: str | os.PathLike, *, source: str | None = None,
                 suites: Mapping[str, Any] | None = None) -> Path:
    """Write ``report.html`` (atomically); ``path`` may be a directory."""
    path = Path(path)
    if path.is_dir() or not path.suffix:
        path = path / REPORT_FILENAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(render(audit, source=source, suites=suites), encoding="utf-8")
    os.replace(tmp, path)
    return path
