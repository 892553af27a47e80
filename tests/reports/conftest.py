from __future__ import annotations

import json

import pytest

from rlaudit.reports.audit import Audit, run_audit
from tests.reports.store import build


@pytest.fixture(scope="session")
def report_store(tmp_path_factory):
    return build(tmp_path_factory.mktemp("report-store") / "runs")


#: A fixed set of detectors, so that the golden report changes with the renderer, not with the catalogue.
REPORT_DETECTORS = ("non-finite", "reward-spike")


@pytest.fixture(scope="session")
def audit(report_store):
    """The audit of the fixed store, as read back from its JSON (what `rlaudit report` renders)."""
    return Audit.from_dict(json.loads(run_audit([report_store], detectors=REPORT_DETECTORS).to_json()))
