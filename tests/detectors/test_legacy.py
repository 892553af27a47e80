"""The legacy profiles replay the predecessors' documented alarms on crafted stores.

The registry contract asks every detector for a planted failure that it finds
and a clean twin that it leaves alone. The ``legacy-*`` detectors are exempt
from that contract (test_registry.py) and covered here instead: they
reproduce RL Failure Lab's and RewardScope's rules *with their defects* (a
deterministic heuristic "collapses" from its tenth episode, an absolute
variance threshold fires on any long episode, a limit cycle is "state
cycling"), so a clean twin they leave alone would contradict the faithful
reproduction. What must hold instead is that they alarm exactly where and
how often the originals did, as documented in the predecessors' notes
(rl-failure-lab section 5, rewardscope sections 2-4); each test below replays
one documented behaviour and checks the alarm count and positions.
"""

from __future__ import annotations

import numpy as np
import pytest

import rlaudit
from rlaudit.detectors import get_registry, run_detectors
from rlaudit.detectors.presets import PRESETS
from rlaudit.recorder.core import Recorder
from tests.analyzer.recording import record_run

REG = get_registry()
LEGACY = [n for n in REG.names() if n.startswith("legacy-")]


def _run(store, name, **params):
    """The detector's findings in the order the original raised them (run, then step)."""
    with rlaudit.open(store) as s:
        out = run_detectors(s, [REG.get(name)], {name: params} if params else None)
    assert all(r.status in ("found", "clean") for r in out.results), out.results
    return sorted(out.findings, key=lambda f: (f.run_id, f.step_start))


def _career_like(store, run_id, returns, burnouts, *, length=5, last_action=0, entropy=None, terms=None):
    with Recorder(store, run_id, env_id="Plant-v0", config={"gamma": 0.99}) as rec:
        for k, (ret, burnout) in enumerate(zip(returns, burnouts)):
            rec.reset(np.zeros(4, np.float32), seed=k)
            for t in range(length):
                end = t == length - 1
                kw = {}
                if entropy is not None:
                    kw["entropy"] = entropy
                if terms is not None:
                    kw["reward_terms"] = terms(k, t)
                rec.step(last_action if end else 1, np.full(4, t + 1, np.float32), ret / length, end, False,
                         {"burnout": burnout if end else 0.1}, **kw)


def test_presets_hold_the_legacy_detectors_and_all_leaves_them_out():
    assert len(LEGACY) == 9
    assert sorted(PRESETS["legacy-rfl"] + PRESETS["legacy-rewardscope"]) == LEGACY
    assert not set(REG.preset("all")) & set(LEGACY)
    for name in LEGACY:
        spec = REG.get(name)
        assert spec.summary.startswith(("RL Failure Lab's", "RewardScope's"))


def test_rfl_policy_collapse_fires_on_every_episode_from_the_tenth_for_a_heuristic(tmp_path):
    # rl-failure-lab 5.6: always_stay reports entropy 0 -> 91 alarms in 100 episodes
    _career_like(tmp_path, "always-stay", [-0.1] * 100, [0.3] * 100)
    found = _run(tmp_path, "legacy-rfl-policy-collapse")
    assert len(found) == 91
    assert [f.episode_start for f in found] == list(range(9, 100))
    assert all(f.actual["original_rule"] == "PolicyCollapseDetector rule 1 (entropy)" for f in found)
    assert all(f.severity == "critical" and f.actual["original_severity"] == "high" for f in found)


def test_rfl_action_dominance_fires_from_episode_49(tmp_path):
    # with a real entropy the entropy rule is silent; the last action of every episode is the same:
    # "51 = action dominance from episode 49" (min_samples 50)
    _career_like(tmp_path, "random", [1.0] * 100, [0.3] * 100, entropy=0.69, last_action=0)
    found = _run(tmp_path, "legacy-rfl-policy-collapse")
    assert len(found) == 51 and found[0].episode_start == 49
    assert found[0].actual["original_rule"] == "PolicyCollapseDetector rule 2 (action dominance)"


def test_rfl_nonstationarity_fires_from_episode_29_on_long_episodes(tmp_path):
    # "71 = a detector with min_samples 30 firing from episode 29": return variance > 2 (absolute)
    rng = np.random.default_rng(0)
    _career_like(tmp_path, "long", list(100 + 5 * rng.standard_normal(100)), [0.3] * 100)
    found = _run(tmp_path, "legacy-rfl-nonstationarity")
    assert len(found) == 71 and sorted(f.episode_start for f in found) == list(range(29, 100))
    assert {f.severity for f in found} <= {"info", "warning"}


