"""Counterfactual replay: re-simulate a recorded episode and branch it with an intervention.

A run's manifest says how to rebuild its environment (``gymnasium.make(env id,
**kwargs)``) and every episode's first row holds the seed it was reset with.
:func:`check_fidelity` resets the rebuilt env with that seed, re-applies the
recorded actions and compares every observation, reward and end flag with the
recording. :func:`replay` does the same up to step ``t`` of an episode and then
branches: each branch (a fixed action at ``t``, a policy from ``t`` on, the
recorded policy from ``t`` on) is rolled out ``rollouts`` times from the same
state, and rollout ``k`` of every branch reseeds the env's generator with the
same seed (common random numbers), so branch differences are paired per
rollout. The result holds the paired differences in return, in each reward
term and in each auditor signal, with t-intervals over the rollouts.

Policies are plain callables ``policy(obs) -> action`` (or objects with
``act(obs, explore) -> (action, info)``); an object with ``reset(seed=...)``
is reseeded with the rollout seed at the start of every rollout, so its own
randomness is common to the branches too. This module never imports the
built-in envs or agents: the command line resolves policy names.

docs/replay.md describes the method, the interval and the verdict rule.
"""

from __future__ import annotations

import copy
import importlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from rlaudit.errors import ConfigError, ReplayError, unknown_name

__all__ = [
    "Branch",
    "Fidelity",
    "RecordedEpisode",
    "ReplayResult",
    "REPLAYABLE_DETECTORS",
    "build_env",
    "check_fidelity",
    "load_episodes",
    "paired_interval",
    "replay",
    "replay_findings",
    "verdict",
    "auditor_goals",
    "as_policy",
    "load_callable",
]

#: Detectors whose findings a counterfactual with an honest baseline can confirm or refute.
REPLAYABLE_DETECTORS = ("reward-hacking", "boundary-exploitation", "state-cycling", "truncation-exploitation")
#: Of those, the ones whose confirmation also needs an auditor signal to improve.
NEEDS_AUDITOR = ("reward-hacking",)

DEFAULT_ROLLOUTS = 16
DEFAULT_CONFIDENCE = 0.95
DEFAULT_ATOL = 1e-5
DEFAULT_RTOL = 1e-5
GOALS = ("min", "max")
"""An auditor signal's goal: lower (``min``) or higher (``max``) is better (manifest ``auditor_goals``)."""
TRUE_REWARD_NAMES = ("true_reward", "true_return", "gold_reward")
"""Auditor columns named like this are ``max`` without a declared goal."""

Policy = Callable[[Any], Any]

#: Keys of a vector env's spec kwargs that ``gymnasium.make_vec`` consumes; a sub-env is made without them.
VECTOR_KWARGS = ("num_envs", "vectorization_mode", "vector_kwargs", "wrappers")


# ---------------------------------------------------------------------------
# Building the environment
# ---------------------------------------------------------------------------


