"""Arbitrary rows through the writer come back identical, across segment boundaries."""

from __future__ import annotations

import math
from unittest import mock

import duckdb
import numpy as np
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlaudit import Recorder
from rlaudit.recorder import writer
from rlaudit.schema import MANIFEST_KEY, manifest_from_metadata

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
obs_values = st.lists(st.floats(width=32, allow_nan=False), min_size=3, max_size=3)
info_values = st.one_of(st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=5))

step_strategy = st.fixed_dictionaries(
    {
        "obs": obs_values,
        "action": st.integers(0, 4),
        "reward": floats,
        "terminated": st.booleans(),
        "truncated": st.booleans(),
        "info": st.dictionaries(st.sampled_from(["a", "b", "c"]), info_values, max_size=2),
        "logp": st.one_of(st.none(), st.floats(-10, 0)),
    }
)


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    return a == b


def _expected_info_type(values):
    kinds = {type(v) for v in values}
    if str in kinds:
        return str
    if kinds == {bool}:
        return bool
    return float


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(step_strategy, min_size=1, max_size=40), flush=st.integers(1, 7), reset_seed=st.integers(0, 2**31),
       concat=st.booleans())
def test_rows_round_trip(tmp_path_factory, steps, flush, reset_seed, concat):
    """``concat`` forces the byte-wise join of segments (normally only for large ones)."""
    store = tmp_path_factory.mktemp("store")
    with mock.patch.object(writer, "MIN_CONCAT_ROWS", 1 if concat else 10**9):
        _check_round_trip(store, steps, flush, reset_seed)


def _check_round_trip(store, steps, flush, reset_seed):
    first_obs = np.array([0.5, -1.0, 2.0], np.float32)
    with Recorder(store, "r", flush_steps=flush, flush_seconds=3600) as rec:
        rec.reset(first_obs, seed=reset_seed)
        prev = first_obs
        expected = []
        episode, t = 0, 0
        seed_pending = reset_seed
        for s in steps:
            nxt = np.array(s["obs"], np.float32)
            rec.step(s["action"], nxt, s["reward"], s["terminated"], s["truncated"], s["info"], logp=s["logp"])
            done = s["terminated"] or s["truncated"]
            expected.append(dict(s, episode=episode, t=t, obs_before=prev, final=nxt if done else None, seed=seed_pending))
            seed_pending = None
            t += 1
            prev = nxt
            if done:
                prev = np.array([float(episode)] * 3, np.float32)
                rec.reset(prev)
                episode, t = episode + 1, 0
    assert rec.dropped == {}

    path = store / "r.parquet"
    table = pq.read_table(path)
    manifest = manifest_from_metadata(table.schema.metadata)
    assert manifest["status"] == "complete" and manifest["counts"]["steps"] == len(steps)
    assert MANIFEST_KEY in table.schema.metadata
    rows = table.to_pylist()
    via_duckdb = duckdb.connect().execute(
        "SELECT episode, t, global_step, action, reward, terminated, truncated, obs, final_obs, reset_seed "
        "FROM read_parquet(?) ORDER BY global_step",
        [str(path)],
    ).fetchall()
    assert len(rows) == len(via_duckdb) == len(steps)
    info_keys = {k for s in steps for k in s["info"]}
    for k, (row, drow, exp) in enumerate(zip(rows, via_duckdb, expected)):
        assert row["global_step"] == k == drow[2]
        assert (row["episode"], row["t"]) == (exp["episode"], exp["t"]) == (drow[0], drow[1])
        assert row["action"] == exp["action"] == drow[3]
        assert _same(row["reward"], exp["reward"]) and _same(drow[4], exp["reward"])
        assert row["terminated"] == exp["terminated"] == drow[5]
        assert row["truncated"] == exp["truncated"] == drow[6]
        np.testing.assert_array_equal(np.array(row["obs"], np.float32), exp["obs_before"])
        np.testing.assert_array_equal(np.array(drow[7], np.float32), exp["obs_before"])
        if exp["final"] is None:
            assert row["final_obs"] is None and drow[8] is None
        else:
            np.testing.assert_array_equal(np.array(row["final_obs"], np.float32), exp["final"])
        assert row["reset_seed"] == exp["seed"] == drow[9]
        if exp["logp"] is None:
            assert row.get("logp") is None
        else:
            assert abs(row["logp"] - exp["logp"]) < 1e-5
    for key in info_keys:
        kind = _expected_info_type([s["info"][key] for s in steps if key in s["info"]])
        for row, exp in zip(rows, expected):
            got = (row["info"] or {}).get(key)
            if key not in exp["info"]:
                assert got is None
            elif kind is str:
                value = exp["info"][key]
                assert got == (value if isinstance(value, str) else str(float(value)))
            else:
                assert got == kind(exp["info"][key])