def test_rfl_reward_hacking_fires_on_burnout_terminated_positive_returns(tmp_path):
    # random on dense rewards: episodes end at burnout 1.0 with a positive return -> rule 1 from episode 29
    _career_like(tmp_path, "random", [3.0] * 100, [1.0] * 100)
    found = _run(tmp_path, "legacy-rfl-reward-hacking")
    assert len(found) == 71 and found[0].episode_start == 29
    assert found[0].actual["original_rule"] == "RewardHackingDetector rule 1 (suspicious ratio)"
    # the cumulative counter is never windowed: the ratio exceeds 1 once the window is full
    assert found[-1].actual["suspicious_ratio"] == pytest.approx(100 / 50)


def test_rfl_value_explosion_rules(tmp_path):
    metrics = [(5 * k + 4, {"q_mean": 1.0 + k, "q_max": 2.0 + k, "loss": 0.1}) for k in range(40)]
    record_run(tmp_path, "growing", [[1.0] * 5 for _ in range(40)], metrics=metrics)
    found = _run(tmp_path, "legacy-rfl-value-explosion")
    # two Q entries per episode (q_mean, q_max): 20 entries at episode 9, where the last 10 average 8.5 against
    # 3.5 for the first 10 (growth 1.43); at episode 12 the growth is (11.5 - 3.5) / 3.5 = 2.29 > 2
    assert found[0].episode_start == 12 and found[0].actual["original_rule"] == "ValueExplosionDetector rule 3 (growth)"


def test_rewardscope_action_repetition_needs_50_steps_in_one_episode(tmp_path):
    record_run(tmp_path, "long", [[1.0] * 120], action=lambda k, t: 0)
    record_run(tmp_path, "short", [[1.0] * 9 for _ in range(30)], action=lambda k, t: 0)
    found = _run(tmp_path, "legacy-rewardscope-action-repetition")
    assert [(f.run_id, f.step_start) for f in found] == [("long", 49), ("long", 99)]
    assert found[0].score == 1.0


def test_rewardscope_reward_spiking_never_fires_on_a_constant_reward(tmp_path):
    record_run(tmp_path, "constant", [[1.0] * 100 for _ in range(5)])
    rewards = [list(1.0 + 0.1 * np.random.default_rng(1).standard_normal(100)) for _ in range(3)]
    rewards[1][30] = 50.0
    rewards[1][40] = 50.0  # inside the 100-step spam guard: suppressed
    record_run(tmp_path, "spiky", rewards)
    found = _run(tmp_path, "legacy-rewardscope-reward-spiking")
    assert [(f.run_id, f.step_start) for f in found] == [("spiky", 130)]


def test_rewardscope_state_cycling_fires_on_a_limit_cycle(tmp_path):
    record_run(tmp_path, "cycle", [[1.0] * 200], obs=lambda k, t: [t % 4, 0.0, 0.0, 0.0])
    record_run(tmp_path, "line", [[1.0] * 200], obs=lambda k, t: [t, 0.0, 0.0, 0.0])
    found = _run(tmp_path, "legacy-rewardscope-state-cycling")
    assert {f.run_id for f in found} == {"cycle"}
    steps = [f.step_start for f in found]
    # a cycle of 4 is testable once n // 2 - 1 >= 4, i.e. at the 10th observation (step 9)
    assert steps[0] == 9 and all(b - a >= 50 for a, b in zip(steps, steps[1:]))
    assert found[0].actual["cycle_length"] == 4 and found[0].actual["similarity"] == 1.0


def test_rewardscope_component_imbalance_flags_a_single_alive_term_from_the_fifth_episode(tmp_path):
    _career_like(tmp_path, "alive", [5.0] * 12, [0.1] * 12, terms=lambda k, t: {"alive": 1.0})
    found = _run(tmp_path, "legacy-rewardscope-component-imbalance")
    assert [f.episode_start for f in found] == list(range(4, 12))
    assert found[0].actual["dominant_component"] == "alive"


def test_rewardscope_boundary_counts_are_never_windowed(tmp_path):
    from rlaudit.recorder.wrappers import RecordTrajectory
    import gymnasium as gym

    env = RecordTrajectory(gym.make("Pendulum-v1"), tmp_path, "edge")
    env.reset(seed=0)
    for i in range(400):
        # full torque on one step in ten: a 10% rate, yet alerts fire as the counts accumulate
        _, _, term, trunc, _ = env.step(np.array([2.0 if i % 10 == 0 else 0.0], np.float32))
        if term or trunc:
            env.reset(seed=i)
    env.close()
    found = _run(tmp_path, "legacy-rewardscope-boundary-exploitation")
    assert found and all(f.actual["action_boundary_freq"] >= 0.5 or f.actual["observation_boundary_freq"] >= 0.5
                         for f in found)