def env_spec_of(manifest: Mapping[str, Any]) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(env id, make kwargs, the rest of the manifest's ``env`` block)."""
    env = manifest.get("env")
    if isinstance(env, str):
        return env, {}, {}
    if not isinstance(env, Mapping):
        return None, {}, {}
    kwargs = env.get("kwargs") or {}
    return env.get("id"), dict(kwargs) if isinstance(kwargs, Mapping) else {}, dict(env)


def build_env(manifest: Mapping[str, Any], env_factory: Callable[[], Any] | None = None):
    """The run's environment, rebuilt with ``gymnasium.make(env id, **kwargs)``.

    An id that Gymnasium does not know is registered from the manifest's
    ``env.entry_point`` (recorded by the wrappers and the career runner) and
    made again; ``env_factory`` (a callable returning an env) overrides all of it.
    """
    if env_factory is not None:
        return env_factory()
    import gymnasium as gym

    env_id, kwargs, meta = env_spec_of(manifest)
    run = manifest.get("run_id")
    if not env_id:
        raise ReplayError(
            f"run {run!r} does not record its env id (manifest env.id is empty); record with "
            "env_id= / the RecordTrajectory wrapper, or pass env_factory= to replay"
        )
    make_kwargs = {k: v for k, v in kwargs.items() if k not in VECTOR_KWARGS}  # one sub-env of a vector run
    make_kwargs.setdefault("disable_env_checker", True)
    steps = meta.get("max_episode_steps")
    if isinstance(steps, int) and "max_episode_steps" not in make_kwargs:
        make_kwargs["max_episode_steps"] = steps
    try:
        return gym.make(env_id, **make_kwargs)
    except (gym.error.NameNotFound, gym.error.NamespaceNotFound, gym.error.VersionNotFound) as exc:
        entry_point = meta.get("entry_point")
        if not (isinstance(entry_point, str) and ":" in entry_point):
            raise ReplayError(
                f"env {env_id!r} of run {run!r} is not registered with Gymnasium ({exc}) and the manifest "
                "has no entry_point; import the package that registers it, or pass env_factory="
            ) from None
        try:
            gym.register(id=env_id, entry_point=entry_point)
            return gym.make(env_id, **make_kwargs)
        except Exception as inner:
            raise ReplayError(
                f"env {env_id!r} of run {run!r} could not be built from entry point {entry_point!r}: "
                f"{type(inner).__name__}: {inner}"
            ) from None
    except Exception as exc:
        raise ReplayError(
            f"env {env_id!r} of run {run!r} could not be built with kwargs {kwargs!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from None


# ---------------------------------------------------------------------------
# Recorded episodes
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedEpisode:
    """The rows of one recorded episode, in step order."""

    run_id: str
    env_index: int
    episode: int
    phase: str
    reset_seed: int | None
    global_steps: tuple[int, ...]
    observations: tuple[Any, ...]
    actions: tuple[Any, ...]
    rewards: tuple[float, ...]
    terminated: tuple[bool, ...]
    truncated: tuple[bool, ...]
    final_obs: Any
    policy_versions: tuple[int | None, ...] = ()

    @property
    def length(self) -> int:
        return len(self.actions)


def load_episodes(store, run_id: str, env_index: int, first: int, last: int) -> list[RecordedEpisode]:
    """Episodes ``first..last`` of ``(run_id, env_index)`` from ``store``."""
    available = set(store.step_columns)
    for needed in ("obs", "action"):
        if needed not in available:
            raise ReplayError(f"run {run_id!r} has no {needed} column; replay needs observations and actions")
    cols = ["episode", "t", "global_step", "CAST(phase AS VARCHAR) AS phase", "obs", "action", "reward",
            "terminated", "truncated"]
    cols += [c for c in ("final_obs", "reset_seed", "policy_version") if c in available]
    version = "policy_version" in available
    table = store.sql(
        f"SELECT {', '.join(cols)} FROM steps WHERE run_id = $run AND env_index = $env "
        "AND episode BETWEEN $first AND $last ORDER BY episode, t",
        run=run_id, env=int(env_index), first=int(first), last=int(last),
    ).arrow()
    data = {name: table.column(name).to_pylist() for name in table.column_names}
    episodes: list[RecordedEpisode] = []
    rows = len(data["episode"])
    start = 0
    while start < rows:
        ep = data["episode"][start]
        end = start
        while end < rows and data["episode"][end] == ep:
            end += 1
        sl = slice(start, end)
        final = data.get("final_obs", [None] * rows)[end - 1]
        seed = data.get("reset_seed", [None] * rows)[start] if data["t"][start] == 0 else None
        episodes.append(RecordedEpisode(
            run_id=run_id, env_index=int(env_index), episode=int(ep), phase=str(data["phase"][start]),
            reset_seed=None if seed is None else int(seed),
            global_steps=tuple(int(g) for g in data["global_step"][sl]),
            observations=tuple(data["obs"][sl]),
            actions=tuple(data["action"][sl]),
            rewards=tuple(float(r) for r in data["reward"][sl]),
            terminated=tuple(bool(x) for x in data["terminated"][sl]),
            truncated=tuple(bool(x) for x in data["truncated"][sl]),
            final_obs=final,
            policy_versions=tuple(data["policy_version"][sl]) if version else (),
        ))
        start = end
    return episodes


def _check_run(store, run_id: str) -> Mapping[str, Any]:
    if run_id not in store.runs:
        raise unknown_name("run", run_id, store.run_ids)
    return store.runs[run_id].manifest


def _seeded_chain(store, run_id: str, episode: int, env_index: int) -> list[RecordedEpisode]:
    """Episode ``episode`` and the episodes before it back to the last one reset with a seed.

    An episode reset without a seed continues the env's generator from the
    previous episode, so it is replayed by replaying its predecessors first.
    """
    seed_col = "reset_seed" if "reset_seed" in store.step_columns else "CAST(NULL AS BIGINT)"
    row = store.sql(
        f"SELECT max(episode) FILTER (WHERE {seed_col} IS NOT NULL AND t = 0 AND episode <= $ep), "
        "bool_or(episode = $ep) FROM steps WHERE run_id = $run AND env_index = $env",
        run=run_id, env=int(env_index), ep=int(episode),
    ).one()
    seeded, exists = row if row is not None else (None, None)
    if not exists:
        raise ConfigError(f"run {run_id!r} has no episode {episode} in env_index {env_index}")
    if seeded is None:
        raise ReplayError(
            f"episode {episode} of run {run_id!r} (env_index {env_index}) is not replayable: neither it nor an "
            "earlier episode was reset with a recorded seed; call env.reset(seed=...) and pass the seed to the recorder"
        )
    chain = load_episodes(store, run_id, env_index, int(seeded), int(episode))
    if not chain or chain[-1].episode != episode:
        raise ConfigError(f"run {run_id!r} has no episode {episode} in env_index {env_index}")
    for prev, nxt in zip(chain, chain[1:]):
        if nxt.episode != prev.episode + 1:
            raise ReplayError(
                f"episode {prev.episode + 1} of run {run_id!r} is missing from the store; episodes after it "
                "cannot be replayed from the earlier seed"
            )
    return chain


# ---------------------------------------------------------------------------
# Observations, actions, comparison
# ---------------------------------------------------------------------------


def _flatten(value: Any, out: list[np.ndarray], env_side: bool) -> None:
    if value is None:
        out.append(np.array([np.nan]))
    elif isinstance(value, Mapping):
        for key in sorted(value, key=str):
            _flatten(value[key], out, env_side)
    elif isinstance(value, tuple):
        _flatten({str(i): v for i, v in enumerate(value)}, out, env_side)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        out.append(np.frombuffer(bytes(value), dtype=np.uint8).astype(np.float64))
    else:
        arr = np.asarray(value)
        if env_side and arr.dtype.kind == "f":
            arr = arr.astype(np.float32)  # the recorder stores float observations as float32
        out.append(arr.astype(np.float64).ravel())


def flat_obs(value: Any, env_side: bool = False) -> np.ndarray:
    """An observation (env output or recorded value) as one float64 vector, dict keys sorted."""
    parts: list[np.ndarray] = []
    _flatten(value, parts, env_side)
    return np.concatenate(parts) if parts else np.zeros(0)


def _to_action(value: Any, space: Any) -> Any:
    """A recorded action as the env's action space expects it."""
    from gymnasium import spaces as S

    if isinstance(space, S.Discrete):
        return int(value)
    if isinstance(space, S.Dict):
        return {k: _to_action(value[k], sub) for k, sub in space.spaces.items()}
    if isinstance(space, S.Tuple):
        return tuple(_to_action(value[str(i)] if isinstance(value, Mapping) else value[i], sub)
                     for i, sub in enumerate(space.spaces))
    if isinstance(space, (S.Box, S.MultiDiscrete, S.MultiBinary)):
        return np.asarray(value, dtype=space.dtype).reshape(space.shape)
    return value


@dataclass(frozen=True)
class Fidelity:
    """How well re-applying the recorded actions reproduced the recording."""

    replayable: bool
    checked_steps: int
    max_abs_obs_error: float
    reason: str | None = None
    max_abs_reward_error: float = 0.0
    first_mismatch: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "replayable": self.replayable,
            "checked_steps": self.checked_steps,
            "max_abs_obs_error": self.max_abs_obs_error,
            "max_abs_reward_error": self.max_abs_reward_error,
            "first_mismatch": None if self.first_mismatch is None else dict(self.first_mismatch),
            "reason": self.reason,
        }


class _Checker:
    """Compares replayed observations and rewards with the recording, step by step."""

    def __init__(self, atol: float, rtol: float):
        self.atol, self.rtol = atol, rtol
        self.steps = 0
        self.obs_error = 0.0
        self.reward_error = 0.0
        self.mismatch: dict[str, Any] | None = None

    def _fail(self, what: str, ep: RecordedEpisode, t: int, detail: str) -> None:
        if self.mismatch is None:
            self.mismatch = {"what": what, "episode": ep.episode, "t": t, "detail": detail}

    def obs(self, replayed: Any, recorded: Any, ep: RecordedEpisode, t: int) -> None:
        if recorded is None:
            return  # the recorder did not store it; nothing to compare
        a, b = flat_obs(replayed, env_side=True), flat_obs(recorded)
        if a.shape != b.shape:
            self._fail("obs", ep, t, f"observation has {a.size} values, the recording {b.size}")
            self.obs_error = math.inf
            return
        if a.size == 0:
            return
        err = np.abs(a - b)
        worst = float(np.max(err)) if not np.isnan(err).all() else 0.0
        nan_mismatch = bool(np.any(np.isnan(a) != np.isnan(b)))
        self.obs_error = max(self.obs_error, worst if not nan_mismatch else math.inf)
        if nan_mismatch or np.any(err > self.atol + self.rtol * np.abs(b)):
            self._fail("obs", ep, t, f"max abs error {worst:.3g}")

    def reward(self, replayed: float, ep: RecordedEpisode, t: int) -> None:
        recorded = ep.rewards[t]
        replayed = float(replayed)
        if math.isnan(recorded) and math.isnan(replayed):
            return
        err = abs(replayed - recorded)
        self.reward_error = max(self.reward_error, err)
        if not err <= self.atol + self.rtol * abs(recorded):
            self._fail("reward", ep, t, f"reward {replayed!r}, recorded {recorded!r}")

    def flags(self, terminated: bool, truncated: bool, ep: RecordedEpisode, t: int) -> None:
        if bool(terminated) != ep.terminated[t] or bool(truncated) != ep.truncated[t]:
            self._fail("end", ep, t, f"terminated={bool(terminated)}, truncated={bool(truncated)}; recorded "
                       f"terminated={ep.terminated[t]}, truncated={ep.truncated[t]}")

    def fidelity(self, run_id: str, manifest: Mapping[str, Any] | None = None) -> Fidelity:
        reason = None
        if self.mismatch is not None:
            m = self.mismatch
            reason = (
                f"replay of run {run_id!r} diverges from the recording at episode {m['episode']}, t={m['t']} "
                f"({m['what']}: {m['detail']}): the env is not a function of the recorded seed and actions "
                "(unseeded randomness, changed dynamics, kwargs or version)"
            )
            _, kwargs, _ = env_spec_of(manifest or {})
            if kwargs.get("vectorization_mode") == "vector_entry_point":
                reason += ("; this run used a natively vectorised env (vectorization_mode='vector_entry_point'), "
                           "whose sub-environments are not single envs seeded seed + i: record with "
                           "vectorization_mode='sync' or 'async' to replay")
        return Fidelity(
            replayable=self.mismatch is None,
            checked_steps=self.steps,
            max_abs_obs_error=self.obs_error,
            reason=reason,
            max_abs_reward_error=self.reward_error,
            first_mismatch=self.mismatch,
        )


def _fork(env: Any) -> Any | None:
    """A deep copy of the env's whole state, or None when it cannot be copied."""
    try:
        return copy.deepcopy(env)
    except Exception:
        return None


def _replay_chain(env: Any, chain: Sequence[RecordedEpisode], branch_t: int | None, checker: _Checker,
                  stop_at_branch: bool = False) -> tuple[Any | None, Any]:
    """Reset and step ``env`` through the recorded chain, checking every step.

    Returns a fork of the env taken just before step ``branch_t`` of the last
    episode (None when ``branch_t`` is None, or the env cannot be copied) and
    the observation the env gave there; with ``stop_at_branch`` the env
    itself, stopped there.
    """
    space = env.action_space
    fork = fork_obs = None
    for i, ep in enumerate(chain):
        seed = ep.reset_seed if i == 0 or ep.reset_seed is not None else None
        obs, _ = env.reset(seed=seed)
        last = i == len(chain) - 1
        checker.obs(obs, ep.observations[0] if ep.length else None, ep, 0)
        for t in range(ep.length):
            if last and branch_t == t:
                if stop_at_branch:
                    return env, obs  # the env itself, at the branch point
                fork, fork_obs = _fork(env), obs
            action = ep.actions[t]
            if action is None:
                checker._fail("action", ep, t, "the recorded action is missing")
                return fork, fork_obs
            obs, reward, terminated, truncated, _ = env.step(_to_action(action, space))
            checker.steps += 1
            checker.reward(reward, ep, t)
            checker.flags(terminated, truncated, ep, t)
            nxt = ep.observations[t + 1] if t + 1 < ep.length else ep.final_obs
            checker.obs(obs, nxt, ep, t + 1)
            if checker.mismatch is not None:
                return fork, fork_obs
            if (terminated or truncated) and t + 1 < ep.length:
                return fork, fork_obs
    return fork, fork_obs


def check_fidelity(store, run_id: str, episode: int, *, env_index: int = 0, until: int | None = None,
                   env_factory: Callable[[], Any] | None = None, atol: float = DEFAULT_ATOL,
                   rtol: float = DEFAULT_RTOL) -> Fidelity:
    """Re-apply the recorded actions of an episode (up to step ``until``) and compare.

    Returns a :class:`Fidelity` (``replayable`` False with the first mismatch
    when the replay diverges); raises :class:`~rlaudit.errors.ReplayError`
    when the episode cannot be replayed at all (no seed, env not buildable).
    """
    manifest = _check_run(store, run_id)
    chain = _seeded_chain(store, run_id, episode, env_index)
    if until is not None:
        last = chain[-1]
        chain = [*chain[:-1], _truncate(last, until)]
    env = build_env(manifest, env_factory)
    try:
        checker = _Checker(atol, rtol)
        _replay_chain(env, chain, None, checker)
        return checker.fidelity(run_id, manifest)
    finally:
        _close(env)


def _truncate(ep: RecordedEpisode, n: int) -> RecordedEpisode:
    n = max(0, min(int(n), ep.length))
    nxt = ep.observations[n] if n < ep.length else ep.final_obs
    return RecordedEpisode(
        run_id=ep.run_id, env_index=ep.env_index, episode=ep.episode, phase=ep.phase, reset_seed=ep.reset_seed,
        global_steps=ep.global_steps[:n], observations=ep.observations[:n], actions=ep.actions[:n],
        rewards=ep.rewards[:n], terminated=ep.terminated[:n], truncated=ep.truncated[:n], final_obs=nxt,
        policy_versions=ep.policy_versions[:n],
    )


def _close(env: Any) -> None:
    try:
        env.close()
    except Exception:
        pass


# ---------------------------------------------------------------------------
# Policies and branches
# ---------------------------------------------------------------------------


def as_policy(policy: Any) -> tuple[Callable[[Any], Any], Callable[[int], None] | None]:
    """(act(obs) -> action, reseed(seed) or None) for a callable or an agent-like object."""
    act = getattr(policy, "act", None)
    if callable(act):
        def step(obs, _act=act):
            return _act(obs, explore=False)[0]
    elif callable(policy):
        step = policy
    else:
        raise ConfigError(
            f"a policy must be a callable policy(obs) -> action or have act(obs, explore); found {type(policy).__name__}"
        )
    reset = getattr(policy, "reset", None)
    reseed = None
    if callable(reset):
        def reseed(seed: int, _reset=reset) -> None:
            _reset(seed=seed)
    return step, reseed


def load_callable(spec: str) -> Any:
    """``package.module:attribute`` imported, for policies named on the command line."""
    module, sep, attr = spec.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"expected a policy as module:attribute (e.g. mypkg.policies:greedy); found {spec!r}")
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"cannot load policy {spec!r}: {type(exc).__name__}: {exc}") from None
    return obj


