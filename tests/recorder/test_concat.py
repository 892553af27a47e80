"""Segments joined byte-wise read back exactly like the segments themselves."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from gymnasium import spaces

from rlaudit import Recorder
from rlaudit.recorder.concat import NotConcatenable, concat_segments
from rlaudit.recorder import writer
from rlaudit.recorder.writer import write_options
from rlaudit.schema import manifest_from_metadata


def _record(store, run_id, steps, flush, info_from=None):
    rng = np.random.default_rng(1)
    with Recorder(store, run_id, flush_steps=flush, observation_space=spaces.Box(-5, 5, (3,)),
                  action_space=spaces.Discrete(3)) as rec:
        rec.reset(rng.normal(size=3).astype(np.float32), seed=4)
        for k in range(steps):
            done = k % 37 == 36
            info = {"x": float(k)} if info_from is not None and k >= info_from else {}
            rec.step(k % 3, rng.normal(size=3).astype(np.float32), float(rng.normal()), done, False, info,
                     logp=-1.0, value=float(k))
            if done:
                rec.reset(rng.normal(size=3).astype(np.float32))
            if k == steps - 2:
                shutil.copytree(rec._parts, store / "segments")  # the segments as written
    return store / f"{run_id}.parquet"


def test_concatenated_file_equals_its_segments(tmp_path, monkeypatch):
    def no_rewrite(*args, **kwargs):
        raise AssertionError("segments of one schema must be joined without re-encoding")

    monkeypatch.setattr(writer, "_rewrite", no_rewrite)
    path = _record(tmp_path, "joined", 30_000, 5_000)
    final = pq.ParquetFile(path)
    assert final.metadata.num_row_groups == 6  # one per segment: joined, not re-encoded
    segments = pa.concat_tables(pq.read_table(p) for p in sorted((tmp_path / "segments").glob("part-*.parquet")))
    table = final.read()
    assert table.num_rows == 30_000
    assert table.slice(0, segments.num_rows).equals(segments.replace_schema_metadata(None).cast(table.schema))
    manifest = manifest_from_metadata(table.schema.metadata)
    assert manifest["status"] == "complete" and manifest["counts"]["steps"] == 30_000
    con = duckdb.connect()
    total, episodes = con.execute(
        "SELECT sum(reward), count(DISTINCT episode) FROM read_parquet(?)", [str(path)]
    ).fetchone()
    assert total == pytest.approx(float(np.sum(table.column("reward").to_numpy())))
    assert episodes == 30_000 // 37 + 1


def test_new_columns_mid_run_fall_back_to_a_decoding_merge(tmp_path):
    path = _record(tmp_path, "mixed", 20_000, 5_000, info_from=12_000)
    table = pq.read_table(path)
    assert table.num_rows == 20_000
    info = table.column("info").to_pylist()
    assert info[11_999] is None or info[11_999]["x"] is None
    assert info[12_000] == {"x": 12_000.0}


def test_segments_with_page_indexes_are_refused(tmp_path):
    t = pa.table({"a": np.arange(10)})
    for k in range(2):
        pq.write_table(t, tmp_path / f"s{k}.parquet", write_page_index=True, **write_options(t.schema))
    with pytest.raises(NotConcatenable):
        concat_segments([tmp_path / "s0.parquet", tmp_path / "s1.parquet"], tmp_path / "out.parquet", {})


def test_concat_of_plain_segments_with_dictionary_and_nested_columns(tmp_path):
    rng = np.random.default_rng(0)
    tables = []
    for k in range(3):
        n = 1000 + k
        t = pa.table(
            {
                "s": pa.array([f"v{i % 5}" for i in range(n)]).dictionary_encode(),
                "f": rng.normal(size=n),
                "l": pa.FixedSizeListArray.from_arrays(pa.array(rng.normal(size=2 * n).astype(np.float32)), 2),
                "st": pa.StructArray.from_arrays([pa.array(rng.integers(0, 9, n)), pa.array([None] * n, pa.string())], ["i", "z"]),
                "b": pa.array(rng.random(n) > 0.5),
            }
        )
        pq.write_table(t, tmp_path / f"s{k}.parquet", **write_options(t.schema))
        tables.append(t)
    rows = concat_segments([tmp_path / f"s{k}.parquet" for k in range(3)], tmp_path / "out.parquet", {b"k": b"v"})
    assert rows == 3003
    out = pq.read_table(tmp_path / "out.parquet")
    assert out.schema.metadata[b"k"] == b"v"
    assert out.replace_schema_metadata(None).equals(pa.concat_tables(tables))
    assert duckdb.connect().execute("SELECT count(*), sum(f) FROM read_parquet(?)", [str(tmp_path / "out.parquet")]).fetchone()[0] == 3003
