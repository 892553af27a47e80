"""The small planted-failure suite: every registered catalogue detector finds its plant, and no clean run is flagged.

The suite (tests/detectors/suite.py) is the one the detection benchmark
measures; here each case is recorded through the real recorder and audited
alone. A catalogue detector that is not registered yet is skipped, not failed.
Set ``RLAUDIT_DETECTION_STORE`` to a folder of cases recorded by
``benchmarks/detection.py`` (small or full) to reuse its recordings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlaudit.detectors import get_registry
from tests.detectors.suite import CATALOGUE, INJECTIONS, audit_case, cases, onset_error, record_all

pytestmark = pytest.mark.slow  # records ~30 runs, a few of them learning: minutes, not seconds

REGISTRY = get_registry()

#: Gaps measured by the detection benchmark (docs/detection.md) on the small suite's cases. Recording is
#: deterministic, so these fail the same way every time (strict xfail: remove an entry once it passes).
KNOWN_GAPS = {
    "boundary-exploitation": "misses the full-torque bonus on Pendulum (reward at the edge is compared with the reward "
                             "just inside it, and full torque is used in the costly swing-up)",
}


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    reuse = os.environ.get("RLAUDIT_DETECTION_STORE")
    store = Path(reuse) if reuse else tmp_path_factory.mktemp("detection-suite")
    case_list = cases("small")
    folders = record_all(case_list, store, processes=2)
    specs = [s for s in REGISTRY.specs() if s.name in CATALOGUE]
    return [audit_case(c, f, specs) for c, f in zip(case_list, folders)]


def test_every_catalogue_detector_has_an_injection():
    assert set(INJECTIONS) == set(CATALOGUE)
    small = cases("small")
    assert {c.detector for c in small if c.detector} == set(CATALOGUE)
    assert all(c.onset is not None for c in small if c.detector)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.xfail(reason=KNOWN_GAPS[n], strict=True)) if n in KNOWN_GAPS else n
    for n in CATALOGUE])
def test_plant_found_and_clean_runs_not_flagged(name, audited):
    if name not in REGISTRY:
        pytest.skip(f"{name} is not registered")
    planted = [r for r in audited if r.case.detector == name]
    assert planted
    for r in planted:
        assert r.found.get(name), f"{name} missed its plant {r.case.name} (status {r.statuses.get(name)})"
        err = onset_error(r.case, r.found[name])
        assert err is None or err <= 5, f"{name} on {r.case.name}: onset off by {err} episodes"
    flagged = [r.case.name for r in audited if r.case.detector is None and r.found.get(name)]
    assert not flagged, f"{name} flagged clean runs {flagged}"
    errors = [r.case.name for r in audited if r.statuses.get(name) == "error"]
    assert not errors, f"{name} raised on {errors}"