@dataclass(frozen=True)
class Branch:
    """One way to continue from the branch point.

    ``action`` (if not None) is taken at the branch step; ``policy`` chooses
    every later action (and the first one when ``action`` is None).
    """

    name: str
    policy: Any = None
    action: Any = None

    @classmethod
    def of_policy(cls, name: str, policy: Any) -> "Branch":
        return cls(f"policy={name}", policy=policy)

    @classmethod
    def of_action(cls, action: Any, then: Any = None) -> "Branch":
        return cls(f"action={action}", policy=then, action=action)


# ---------------------------------------------------------------------------
# Rollouts and paired differences
# ---------------------------------------------------------------------------


def _info_value(info: Mapping[str, Any], dotted: str) -> float | None:
    value: Any = info.get(dotted) if dotted in info else None
    if value is None and "." in dotted:
        value = info
        for part in dotted.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    if isinstance(value, np.ndarray) and value.size == 1:
        return float(value.reshape(-1)[0])
    return None


@dataclass(frozen=True)
class _Signals:
    """Which quantities a rollout reports, from the run's manifest."""

    term_prefix: str | None
    info_fields: tuple[str, ...]

    @classmethod
    def of(cls, manifest: Mapping[str, Any], extra: Iterable[str] = ()) -> "_Signals":
        recorder = manifest.get("recorder") if isinstance(manifest.get("recorder"), Mapping) else {}
        prefix = recorder.get("info_prefix") or None
        fields: list[str] = []
        for col in [*(manifest.get("auditor_columns") or []), *extra]:
            if isinstance(col, str) and col.startswith("info.") and col[5:] not in fields:
                fields.append(col[5:])
        return cls(prefix, tuple(fields))


