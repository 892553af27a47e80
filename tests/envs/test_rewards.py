"""The reward registry and every reward's formula on hand-computed transitions."""

from __future__ import annotations

import pytest

from rlaudit.envs import CareerEnv, CareerState, describe_reward, get_reward, list_rewards, total
from rlaudit.envs.rewards import STAY, SWITCH
from rlaudit.errors import ConfigError

ALL_REWARDS = [
    "short_term_v1",
    "short_term_v2",
    "long_term_shaped_v1",
    "long_term_shaped_v2",
    "risk_sensitive_v1",
    "risk_sensitive_cvar_v1",
    "sparse_v1",
    "sparse_milestones_v1",
    "delayed_v1",
    "delayed_hindsight_v1",
]


def state(s: float, b: float, tenure: int = 0, market: float = 0.0) -> CareerState:
    """A state with normalised salary s (default salary bounds) and burnout b."""
    return CareerState(30_000.0 + s * 270_000.0, s, b, tenure, min(tenure / 100, 1.0), market)


START = state(0.0741, 0.0)


def run(reward, steps, start=START):
    """Feed (action, state, terminated, truncated) steps; return each step's terms."""
    out, prev = [], start
    for action, nxt, terminated, truncated in steps:
        terms = reward.step(prev, action, nxt, terminated, truncated)
        assert tuple(terms) == reward.terms
        out.append(terms)
        prev = nxt
    return out


# -- registry ---------------------------------------------------------------


def test_ten_rewards_in_registration_order():
    assert list_rewards() == ALL_REWARDS


def test_unknown_reward_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown reward 'short_trem_v1'.*did you mean 'short_term_v1'"):
        get_reward("short_trem_v1")
    with pytest.raises(ConfigError, match="expected one of: short_term_v1, short_term_v2"):
        get_reward("nothing_like_it")


def test_unknown_parameter_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"parameter of reward 'short_term_v1' 'burnout_wieght'.*'burnout_weight'"):
        get_reward("short_term_v1", burnout_wieght=2.0)


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("short_term_v1", {"burnout_weight": "2"}, "burnout_weight must be a number; found '2'"),
        ("short_term_v1", {"normalize_salary": 1}, "normalize_salary must be true or false"),
        ("short_term_v1", {"salary_weight": float("inf")}, "salary_weight must be finite"),
        ("short_term_v1", {"min_salary": 5e5}, "min_salary must be below max_salary"),
        ("risk_sensitive_v1", {"window_size": 0}, "window_size must be a positive integer; found 0"),
        ("risk_sensitive_v1", {"window_size": 2.5}, "window_size must be a positive integer"),
        ("risk_sensitive_cvar_v1", {"cvar_alpha": 0.0}, r"cvar_alpha must be in \(0, 1\]"),
        ("long_term_shaped_v1", {"gamma": 1.5}, r"gamma must be in \[0, 1\]"),
        ("sparse_milestones_v1", {"milestones": "abc"}, "milestones must be a sequence of numbers"),
    ],
)
def test_bad_parameter_values(name, params, expected):
    with pytest.raises(ConfigError, match=expected):
        get_reward(name, **params)


@pytest.mark.parametrize("name", ALL_REWARDS)
def test_every_reward_is_documented(name):
    text = describe_reward(name)
    reward = get_reward(name)
    assert text.startswith(f"### {name}")
    for part in ("**Formula.**", "**Intended behaviour.**", "**Known failure modes.**"):
        assert part in text
    for mode in reward.failure_modes:
        assert f"`{mode}`" in text
    for term in reward.terms:
        assert f"`{term}`" in text
    assert len(reward.failure_modes) >= 2
    assert reward.name == name and reward.version in (1, 2)


def test_describe_all_covers_every_reward():
    text = describe_reward()
    assert [line[4:] for line in text.splitlines() if line.startswith("### ")] == ALL_REWARDS


