"""Off-policy estimates of a target policy's value from recorded episodes.

The behaviour policy's log-probability of every taken action (``logp``,
exploration included) turns the recorded episodes into importance-weighted
samples of another policy's return. Two estimators, both self-normalised
and both handling episodes of different lengths (an ended episode is
continued as an absorbing state with reward 0 and its last weight):

* ``wpdis`` (weighted per-decision importance sampling)::

      V = sum_t gamma^t * sum_i w[i, t] r[i, t] / sum_i w[i, t],   w[i, t] = prod_{k<=t} pi_e(a_k|s_k) / pi_b(a_k|s_k)

* ``dr`` (weighted doubly robust, Thomas & Brunskill 2016), with the
  recorded Q(s, .) (the ``q`` column) as the model::

      V = sum_t gamma^t * sum_i [ w~[i, t] (r[i, t] - Q(s, a)) + w~[i, t-1] sum_a pi_e(a|s) Q(s, a) ]

  where w~ are the weights normalised over episodes at each t (w~[i, -1] = 1/n).

The interval is a percentile bootstrap over episodes. The effective sample
size is Kish's ``(sum w)^2 / sum w^2`` over the episodes' full-trajectory
weights. An estimate is **refused** (``refused`` says why; ``value`` is
null) when ``logp`` is missing, when the actions are not discrete, for
``dr`` when ``q`` is missing, and when the effective sample size is below
``max(min_ess, min_ess_fraction * episodes)`` (defaults 10 and 1 %).
docs/replay.md documents the floor and the refusals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from rlaudit.errors import ConfigError, unknown_name

__all__ = ["ESTIMATORS", "MIN_ESS", "MIN_ESS_FRACTION", "OPEResult", "estimate"]

ESTIMATORS = ("wpdis", "dr")
MIN_ESS = 10.0
"""Refuse when the effective sample size is below this many episodes ..."""
MIN_ESS_FRACTION = 0.01
"""... or below this fraction of the episodes used (methods.md §6.1)."""
SUPPORT_FLOOR = 1e-6
"""A behaviour probability below this where the target acts is a support violation."""


@dataclass(frozen=True)
class OPEResult:
    """One off-policy estimate (the ``kind: "ope"`` record of an audit's counterfactuals)."""

    run_id: str
    target: str
    estimator: str
    value: float | None
    low: float | None
    high: float | None
    ess: float | None
    episodes: int
    refused: str | None
    gamma: float | None = None
    phase: str | None = None
    confidence: float = 0.95
    resamples: int = 0
    seed: int = 0
    support_violations: int = 0
    max_weight_share: float | None = None
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "ope",
            "run_id": self.run_id,
            "target": self.target,
            "estimator": self.estimator,
            "value": self.value,
            "low": self.low,
            "high": self.high,
            "ess": self.ess,
            "episodes": self.episodes,
            "refused": self.refused,
            "gamma": self.gamma,
            "phase": self.phase,
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "interval": "percentile bootstrap over episodes",
            "support_violations": self.support_violations,
            "max_weight_share": self.max_weight_share,
            "ess_floor": {"min_ess": MIN_ESS, "min_ess_fraction": MIN_ESS_FRACTION},
            "note": self.note,
        }


def _target_fn(target: Any) -> Callable[[Any], np.ndarray]:
    probs = getattr(target, "action_probabilities", None)
    if callable(probs):
        return probs
    if callable(target):
        return target
    raise ConfigError(
        "the target policy must be a callable obs -> action probabilities, or have action_probabilities(obs); "
        f"found {type(target).__name__}"
    )


def _obs_reader(spec: Mapping[str, Any] | None) -> Callable[[Any], Any]:
    """Recorded observation -> what the target policy is given (numpy array for a Box)."""
    if isinstance(spec, Mapping) and spec.get("type") == "Box" and isinstance(value_shape := spec.get("shape"), list):
        dtype = np.dtype(spec.get("dtype") or "float32")
        shape = tuple(value_shape)

        def read(v):
            if isinstance(v, (bytes, bytearray)):
                return np.frombuffer(bytes(v), dtype=np.uint8).reshape(shape)
            return np.asarray(v, dtype=dtype).reshape(shape)
        return read
    if isinstance(spec, Mapping) and spec.get("type") == "Discrete":
        return int
    return lambda v: v


