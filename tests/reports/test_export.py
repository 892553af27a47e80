"""Exports of an audit: TensorBoard event files read back with tensorboard's EventAccumulator,
W&B-style JSON validated, both through ``rlaudit analyze --export``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rlaudit.cli import main
from rlaudit.reports.audit import run_audit
from rlaudit.reports.export import EXPORTS, crc32c, export, tfrecord
from tests.detectors.plants import PLANTS

ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    store = tmp_path_factory.mktemp("store")
    plant = PLANTS["reward-spike"]
    planted = plant.plant(store)
    clean = plant.clean(store)
    audit = run_audit([store])
    assert any(f.run_id == planted.run_id for f in audit.findings)
    return store, audit, planted.run_id, clean


def _accumulator(folder):
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.TENSORS: 0})
    acc.Reload()
    return acc


def test_crc32c_and_framing_match_tensorboard():
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value
    data = b"some event bytes"
    record = tfrecord(data)
    assert record[12:-4] == data
    assert int.from_bytes(record[8:12], "little") == masked_crc32c(record[:8])
    assert int.from_bytes(record[-4:], "little") == masked_crc32c(data)


def test_tensorboard_export_reads_back(audited, tmp_path):
    _, audit, spiky, clean = audited
    written = export(audit, tmp_path, ["tensorboard"])
    store_wide = [r for r in audit.results if r.run_id is None]  # store-scope detectors report under _store
    assert sorted(p.parent.name for p in written) == sorted([spiky, clean] + (["_store"] if store_wide else []))
    if store_wide:
        acc = _accumulator(tmp_path / "tensorboard" / "_store")
        (text,) = acc.Tensors("rlaudit/findings")
        assert all(r.detector in text.tensor_proto.string_val[0].decode() for r in store_wide if r.status != "clean")
    for run in audit.runs:
        acc = _accumulator(tmp_path / "tensorboard" / run.run_id)
        findings = [f for f in audit.findings if f.run_id == run.run_id]
        for severity in ("info", "warning", "critical"):
            (event,) = acc.Scalars(f"rlaudit/findings/{severity}")
            assert event.step == run.steps
            assert event.value == sum(f.severity == severity for f in findings)
        (score,) = acc.Scalars("rlaudit/score/reward-spike")
        expected = max((f.score for f in findings if f.detector == "reward-spike"), default=0.0)
        assert score.value == pytest.approx(expected, rel=1e-6)
        assert acc.SummaryMetadata("rlaudit/findings").plugin_data.plugin_name == "text"
        (text,) = acc.Tensors("rlaudit/findings")
        markdown = text.tensor_proto.string_val[0].decode()
        for f in findings:
            assert f.summary in markdown and f.fix in markdown
            assert f"steps {f.step_start}–{f.step_end}" in markdown
        if not findings:
            assert markdown == "No findings."
        (verdict,) = acc.Tensors("rlaudit/verdict")
        assert verdict.tensor_proto.string_val[0].decode() == run.verdict


def test_wandb_json_is_flat_with_a_findings_table(audited, tmp_path):
    _, audit, spiky, _ = audited
    export(audit, tmp_path, ["wandb-json"])
    summary = json.loads((tmp_path / "wandb" / spiky / "wandb-summary.json").read_text())
    table = summary.pop("rlaudit/findings_table")
    assert all(not isinstance(v, (dict, list)) for v in summary.values())  # flat keys, plain values
    assert summary["rlaudit/verdict"] == next(r.verdict for r in audit.runs if r.run_id == spiky)
    assert summary["rlaudit/status/reward-spike"] == "found"
    assert table["_type"] == "table" and table["columns"][:3] == ["run_id", "severity", "detector"]
    findings = [f for f in audit.findings if f.run_id == spiky]
    assert len(table["data"]) == len(findings) == summary["rlaudit/findings/total"]
    assert all(len(row) == len(table["columns"]) for row in table["data"])
    col = table["columns"].index("step_start")
    assert [row[col] for row in table["data"]] == [f.step_start for f in findings]
    store_wide = json.loads((tmp_path / "wandb" / "wandb-summary.json").read_text())
    assert store_wide["rlaudit/runs"] == len(audit.runs)
    assert len(store_wide["rlaudit/findings_table"]["data"]) == len(audit.findings)


def test_analyze_export_option_writes_both_and_replaces_its_own_files(audited, tmp_path):
    store, audit, spiky, _ = audited
    args = ["analyze", str(store), "--out", str(tmp_path), "--export", "tensorboard", "--export", "wandb-json"]
    for _ in range(2):  # a second export replaces the first, it does not add event files
        out = CliRunner().invoke(main, args)
        assert out.exit_code in (0, 1), out.output
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    groups = [r.run_id for r in audit.runs] + (["_store"] if any(r.run_id is None for r in audit.results) else [])
    assert files == sorted(
        ["audit.json", "report.html", "wandb/wandb-summary.json"]
        + [f"tensorboard/{g}/events.out.tfevents.0.rlaudit" for g in groups]
        + [f"wandb/{g}/wandb-summary.json" for g in groups]
    )
    assert _accumulator(tmp_path / "tensorboard" / spiky).Scalars("rlaudit/findings/total")[0].value == len(
        [f for f in audit.findings if f.run_id == spiky])
    bad = CliRunner().invoke(main, ["analyze", str(store), "--out", str(tmp_path), "--export", "wandb"])
    assert bad.exit_code == 2 and "tensorboard" in bad.output
    assert EXPORTS == ("tensorboard", "wandb-json")