def test_params_record_defaults_and_overrides():
    reward = get_reward("short_term_v1", burnout_weight=2)
    assert reward.params["burnout_weight"] == 2.0 and reward.params["salary_weight"] == 1.0
    assert repr(reward) == "get_reward('short_term_v1', burnout_weight=2.0)"


# -- formulas ----------------------------------------------------------------


def test_short_term_v1():
    reward = get_reward("short_term_v1")
    (t,) = run(reward, [(SWITCH, state(0.5, 0.2), False, False)])
    assert t == {"salary": pytest.approx(0.5), "burnout_penalty": -0.2, "termination_penalty": 0.0}
    (t,) = run(reward, [(STAY, state(0.1, 1.0), True, False)])
    assert total(t) == pytest.approx(0.1 - 1.0 - 1.0)
    raw = get_reward("short_term_v1", normalize_salary=False, salary_weight=2.0, burnout_weight=0.5)
    (t,) = run(raw, [(STAY, state(0.5, 0.2), False, False)])  # salary 165,000 dollars
    assert t["salary"] == pytest.approx(2.0 * 1.65) and t["burnout_penalty"] == pytest.approx(-0.1)


def test_short_term_v1_reads_dollars_with_its_own_bounds():
    reward = get_reward("short_term_v1", min_salary=50_000.0, max_salary=150_000.0)
    (t,) = run(reward, [(STAY, state(0.5, 0.0), False, False)])  # 165,000 dollars
    assert t["salary"] == pytest.approx((165_000 - 50_000) / 100_000)


def test_short_term_v2():
    reward = get_reward("short_term_v2")
    (t,) = run(reward, [(STAY, state(0.5, 0.5), False, False)])
    assert total(t) == pytest.approx(0.5 - 2 * 0.25)
    (t,) = run(reward, [(STAY, state(0.2, 1.0), True, False)])
    assert t == {"salary": 0.2, "burnout_penalty": -2.0, "termination_penalty": -2.0}


def phi(s, b, tenure_norm):
    return s - 2 * b * b + 0.5 * min(tenure_norm, 0.5)


def test_long_term_shaped_v1_episode():
    reward = get_reward("long_term_shaped_v1")
    x1, x2, x3 = state(0.2, 0.1, 1), state(0.3, 0.2, 2), state(0.4, 0.0, 0)
    t1, t2, t3 = run(
        reward, [(STAY, x1, False, False), (STAY, x2, False, False), (SWITCH, x3, False, True)]
    )
    assert t1["shaping"] == 0.0  # no shaping on the first step
    assert total(t1) == pytest.approx(0.2 - 0.1)
    assert t2["shaping"] == pytest.approx(0.99 * phi(0.3, 0.2, 0.02) - phi(0.2, 0.1, 0.01))
    assert t2["shaping"] == pytest.approx(0.99 * 0.23 - 0.185)
    assert t3["shaping"] == pytest.approx(-0.23)  # last step: -Phi(previous state)
    assert total(t3) == pytest.approx(0.4 - 0.23)
    # the next episode starts without a previous potential
    reward.reset()
    (t,) = run(reward, [(STAY, x2, False, False)])
    assert t["shaping"] == 0.0


def test_long_term_shaped_v1_burnout_termination():
    reward = get_reward("long_term_shaped_v1")
    t1, t2 = run(reward, [(STAY, state(0.2, 0.5), False, False), (STAY, state(0.3, 1.0), True, False)])
    assert t2["shaping"] == pytest.approx(-phi(0.2, 0.5, 0.0))
    assert t2["termination_penalty"] == -5.0
    assert total(t2) == pytest.approx(0.3 - 1.0 - phi(0.2, 0.5, 0.0) - 5.0)