def _rollout(env: Any, first_obs: Any, branch: Branch, step_policy, horizon: int | None,
             signals: _Signals) -> dict[str, float]:
    """Run one branch from the env's current state: its return, reward-term sums,
    auditor ``info`` fields at its last step, and its length."""
    step = env.step
    obs = first_obs
    total = 0.0
    terms: dict[str, float] = {}
    term_keys: list[tuple[str, str]] | None = None
    info: Mapping[str, Any] = {}
    n = 0
    prefix = signals.term_prefix
    limit = math.inf if horizon is None else horizon
    while n < limit:
        if n == 0 and branch.action is not None:
            action = _to_action(branch.action, env.action_space)
        else:
            action = step_policy(obs)
        obs, reward, terminated, truncated, info = step(action)
        n += 1
        total += reward
        if prefix:
            if term_keys is None:
                term_keys = [(k, "reward_" + k[len(prefix):]) for k in info if k.startswith(prefix)]
                terms = {name: 0.0 for _, name in term_keys}
            for key, name in term_keys:
                value = info.get(key)
                if value is not None:
                    terms[name] += value
        if terminated or truncated:
            break
    out = {"return": float(total), "length": float(n)}
    out.update((k, float(v)) for k, v in terms.items())
    for fieldname in signals.info_fields:
        v = _info_value(info, fieldname)
        if v is not None:
            out["info." + fieldname] = v
    return out


