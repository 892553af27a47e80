"""The per-run risk: a conformal rank against clean calibration runs, valid when the run is exchangeable with them."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rlaudit.detectors.calibration import Calibration, build_calibration, load_calibration, strongest_scores
from rlaudit.detectors.model import Finding
from rlaudit.reports.audit import verdict


def _clean_run(rng) -> dict[str, float]:
    """A clean run as the benchmark sees it: each detector finds something now and then, with a random score."""
    out = {}
    for name, rate in (("a", 0.2), ("b", 0.1), ("c", 0.05)):
        if rng.random() < rate:
            out[name] = float(rng.exponential())
    return out


def test_risk_is_a_valid_conformal_rank_on_exchangeable_runs():
    rng = np.random.default_rng(0)
    reps, n = 400, 39
    risks = []
    for _ in range(reps):
        cal = build_calibration([_clean_run(rng) for _ in range(n)], ["a", "b", "c"])
        risks.append(cal.risk(_clean_run(rng)))
    risks = np.array(risks)
    for alpha in (0.1, 0.2, 0.3):
        # P(risk >= 1 - alpha) <= alpha, up to three binomial standard errors
        assert np.mean(risks >= 1 - alpha - 1e-12) <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)


def test_risk_ranks_planted_evidence_above_clean_runs():
    rng = np.random.default_rng(1)
    cal = build_calibration([_clean_run(rng) for _ in range(49)], ["a", "b", "c"])
    assert cal.risk({}) == 0.0  # no findings: no evidence
    strong = cal.risk({"a": 50.0})  # stronger than any clean run's score
    weak = cal.risk({"a": 1e-6})
    assert strong == pytest.approx(1 - 1 / 50) and weak < strong
    # a detector the calibration never saw is taken as silent on clean runs
    assert cal.risk({"unknown": 1.0}) == pytest.approx(1 - 1 / 50)


def test_leave_one_out_strengths_and_round_trip(tmp_path):
    runs = [{}, {"a": 1.0}, {"a": 2.0}, {}]
    cal = build_calibration(runs, ["a"])
    # run 2 (score 2): 3 other runs, all below or absent -> 3/4; run 1: 2 of 3 below or absent -> 2/4
    assert cal.strengths == (0.0, 0.5, 0.75, 0.0)
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(cal.to_dict()))
    again = load_calibration(str(path))
    assert again == Calibration.from_dict(cal.to_dict()) and again.n == 4


def test_strongest_scores_per_run_and_detector():
    def f(run, det, score):
        return Finding(detector=det, severity="warning", run_id=run, summary="s", fix="f", score=score)

    assert strongest_scores([f("r", "a", 1.0), f("r", "a", 3.0), f("q", "b", 2.0)]) == {
        "r": {"a": 3.0}, "q": {"b": 2.0}}


def test_verdict_values():
    assert verdict([]) == "clean"
    assert verdict(["info", "info"]) == "clean"
    assert verdict(["info", "warning"]) == "warnings"
    assert verdict(["warning", "critical", "info"]) == "critical"