def test_long_term_shaped_v2_momentum():
    reward = get_reward("long_term_shaped_v2")
    t1, t2, t3 = run(
        reward,
        [
            (STAY, state(0.2, 0.1), False, False),
            (SWITCH, state(0.3, 0.05), False, False),
            (SWITCH, state(0.25, 0.0), False, True),
        ],
    )
    assert t1["momentum"] == 0.0
    assert t2["momentum"] == pytest.approx(0.5 * ((0.3 - 0.2) + (0.1 - 0.05)))
    assert t3["momentum"] == pytest.approx(0.5 * ((0.25 - 0.3) + (0.05 - 0.0)))
    assert t2["shaping"] == pytest.approx(0.99 * phi(0.3, 0.05, 0) - phi(0.2, 0.1, 0))


def test_risk_sensitive_v1_variance_window():
    reward = get_reward("risk_sensitive_v1", window_size=3, min_variance_samples=2)
    t = run(
        reward,
        [
            (STAY, state(0.1, 0.0), False, False),
            (STAY, state(0.2, 0.0), False, False),
            (STAY, state(0.6, 0.0), False, False),
            (STAY, state(0.6, 0.0), True, False),
        ],
    )
    assert t[0]["variance_penalty"] == 0.0  # fewer than 2 samples
    assert t[1]["variance_penalty"] == pytest.approx(-0.5 * 0.0025)
    assert t[2]["variance_penalty"] == pytest.approx(-0.5 * 0.14 / 3)
    mean = (0.2 + 0.6 + 0.6) / 3  # the window dropped 0.1
    var = ((0.2 - mean) ** 2 + 2 * (0.6 - mean) ** 2) / 3
    assert t[3]["variance_penalty"] == pytest.approx(-0.5 * var)
    assert t[3]["termination_penalty"] == -2.0


def test_risk_sensitive_v1_defaults_wait_for_five_samples():
    reward = get_reward("risk_sensitive_v1")
    t = run(reward, [(STAY, state(s, 0.0), False, False) for s in (0.1, 0.2, 0.3, 0.4, 0.5)])
    assert [x["variance_penalty"] for x in t[:4]] == [0.0] * 4
    assert t[4]["variance_penalty"] == pytest.approx(-0.5 * 0.02)
    reward.reset()
    (t,) = run(reward, [(STAY, state(0.9, 0.0), False, False)])
    assert t["variance_penalty"] == 0.0


def test_risk_sensitive_cvar_v1():
    reward = get_reward("risk_sensitive_cvar_v1")
    steps = [(STAY, state(0.0, 0.5), False, False), (STAY, state(0.1, 0.5), False, False)]
    steps += [(SWITCH, state(0.1, 0.0), False, False)] * 8
    t = run(reward, steps)
    assert [x["cvar_penalty"] for x in t[:9]] == [0.0] * 9  # fewer than 10 samples
    # n = 10: the worst int(0.2 * 10) = 2 bases are -0.5 and -0.4
    assert t[9]["cvar_penalty"] == pytest.approx(-0.5 * 0.45)
    (last,) = run(reward, [(STAY, state(0.3, 1.0), True, False)], start=state(0.1, 0.0))
    assert last["termination_penalty"] == -3.0
    # n = 11, k = int(2.2) = 2: the new base 0.3 - 1.0 = -0.7 and -0.5
    assert last["cvar_penalty"] == pytest.approx(-0.5 * 0.6)


def test_risk_sensitive_cvar_v1_ignores_a_positive_tail():
    reward = get_reward("risk_sensitive_cvar_v1", min_cvar_samples=1)
    (t,) = run(reward, [(STAY, state(0.5, 0.1), False, False)])
    assert t["cvar_penalty"] == 0.0


def test_sparse_v1():
    reward = get_reward("sparse_v1")
    (t,) = run(reward, [(SWITCH, state(0.9, 0.0), False, False)])
    assert total(t) == 0.0
    (t,) = run(reward, [(SWITCH, state(0.7, 0.3), False, True)])  # thresholds are inclusive
    assert t["success_bonus"] == 10.0 and total(t) == 10.0
    (t,) = run(reward, [(SWITCH, state(0.69, 0.0), False, True)])
    assert total(t) == 0.0
    (t,) = run(reward, [(STAY, state(0.9, 1.0), True, False)])
    assert t == {"step_penalty": 0.0, "success_bonus": 0.0, "termination_penalty": -5.0}
    costly = get_reward("sparse_v1", step_penalty=-0.01)
    (t,) = run(costly, [(STAY, state(0.1, 0.2), False, False)])
    assert total(t) == -0.01


