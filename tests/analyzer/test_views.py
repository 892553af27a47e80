"""The Store's views on hand-made stores recorded with the real recorder."""

from __future__ import annotations

import math

import polars as pl
import pyarrow as pa
import pytest

import rlaudit
from rlaudit.analyzer import Store
from rlaudit.errors import ConfigError
from tests.analyzer.conftest import EPISODES_A, EPISODES_B


@pytest.fixture(scope="module")
def store(hand_store):
    with rlaudit.open(hand_store) as s:
        yield s


def test_open_is_the_public_entry_point(hand_store):
    with rlaudit.open(hand_store) as s:
        assert isinstance(s, Store)
        assert s.run_ids == ["alpha", "beta", "delta", "gamma"]
        assert s.problems == ()


def test_episode_returns_and_lengths_are_exact(store):
    rows = store.sql(
        "SELECT run_id, episode, length, return, termination, reset_seed, first_global_step, last_global_step "
        "FROM episodes WHERE run_id IN ('alpha', 'beta') ORDER BY run_id, episode"
    ).rows()
    expected = []
    for run_id, episodes in (("alpha", EPISODES_A), ("beta", EPISODES_B)):
        gs = 0
        for k, rewards in enumerate(episodes):
            expected.append((run_id, k, len(rewards), sum(rewards), gs, gs + len(rewards) - 1))
            gs += len(rewards)
    assert [(r[0], r[1], r[2], r[3], r[6], r[7]) for r in rows] == expected
    reasons = {(r[0], r[1]): r[4] for r in rows}
    assert reasons[("alpha", 0)] == "terminated"
    assert reasons[("alpha", 3)] == "truncated"
    assert reasons[("beta", 1)] == "unfinished"
    seeds = {(r[0], r[1]): r[5] for r in rows}
    assert seeds[("alpha", 0)] == 11 and seeds[("alpha", 1)] is None and seeds[("alpha", 2)] == 13


def test_episode_term_returns(store):
    rows = store.sql(
        "SELECT episode, term_returns.alive, term_returns.bonus, term_returns.goal FROM episodes "
        "WHERE run_id = $r ORDER BY episode", r="alpha"
    ).rows()
    for (episode, alive, bonus, goal), rewards in zip(rows, EPISODES_A):
        assert alive == pytest.approx(len(rewards))
        assert bonus == pytest.approx(sum(r - 1.0 for r in rewards))
        assert goal is None
    goal = store.sql("SELECT term_returns.goal FROM episodes WHERE run_id = 'beta' ORDER BY episode").rows()
    assert [g for g, in goal] == [sum(e) for e in EPISODES_B]


def test_vector_env_episodes_are_per_sub_env(store):
    rows = store.sql(
        "SELECT env_index, episode, length, return, termination, reset_seed FROM episodes "
        "WHERE run_id = 'gamma' ORDER BY env_index, episode"
    ).rows()
    assert rows == [
        (0, 0, 3, 3.0, "terminated", 0),
        (0, 1, 4, 4.0, "terminated", 1),
        (1, 0, 5, 10.0, "terminated", 100),
        (1, 1, 2, 4.0, "unfinished", 101),
    ]
    steps = store.sql("SELECT count(*) FROM steps WHERE run_id = 'gamma'").scalar()
    assert steps == 14


def test_partial_run_is_flagged_and_readable(store):
    row = store.sql("SELECT status, partial, source, steps FROM runs WHERE run_id = 'delta'").one()
    assert row == ("crashed", True, "parts", 20)  # 25 steps recorded, the unflushed 5 lost
    assert store.runs["delta"].partial
    eps = store.sql("SELECT episode, length, return FROM episodes WHERE run_id = 'delta' ORDER BY episode").rows()
    assert eps == [(0, 10, 10.0), (1, 10, 10.0)]


def test_mixed_schemas_read_together(store):
    cols = set(store.step_columns)
    assert {"entropy", "logp", "reward_terms", "obs"} <= cols
    assert store.runs["alpha"].has("entropy") and not store.runs["alpha"].has("logp")
    assert store.runs["beta"].has("logp") and not store.runs["beta"].has("entropy")
    assert store.runs["alpha"].has("reward_terms.alive") and not store.runs["beta"].has("reward_terms.alive")
    rows = store.sql(
        "SELECT run_id, count(entropy), count(logp), max(len(obs)) FROM steps GROUP BY run_id ORDER BY run_id"
    ).rows()
    assert rows[0] == ("alpha", 10, 0, 4)
    assert rows[1] == ("beta", 0, 9, 6)
    assert store.reward_terms == ("alive", "bonus", "goal")


def test_runs_view_has_manifest_facts(store):
    rows = store.sql("SELECT run_id, status, env_id, gamma, steps, columns, manifest FROM runs ORDER BY run_id").rows()
    assert [r[0] for r in rows] == ["alpha", "beta", "delta", "gamma"]
    alpha = rows[0]
    assert alpha[1] == "complete" and alpha[2] == "Plant-v0" and alpha[3] == 0.99 and alpha[4] == 10
    assert "entropy" in alpha[5]
    assert '"run_id": "alpha"' in alpha[6]


