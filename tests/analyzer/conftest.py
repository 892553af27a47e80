from __future__ import annotations

import pytest

from tests.analyzer.recording import record_crashed_run, record_run, record_vector_run

# Episode rewards of the hand-made store; returns and lengths are known exactly.
EPISODES_A = [[1.0, 2.0, 3.0], [0.5] * 4, [-1.0, 1.0], [10.0]]
EPISODES_B = [[1.0] * 6, [2.0] * 3]


def _terms_a(k, t, r):
    return {"alive": 1.0, "bonus": r - 1.0}


@pytest.fixture(scope="session")
def hand_store(tmp_path_factory):
    """Two single-env runs with different optional columns, a vector run and a crashed run."""
    store = tmp_path_factory.mktemp("hand_store")
    record_run(store, "alpha", EPISODES_A, seeds=[11, None, 13, 14], terms=_terms_a,
               entropy=lambda k, t: 0.5, truncate_last=True,
               metrics=[(3, {"loss": 0.5, "kl": 0.01}), (9, {"loss": 0.25})])
    record_run(store, "beta", EPISODES_B, unfinished_last=True, logp=lambda k, t: -0.7,
               terms=lambda k, t, r: {"goal": r}, obs=lambda k, t: [k, t, 0, 0, 0, 0])
    record_vector_run(store, "gamma", [[3, 4], [5]])
    record_crashed_run(store, "delta", steps=25, flush_steps=10)
    return store