def paired_interval(differences: Sequence[float], confidence: float = DEFAULT_CONFIDENCE) -> dict[str, float]:
    """Mean of paired differences with a two-sided Student t-interval over the rollouts."""
    d = np.asarray(differences, dtype=np.float64)
    n = int(d.size)
    if n == 0:
        return {"mean": math.nan, "low": math.nan, "high": math.nan, "n": 0}
    mean = float(d.mean())
    if n == 1:
        return {"mean": mean, "low": -math.inf, "high": math.inf, "n": 1}
    sd = float(d.std(ddof=1))
    from scipy.special import stdtrit  # Student t quantile (lighter to import than scipy.stats)

    half = float(stdtrit(n - 1, 0.5 + confidence / 2)) * sd / math.sqrt(n)
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n}


def rollout_seeds(seed: int, rollouts: int) -> list[int]:
    """The rollout seeds: ``rollouts`` words from ``numpy.random.SeedSequence(seed)``."""
    return [int(s) for s in np.random.SeedSequence(int(seed)).generate_state(rollouts, dtype=np.uint32)]


@dataclass(frozen=True)
class ReplayResult:
    """One branch against its reference branch at one branch point (the ``kind: "replay"`` record)."""

    run_id: str
    env_index: int
    episode: int
    t: int
    global_step: int
    branch: str
    against: str
    rollouts: int
    horizon: int | None
    fidelity: Fidelity
    differences: tuple[Mapping[str, Any], ...]
    values: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    finding: Mapping[str, str] | None = None
    verdict: str | None = None
    note: str | None = None
    confidence: float = DEFAULT_CONFIDENCE
    seed: int = 0

    def difference(self, signal: str) -> Mapping[str, Any] | None:
        for d in self.differences:
            if d["signal"] == signal:
                return d
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": "replay",
            "run_id": self.run_id,
            "env_index": self.env_index,
            "episode": self.episode,
            "t": self.t,
            "global_step": self.global_step,
            "branch": self.branch,
            "against": self.against,
            "rollouts": self.rollouts,
            "horizon": self.horizon,
            "seed": self.seed,
            "confidence": self.confidence,
            "interval": "student-t over rollouts",
            "finding": None if self.finding is None else dict(self.finding),
            "fidelity": self.fidelity.to_dict(),
            "differences": [dict(d) for d in self.differences],
            "values": {k: dict(v) for k, v in self.values.items()},
            "verdict": self.verdict,
            "note": self.note,
        }