def test_metrics_view(store):
    rows = store.sql("SELECT run_id, global_step, name, value FROM metrics ORDER BY global_step, name").rows()
    assert rows == [("alpha", 3, "kl", 0.01), ("alpha", 3, "loss", 0.5), ("alpha", 9, "loss", 0.25)]


def test_trailing_semicolon_is_accepted(store):
    assert store.sql("SELECT count(*) FROM runs;  ").scalar() == 4
    assert store.sql("SELECT 1 AS x;").head(5) == [(1,)]


def test_parameters_are_bound_never_formatted(store):
    assert store.sql("SELECT count(*) FROM steps WHERE run_id = $r", r="alpha").scalar() == 10
    evil = "alpha' OR '1'='1"
    assert store.sql("SELECT count(*) FROM steps WHERE run_id = $r", r=evil).scalar() == 0


def test_result_conversions(store):
    res = store.sql("SELECT run_id, count(*) AS n FROM steps GROUP BY run_id ORDER BY run_id")
    table = res.arrow()
    assert isinstance(table, pa.Table) and table.column("n").to_pylist() == [10, 9, 20, 14]
    frame = res.pl()
    assert isinstance(frame, pl.DataFrame) and frame["run_id"].to_list() == ["alpha", "beta", "delta", "gamma"]
    assert res.rows()[0] == ("alpha", 10)
    assert res.columns == ["run_id", "n"]


def test_only_read_only_statements(store):
    for query in ("CREATE TABLE x AS SELECT 1", "COPY (SELECT 1) TO 'x.csv'", "SELECT 1; SELECT 2",
                  "SET threads = 1", "DROP VIEW steps"):
        with pytest.raises(ConfigError):
            store.sql(query)


def test_open_accepts_files_globs_and_lists(hand_store):
    with rlaudit.open(hand_store / "alpha.parquet", str(hand_store / "b*.parquet")) as s:
        assert s.run_ids == ["alpha", "beta"]
    with rlaudit.open([hand_store / "gamma.parquet", hand_store / "delta.parquet.parts"]) as s:
        assert s.run_ids == ["delta", "gamma"]
        assert s.runs["delta"].partial


def test_materialised_episodes_equal_the_view(hand_store):
    with rlaudit.open(hand_store) as s:
        query = "SELECT * FROM episodes ORDER BY run_id, env_index, episode"
        before = s.sql(query).rows()
        s.materialize("episodes")
        after = s.sql(query).rows()
    assert before == after and len(before) == 4 + 2 + 4 + 2


def test_episodes_view_over_many_episodes_matches_numpy(tmp_path):
    import numpy as np

    from tests.analyzer.recording import record_run

    rng = np.random.default_rng(3)
    episodes = [list(rng.normal(size=int(rng.integers(1, 30)))) for _ in range(200)]
    record_run(tmp_path, "many", episodes)
    with rlaudit.open(tmp_path) as s:
        rows = s.sql("SELECT length, return FROM episodes ORDER BY episode").rows()
    assert [r[0] for r in rows] == [len(e) for e in episodes]
    assert all(math.isclose(r[1], math.fsum(e), abs_tol=1e-9) for r, e in zip(rows, episodes))


def test_nan_predicates_are_not_pruned_by_parquet_statistics(tmp_path):
    """Parquet min/max statistics leave NaN out; the views must still find NaN rows."""
    from tests.analyzer.recording import record_run

    record_run(tmp_path, "r", [[1.0] * 10 for _ in range(8)],
               entropy=lambda k, t: float("nan") if k == 7 else 0.3)
    with rlaudit.open(tmp_path) as s:
        assert s.sql("SELECT count(*) FROM steps WHERE isnan(entropy)").scalar() == 10
        assert s.sql("SELECT count(*) FROM steps WHERE NOT isfinite(entropy)").scalar() == 10
        assert s.sql("SELECT count(*) FROM steps WHERE entropy > 0.5").scalar() == 10  # NaN sorts last
        # and a lone max() over a column without NaN is not answered from statistics as NaN
        assert s.sql("SELECT max(reward) FROM steps").scalar() == 1.0
        assert math.isnan(s.sql("SELECT max(entropy) FROM steps").scalar())
        assert s.sql("SELECT max(entropy) FROM steps WHERE episode < 7").scalar() == pytest.approx(0.3)


def test_scoped_views_match_the_store_wide_views(store):
    """A run-scoped cursor returns the same rows for run-filtered queries, missing columns included."""
    queries = [
        "SELECT * FROM steps WHERE run_id = $run_id ORDER BY global_step, env_index",
        "SELECT logp, entropy, reward_terms.goal, reward_terms.alive, obs FROM steps WHERE run_id = $run_id "
        "ORDER BY global_step, env_index",
        "SELECT * FROM episodes WHERE run_id = $run_id ORDER BY env_index, episode",
        "SELECT * FROM metrics WHERE run_id = $run_id ORDER BY global_step, name",
    ]
    for run_id in store.run_ids:
        cur = store.scoped(run_id)
        try:
            for q in queries:
                assert cur.sql(q, run_id=run_id).rows() == store.sql(q, run_id=run_id).rows(), (run_id, q)
            # the scoped steps hold this run only
            assert cur.sql("SELECT DISTINCT run_id FROM steps").rows() == [(run_id,)]
        finally:
            cur.close()
