"""The audit: runner statuses, q-values, audit.json determinism, exit codes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.stats
from click.testing import CliRunner

import rlaudit
from rlaudit.cli import main
from rlaudit.detectors import Finding, Registry, detector, get_registry, run_detectors
from rlaudit.detectors.stats import benjamini_hochberg
from rlaudit.reports.audit import Audit, run_audit
from tests.analyzer.recording import audit_json_without_timings, record_run, record_vector_run
from tests.detectors.plants import PLANTS

#: The CLI tests below pin counts and output for these two detectors and their plants.
FIRST = ("non-finite", "reward-spike")
ONLY_FIRST = [arg for name in FIRST for arg in ("-d", name)]


@pytest.fixture(scope="module")
def mixed_store(tmp_path_factory):
    store = tmp_path_factory.mktemp("mixed")
    for name in FIRST:
        plant = PLANTS[name]
        plant.plant(store)
        plant.clean(store)
    record_vector_run(store, "vec", [[3, 4], [5]])
    return store


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(0)
    for m in (1, 2, 7, 50):
        p = np.concatenate([rng.uniform(size=m), rng.uniform(0, 0.01, size=m // 2)])
        assert benjamini_hochberg(p) == pytest.approx(list(scipy.stats.false_discovery_control(p, method="bh")))
    assert benjamini_hochberg([]) == []
    with pytest.raises(ValueError):
        benjamini_hochberg([0.5, float("nan")])


def _doc():
    return """Test detector.

    Finds: x.
    Why it matters: x.
    Evidence: x.
    Not flagged: x.
    Fix: do the thing.
    """


def test_errors_and_p_values_through_the_runner(tmp_path):
    reg = Registry()

    def boom(ctx):
        raise RuntimeError("exploded on purpose")
    boom.__doc__ = _doc()
    detector("test-boom", severity="critical", registry=reg)(boom)

    def pvals(ctx, *, p: float = 0.01):
        yield ctx.finding("a (expected b)", score=1.0, p_value=p, p_method="exact")
        yield ctx.finding("c (expected d)", score=2.0, p_value=0.04, p_method="exact", severity="info")
    pvals.__doc__ = _doc()
    detector("test-pvals", severity="warning", registry=reg)(pvals)

    def bad_yield(ctx):
        yield "not a finding"
    bad_yield.__doc__ = _doc()
    detector("test-bad-yield", severity="info", registry=reg)(bad_yield)

    record_run(tmp_path, "a", [[1.0] * 3])
    record_run(tmp_path, "b", [[1.0] * 3])
    with rlaudit.open(tmp_path) as store:
        out = run_detectors(store, reg.specs(), jobs=2)
    status = {(r.detector, r.run_id): (r.status, r.reason) for r in out.results}
    assert status[("test-boom", "a")] == ("error", "RuntimeError: exploded on purpose")
    assert status[("test-bad-yield", "b")] == ("error", "TypeError: yielded str, expected a Finding")
    assert status[("test-pvals", "a")] == ("found", None)
    qs = sorted((f.p_value, f.q_value) for f in out.findings)
    # four p-values in the audit: 0.01, 0.01, 0.04, 0.04 -> BH q = 0.02, 0.02, 0.04, 0.04
    assert qs == [(0.01, pytest.approx(0.02)), (0.01, pytest.approx(0.02)),
                  (0.04, pytest.approx(0.04)), (0.04, pytest.approx(0.04))]
    assert all(f.fix == "do the thing." for f in out.findings)


def test_jobs_do_not_change_the_result(mixed_store):
    reg = get_registry()
    with rlaudit.open(mixed_store) as store:
        one = run_detectors(store, reg.specs(), jobs=1)
        two = run_detectors(store, reg.specs(), jobs=3)
    assert repr(one.findings) == repr(two.findings)  # repr: NaN evidence values compare unequal with ==
    assert one.results == two.results
    assert {r.status for r in one.results} == {"found", "clean", "skipped"}  # vec: too few steps


def test_finding_validation():
    base = dict(detector="x", severity="warning", run_id="r", summary="s", fix="f", score=1.0)
    Finding(**base)
    for bad in ({"severity": "fatal"}, {"p_value": 0.1}, {"p_value": 1.5, "p_method": "exact"},
                {"summary": ""}, {"score": float("nan")}):
        with pytest.raises(Exception):
            Finding(**{**base, **bad})


def test_audit_json_is_byte_identical_across_runs(mixed_store, tmp_path):
    for out in ("one", "two"):
        res = CliRunner().invoke(main, ["analyze", str(mixed_store), "--out", str(tmp_path / out), "-j", "2",
                                        *ONLY_FIRST])
        assert res.exit_code == 1, res.output  # non-finite is critical
    a, b = tmp_path / "one" / "audit.json", tmp_path / "two" / "audit.json"
    assert a.read_bytes() != b.read_bytes()  # timings differ...
    assert audit_json_without_timings(a) == audit_json_without_timings(b)  # ...nothing else does
    data = json.loads(a.read_text())
    assert list(data)[-1] == "timings" and list(data)[:-1] == sorted(list(data)[:-1])
    assert data["format"] == "rlaudit-audit" and data["rlaudit_version"] == rlaudit.__version__
    assert data["inputs"]["run_ids"] == sorted(data["inputs"]["run_ids"])
    assert {f["path"] for f in data["inputs"]["files"]} >= {str(mixed_store / "spiky.parquet")}
    assert next(d for d in data["detectors"] if d["name"] == "reward-spike")["params"]["z"] == 10.0
    assert "per_task_s" in data["timings"] and data["timings"]["total_s"] > 0
    # NaN evidence values are written as strings, the file is strict JSON
    nan_finding = next(f for f in data["findings"] if f["detector"] == "non-finite")
    assert "nan" in [row[-1] for row in nan_finding["evidence"]["rows"]]


def test_audit_round_trips(mixed_store, tmp_path):
    audit = run_audit([mixed_store])
    path = audit.write(tmp_path)
    loaded = Audit.load(path)
    assert loaded.to_json() == audit.to_json()
    assert loaded.runs == audit.runs and len(loaded.findings) == len(audit.findings)


def test_exit_codes_and_fail_on(tmp_path):
    clean = tmp_path / "clean"
    PLANTS["reward-spike"].clean(clean)
    spiky = tmp_path / "spiky"
    PLANTS["reward-spike"].plant(spiky)
    runner = CliRunner()
    res = runner.invoke(main, ["analyze", str(clean), "--out", str(tmp_path / "o1"), *ONLY_FIRST])
    assert res.exit_code == 0, res.output
    assert "verdict: clean" in res.output
    res = runner.invoke(main, ["analyze", str(spiky), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 0 and "warning   reward-spike" in res.output
    res = runner.invoke(main, ["analyze", str(spiky), "--out", str(tmp_path / "o3"), "--fail-on", "warning"])
    assert res.exit_code == 1 and "verdict: warnings" in res.output
    res = runner.invoke(main, ["analyze", str(spiky), "--detector", "non-finite", "--fail-on", "info",
                               "--out", str(tmp_path / "o4")])
    assert res.exit_code == 0 and "1 detector" in res.output


def test_text_summary_groups_by_run_and_json_format(mixed_store, tmp_path):
    res = CliRunner().invoke(main, ["analyze", str(mixed_store), "--out", str(tmp_path), *ONLY_FIRST])
    out = res.output
    assert out.index("run nan-reward ") < out.index("critical  non-finite") < out.index("run nan-reward-clean ")
    assert "[episodes 20-33, global_step 1,007-1,699, env 0, train]" in out
    assert "findings: 1 critical, 1 warning, 0 info" in out
    res = CliRunner().invoke(main, ["analyze", str(mixed_store), "--out", str(tmp_path), "--format", "json",
                                    *ONLY_FIRST])
    assert json.loads(res.output)["summary"]["findings"] == {"critical": 1, "warning": 1, "info": 0}


def test_progress_bar_on_stderr(mixed_store, tmp_path):
    res = CliRunner().invoke(main, ["analyze", str(mixed_store), "--out", str(tmp_path), "--progress", *ONLY_FIRST])
    assert "[" in res.output and "/10 " in res.output  # 2 detectors x 5 runs


def test_detectors_command_lists_and_documents():
    res = CliRunner().invoke(main, ["detectors"])
    assert res.exit_code == 0
    assert "non-finite" in res.output and "critical" in res.output and "presets:" in res.output
    res = CliRunner().invoke(main, ["detectors", "reward-spike"])
    for section in ("Finds:", "Why it matters:", "Evidence:", "Not flagged:", "Fix:", "z = 10.0"):
        assert section in res.output
    res = CliRunner().invoke(main, ["detectors", "reward-spik"])
    assert res.exit_code == 2 and "did you mean 'reward-spike'" in res.output


def test_reference_runs_reach_detectors_and_the_audit(tmp_path):
    reg = Registry()

    def ref_mean(ctx):
        if ctx.is_reference:
            return
        mean = ctx.reference_sql("SELECT avg(reward) FROM steps WHERE list_contains($reference, run_id)").one()[0]
        own = ctx.sql("SELECT avg(reward) FROM steps WHERE run_id = $run_id").scalar()
        yield ctx.finding(f"mean {own:g} (expected {mean:g} from the reference)", score=own - mean)
    ref_mean.__doc__ = _doc()
    detector("test-ref", severity="info", registry=reg)(ref_mean)

    record_run(tmp_path, "ref", [[1.0] * 5])
    record_run(tmp_path, "other", [[3.0] * 5])
    audit = run_audit([tmp_path], registry=reg, reference=["ref"])
    assert audit.reference == ("ref",)
    assert [(f.run_id, f.score) for f in audit.findings] == [("other", 2.0)]
    assert Audit.from_dict(json.loads(audit.to_json())).reference == ("ref",)
    with pytest.raises(rlaudit.errors.ConfigError, match="unknown reference run .rf.*did you mean"):
        run_audit([tmp_path], registry=reg, reference=["rf"])
