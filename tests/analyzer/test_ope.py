"""Off-policy estimates on a small MDP whose true target value is computed exactly,
recorded through the real recorder; refusals when the data cannot support an estimate."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

import rlaudit
from rlaudit.analyzer.ope import MIN_ESS, estimate
from rlaudit.cli import main
from rlaudit.recorder.core import Recorder

GAMMA = 0.9
P_UP = np.array([[0.2, 0.7], [0.5, 0.9]])  # P(next state = 1 | state, action)
REWARD = np.array([[0.0, -0.2], [1.0, 0.5]])  # mean reward of (state, action)
BEHAVIOUR = np.array([0.4, 0.6])  # P(action 1 | state) of the behaviour policy
TARGET = np.array([0.8, 0.2])  # P(action 1 | state) of the target policy


def _probs(p1: np.ndarray, state: int) -> np.ndarray:
    return np.array([1.0 - p1[state], p1[state]])


def target_probs(obs) -> np.ndarray:
    return _probs(TARGET, int(round(float(obs[0]))))


def exact_q(horizon: int) -> np.ndarray:
    """Q[t, s, a] of the target policy with ``horizon - t`` steps to go (dynamic programming)."""
    q = np.zeros((horizon + 1, 2, 2))
    for t in range(horizon - 1, -1, -1):
        v_next = np.array([_probs(TARGET, s) @ q[t + 1, s] for s in (0, 1)])
        for s in (0, 1):
            for a in (0, 1):
                q[t, s, a] = REWARD[s, a] + GAMMA * (P_UP[s, a] * v_next[1] + (1 - P_UP[s, a]) * v_next[0])
    return q


def true_value(horizon: int) -> float:
    return float(_probs(TARGET, 0) @ exact_q(horizon)[0, 0])  # every episode starts in state 0


def record_mdp(store, run_id, *, episodes, horizon, logp=True, q=None, seed=0):
    """Episodes of the MDP under the behaviour policy; obs = [state, t]; reward noise N(0, 0.1)."""
    rng = np.random.default_rng(seed)
    table = exact_q(horizon) if q is not None else None
    with Recorder(store, run_id, env_id="ChainMDP-v0", config={"gamma": GAMMA}) as rec:
        for _ in range(episodes):
            s = 0
            rec.reset(np.array([s, 0], np.float32), seed=None)
            for t in range(horizon):
                a = int(rng.random() < BEHAVIOUR[s])
                r = REWARD[s, a] + 0.1 * rng.standard_normal()
                nxt = int(rng.random() < P_UP[s, a])
                kw = {}
                if logp:
                    kw["logp"] = math.log(_probs(BEHAVIOUR, s)[a])
                if table is not None:
                    kw["q"] = table[t, s] + q
                rec.step(a, np.array([nxt, t + 1], np.float32), float(r), False, t == horizon - 1, **kw)
                s = nxt
    return store / f"{run_id}.parquet"


@pytest.fixture(scope="module")
def mdp(tmp_path_factory):
    store = tmp_path_factory.mktemp("mdp")
    record_mdp(store, "exact-q", episodes=1500, horizon=4, q=0.0)
    record_mdp(store, "biased-q", episodes=1500, horizon=4, q=np.array([0.5, -0.3]), seed=1)
    record_mdp(store, "no-logp", episodes=50, horizon=4, logp=False, seed=2)
    record_mdp(store, "long", episodes=200, horizon=40, seed=3)
    return store


def test_wpdis_recovers_the_exact_value(mdp):
    truth = true_value(4)
    with rlaudit.open(mdp) as store:
        result = estimate(store, "exact-q", target_probs, target_name="target")
    assert result.refused is None and result.episodes == 1500
    assert result.low <= truth <= result.high
    assert result.value == pytest.approx(truth, abs=0.05 * abs(truth) + 0.02)
    assert result.high - result.low < 0.5


def test_ess_is_kish_of_the_trajectory_weights(mdp):
    with rlaudit.open(mdp) as store:
        rows = store.sql("SELECT episode, obs[1], action FROM steps WHERE run_id = 'exact-q' ORDER BY episode, t").rows()
        result = estimate(store, "exact-q", target_probs)
    weights = np.ones(1500)
    for episode, state, action in rows:
        s = int(round(state))
        weights[episode] *= _probs(TARGET, s)[action] / _probs(BEHAVIOUR, s)[action]
    assert result.ess == pytest.approx(weights.sum() ** 2 / (weights**2).sum())
    assert result.max_weight_share == pytest.approx(weights.max() / weights.sum())


def test_doubly_robust_with_exact_and_biased_q(mdp):
    truth = true_value(4)
    with rlaudit.open(mdp) as store:
        exact = estimate(store, "exact-q", target_probs, estimator="dr")
        wpdis = estimate(store, "exact-q", target_probs)
        biased = estimate(store, "biased-q", target_probs, estimator="dr")
    assert exact.refused is None and exact.low <= truth <= exact.high
    # with the true Q as its model, DR is tighter than importance sampling alone
    assert exact.high - exact.low < 0.8 * (wpdis.high - wpdis.low)
    # a wrong model is corrected by the importance weights (the behaviour policy is known)
    assert biased.refused is None and biased.low <= truth <= biased.high


def test_refused_without_behaviour_logp(mdp):
    with rlaudit.open(mdp) as store:
        result = estimate(store, "no-logp", target_probs)
    assert result.value is None and "logp" in result.refused
    assert result.to_dict()["kind"] == "ope" and result.to_dict()["refused"] == result.refused


def test_refused_dr_without_q(mdp):
    with rlaudit.open(mdp) as store:
        result = estimate(store, "long", target_probs, estimator="dr")
    assert result.value is None and "q column" in result.refused


def test_refused_below_the_ess_floor(mdp):
    def always_up(obs):
        return np.array([0.0, 1.0])  # deterministic: weights vanish unless every action was 1

    with rlaudit.open(mdp) as store:
        result = estimate(store, "long", always_up)
    assert result.value is None and result.ess < MIN_ESS
    assert "effective sample size" in result.refused and "below the floor" in result.refused


def test_cli_ope_and_audit(mdp, tmp_path):
    from rlaudit.reports.audit import run_audit

    audit_path = run_audit([mdp], detectors=["non-finite"]).write(tmp_path)
    target = f"{__name__}:target_probs"
    result = CliRunner().invoke(main, ["ope", str(mdp), "--run", "exact-q", "--policy", target,
                                       "--audit", str(audit_path)])
    assert result.exit_code == 0, result.output
    assert "wpdis value of" in result.output and "effective sample size" in result.output
    from rlaudit.reports.audit import Audit

    (record,) = Audit.load(audit_path).counterfactuals
    assert record["kind"] == "ope" and record["run_id"] == "exact-q" and record["refused"] is None
    result = CliRunner().invoke(main, ["ope", str(mdp), "--run", "no-logp", "--policy", target])
    assert result.exit_code == 0 and result.output.startswith("refused: behaviour log-probabilities are missing")
    result = CliRunner().invoke(main, ["ope", str(mdp), "--policy", target])
    assert result.exit_code == 2 and "name one with --run" in result.output