def estimate(
    store,
    run_id: str,
    target: Any,
    *,
    target_name: str = "target",
    estimator: str = "wpdis",
    phase: str | None = None,
    gamma: float | None = None,
    confidence: float = 0.95,
    resamples: int = 1000,
    seed: int = 0,
    min_ess: float = MIN_ESS,
    min_ess_fraction: float = MIN_ESS_FRACTION,
) -> OPEResult:
    """Estimate the value of ``target`` from the finished episodes of ``run_id``.

    ``target(obs)`` returns the target policy's action probabilities (an
    object with ``action_probabilities(obs)`` works too). ``phase`` limits
    the episodes to ``"train"`` or ``"eval"``; ``gamma`` defaults to the
    run's. Refusals come back as a result with ``refused`` set, never as
    a wrong number.
    """
    if estimator not in ESTIMATORS:
        raise unknown_name("estimator", estimator, ESTIMATORS)
    if run_id not in store.runs:
        raise unknown_name("run", run_id, store.run_ids)
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie in (0, 1); found {confidence!r}")
    if not isinstance(resamples, int) or resamples < 1:
        raise ConfigError(f"resamples must be a positive integer; found {resamples!r}")
    run = store.runs[run_id]
    gamma = run.gamma if gamma is None else float(gamma)
    if gamma is None or not 0 <= gamma <= 1:
        raise ConfigError(
            f"run {run_id!r} needs a discount factor in [0, 1]: its manifest has gamma={run.gamma!r}; pass gamma="
        )
    base = dict(run_id=run_id, target=target_name, estimator=estimator, gamma=gamma, phase=phase,
                confidence=confidence, resamples=resamples, seed=seed)

    def refuse(reason: str, episodes: int = 0, ess: float | None = None, **extra) -> OPEResult:
        return OPEResult(value=None, low=None, high=None, ess=ess, episodes=episodes, refused=reason, **base, **extra)

    spaces = run.manifest.get("spaces") if isinstance(run.manifest.get("spaces"), Mapping) else {}
    action_spec = spaces.get("action") if isinstance(spaces, Mapping) else None
    if isinstance(action_spec, Mapping) and action_spec.get("type") not in (None, "Discrete"):
        return refuse(f"the action space is {action_spec.get('type')}; these estimators need discrete actions")
    if not run.has("logp"):
        return refuse("behaviour log-probabilities are missing: the run has no logp column "
                      "(record logp= with each step, exploration included)")
    if estimator == "dr" and not run.has("q"):
        return refuse("doubly robust needs Q(s, .) of every action: the run has no q column; use wpdis")

    cols = "env_index, episode, t, obs, action, reward, logp, terminated, truncated"
    if estimator == "dr":
        cols += ", q"
    table = store.sql(
        f"SELECT {cols} FROM steps WHERE run_id = $run AND ($phase IS NULL OR phase = $phase) "
        "ORDER BY env_index, episode, t",
        run=run_id, phase=phase,
    ).arrow()
    data = {name: table.column(name).to_pylist() for name in table.column_names}
    n_rows = len(data["episode"])
    if n_rows == 0:
        return refuse(f"run {run_id!r} has no steps" + (f" in phase {phase!r}" if phase else ""))

    # group rows into finished episodes
    keys = list(zip(data["env_index"], data["episode"]))
    bounds: list[tuple[int, int]] = []
    start = 0
    unfinished = 0
    for i in range(1, n_rows + 1):
        if i == n_rows or keys[i] != keys[start]:
            if data["terminated"][i - 1] or data["truncated"][i - 1]:
                bounds.append((start, i))
            else:
                unfinished += 1
            start = i
    if not bounds:
        return refuse("no finished episode to estimate from")
    rows = [j for a, b in bounds for j in range(a, b)]
    missing = sum(1 for j in rows if data["logp"][j] is None or not math.isfinite(data["logp"][j]))
    if missing:
        return refuse(f"behaviour log-probabilities are missing or not finite on {missing} of {len(rows)} steps",
                      episodes=len(bounds))
    if any(data["action"][j] is None for j in rows):
        return refuse("some recorded actions are missing", episodes=len(bounds))

    read_obs = _obs_reader(spaces.get("observation") if isinstance(spaces, Mapping) else None)
    probs_of = _target_fn(target)
    n = len(bounds)
    horizon = max(b - a for a, b in bounds)
    log_ratio = np.full((n, horizon), 0.0)
    rewards = np.zeros((n, horizon))
    alive = np.zeros((n, horizon), dtype=bool)
    q_taken = np.zeros((n, horizon))
    v_target = np.zeros((n, horizon))
    violations = 0
    for i, (a, b) in enumerate(bounds):
        for t, j in enumerate(range(a, b)):
            action = int(data["action"][j])
            p = np.asarray(probs_of(read_obs(data["obs"][j])), dtype=np.float64).reshape(-1)
            if action < 0 or action >= p.size:
                raise ConfigError(f"the target policy gives {p.size} action probabilities; the run took action {action}")
            pe = float(p[action])
            lp = float(data["logp"][j])
            if pe > 0 and math.exp(lp) < SUPPORT_FLOOR:
                violations += 1
            log_ratio[i, t] = (math.log(pe) if pe > 0 else -math.inf) - lp
            rewards[i, t] = float(data["reward"][j])
            alive[i, t] = True
            if estimator == "dr":
                q = data["q"][j]
                if q is None or len(q) != p.size:
                    return refuse(f"doubly robust needs Q(s, .) with {p.size} entries on every step; "
                                  f"episode row {j} has {None if q is None else len(q)}", episodes=n)
                qv = np.asarray(q, dtype=np.float64)
                q_taken[i, t] = qv[action]
                v_target[i, t] = float(p @ qv)
    if not np.isfinite(rewards).all():
        return refuse("some recorded rewards are NaN or infinite", episodes=n)

    # cumulative weights, carried past each episode's end (absorbing state, reward 0)
    log_w = np.cumsum(np.where(alive, log_ratio, 0.0), axis=1)
    with np.errstate(over="ignore"):
        weights = np.exp(log_w)
    final = weights[:, -1]
    total = final.sum()
    ess = float(total**2 / np.sum(final**2)) if total > 0 else 0.0
    share = float(final.max() / total) if total > 0 else None
    floor = max(min_ess, min_ess_fraction * n)
    note = f"{unfinished} unfinished episode(s) left out" if unfinished else None
    if not np.isfinite(weights).all():
        return refuse("importance weights overflow (the target and behaviour policies differ too much)",
                      episodes=n, support_violations=violations, note=note)
    if ess < floor:
        return refuse(
            f"effective sample size {ess:.3g} of {n} episodes is below the floor {floor:.3g} "
            f"(max({min_ess:g}, {min_ess_fraction:g} x episodes)): too few episodes, or the target policy is too far "
            "from the behaviour policy for importance sampling on this data",
            episodes=n, ess=ess, support_violations=violations, max_weight_share=share, note=note)

    discounts = gamma ** np.arange(horizon)
    if estimator == "wpdis":
        num_terms = [(weights * rewards, weights)]
    else:
        prev = np.concatenate([np.ones((n, 1)), weights[:, :-1]], axis=1)
        num_terms = [(weights * (rewards - q_taken), weights), (prev * v_target, prev)]

    def value_of(counts: np.ndarray) -> np.ndarray:
        """Estimates for each row of episode counts (a bootstrap resample; ones for the data itself)."""
        out = np.zeros(counts.shape[0])
        for num, den in num_terms:
            top = counts @ num
            bottom = counts @ den
            with np.errstate(invalid="ignore", divide="ignore"):
                per_t = np.where(bottom > 0, top / np.where(bottom > 0, bottom, 1.0), 0.0)
            out += per_t @ discounts
        return out

    value = float(value_of(np.ones((1, n)))[0])
    rng = np.random.default_rng(seed)
    chunk = max(1, 4_000_000 // n)  # resamples per batch: keeps the count matrix near 32 MB
    boot = np.concatenate([
        value_of(rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, resamples - done)).astype(np.float64))
        for done in range(0, resamples, chunk)
    ])
    alpha = (1 - confidence) / 2
    low, high = (float(x) for x in np.quantile(boot, [alpha, 1 - alpha]))
    if ess < 0.1 * n:
        extra = f"effective sample size {ess:.3g} is under 10 % of the {n} episodes: treat the estimate as unreliable"
        note = extra if note is None else f"{note}; {extra}"
    return OPEResult(value=value, low=low, high=high, ess=ess, episodes=n, refused=None, **base,
                     support_violations=violations, max_weight_share=share, note=note)
