"""A small fixed store for the report tests, recorded through the real recorder.

Two seeds of one agent (a cross-seed group), a reward spike and a NaN reward
(so the report has a warning and a critical finding), reward terms, policy
entropy, value estimates, evaluation episodes, training metrics, and a run
whose agent name and info strings are HTML.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlaudit.recorder.core import Recorder

HOSTILE_AGENT = "<script>alert(1)</script>"
HOSTILE_INFO = '<img src=x onerror="alert(2)">'
EPISODES = 40
LENGTH = 30


def _record(store: Path, run_id: str, seed: int, *, agent: str = "ppo", spike: bool = False, nan: bool = False,
            info_text: str | None = None) -> None:
    rng = np.random.default_rng(seed)
    config = {"agent": agent, "seed": seed, "gamma": 0.9, "reward": "plant_v1", "hyperparameters": {"lr": 0.001}}
    with Recorder(store, run_id, env_id="Plant-v0", config=config) as rec:
        x = np.zeros(4, dtype=np.float32)
        for k in range(EPISODES):
            rec.phase = "eval" if k % 8 == 7 else "train"
            x = np.array([rng.uniform(0, 0.2), rng.uniform(0, 0.2), 0.0, 0.0], dtype=np.float32)
            rec.reset(x)
            for t in range(LENGTH):
                action = int(rng.random() < 0.3 + 0.012 * k)
                x = np.clip(x + np.array([0.03 * action, 0.02 * (1 - action), 0.01, rng.normal(0, 0.05)]), -1, 1)
                x = x.astype(np.float32)
                reward = float(1.0 + 0.03 * k + 0.1 * rng.standard_normal())
                if spike and k == 13 and t == 11:
                    reward = 60.0
                if nan and k == 17 and t == 4:
                    reward = float("nan")
                terms = {"progress": reward * 0.8, "comfort": reward * 0.2}
                info = {"note": info_text} if info_text is not None else None
                rec.step(action, x, reward, t == LENGTH - 1, False, info, entropy=0.7 - 0.012 * k,
                         value=0.5 * k + 0.01 * t, reward_terms=terms)
            if rec.phase == "train":
                rec.log_metrics(None, loss=1.0 / (k + 1), approx_kl=0.01 * k)


def build(store: Path) -> Path:
    store.mkdir(parents=True, exist_ok=True)
    _record(store, "ppo-s0", 0, spike=True)
    _record(store, "ppo-s1", 1)
    _record(store, "ppo-s2", 2, nan=True)
    _record(store, "hostile", 3, agent=HOSTILE_AGENT, info_text=HOSTILE_INFO)
    return store


def comparison() -> dict:
    """A baseline comparison in the shape `rlaudit compare` writes (docs/audit-format.md)."""
    def iv(v, lo, hi):
        return {"value": v, "low": lo, "high": hi}

    return {
        "by": "agent", "baseline": "always_stay",
        "score": {"source": "eval", "k": None, "note": "mean of the final evaluation"},
        "confidence": 0.95, "resamples": 2000, "seed": 0,
        "groups": [
            {"name": "ppo", "runs": ["ppo-s0", "ppo-s1", "ppo-s2"], "scores": [2.1, 2.3, 2.0],
             "iqm": iv(2.1, 2.0, 2.3), "mean": iv(2.13, 2.0, 2.3), "median": iv(2.1, 2.0, 2.3)},
            {"name": "always_stay", "runs": ["stay-s0", "stay-s1"], "scores": [1.0, 1.1],
             "iqm": iv(1.05, 1.0, 1.1), "mean": iv(1.05, 1.0, 1.1), "median": iv(1.05, 1.0, 1.1)},
            {"name": HOSTILE_AGENT, "runs": ["hostile"], "scores": [0.4],
             "iqm": iv(0.4, 0.4, 0.4), "mean": iv(0.4, 0.4, 0.4), "median": iv(0.4, 0.4, 0.4)},
        ],
        "tests": [
            {"group": "ppo", "baseline": "always_stay", "difference": iv(1.08, 0.9, 1.25),
             "prob_improvement": iv(1.0, 0.83, 1.0), "welch_p": 0.0021, "mannwhitney_p": 0.2,
             "verdict": "better", "mde": None, "note": None},
            {"group": HOSTILE_AGENT, "baseline": "always_stay", "difference": iv(-0.65, -0.7, -0.6),
             "prob_improvement": iv(0.0, 0.0, 0.17), "welch_p": 0.03, "mannwhitney_p": 0.67,
             "verdict": "tie", "mde": 1.4, "note": "one run: too few seeds to tell; MDE at 80% power"},
        ],
        "profiles": {"thresholds": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
                     "groups": {"ppo": [1, 1, 1, 1, 0.67, 0], "always_stay": [1, 1, 0.5, 0, 0, 0]}},
    }


def counterfactuals() -> list[dict]:
    """A replay and two off-policy estimates (one refused) in the shapes `rlaudit replay` writes."""
    return [
        {"kind": "replay", "run_id": "ppo-s0", "env_index": 0, "episode": 13, "t": 11, "global_step": 401,
         "branch": "action=0", "against": "recorded", "rollouts": 32, "horizon": None,
         "finding": {"detector": "reward-spike", "summary": "1 isolated reward spike"},
         "fidelity": {"replayable": True, "checked_steps": 30, "max_abs_obs_error": 0.0, "reason": None},
         "differences": [{"signal": "return", "mean": -3.2, "low": -4.0, "high": -2.5, "n": 32},
                         {"signal": "reward_progress", "mean": -2.6, "low": -3.1, "high": -2.0, "n": 32}],
         "verdict": "confirmed", "note": HOSTILE_INFO},
        {"kind": "ope", "run_id": "ppo-s1", "target": "policy=always_stay", "estimator": "wpdis",
         "value": 12.5, "low": 10.1, "high": 14.0, "ess": 48.2, "episodes": 21, "refused": None},
        {"kind": "ope", "run_id": "ppo-s1", "target": "policy=greedy", "estimator": "dr",
         "value": None, "low": None, "high": None, "ess": 1.3, "episodes": 21,
         "refused": "effective sample size 1.3 < 10: the logged policy rarely takes the target's actions"},
    ]