def _reseed_env(env: Any, seed: int) -> None:
    """Common random numbers: the same generator state in every branch of rollout ``seed``."""
    env.unwrapped.np_random = np.random.default_rng(seed)


def replay(
    store,
    run_id: str,
    episode: int,
    t: int = 0,
    *,
    branches: Sequence[Branch],
    recorded_policy: Any = None,
    against: str = "recorded",
    env_index: int = 0,
    rollouts: int = DEFAULT_ROLLOUTS,
    seed: int = 0,
    horizon: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    signals: Iterable[str] = (),
    env_factory: Callable[[], Any] | None = None,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
) -> list[ReplayResult]:
    """Branch episode ``episode`` of ``run_id`` at step ``t``; one result per branch.

    The episode is replayed from its recorded seed with the recorded actions
    (fidelity checked over the whole episode); the env state before step
    ``t`` is the branch point. ``against`` is ``"recorded"`` (the recorded
    policy from ``t`` on, given as ``recorded_policy``) or the name of one of
    ``branches``; every other branch is compared with it. Each of the
    ``rollouts`` rollouts reseeds the env's generator with the same seed in
    every branch (common random numbers). A run that does not replay
    faithfully raises :class:`~rlaudit.errors.ReplayError` with the reason.
    """
    if not isinstance(rollouts, int) or rollouts < 1:
        raise ConfigError(f"rollouts must be a positive integer; found {rollouts!r}")
    if horizon is not None and (not isinstance(horizon, int) or horizon < 1):
        raise ConfigError(f"horizon must be a positive number of steps or None; found {horizon!r}")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence must lie in (0, 1); found {confidence!r}")
    if not branches:
        raise ConfigError("replay needs at least one branch (an action or a policy)")
    manifest = _check_run(store, run_id)
    chain = _seeded_chain(store, run_id, episode, env_index)
    target = chain[-1]
    if not isinstance(t, int) or not 0 <= t < max(target.length, 1) or target.length == 0:
        raise ConfigError(
            f"step t must lie in [0, {target.length - 1}] for episode {episode} of run {run_id!r} "
            f"({target.length} steps); found {t!r}"
        )
    all_branches = list(branches)
    names = [b.name for b in all_branches]
    if len(set(names)) != len(names):
        raise ConfigError(f"branch names must differ; found {names}")
    if against == "recorded":
        if recorded_policy is None:
            raise ReplayError(
                f"the recorded policy of run {run_id!r} is not available to roll out from step {t}; "
                "give recorded_policy=, or compare two branches with against=<branch name>"
            )
        all_branches.insert(0, Branch("recorded", policy=recorded_policy))
    elif against not in names:
        raise ConfigError(f"against must be 'recorded' or one of the branches {names}; found {against!r}")
    for b in all_branches:
        if b.policy is None and (horizon != 1 or b.action is None):
            raise ConfigError(
                f"branch {b.name!r} takes one action and then needs a policy to continue with; "
                "give one (then=...) or set horizon=1"
            )

    env = build_env(manifest, env_factory)
    observation_space = env.observation_space
    try:
        checker = _Checker(atol, rtol)
        base, obs_at_t = _replay_chain(env, chain, t, checker)
        fidelity = checker.fidelity(run_id, manifest)
        if not fidelity.replayable:
            raise ReplayError(fidelity.reason)

        def fresh():  # for an env that cannot be copied: rebuild it and replay the prefix again
            e = build_env(manifest, env_factory)
            at_branch, _ = _replay_chain(e, chain, t, _Checker(atol, rtol), stop_at_branch=True)
            if at_branch is None:
                _close(e)
            return at_branch
        sig = _Signals.of(manifest, signals)
        seeds = rollout_seeds(seed, rollouts)
        stepped = {b.name: (as_policy(b.policy) if b.policy is not None else (None, None)) for b in all_branches}
        totals: dict[str, list[dict[str, float]]] = {b.name: [] for b in all_branches}
        for k in seeds:
            for b in all_branches:
                start = _fork(base) if base is not None else fresh()
                if start is None:
                    raise ReplayError(f"the env of run {run_id!r} cannot be copied or rebuilt at step {t}")
                _reseed_env(start, k)
                step_policy, reseed = stepped[b.name]
                if reseed is not None:
                    reseed(k)
                first = copy.deepcopy(obs_at_t)
                try:
                    totals[b.name].append(_rollout(start, first, b, step_policy, horizon, sig))
                finally:
                    _close(start)
    finally:
        _close(env)

    ref = "recorded" if against == "recorded" else against
    values = {name: _means(rows) for name, rows in totals.items()}
    gs = target.global_steps[t]
    results = []
    notes = None
    if against == "recorded":
        notes = _policy_note(recorded_policy, target, t, observation_space)
    for b in all_branches:
        if b.name == ref:
            continue
        diffs = _differences(totals[b.name], totals[ref], confidence)
        results.append(ReplayResult(
            run_id=run_id, env_index=int(env_index), episode=int(episode), t=int(t), global_step=int(gs),
            branch=b.name, against=ref, rollouts=rollouts, horizon=horizon, fidelity=fidelity,
            differences=tuple(diffs), values={ref: values[ref], b.name: values[b.name]},
            note=notes, confidence=confidence, seed=int(seed),
        ))
    return results


