"""Bad inputs: each a clear message and exit code 2, or a reported skip with the other runs analysed."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.cli import main
from rlaudit.errors import StoreError
from tests.analyzer.recording import record_run, rewrite_manifest, write_foreign


@pytest.fixture()
def good(tmp_path):
    store = tmp_path / "store"
    record_run(store, "good", [[1.0] * 5, [1.0] * 5])
    return store


def _analyze(*args):
    return CliRunner().invoke(main, ["analyze", *map(str, args)])


def test_missing_path(tmp_path):
    with pytest.raises(StoreError, match="no such file or folder"):
        rlaudit.open(tmp_path / "nope")
    res = _analyze(tmp_path / "nope", "--out", tmp_path)
    assert res.exit_code == 2
    assert "no such file or folder" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["sql", str(tmp_path / "nope"), "SELECT 1"])
    assert res.exit_code == 2 and "no such file or folder" in res.output


def test_empty_directory(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreError, match="holds no rlaudit runs"):
        rlaudit.open(empty)
    res = _analyze(empty, "--out", tmp_path)
    assert res.exit_code == 2 and "no readable rlaudit runs" in res.output


def test_empty_directory_beside_a_good_one_is_reported(good, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with rlaudit.open(good, empty) as s:
        assert s.run_ids == ["good"]
        assert [p.path for p in s.problems] == [str(empty)]


@pytest.mark.parametrize("kind", ["corrupt", "truncated", "foreign", "newer"])
def test_bad_file_is_skipped_by_name_and_the_rest_analysed(good, tmp_path, kind):
    bad = good / "bad.parquet"
    if kind == "corrupt":
        bad.write_bytes(b"PAR1" + b"\x00garbage" * 100)
        reason = "not a readable Parquet file"
    elif kind == "truncated":
        src = record_run(tmp_path / "other", "bad", [[2.0] * 50])
        data = src.read_bytes()
        bad.write_bytes(data[: len(data) // 2])
        reason = "not a readable Parquet file"
    elif kind == "foreign":
        write_foreign(bad)
        reason = "not written by rlaudit"
    else:
        src = record_run(tmp_path / "other", "bad", [[2.0] * 5])
        rewrite_manifest(src, bad, schema_version=99)
        reason = "newer rlaudit"
    with rlaudit.open(good) as s:
        assert s.run_ids == ["good"]
        assert len(s.problems) == 1
        assert s.problems[0].path == str(bad) and reason in s.problems[0].reason
    out = tmp_path / "out"
    res = _analyze(good, "--out", out)
    assert res.exit_code == 2, res.output  # incomplete audit: an input was left out
    assert f"skipped input: {bad}" in res.output and reason in res.output
    assert "run good" in res.output
    audit = json.loads((out / "audit.json").read_text())
    assert audit["inputs"]["run_ids"] == ["good"]
    assert audit["inputs"]["problems"][0]["path"] == str(bad)


def test_truncated_segment_of_unfinished_run_is_left_out(tmp_path):
    from tests.analyzer.recording import record_crashed_run

    parts = record_crashed_run(tmp_path, "crash", steps=30, flush_steps=10)
    seg = sorted(parts.glob("part-*.parquet"))[-1]
    data = seg.read_bytes()
    seg.write_bytes(data[:-40])
    with rlaudit.open(parts) as s:
        assert s.runs["crash"].steps == 20
        assert len(s.problems) == 1 and "segment of unfinished run 'crash' left out" in s.problems[0].reason
        assert s.sql("SELECT count(*) FROM steps").scalar() == 20


def test_only_bad_files_is_an_error(tmp_path):
    write_foreign(tmp_path / "x.parquet")
    res = _analyze(tmp_path, "--out", tmp_path / "out")
    assert res.exit_code == 2 and "no readable rlaudit runs" in res.output and "x.parquet" in res.output


def test_unknown_detector_did_you_mean(good, tmp_path):
    res = _analyze(good, "--detector", "reward-spkie", "--out", tmp_path)
    assert res.exit_code == 2
    assert "unknown detector 'reward-spkie' (did you mean 'reward-spike'?)" in res.output
    res = _analyze(good, "--preset", "reward-hackin", "--out", tmp_path)
    assert res.exit_code == 2 and "did you mean 'reward-hacking'" in res.output


@pytest.mark.parametrize("option, message", [
    ("reward-spike.z=abc", "expected a number"),
    ("reward-spike.min_steps=2.5", "expected an integer"),
    ("reward-spike.zz=3", "has no parameter 'zz' (did you mean 'z'?)"),
    ("reward-spike=3", "expected DETECTOR.PARAM=VALUE"),
    ("reward-spik.z=3", "did you mean 'reward-spike'"),
    ("reward-spike.z=", "expected DETECTOR.PARAM=VALUE"),
])
def test_bad_set_value(good, tmp_path, option, message):
    res = _analyze(good, "--set", option, "--out", tmp_path)
    assert res.exit_code == 2
    assert message in res.output
    assert "Traceback" not in res.output


def test_set_for_unselected_detector_is_an_error(good, tmp_path):
    res = _analyze(good, "-d", "non-finite", "--set", "reward-spike.z=3", "--out", tmp_path)
    assert res.exit_code == 2 and "not selected" in res.output


def test_bad_choice_is_a_usage_error(good, tmp_path):
    res = _analyze(good, "--fail-on", "severe", "--out", tmp_path)
    assert res.exit_code == 2


def test_nothing_is_overwritten_or_lost(good, tmp_path):
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    shutil.copy(good / "good.parquet", tmp_path / "copy.parquet")
    res = _analyze(good, "--out", tmp_path / "out")
    assert res.exit_code == 0, res.output
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
