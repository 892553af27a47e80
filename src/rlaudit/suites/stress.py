"""The stress suite: RL Failure Lab's stress tests, reproduced on rlaudit's env and agents, and audited.

Each :class:`StressTest` says its setup, what it measures, its pass criterion
as a hypothesis, the band the reference implementation reported, and the
analyser finding(s) expected on its runs. :func:`run_stress` records every
run (several seeds; runs already in the store are reused, so an
interrupted suite resumes), measures each test from the recordings alone
(SQL over the store), runs the audit, and checks that the expected
detectors fired on the runs where the failure occurs. docs/stress-tests.md
explains every test, its numbers and where the reference's interpretation
does not hold.

Runs are shared between tests where the reference used the same
configuration (the DQN on short_term_v1 serves T2.2, T7.1 and T8.1).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlaudit.agents.experiments import ExperimentProtocol
from rlaudit.errors import ConfigError, did_you_mean

#: The reference's DQN settings: lr 1e-3, buffer 10k, batch 64, soft target update tau 0.005 every 100 updates.
REFERENCE_DQN = {"tau": 0.005}
SALARY_ONLY = {"burnout_weight": 0.0, "termination_penalty": 0.0, "normalize_salary": False}
BURNOUT_ONLY = {"salary_weight": 0.0, "termination_penalty": 0.0}
SCALE_1000 = {"salary_weight": 1000.0, "burnout_weight": 1000.0, "termination_penalty": -1000.0}


@dataclass(frozen=True)
class Budget:
    """Training episodes, greedy evaluation episodes and maximum episode length of every stress run."""

    episodes: int = 50
    eval_episodes: int = 10
    max_steps: int = 200


DEFAULT_BUDGET = Budget()
QUICK_BUDGET = Budget(episodes=12, eval_episodes=3, max_steps=60)


def _dqn(**params: Any) -> dict[str, Any]:
    return {**REFERENCE_DQN, **params}


#: Run recipes shared by the tests: key -> protocol fields (seed, budget and name are added per run).
RUNS: dict[str, dict[str, Any]] = {
    "determinism-a": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.995), "short": True},
    "determinism-b": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.995), "short": True},
    "random": {"agent": "random"},
    "salary-trap": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.99), "reward_params": SALARY_ONLY},
    "burnout-avoidance": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.99), "reward_params": BURNOUT_ONLY},
    "dqn-dense": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.995)},
    "dqn-sparse": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.995), "reward": "sparse_v1"},
    "high-scale": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.99), "reward_params": SCALE_1000},
    "exploration-collapse": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.95, epsilon_end=0.0)},
    "regime-shift": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.995), "shift_regime": "recession",
                     "extra_episodes": 0.4},
    "train-test-split": {"agent": "dqn", "agent_params": _dqn(epsilon_decay=0.995),
                         "env_params": {"salary_volatility": 0.05},
                         "shift_env_params": {"salary_volatility": 0.4}},
    "ppo": {"agent": "ppo", "agent_params": {"n_steps": 128}},
    "burnout-threshold": {"agent": "burnout_threshold", "agent_params": {"threshold": 0.6}},
}


def stress_protocol(key: str, seed: int, budget: Budget = DEFAULT_BUDGET) -> ExperimentProtocol:
    """The protocol of the shared run ``key`` for ``seed`` (run id ``stress-<key>-s<seed>``)."""
    recipe = dict(RUNS[key])
    episodes = budget.episodes
    if recipe.pop("short", False):
        episodes = max(2, episodes // 5)
    shift = None
    extra = recipe.pop("extra_episodes", 0.0)
    shift_regime = recipe.pop("shift_regime", None)
    shift_env = recipe.pop("shift_env_params", None)
    if shift_regime or shift_env:
        shift = {"after_episode": episodes}
        if shift_regime:
            shift["regime"] = shift_regime
        if shift_env:
            shift["env_params"] = shift_env
        episodes += int(round(extra * episodes))
    env_params = {**recipe.pop("env_params", {}), "max_steps": budget.max_steps}
    return ExperimentProtocol(
        seed=seed, episodes=episodes, eval_interval=0, eval_episodes=budget.eval_episodes,
        env_params=env_params, shift=shift, name=f"stress-{key}-s{seed}",
        description=f"stress suite run {key}", **recipe,
    ).validate()


# ---------------------------------------------------------------------------
# Measurements from the store
# ---------------------------------------------------------------------------


class RunData:
    """What the tests measure from one recorded run, read once from the store."""

    def __init__(self, store: Any, run_id: str):
        self.run_id = run_id
        max_abs_q = ("max(greatest(abs(list_max(q)), abs(list_min(q))))"
                     if store.runs[run_id].has("q") else "NULL")
        rows = store.sql(
            f"""
            SELECT e.episode, e.phase, e.return, e.length, e.first_global_step,
                   s.final_burnout, s.final_salary_norm, s.switches, s.max_abs_q
            FROM episodes e JOIN (
                SELECT env_index, episode,
                       arg_max(info.burnout, t) AS final_burnout,
                       arg_max(info.salary_norm, t) AS final_salary_norm,
                       sum(CASE WHEN action = 1 THEN 1 ELSE 0 END) AS switches,
                       {max_abs_q} AS max_abs_q
                FROM steps WHERE run_id = $run_id GROUP BY ALL
            ) s USING (env_index, episode)
            WHERE e.run_id = $run_id ORDER BY e.episode
            """,
            run_id=run_id,
        ).rows()
        names = ("episode", "phase", "ret", "length", "first_step", "burnout", "salary", "switches", "max_abs_q")
        self.episodes = [dict(zip(names, r)) for r in rows]
        shift = store.sql(
            "SELECT min(global_step) FROM metrics WHERE run_id = $run_id AND name = 'env_shift'", run_id=run_id
        ).scalar() if store.runs[run_id].metrics_files else None
        self.shift_step = None if shift is None else int(shift)

    @property
    def train(self) -> list[dict]:
        return [e for e in self.episodes if e["phase"] == "train"]

    def eval_blocks(self) -> list[list[dict]]:
        """Evaluations: maximal blocks of consecutive evaluation episodes (split at an env shift)."""
        blocks: list[list[dict]] = []
        previous = None
        for e in self.episodes:
            if e["phase"] != "eval":
                previous = None
                continue
            crosses = self.shift_step is not None and previous is not None and \
                previous["first_step"] < self.shift_step <= e["first_step"]
            if previous is None or crosses:
                blocks.append([])
            blocks[-1].append(e)
            previous = e
        return blocks

    def final_eval(self) -> float:
        blocks = self.eval_blocks()
        return _mean([e["ret"] for e in blocks[-1]]) if blocks else math.nan

    def switch_share(self) -> float:
        train = self.train
        steps = sum(e["length"] for e in train)
        return sum(e["switches"] for e in train) / steps if steps else math.nan

    def dominant_share(self) -> float:
        share = self.switch_share()
        return max(share, 1.0 - share)

    def mean_final_burnout(self) -> float:
        return _mean([e["burnout"] for e in self.train])

    def success_rate(self, salary: float = 0.7, burnout: float = 0.3) -> float:
        """Share of final-evaluation episodes ending at salary_norm >= ``salary`` with burnout <= ``burnout``
        (sparse_v1's goal)."""
        blocks = self.eval_blocks()
        if not blocks:
            return math.nan
        return _mean([float(e["salary"] >= salary and e["burnout"] <= burnout) for e in blocks[-1]])

    def max_abs_q(self) -> float:
        values = [e["max_abs_q"] for e in self.train if e["max_abs_q"] is not None]
        return max(values) if values else math.nan


def _mean(values: Sequence[float]) -> float:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return float(np.mean(values)) if values else math.nan


def steps_differing(store: Any, a: str, b: str) -> int:
    """Steps at which two runs differ in observation, action or reward (or exist in one run only)."""
    return int(store.sql(
        """
        WITH x AS (SELECT env_index, episode, t, phase, obs, action, reward FROM steps WHERE run_id = $a),
             y AS (SELECT env_index, episode, t, phase, obs, action, reward FROM steps WHERE run_id = $b)
        SELECT count(*) FROM x FULL OUTER JOIN y USING (env_index, episode, t)
        WHERE x.obs IS DISTINCT FROM y.obs OR x.action IS DISTINCT FROM y.action
           OR x.reward IS DISTINCT FROM y.reward OR x.phase IS DISTINCT FROM y.phase
        """,
        a=a, b=b,
    ).scalar())


# ---------------------------------------------------------------------------
# The tests
# ---------------------------------------------------------------------------

Measure = Callable[[Mapping[str, RunData], Any], dict[str, float]]


@dataclass(frozen=True)
class StressTest:
    """One stress test; see the module docstring."""

    id: str
    title: str
    runs: tuple[str, ...]
    setup: str
    measures: str
    hypothesis: str
    criterion: Callable[[Mapping[str, float]], bool] = field(repr=False)
    measure: Measure = field(repr=False)
    reference: str = ""
    expected: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # run key -> detectors expected there
    note: str = ""
    seeds_from: int = 0  # first seed (T8.1 uses seeds 1..N like the reference)
    across_seeds: Callable[[Mapping[str, Mapping[str, float]]], bool] | None = field(default=None, repr=False)
    """A criterion on the summary over seeds, for tests about variation between seeds (T8.1)."""


def _m_determinism(runs, store):
    a, b = runs["determinism-a"], runs["determinism-b"]
    return {"steps_differing": steps_differing(store, a.run_id, b.run_id), "steps": sum(e["length"] for e in a.episodes)}


def _m_random(runs, store):
    return {"mean_train_return": _mean([e["ret"] for e in runs["random"].train])}


def _m_trap(key):
    def measure(runs, store):
        r = runs[key]
        return {"switch_share": r.switch_share(), "mean_final_burnout": r.mean_final_burnout(),
                "mean_episode_length": _mean([e["length"] for e in r.train])}
    return measure


def _m_sparse(runs, store):
    dense, sparse = runs["dqn-dense"], runs["dqn-sparse"]
    return {"dense_eval": dense.final_eval(), "sparse_eval": sparse.final_eval(),
            "dense_success": dense.success_rate(), "sparse_success": sparse.success_rate()}


def _m_scale(runs, store):
    r = runs["high-scale"]
    gamma = store.runs[r.run_id].gamma or 0.99
    return {"max_abs_q": r.max_abs_q(), "bound_r_max_over_1_minus_gamma": 1000.0 / (1.0 - gamma)}


def _m_collapse(runs, store):
    r = runs["exploration-collapse"]
    return {"dominant_action_share": r.dominant_share(), "switch_share": r.switch_share(), "final_eval": r.final_eval()}


def _m_shift(key):
    def measure(runs, store):
        blocks = runs[key].eval_blocks()
        before = _mean([e["ret"] for e in blocks[0]]) if blocks else math.nan
        after = _mean([e["ret"] for e in blocks[1]]) if len(blocks) > 1 else math.nan
        return {"eval_before": before, "eval_after": after, "drop": before - after}
    return measure


def _m_heuristics(runs, store):
    out = {f"{k}_eval": runs[k].final_eval() for k in ("dqn-dense", "ppo", "burnout-threshold", "random")}
    out["rl_margin"] = max(out["dqn-dense_eval"], out["ppo_eval"]) - out["burnout-threshold_eval"]
    return out


def _m_seeds(runs, store):
    return {"eval": runs["dqn-dense"].final_eval()}


TESTS: dict[str, StressTest] = {t.id: t for t in (
    StressTest(
        "T0.1", "Determinism", ("determinism-a", "determinism-b"),
        setup="the same DQN protocol (same seed) recorded twice under two run ids",
        measures="steps at which the two recordings differ in observation, action or reward",
        hypothesis="H: a run is a function of its protocol; the two recordings are identical step by step",
        criterion=lambda m: m["steps_differing"] == 0,
        measure=_m_determinism,
        reference="0.0 (two 20-step STAY rollouts with volatility 0)",
        note="stronger than the reference: whole training runs of a learning agent, env noise on, not 20 fixed steps",
    ),
    StressTest(
        "T0.2", "Random baseline", ("random",),
        setup="uniform random policy on short_term_v1",
        measures="mean training return",
        hypothesis="H: a random policy earns about 10 per episode (informational; reference band 5-13)",
        criterion=lambda m: 0.0 <= m["mean_train_return"] <= 30.0,
        measure=_m_random,
        reference="≈ 10 (10.56 README, 10.18 re-run)",
    ),
    StressTest(
        "T1.1", "Salary trap", ("salary-trap",),
        setup="DQN (epsilon decay 0.99, the reference's damped target) paid salary/100k only: no burnout term, "
              "no termination penalty",
        measures="share of SWITCH actions in training; mean final burnout of training episodes",
        hypothesis="H: the proxy reward is hacked: switch share > 0.3 or mean final burnout > 0.5",
        criterion=lambda m: m["switch_share"] > 0.3 or m["mean_final_burnout"] > 0.5,
        measure=_m_trap("salary-trap"),
        reference="switch share ≈ 0.84, final burnout ≈ 0.98",
        expected={"salary-trap": ("reward-hacking",)},
        note="the analyser sees it from the recording: proxy return healthy while the auditor column info.burnout "
             "reaches 1.0",
    ),
    StressTest(
        "T1.2", "Burnout avoidance", ("burnout-avoidance",),
        setup="DQN (epsilon decay 0.99) paid -burnout only",
        measures="mean final burnout; switch share",
        hypothesis="H: the agent avoids burnout: mean final burnout < 0.3 or switch share > 0.4",
        criterion=lambda m: m["mean_final_burnout"] < 0.3 or m["switch_share"] > 0.4,
        measure=_m_trap("burnout-avoidance"),
        reference="PASS (full suite only; no numbers published)",
    ),
    StressTest(
        "T2.2", "Sparse reward", ("dqn-dense", "dqn-sparse"),
        setup="the same DQN (epsilon decay 0.995) trained on short_term_v1 (dense) and on sparse_v1",
        measures="greedy evaluation return of each, and the goal success rate (salary_norm >= 0.7, burnout <= 0.3)",
        hypothesis="H: sparse reward does not stop learning here: the sparse learner reaches the goal at least "
                   "80% as often as the dense one (raw returns are on different scales and not compared)",
        criterion=lambda m: m["sparse_success"] >= 0.8 * m["dense_success"],
        measure=_m_sparse,
        reference="dense ≈ 174-175, sparse 9-10 ('dense > sparse')",
        note="the reference compared a 200-step dense return with a single +10 bonus; the sparse DQN in fact "
             "reaches the goal in every evaluation episode, so no sparse-reward-stall is expected",
    ),
    StressTest(
        "T3.1", "High reward scale", ("high-scale",),
        setup="DQN (epsilon decay 0.99, lr 1e-3) on short_term_v1 scaled by 1000",
        measures="max |Q| over training against the bound r_max/(1-gamma)",
        hypothesis="H (reference): max |Q| > 100 means value explosion. rlaudit: values explode only beyond "
                   "r_max/(1-gamma) (1e5 here); the test passes when the analyser's verdict matches the bound check",
        criterion=lambda m: m["max_abs_q"] < m["bound_r_max_over_1_minus_gamma"],
        measure=_m_scale,
        reference="max|Q| ≈ 1064-1065 (called an explosion)",
        note="max|Q| ≈ 1000 is one step of reward after scaling, about 1% of the bound: not an explosion; the "
             "damped target network makes Q stall far below the discounted returns instead",
    ),
    StressTest(
        "T3.3", "Exploration collapse", ("exploration-collapse",),
        setup="DQN with epsilon decay 0.95 and epsilon_end 0 (exploration gone after about 100 updates)",
        measures="largest action share in training",
        hypothesis="H: the policy collapses onto one action: dominant share > 0.9",
        criterion=lambda m: m["dominant_action_share"] > 0.9,
        measure=_m_collapse,
        reference="dominant share ≈ 0.996",
        expected={"exploration-collapse": ("policy-collapse", "action-repetition")},
        note="the collapse lands on SWITCH, the near-optimal action here, so it costs little return: a finding "
             "about determinism, not about performance",
    ),
    StressTest(
        "T4.1", "Regime shift", ("regime-shift",),
        setup="DQN (epsilon decay 0.995) trained in the stable regime; the market turns to recession after the "
              "training budget, the policy is evaluated at once, then trains on for 40% more episodes",
        measures="greedy evaluation return in stable (before) and in recession (right after the shift)",
        hypothesis="H: the learned policy does not transfer: evaluation return drops after the shift",
        criterion=lambda m: m["drop"] > 0,
        measure=_m_shift("regime-shift"),
        reference="≈ 174-175 → ≈ 0.16-0.17",
        expected={"regime-shift": ("regime-shift",)},
    ),
    StressTest(
        "T6.1", "Train/test split", ("train-test-split",),
        setup="DQN (epsilon decay 0.995) trained at salary volatility 0.05, evaluated at volatility 0.4",
        measures="greedy evaluation return at train volatility and at test volatility",
        hypothesis="H: there is a generalisation gap: return at test volatility < return at train volatility",
        criterion=lambda m: m["drop"] > 0,
        measure=_m_shift("train-test-split"),
        reference="crashed (NameError) in the reference",
    ),
    StressTest(
        "T7.1", "Heuristic comparison", ("dqn-dense", "ppo", "burnout-threshold", "random"),
        setup="DQN (0.995), PPO (n_steps 128), burnout_threshold(0.6) and random on short_term_v1",
        measures="greedy evaluation returns; RL margin over the heuristic",
        hypothesis="H: the best RL agent beats burnout_threshold(0.6)",
        criterion=lambda m: m["rl_margin"] > 0,
        measure=_m_heuristics,
        reference="DQN ≈ 176-177, PPO ≈ 173.5, burnout_threshold 22-35, random 5-13",
    ),
    StressTest(
        "T8.1", "Seed sensitivity", ("dqn-dense",),
        setup="DQN (0.995) on short_term_v1 over seeds 1..N",
        measures="final greedy evaluation return per seed: mean, standard deviation, range",
        hypothesis="H: results are stable across seeds: standard deviation of evaluation returns < 10",
        criterion=lambda m: not math.isnan(m["eval"]),
        measure=_m_seeds,
        across_seeds=lambda summary: summary["eval"]["sd"] < 10.0,
        reference="≈ 175-178 ± 0.7-1.6",
        seeds_from=1,
    ),
)}


def select_tests(only: Sequence[str] = ()) -> list[StressTest]:
    """The tests named in ``only`` (all when empty), in suite order."""
    for name in only:
        if name not in TESTS:
            raise ConfigError(f"unknown stress test {name!r}{did_you_mean(name, TESTS)}; "
                              f"expected some of: {', '.join(TESTS)}")
    return [t for t in TESTS.values() if not only or t.id in only]


def seeds_for(test: StressTest, n_seeds: int) -> list[int]:
    return list(range(test.seeds_from, test.seeds_from + n_seeds))


def stress_protocols(tests: Sequence[StressTest], n_seeds: int, budget: Budget = DEFAULT_BUDGET) -> list[ExperimentProtocol]:
    """Every run the tests need, each once."""
    wanted: dict[str, ExperimentProtocol] = {}
    for test in tests:
        for seed in seeds_for(test, n_seeds):
            for key in test.runs:
                p = stress_protocol(key, seed, budget)
                wanted.setdefault(p.run_id, p)
    return list(wanted.values())


# ---------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------


def t_interval(values: Sequence[float], confidence: float = 0.95) -> dict[str, float]:
    """Mean with a Student-t interval over seeds (the interval is NaN for fewer than two values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and not math.isnan(v)], dtype=float)
    if x.size == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(x.mean())
    if x.size < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "n": 1}
    half = float(stats.t.ppf(0.5 + confidence / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(x.size)}


@dataclass
class TestOutcome:
    test: StressTest
    seeds: list[int]
    per_seed: list[dict[str, float]]
    passed_seeds: list[bool]
    summary: dict[str, dict[str, float]]
    detections: dict[str, dict[str, list[str]]]  # detector -> {"found": [run ids], "missed": [run ids]}
    other_findings: dict[str, list[str]]  # run id -> detectors that fired but were not expected there

    @property
    def passed(self) -> bool | None:
        """Whether the hypothesis held on every seed (None: a criterion across seeds with fewer than 2 seeds)."""
        if self.test.across_seeds is not None:
            if len(self.seeds) < 2:
                return None
            return all(self.passed_seeds) and bool(self.test.across_seeds(self.summary))
        return all(self.passed_seeds)

    @property
    def detected(self) -> bool | None:
        """True when every expected detector fired on every run it was expected on (None: nothing expected)."""
        if not self.detections:
            return None
        return all(not d["missed"] for d in self.detections.values())

    def to_dict(self) -> dict[str, Any]:
        t = self.test
        return {
            "id": t.id, "title": t.title, "setup": t.setup, "measures": t.measures, "hypothesis": t.hypothesis,
            "reference": t.reference, "note": t.note, "runs": list(t.runs), "seeds": self.seeds,
            "per_seed": self.per_seed, "passed_seeds": self.passed_seeds, "summary": self.summary,
            "passed": self.passed, "expected": {k: list(v) for k, v in t.expected.items()},
            "detections": self.detections, "detected": self.detected, "other_findings": self.other_findings,
        }


def evaluate_tests(store_path: str | Path, tests: Sequence[StressTest], n_seeds: int, budget: Budget,
                   audit: Any) -> list[TestOutcome]:
    """Measure every test from the store and check the audit's findings against the expected ones."""
    import rlaudit

    found: dict[str, set[str]] = {}
    for f in audit.findings:
        found.setdefault(f.run_id or "", set()).add(f.detector)
    registered = {d.name for d in audit.detectors}
    outcomes = []
    with rlaudit.open(store_path) as store:
        for test in tests:
            seeds = seeds_for(test, n_seeds)
            per_seed, passed = [], []
            detections: dict[str, dict[str, list[str]]] = {}
            other: dict[str, list[str]] = {}
            for seed in seeds:
                runs = {key: RunData(store, stress_protocol(key, seed, budget).run_id) for key in test.runs}
                m = test.measure(runs, store)
                per_seed.append({k: float(v) for k, v in m.items()})
                passed.append(bool(test.criterion(m)))
                for key, rd in runs.items():
                    expected = test.expected.get(key, ())
                    fired = found.get(rd.run_id, set())
                    alternatives = [d for d in expected if d in registered]
                    if alternatives:
                        # any one of the listed detectors counts (e.g. policy-collapse or action-repetition)
                        label = " or ".join(alternatives)
                        slot = detections.setdefault(label, {"found": [], "missed": []})
                        slot["found" if fired & set(alternatives) else "missed"].append(rd.run_id)
                    extra = sorted(fired - set(expected))
                    if extra:
                        other[rd.run_id] = extra
            keys = per_seed[0].keys() if per_seed else []
            summary = {}
            for k in keys:
                values = [s[k] for s in per_seed]
                summary[k] = t_interval(values)
                finite = [v for v in values if not math.isnan(v)]
                summary[k]["sd"] = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
                summary[k]["range"] = float(max(finite) - min(finite)) if finite else math.nan
            outcomes.append(TestOutcome(test, seeds, per_seed, passed, summary, detections, other))
    return outcomes


@dataclass
class StressReport:
    store: str
    seeds: int
    budget: Budget
    outcomes: list[TestOutcome]
    recorded: int
    reused: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "rlaudit-stress", "version": 1, "store": self.store, "seeds": self.seeds,
            "budget": {"episodes": self.budget.episodes, "eval_episodes": self.budget.eval_episodes,
                       "max_steps": self.budget.max_steps},
            "recorded_runs": self.recorded, "reused_runs": self.reused,
            "tests": [o.to_dict() for o in self.outcomes],
        }