def _means(rows: list[dict[str, float]]) -> dict[str, float]:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    return {k: float(np.mean([r[k] for r in rows if k in r])) for k in keys}


def _differences(branch: list[dict[str, float]], ref: list[dict[str, float]], confidence: float) -> list[dict]:
    keys: list[str] = []
    for r in [*branch, *ref]:
        keys += [k for k in r if k not in keys]
    order = ["return"] + sorted(k for k in keys if k.startswith("reward_")) + \
        sorted(k for k in keys if k.startswith("info.")) + ["length"]
    out = []
    for key in order:
        if key not in keys:
            continue
        d = [b[key] - r[key] for b, r in zip(branch, ref) if key in b and key in r]
        out.append({"signal": key, **paired_interval(d, confidence)})
    return out


def _recorded_obs(value: Any, space: Any) -> Any:
    """A recorded observation in the form the env returns it (for policies)."""
    from gymnasium import spaces as S

    if value is None:
        return None
    if isinstance(space, S.Dict):
        return {k: _recorded_obs(value.get(k), sub) for k, sub in space.spaces.items()}
    if isinstance(space, S.Tuple):
        return tuple(_recorded_obs(value.get(str(i)), sub) for i, sub in enumerate(space.spaces))
    if isinstance(space, S.Discrete):
        return int(value)
    if isinstance(space, S.Box) and isinstance(value, (bytes, bytearray)):
        return np.frombuffer(bytes(value), dtype=np.uint8).reshape(space.shape)
    if isinstance(space, (S.Box, S.MultiDiscrete, S.MultiBinary)):
        return np.asarray(value, dtype=space.dtype).reshape(space.shape)
    return value


def _policy_note(policy: Any, ep: RecordedEpisode, t: int, space: Any) -> str | None:
    """How often the recorded policy, as given, picks the recorded action on this episode's observations.

    Below 100 % the "recorded" branch is not exactly what acted: the
    recording explored, or the policy changed since (a later checkpoint).
    """
    step, reseed = as_policy(policy)
    if reseed is not None:
        reseed(0)
    same = total = 0
    for obs, action in zip(ep.observations, ep.actions):
        if obs is None or action is None:
            continue
        chosen = step(_recorded_obs(obs, space))
        total += 1
        same += bool(np.array_equal(flat_obs(chosen), flat_obs(action)))
    if not total:
        return None
    text = (f"the recorded policy as rolled out picks the recorded action at {same}/{total} steps "
            "of the recorded episode")
    if same < total:
        text += " (the recording explored, or the policy changed since)"
    versions = [v for v in ep.policy_versions if v is not None]
    if versions and t < len(ep.policy_versions) and ep.policy_versions[t] is not None:
        text += f"; policy_version at the branch step: {ep.policy_versions[t]}"
    return text


# ---------------------------------------------------------------------------
# Verdicts and batch replay of detector findings
# ---------------------------------------------------------------------------


def verdict(result: ReplayResult, detector: str, goals: Mapping[str, str]) -> tuple[str, str]:
    """(verdict, note) for a baseline branch against the recorded policy at a flagged step.

    Differences are baseline minus recorded. ``better(s)``: the interval of
    auditor signal ``s`` lies entirely on its goal's side of 0.

    * confirmed: the return interval lies below 0 (the flagged behaviour earns
      proxy reward the honest baseline does not) and, for ``reward-hacking``,
      some auditor signal is better under the baseline;
    * refuted: the return interval lies at or above 0 (the behaviour earns
      nothing over honest play), or every auditor signal with a goal is
      significantly worse under the baseline;
    * inconclusive: otherwise (intervals straddle 0, or no auditor signal
      has a goal when one is needed).
    """
    ret = result.difference("return")
    if ret is None or ret["n"] < 2:
        return "inconclusive", "fewer than two rollouts: no interval"
    better, worse = [], []
    for d in result.differences:
        goal = goals.get(d["signal"])
        if goal not in GOALS:
            continue
        sign = -1.0 if goal == "min" else 1.0
        lo, hi = sorted((sign * d["low"], sign * d["high"]))
        if lo > 0:
            better.append(d["signal"])
        elif hi < 0:
            worse.append(d["signal"])
    with_goal = [s for s in (d["signal"] for d in result.differences) if goals.get(s) in GOALS]
    drop = ret["high"] < 0
    parts = [f"return {ret['mean']:+.4g} [{ret['low']:.4g}, {ret['high']:.4g}] under {result.branch}"]
    if better:
        parts.append("better auditor signals: " + ", ".join(better))
    if worse:
        parts.append("worse auditor signals: " + ", ".join(worse))
    needs_auditor = detector in NEEDS_AUDITOR
    if needs_auditor and not with_goal:
        parts.append("no auditor signal has a goal (manifest auditor_goals: min or max), so the true outcome "
                     "cannot be judged")
    if drop and (better or not needs_auditor):
        return "confirmed", "; ".join(parts)
    if ret["low"] >= 0:
        parts.append("the baseline earns at least as much proxy return from here, so the reward does not pay "
                     "for the flagged behaviour")
        return "refuted", "; ".join(parts)
    if with_goal and len(worse) == len(with_goal):
        parts.append("every auditor signal is worse under the baseline")
        return "refuted", "; ".join(parts)
    return "inconclusive", "; ".join(parts)