def test_sparse_milestones_v1():
    reward = get_reward("sparse_milestones_v1")
    t = run(
        reward,
        [
            (SWITCH, state(0.25, 0.0), False, False),
            (SWITCH, state(0.55, 0.0), False, False),  # 0.3 and 0.5
            (SWITCH, state(0.52, 0.0), False, False),
            (SWITCH, state(0.31, 0.0), False, False),  # 0.3 already reached
            (SWITCH, state(0.95, 0.0), False, False),  # 0.7 and 0.9
            (SWITCH, state(0.95, 0.3), False, True),
        ],
    )
    assert [x["milestone_bonus"] for x in t] == [0.0, 4.0, 0.0, 0.0, 4.0, 0.0]
    assert t[5]["success_bonus"] == 10.0
    reward.reset()
    (t,) = run(reward, [(SWITCH, state(0.35, 1.0), True, False)])
    assert t == {"milestone_bonus": 2.0, "success_bonus": 0.0, "termination_penalty": -5.0}


def test_delayed_v1():
    reward = get_reward("delayed_v1")
    t = run(
        reward,
        [
            (STAY, state(0.2, 0.1), False, False),
            (STAY, state(0.4, 0.3), False, False),
            (SWITCH, state(0.3, 0.5), False, True),
        ],
    )
    assert total(t[0]) == 0.0 and total(t[1]) == 0.0
    outcome = 0.3 * 0.3 + 0.3 * 0.4 + 0.4 * (0.9 / 3) - 2 * (0.9 / 3)
    assert t[2]["outcome"] == pytest.approx(outcome)
    assert (t[2]["survival_bonus"], t[2]["goal_bonus"], t[2]["termination_penalty"]) == (5.0, 0.0, 0.0)

    final_burnout = get_reward("delayed_v1", normalize_by_steps=False)
    (t,) = run(final_burnout, [(STAY, state(0.3, 0.5), False, True)])
    assert t["outcome"] == pytest.approx(0.3 * 0.3 + 0.3 * 0.3 + 0.4 * 0.3 - 2 * 0.5)


def test_delayed_v1_goal_and_termination():
    reward = get_reward("delayed_v1")
    (t,) = run(reward, [(SWITCH, state(0.7, 0.1), False, True)])
    assert (t["survival_bonus"], t["goal_bonus"]) == (5.0, 3.0)
    assert t["outcome"] == pytest.approx(0.7 - 2 * 0.1)
    t = run(reward, [(STAY, state(0.2, 0.6), False, False), (STAY, state(0.2, 1.0), True, False)])
    assert t[1]["termination_penalty"] == -10.0 and t[1]["survival_bonus"] == 0.0
    assert t[1]["outcome"] == pytest.approx(0.2 - 2 * 0.8)


def test_delayed_hindsight_v1():
    reward = get_reward("delayed_hindsight_v1")
    t = run(
        reward,
        [
            (STAY, state(0.2, 0.4), False, False),
            (STAY, state(0.2, 0.6), False, False),
            (SWITCH, state(0.3, 0.8), False, True),
        ],
    )
    assert total(t[0]) == 0.0 and total(t[1]) == 0.0
    assert t[2]["outcome"] == pytest.approx(0.3 - 2 * 0.8)
    assert t[2]["hindsight"] == pytest.approx(0.3 * 0.1 * 2)  # final burnout > 0.7: 2 stays
    assert t[2]["survival_bonus"] == 3.0

    switchy = run(
        reward,
        [(SWITCH, state(0.3, 0.0), False, False)] * 3 + [(STAY, state(0.3, 1.0), True, False)],
    )
    assert switchy[3]["hindsight"] == pytest.approx(0.3 * 0.1 * 1)  # b > 0.7 wins: 1 stay
    calm = run(
        reward,
        [(SWITCH, state(0.3, 0.0), False, False)] * 3 + [(STAY, state(0.3, 0.2), False, True)],
    )
    assert calm[3]["hindsight"] == pytest.approx(-0.3 * 0.1 * 3)  # 3 of 4 steps were switches
    assert calm[3]["termination_penalty"] == 0.0
    quiet = run(reward, [(STAY, state(0.3, 0.1), False, False)] * 3 + [(STAY, state(0.3, 0.2), True, False)])
    assert quiet[3]["hindsight"] == 0.0 and quiet[3]["termination_penalty"] == -5.0


