"""Audits made hostile or complete by hand: HTML in run ids and info strings, comparison and replay data."""

from __future__ import annotations

import json

from rlaudit.reports.audit import Audit
from tests.reports.store import HOSTILE_AGENT, HOSTILE_INFO, comparison, counterfactuals


def hostile_audit(audit: Audit, *, complete: bool = True) -> Audit:
    """``audit`` with the run ``hostile`` renamed to HTML, an HTML info string in an evidence row,
    and (if ``complete``) a baseline comparison and counterfactuals in the documented shapes."""
    data = json.loads(json.dumps(audit.to_dict()).replace('"hostile"', json.dumps(HOSTILE_AGENT)))
    finding = dict(data["findings"][0])
    finding["run_id"] = HOSTILE_AGENT
    finding["summary"] = f"an info string {HOSTILE_INFO} in a summary"
    finding["evidence"] = dict(finding["evidence"], columns=finding["evidence"]["columns"] + ["info.note"],
                               rows=[r + [HOSTILE_INFO] for r in finding["evidence"]["rows"]])
    data["findings"].append(finding)
    if complete:
        data["comparison"] = comparison()
        data["counterfactuals"] = counterfactuals()
    return Audit.from_dict(data)