def _get(finding: Any, key: str) -> Any:
    if isinstance(finding, Mapping):
        return finding.get(key)
    return getattr(finding, key, None)


def branch_point(store, finding: Any) -> tuple[int, int, int]:
    """(env_index, episode, t) where a finding's span starts."""
    run_id = _get(finding, "run_id")
    env_index = _get(finding, "env_index")
    step = _get(finding, "step_start")
    if step is not None:
        row = store.sql(
            "SELECT env_index, episode, t FROM steps WHERE run_id = $run AND global_step = $gs "
            "AND ($env IS NULL OR env_index = $env) ORDER BY env_index LIMIT 1",
            run=run_id, gs=int(step), env=None if env_index is None else int(env_index),
        ).one()
        if row is not None:
            return int(row[0]), int(row[1]), int(row[2])
    episode = _get(finding, "episode_start")
    if episode is not None:
        return int(env_index or 0), int(episode), 0
    raise ReplayError("the finding names no step or episode to branch at")


def replay_findings(
    store,
    findings: Iterable[Any],
    baselines: Mapping[str, Any],
    *,
    recorded_policy: Callable[[str], Any],
    goals: Callable[[str], Mapping[str, str]] | None = None,
    detectors: Sequence[str] = REPLAYABLE_DETECTORS,
    rollouts: int = DEFAULT_ROLLOUTS,
    seed: int = 0,
    horizon: int | None = None,
    confidence: float = DEFAULT_CONFIDENCE,
    env_factory: Callable[[], Any] | None = None,
) -> list[dict[str, Any]]:
    """Counterfactual records (``kind: "replay"`` dicts) for the findings of ``detectors``.

    Each finding is branched at the start of its span with every baseline in
    ``baselines`` (name -> policy) against the recorded policy
    (``recorded_policy(run_id)`` returns it, or raises ReplayError with the
    reason it is not available); each record carries a verdict by
    :func:`verdict`. A finding that cannot be replayed still gets a record:
    fidelity ``replayable: false`` with the reason, verdict ``inconclusive``.
    ``goals(run_id)`` maps auditor signals to ``"min"``/``"max"``
    (default: the run's manifest ``auditor_goals``).
    """
    out: list[dict[str, Any]] = []
    for f in findings:
        detector = _get(f, "detector")
        if detector not in detectors:
            continue
        run_id = _get(f, "run_id")
        tag = {"detector": detector, "summary": _get(f, "summary") or ""}
        branches = [Branch.of_policy(name, policy) for name, policy in baselines.items()]
        try:
            if run_id not in store.runs:
                raise ReplayError(f"run {run_id!r} of the finding is not in the store")
            env_index, episode, t = branch_point(store, f)
            results = replay(store, run_id, episode, t, branches=branches,
                             recorded_policy=recorded_policy(run_id), env_index=env_index,
                             rollouts=rollouts, seed=seed, horizon=horizon, confidence=confidence,
                             env_factory=env_factory)
        except (ReplayError, ConfigError) as exc:
            out += [_refused_record(f, b.name, str(exc), tag, rollouts, horizon, seed, confidence) for b in branches]
            continue
        run_goals = goals(run_id) if goals is not None else auditor_goals(store.runs[run_id].manifest)
        for result in results:
            v, note = verdict(result, detector, run_goals)
            record = result.to_dict()
            record.update(finding=tag, verdict=v, note=note if result.note is None else f"{note}; {result.note}")
            out.append(record)
    return out


def _refused_record(f, branch, reason, tag, rollouts, horizon, seed, confidence) -> dict[str, Any]:
    return {
        "kind": "replay", "run_id": _get(f, "run_id"), "env_index": _get(f, "env_index") or 0,
        "episode": _get(f, "episode_start"), "t": None, "global_step": _get(f, "step_start"),
        "branch": branch, "against": "recorded", "rollouts": rollouts, "horizon": horizon,
        "seed": seed, "confidence": confidence, "interval": "student-t over rollouts", "finding": tag,
        "fidelity": {"replayable": False, "checked_steps": 0, "max_abs_obs_error": None,
                     "max_abs_reward_error": None, "first_mismatch": None, "reason": reason},
        "differences": [], "values": {}, "verdict": "inconclusive", "note": reason,
    }


def auditor_goals(manifest: Mapping[str, Any]) -> dict[str, str]:
    """Signal -> ``"min"``/``"max"`` from the manifest's ``auditor_goals`` (or ``config.auditor_goals``).

    An auditor column named ``true_reward``/``true_return``/``gold_reward``
    without a declared goal is ``max``; a reward term named as a column
    (``reward_terms.x``) is reported as the signal ``reward_x``.
    """
    config = manifest.get("config") if isinstance(manifest.get("config"), Mapping) else {}
    goals = manifest.get("auditor_goals") or config.get("auditor_goals") or {}
    goals = dict(goals) if isinstance(goals, Mapping) else {}
    for col in manifest.get("auditor_columns") or []:
        if isinstance(col, str) and col.rsplit(".", 1)[-1] in TRUE_REWARD_NAMES:
            goals.setdefault(col, "max")
    return {("reward_" + k[len("reward_terms."):] if k.startswith("reward_terms.") else str(k)): str(v)
            for k, v in goals.items() if v in GOALS}