# -- terms and the env -----------------------------------------------------------


@pytest.mark.parametrize("name", ALL_REWARDS)
def test_env_returns_the_sum_of_the_terms_it_reports(name):
    env = CareerEnv(reward=name)
    keys = [f"reward_{t}" for t in env.reward_fn.terms]
    actions = [1, 1, 0, 1, 0, 0, 0, 1] * 40
    for seed in (0, 1):
        env.reset(seed=seed)
        for action in actions:
            _, reward, terminated, truncated, info = env.step(action)
            terms = [info[k] for k in keys]
            assert all(type(v) is float for v in terms)
            left_to_right = 0.0
            for value in terms:
                left_to_right += value
            assert reward == left_to_right  # exactly, in the order of reward.terms
            assert [k for k in info if k.startswith("reward_")] == keys
            if terminated or truncated:
                break


@pytest.mark.parametrize("name", ALL_REWARDS)
def test_recomputing_offline_from_info_gives_the_same_rewards(name):
    env = CareerEnv(reward=name)
    offline = get_reward(name)
    _, info = env.reset(seed=3)
    prev = CareerState.from_info(info)
    for action in [0, 0, 1, 0, 1, 1, 0, 0, 0, 1] * 30:
        _, reward, terminated, truncated, info = env.step(action)
        now = CareerState.from_info(info)
        assert total(offline.step(prev, action, now, terminated, truncated)) == reward
        prev = now
        if terminated or truncated:
            break


def test_docs_hold_the_generated_reward_documentation():
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "career-env.md").read_text(encoding="utf-8")
    begin = doc.index("<!-- rewards:begin")
    section = doc[doc.index("\n", begin) + 1 : doc.index("<!-- rewards:end -->")]
    assert section.strip() == describe_reward().strip(), (
        "docs/career-env.md is out of date: paste describe_reward() between the markers"
    )


@pytest.mark.parametrize("name", ALL_REWARDS)
@pytest.mark.parametrize("regime", ["stable", "volatile"])
def test_declared_bounds_hold_every_step(name, regime):
    import numpy as np

    env = CareerEnv(regime=regime, reward=name)
    low, high = env.reward_fn.bounds(env.params)
    terms = env.reward_fn.term_bounds(env.params)
    assert list(terms) == list(env.reward_fn.terms) and low <= high
    rng = np.random.default_rng(0)
    for episode in range(20):
        env.reset(seed=episode)
        p_switch = episode / 20
        while True:
            _, reward, terminated, truncated, info = env.step(int(rng.random() < p_switch))
            assert low - 1e-9 <= reward <= high + 1e-9
            for term, (lo, hi) in terms.items():
                assert lo - 1e-9 <= info["reward_" + term] <= hi + 1e-9, term
            if terminated or truncated:
                break


def test_bounds_follow_the_parameters():
    r = get_reward("short_term_v1")
    assert r.bounds() == (-2.0, 1.0)  # salary in [0, 1], burnout penalty down to -1, termination -1
    assert get_reward("short_term_v1", burnout_weight=0.0, termination_penalty=0.0).bounds() == (0.0, 1.0)
    assert get_reward("sparse_v1").bounds() == (-5.0, 10.0)
