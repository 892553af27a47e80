"""report.html: a rendering of audit.json; golden file, escaping, sections, CLI."""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from click.testing import CliRunner

from rlaudit.cli import main
from rlaudit.reports.audit import Audit
from rlaudit.reports.html import anchor, inline_sql, render, write_report
from tests.reports.hostile import hostile_audit
from tests.reports.store import HOSTILE_AGENT, HOSTILE_INFO

GOLDEN = Path(__file__).with_name("golden") / "report.html"


def _normalised(audit: Audit, store: Path) -> Audit:
    """The audit with what varies between recordings and machines fixed: times, paths, version."""
    text = json.dumps(audit.to_dict(timings=False)).replace(str(store), "<store>")
    data = json.loads(text)
    data["rlaudit_version"] = "<version>"
    for f in data["inputs"]["files"]:
        f["size_bytes"] = 0  # the manifest in the footer holds the recording's timestamps
    for run in data["series"]["runs"].values():
        run["info"]["duration_s"] = 1.0
    data["timings"] = {"created_at": "<created_at>"}
    return Audit.from_dict(data)


def test_golden(audit, report_store):
    html = render(_normalised(audit, report_store))
    if os.environ.get("RLAUDIT_UPDATE_GOLDEN"):
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(html, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    assert html == expected, "report changed; inspect it, then rerun with RLAUDIT_UPDATE_GOLDEN=1"


def test_self_contained(audit):
    html = render(hostile_audit(audit))
    # nothing that would fetch: no external URL in src/href, no @import, no url(...) in CSS
    assert not re.search(r'(src|href)\s*=\s*"(?!#)', html)
    assert "@import" not in html and "url(" not in html and "http://" not in html.replace(
        "http://www.w3.org", "") and "https://" not in html


def test_store_strings_are_escaped(audit):
    html = render(hostile_audit(audit))
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=" in html
    assert html.count("<script>") == 1  # the page's own copy-button script


def test_findings_most_severe_first_and_anchors(audit):
    html = render(audit)
    ids = re.findall(r'<section class="finding (\w+)" id="([^"]+)"', html)
    severities = [s for s, _ in ids]
    assert severities == sorted(severities, key=["critical", "warning", "info"].index)
    assert len(ids) == len(audit.findings) == 4
    # every finding and run is linked from the index, and every in-page link resolves
    targets = set(re.findall(r'id="([^"]+)"', html))
    for ref in re.findall(r'href="#([^"]+)"', html):
        assert ref in targets
    for _, fid in ids:
        assert f'href="#{fid}"' in html
    # anchors do not depend on when or where the audit was rendered
    later = dataclasses.replace(audit, timings={"created_at": "2030-01-01T00:00:00+00:00"})
    assert re.findall(r'id="([^"]+)"', render(later)) == re.findall(r'id="([^"]+)"', html)
    assert anchor("run", "a b") == anchor("run", "a b") != anchor("run", "a c")


def test_evidence_sql_runs_as_is(audit, report_store):
    spike = next(f for f in audit.findings if f.detector == "reward-spike")
    sql = inline_sql(spike.evidence.sql, spike.evidence.params)
    assert "$" not in sql
    html = render(audit)
    assert sql.replace("'", "&#39;").replace(">", "&gt;").replace("<", "&lt;") in html
    out = CliRunner().invoke(main, ["sql", str(report_store), sql, "--format", "json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert len(rows) == spike.evidence.total_rows
    assert [rows[0][c] for c in ("global_step", "reward")] == [spike.evidence.rows[0][0], spike.evidence.rows[0][5]]


def test_absent_sections_say_so(audit):
    html = render(audit)
    assert "Not computed — run <code>rlaudit compare</code>" in html
    assert "Not computed — run <code>rlaudit replay</code>" in html
    bare = dataclasses.replace(audit, series={})
    html = render(bare)
    assert html.count("No plot data for this run") == len(audit.runs)
    assert "No group of two or more runs" in html


def test_comparison_and_counterfactuals_rendered(audit):
    html = render(hostile_audit(audit))
    assert "Not computed" not in html
    for text in ("probability of improvement", "performance profiles", "difference of means", "IQM",
                 "<b>better</b>", "<b>confirmed</b>", "effective sample size 1.3 &lt; 10", "replayable; 30 recorded steps",
                 "policy=always_stay", "wpdis", "MDE"):
        assert text in html, text
    assert html.count('<svg class="chart"') > 30


def test_verdicts_old_and_new_names(audit):
    runs = tuple(dataclasses.replace(r, verdict=v) for r, v in zip(audit.runs, ("warning", "info", "warnings", "critical")))
    html = render(dataclasses.replace(audit, runs=runs))
    table = html[html.index('<h2 id="runs">'):html.index('<h2 id="findings">')]
    assert re.findall(r'badge v-(\w+)', table) == ["warnings", "clean", "warnings", "critical"]


def test_cli_report_from_audit_and_store(tmp_path, report_store):
    runner = CliRunner()
    out = runner.invoke(main, ["analyze", str(report_store), "--out", str(tmp_path / "a"), "--no-progress"])
    assert out.exit_code == 1, out.output  # a critical finding
    assert (tmp_path / "a" / "report.html").is_file() and "wrote" in out.output
    out = runner.invoke(main, ["report", str(tmp_path / "a" / "audit.json"), "-o", str(tmp_path / "r.html")])
    assert out.exit_code == 0, out.output
    html = (tmp_path / "r.html").read_text()
    assert "rendered from" in html and HOSTILE_AGENT not in html
    out = runner.invoke(main, ["report", str(report_store), "-o", str(tmp_path / "dir")])
    assert out.exit_code == 0 and (tmp_path / "dir" / "report.html").is_file()
    out = runner.invoke(main, ["analyze", str(report_store), "--out", str(tmp_path / "b"), "--no-report"])
    assert not (tmp_path / "b" / "report.html").exists() and (tmp_path / "b" / "audit.json").exists()
    out = runner.invoke(main, ["report", str(tmp_path / "missing.json")])
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_write_report_is_atomic_and_nothing_else_touched(audit, tmp_path):
    path = write_report(audit, tmp_path)
    assert path == tmp_path / "report.html"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]
    assert HOSTILE_INFO not in path.read_text()