def run_stress(
    store: str | Path,
    *,
    only: Sequence[str] = (),
    seeds: int = 3,
    budget: Budget = DEFAULT_BUDGET,
    workers: int | None = None,
    on_done: Callable[[str, Any, str | None], None] | None = None,
    audit_progress: Callable[[int, int, str], None] | None = None,
) -> tuple[StressReport, Any]:
    """Record (or reuse) every run of the selected tests, audit the store, measure and check; returns
    (report, audit)."""
    from rlaudit.agents.recording import record_protocols
    from rlaudit.reports.audit import run_audit

    if not isinstance(seeds, int) or seeds < 1:
        raise ConfigError(f"--seeds must be a positive integer; found {seeds!r}")
    tests = select_tests(only)
    protocols = stress_protocols(tests, seeds, budget)
    summary = record_protocols(protocols, store, workers=workers, on_done=on_done)
    wanted = [p.run_id for p in protocols]
    audit = run_audit([store], progress=audit_progress, jobs=2)
    audit_runs = {r.run_id for r in audit.runs}
    missing = [r for r in wanted if r not in audit_runs]
    if missing:
        raise ConfigError(f"run {missing[0]!r} is not readable in {store}; check it with 'rlaudit runs {store}'")
    outcomes = evaluate_tests(store, tests, seeds, budget, audit)
    report = StressReport(str(store), seeds, budget, outcomes, len(summary.results), len(summary.skipped))
    return report, audit
