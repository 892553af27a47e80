"""Stable-Baselines3: record every environment step of ``model.learn``.

::

    from rlaudit.integrations.sb3 import TrajectoryCallback

    cb = TrajectoryCallback("runs/", run_id="ppo-cartpole-0")
    model = PPO("MlpPolicy", make_vec_env("CartPole-v1", n_envs=8), seed=0)
    model.learn(100_000, callback=cb)
    cb.close()                       # or: with TrajectoryCallback(...) as cb

stable-baselines3 is an optional extra (``pip install 'rlaudit[sb3]'``): it is
imported when ``TrajectoryCallback`` is first used, never by ``import rlaudit``.
The callback never raises into training; what it cannot store is counted in
the run manifest's ``dropped``.
"""

from __future__ import annotations

import atexit
import inspect
import math
import os
import warnings
import weakref
from typing import Any, Mapping

import numpy as np

from rlaudit.errors import ConfigError, RecorderWarning, RlauditError, unknown_name
from rlaudit.recorder.core import Recorder

INSTALL_HINT = "pip install 'rlaudit[sb3]'"

# Keys SB3's VecEnvs put in every info dict: they become the terminated /
# truncated flags and final_obs, not info columns.
_VEC_KEYS = frozenset(("terminal_observation", "TimeLimit.truncated"))

# Attributes of SB3 algorithms stored as the run's hyper-parameters (those the model has).
_HYPERPARAMETERS = (
    "learning_rate", "n_steps", "batch_size", "n_epochs", "gamma", "gae_lambda", "clip_range",
    "clip_range_vf", "normalize_advantage", "ent_coef", "vf_coef", "max_grad_norm", "target_kl",
    "use_sde", "sde_sample_freq", "rms_prop_eps", "use_rms_prop", "buffer_size", "learning_starts",
    "tau", "train_freq", "gradient_steps", "target_update_interval", "exploration_fraction",
    "exploration_initial_eps", "exploration_final_eps", "policy_delay", "target_policy_noise",
    "target_noise_clip", "target_entropy", "optimize_memory_usage", "n_envs", "device",
)


def require_sb3() -> Any:
    """The ``stable_baselines3`` module, or a ConfigError saying how to install it."""
    try:
        import stable_baselines3
    except ImportError:
        raise ConfigError(
            "expected stable-baselines3 for rlaudit.integrations.sb3, found it is not installed; "
            f"install it with: {INSTALL_HINT}"
        ) from None
    return stable_baselines3


# ---------------------------------------------------------------------------
# Plain helpers (no SB3 import)
# ---------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A JSON-able form of a hyper-parameter value."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # TrainFreq and other named tuples
        return {f: _plain(getattr(value, f)) for f in value._fields}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "value") and type(value).__module__ != "builtins" and isinstance(value.value, (str, int)):
        return value.value  # enums
    if isinstance(value, type):
        return value.__name__
    if callable(value):  # a schedule: progress_remaining (1 -> 0) -> value
        try:
            start, end = float(value(1.0)), float(value(0.0))
        except Exception:
            return repr(value)
        return start if start == end else {"schedule": type(value).__name__, "start": start, "end": end}
    return str(value)


def hyperparameters(model: Any) -> dict[str, Any]:
    """The algorithm's hyper-parameters as plain JSON (only those it has)."""
    out: dict[str, Any] = {}
    for name in _HYPERPARAMETERS:
        if hasattr(model, name):
            out[name] = _plain(getattr(model, name))
    out["policy"] = type(getattr(model, "policy", None)).__name__
    kwargs = getattr(model, "policy_kwargs", None)
    if kwargs:
        out["policy_kwargs"] = _plain(kwargs)
    return out


def _vec_chain(venv: Any) -> list[str]:
    """Class names of a VecEnv and the VecEnvs it wraps, outermost first."""
    chain = []
    while venv is not None and len(chain) < 32:
        chain.append(type(venv).__name__)
        venv = getattr(venv, "venv", None)
    return chain


def _env_facts(venv: Any) -> tuple[str | None, dict[str, Any], dict[str, Any]]:
    """(env id, make kwargs, manifest env facts) of an SB3 VecEnv."""
    chain = _vec_chain(venv)
    meta: dict[str, Any] = {
        "num_envs": int(venv.num_envs),
        "vector": chain[-1],
        "vec_wrappers": chain[:-1],
        "autoreset_mode": "same_step",
    }
    norm = venv
    while norm is not None and type(norm).__name__ != "VecNormalize":
        norm = getattr(norm, "venv", None)
    if norm is not None:  # obs and rewards are recorded as the learner saw them: normalised
        meta["vec_normalize"] = {"norm_obs": bool(norm.norm_obs), "norm_reward": bool(norm.norm_reward)}
    try:
        spec = venv.get_attr("spec", [0])[0]
    except Exception:
        spec = None
    if spec is None:
        return None, {}, meta
    meta["max_episode_steps"] = spec.max_episode_steps
    meta["entry_point"] = spec.entry_point if isinstance(spec.entry_point, str) else repr(spec.entry_point)
    return spec.id, dict(spec.kwargs or {}), meta


def _scalar(v: Any) -> Any:
    """An info value as a storable scalar, or None if it is not one."""
    t = type(v)
    if t is float or t is int or t is bool or t is str:
        return v
    if isinstance(v, np.generic) and v.dtype.kind in "biufU":
        return v.item()
    if isinstance(v, np.ndarray) and v.size == 1 and v.dtype.kind in "biuf":
        return v.item()
    return None


def vector_infos(infos: list[dict], drop) -> dict[str, Any] | None:
    """SB3's list of info dicts as Gymnasium vector infos ``{key: values, "_key": mask}``.

    Nested dicts (Monitor's ``episode``) are flattened with ``.``; SB3's own
    keys are left out; values that are not scalars are counted by ``drop``.
    """
    for info in infos:
        if info and not info.keys() <= _VEC_KEYS:
            break
    else:
        return None
    n = len(infos)
    cols: dict[str, list] = {}

    def add(k: int, key: str, v: Any) -> None:
        if isinstance(v, Mapping):
            for sub, w in v.items():
                add(k, f"{key}.{sub}", w)
            return
        if v is None:
            return
        s = _scalar(v)
        if s is None:
            drop(f"info[{key!r}]: {type(v).__name__} is not a scalar (not stored)")
            return
        col = cols.get(key)
        if col is None:
            col = cols[key] = [None] * n
        col[k] = s

    for k, info in enumerate(infos):
        for key, v in info.items():
            if key not in _VEC_KEYS:
                add(k, str(key), v)
    out: dict[str, Any] = {}
    for key, vals in cols.items():
        present = [v is not None for v in vals]
        if not all(present):
            fill = next(v for v in vals if v is not None)
            vals = [fill if v is None else v for v in vals]
            out["_" + key] = np.array(present)
        kinds = {type(v) for v in vals}
        out[key] = np.array(vals, dtype=object) if len(kinds) > 1 and str in kinds else np.array(vals)
    return out or None


def final_observations(new_obs: Any, infos: list[dict], ended: np.ndarray) -> Any:
    """``new_obs`` with the rows of finished sub-envs replaced by their true last observation.

    SB3's VecEnvs reset a finished sub-env at once: ``new_obs`` holds the
    reset observation and ``infos[i]["terminal_observation"]`` the real one.
    None when a terminal observation is missing.
    """
    if isinstance(new_obs, dict):
        final = {key: np.array(v, copy=True) for key, v in new_obs.items()}
        for k in ended:
            term = infos[k].get("terminal_observation")
            if term is None:
                return None
            for key in final:
                final[key][k] = term[key]
        return final
    final = np.array(new_obs, copy=True)
    for k in ended:
        term = infos[k].get("terminal_observation")
        if term is None:
            return None
        final[k] = term
    return final


def epsilon_greedy(q: np.ndarray, actions: np.ndarray, eps: float) -> tuple[np.ndarray, float, np.ndarray]:
    """(log-prob of the taken actions, entropy, greedy value) of epsilon-greedy over ``q`` (n, A)."""
    n_actions = q.shape[1]
    greedy = q.argmax(axis=1)
    p_other = eps / n_actions
    p_greedy = 1.0 - eps + p_other
    logp = np.log(np.where(actions == greedy, p_greedy, p_other))
    entropy = -p_greedy * math.log(p_greedy)
    if p_other > 0.0:
        entropy -= (n_actions - 1) * p_other * math.log(p_other)
    return logp, entropy, q[np.arange(len(q)), greedy]


# Up to this many logits, the entropy is computed on Python floats: for one or a
# few small envs that is several times faster than numpy's per-call overhead.
_SMALL_LOGITS = 64


def _categorical_entropy(logits: Any, actions: np.ndarray, logp: np.ndarray) -> np.ndarray | list[float] | None:
    """Entropy of each row of a categorical policy's normalised ``logits`` (a torch tensor, (n, A)).

    None unless the logits give ``logp`` (the recorded log-probs) for the
    taken ``actions``, that is unless they are the distribution that acted.
    """
    n = len(logp)
    if logits.dim() != 2 or logits.shape[0] != n:
        return None
    if logits.numel() <= _SMALL_LOGITS:
        rows = logits.tolist()
        if any(abs(row[a] - lp) > 1e-5 for row, a, lp in zip(rows, actions.tolist(), logp.tolist())):
            return None
        # p * log p with p = exp(logit); an impossible action (logit -inf) adds 0
        return [-sum(math.exp(x) * x for x in row if x != -math.inf) for row in rows]
    lg = logits.cpu().numpy()
    if np.abs(lg[np.arange(n), actions] - logp).max() > 1e-5:
        return None
    p = np.exp(lg)
    return -(p * np.where(p > 0, lg, 0.0)).sum(axis=1)


def metric_name(key: str) -> str:
    """SB3 logger key -> metric name: ``train/approx_kl`` -> ``approx_kl``; other sections keep their key."""
    return key[6:] if key.startswith("train/") else key


def _numeric(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) or isinstance(v, (bool, np.bool_))


# ---------------------------------------------------------------------------
# The callback's logic (mixed into an SB3 BaseCallback when first used)
# ---------------------------------------------------------------------------

LEARN_DID_NOT_RETURN = "learn() did not return (an exception or interrupt ended training)"


def _finish(recorder: Recorder, state: dict) -> Any:
    """Close a callback's run left open: when the callback is collected, or at process exit."""
    return recorder.close(error=LEARN_DID_NOT_RETURN if state["training"] else None)


_live_callbacks: "weakref.WeakSet" = weakref.WeakSet()


@atexit.register  # registered after the recorder's own exit hook, so it runs before it
def _close_live_callbacks() -> None:
    for cb in list(_live_callbacks):
        if cb._finalizer is not None:
            cb._finalizer()


class _TrajectoryCallback:
    """Record every environment step of ``model.learn`` into ``<store>/<run_id>.parquet``.

    Works with on-policy (PPO, A2C) and off-policy (DQN, SAC, TD3) algorithms
    and any SB3 VecEnv (DummyVecEnv, SubprocVecEnv, wrapped or not).  Each
    sub-env is ``env_index`` k with its own episodes; the step where SB3
    reports ``done`` ends the episode, with the true last observation (SB3's
    ``infos[k]["terminal_observation"]``) in ``final_obs`` and ``truncated``
    from ``TimeLimit.truncated``.  ``global_step`` is SB3's ``num_timesteps``
    before the step and keeps growing over several ``learn()`` calls (one
    run; close it with :meth:`close`, or it is closed at process exit).

    Per step it also records, when the algorithm has them: PPO/A2C the
    log-prob of the sampled action, V(s) and the policy entropy; DQN Q(s, ·)
    and the log-prob and entropy of the epsilon-greedy behaviour policy
    (uniform during ``learning_starts``), value = max Q; every algorithm
    ``policy_version`` = SB3's number of gradient updates.  SB3's logger
    scalars go to the metrics table at every dump (``train/approx_kl`` as
    ``approx_kl``, ``rollout/ep_rew_mean`` unchanged), and DQN's exploration
    rate as ``epsilon`` whenever it changes.

    Options: ``policy_data`` (default True: the per-step policy columns
    above), ``entropy`` (default True; PPO/A2C), ``q_values`` (default True;
    DQN), ``logger_metrics`` (default True), ``verbose``; every other keyword
    is a :class:`rlaudit.Recorder` option (``config``, ``info_prefix``,
    ``component_fns``, ``flush_steps``, ``on_exists``, ...).  ``config`` is
    merged over what the callback fills in (agent, hyper-parameters, gamma,
    seed).  Evaluation episodes: wrap the env given to SB3's ``EvalCallback``
    with :meth:`eval_env`; its steps are recorded with phase ``eval``.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        run_id: str | None = None,
        *,
        policy_data: bool = True,
        entropy: bool = True,
        q_values: bool = True,
        logger_metrics: bool = True,
        verbose: int = 0,
        **options: Any,
    ):
        super().__init__(verbose=verbose)
        import torch

        recorder_options = [p for p in inspect.signature(Recorder.__init__).parameters if p not in ("self", "store", "run_id")]
        for name in options:
            if name not in recorder_options:
                raise unknown_name("TrajectoryCallback option", name,
                                   ["policy_data", "entropy", "q_values", "logger_metrics", "verbose", *recorder_options])

        self._torch = torch
        self.store = store
        self._run_id = run_id
        self._options = options
        self.policy_data = bool(policy_data)
        self.entropy = bool(entropy)
        self.q_values = bool(q_values)
        self.logger_metrics = bool(logger_metrics)
        self.recorder: Recorder | None = None
        self._n = 0
        self._base = 0  # global_step - num_timesteps (non-zero after learn(reset_num_timesteps=True))
        self._next_step = 0  # global_step of the next training step
        self._state = {"training": False}  # shared with the finaliser
        self._finalizer: Any = None
        self._started = False
        self._last_new_obs: Any = None  # SB3's _last_obs after our last step: learn() continued without a reset
        self._writer: Any = None
        self._writer_logger: Any = None
        self._pending: dict[str, Any] = {}
        self._epsilon: float | None = None
        self._eval_envs: list[Any] = []
        self._entropy_fallbacks = 0
        self._gauss_entropy: tuple[Any, float] | None = None
        self._q_seen: Any = None
        self._q_hook: Any = None
        self._q_reused = 0

    # -- what users see ------------------------------------------------------

    @property
    def run_id(self) -> str | None:
        return self.recorder.run_id if self.recorder is not None else self._run_id

    @property
    def path(self):
        """The run's Parquet file (written by :meth:`close`)."""
        return self.recorder.path if self.recorder is not None else None

    def eval_env(self, env: Any) -> Any:
        """Wrap the evaluation env of SB3's ``EvalCallback``: its steps are recorded with phase ``eval``.

        ``env`` is a Gymnasium env or an SB3 VecEnv; the result is a VecEnv.
        Its sub-envs are recorded as ``env_index`` after the training envs'.
        """
        return _classes()["RecordEvalVecEnv"](env, self)

    def close(self, error: str | None = None):
        """Finalise the run file; returns its path (None if it could not be written)."""
        self._detach_writer()
        if self._q_hook is not None:
            self._q_hook.remove()
            self._q_hook = None
        rec = self.recorder
        if rec is None:
            return None
        if self._finalizer is not None:
            self._finalizer.detach()
        return rec.close(error=error)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(error=None if exc is None else f"{exc_type.__name__}: {exc}")

    # -- SB3 hooks -------------------------------------------------------------

    def _init_callback(self) -> None:
        try:
            if self.recorder is None:
                self._create_recorder()
        except RlauditError:
            raise  # bad options, a run id that exists: said before training starts
        except Exception as exc:
            self._problem("setup", exc)

    def _on_training_start(self) -> None:
        self._state["training"] = True
        rec = self.recorder
        if rec is None:
            return
        try:
            model = self.model
            n = int(model.get_env().num_envs)
            if self._n and n != self._n:
                rec._drop(f"learn() with {n} envs on a run recorded with {self._n}; not recorded")
                self._n = -1
                return
            self._n = n
            self._base = self._next_step - int(model.num_timesteps) if self._started else 0
            obs = model._last_obs
            if obs is not None and obs is not self._last_new_obs:  # SB3 reset the envs in learn()
                seeds = None
                if not self._started and model.seed is not None and getattr(model, "_n_updates", 0) == 0:
                    seeds = int(model.seed)  # the first reset of envs SB3 seeded with seed + k
                rec.reset_batch(obs, seeds=seeds)
            self._started = True
            if self.logger_metrics:
                self._attach_writer()
        except Exception as exc:
            self._problem("training start", exc)

    def _on_step(self) -> bool:
        if self.recorder is not None and self._n > 0:
            try:
                self._record_step(self.locals)
            except Exception as exc:
                self._problem("step", exc)
        return True

    def _on_rollout_start(self) -> None:
        self._q_seen = None  # the Q-network may have been trained since

    def _on_rollout_end(self) -> None:
        self._q_seen = None
        rec = self.recorder
        if rec is None:
            return
        try:
            eps = getattr(self.model, "exploration_rate", None)
            if eps is not None and eps != self._epsilon:
                self._epsilon = float(eps)
                rec.log_metrics(self._base + int(self.model.num_timesteps), epsilon=self._epsilon)
        except Exception as exc:
            self._problem("rollout end", exc)

    def _on_training_end(self) -> None:
        self._state["training"] = False
        rec = self.recorder
        if rec is None:
            return
        try:
            logger = self._writer_logger
            if logger is not None:  # values recorded after the last dump (PPO's last update)
                pending = {k: v for k, v in logger.name_to_value.items() if _numeric(v)}
                self._log(pending, int(self.model.num_timesteps))
                self._pending = pending
            rec.flush()
        except Exception as exc:
            self._problem("training end", exc)

    # -- recording ---------------------------------------------------------------

    def _create_recorder(self) -> None:
        require_sb3()
        model = self.model
        venv = model.get_env()
        env_id, env_kwargs, meta = _env_facts(venv)
        options = dict(self._options)
        config = {
            "agent": type(model).__name__,
            "hyperparameters": hyperparameters(model),
            "gamma": float(model.gamma) if getattr(model, "gamma", None) is not None else None,
            "seed": model.seed,
            "library": "stable-baselines3",
        }
        config.update(dict(options.pop("config", None) or {}))
        options.setdefault("env_id", env_id)
        options.setdefault("env_kwargs", env_kwargs)
        options.setdefault("observation_space", model.observation_space)
        options.setdefault("action_space", model.action_space)
        options["env_meta"] = {**meta, **dict(options.get("env_meta") or {})}
        self.recorder = Recorder(self.store, self._run_id, config=config, **options)
        self._on_policy = hasattr(model, "rollout_buffer")
        self._dqn = hasattr(model, "q_net") and hasattr(model, "exploration_rate")
        if self._dqn and self.q_values and self.policy_data:
            self._watch_q_net()
        # closes the run if the callback is dropped unclosed, or at exit
        self._finalizer = weakref.finalize(self, _finish, self.recorder, self._state)
        _live_callbacks.add(self)

    def _record_step(self, loc: dict) -> None:
        n = self._n
        model = self.model
        dones = np.asarray(loc["dones"], dtype=bool)
        infos = loc["infos"]
        new_obs = loc["new_obs"]
        actions = loc.get("clipped_actions") if self._on_policy else None
        if actions is None:
            actions = loc["actions"]
        rec = self.recorder
        if np.count_nonzero(dones):
            ended = np.flatnonzero(dones)
            truncated = np.zeros(n, bool)
            for k in ended:
                truncated[k] = bool(infos[k].get("TimeLimit.truncated", False))
            terminated = dones & ~truncated
            final = final_observations(new_obs, infos, ended)
        else:
            terminated = truncated = dones
            final = None
        policy = self._policy(loc, n) if self.policy_data else {}
        step = self._base + int(model.num_timesteps)
        rec.global_step = step - n
        rec.step_batch(
            actions, new_obs, loc["rewards"], terminated, truncated, vector_infos(infos, rec._drop),
            autoreset_mode="same_step", final_obs=final, **policy,
        )
        self._next_step = step
        self._last_new_obs = new_obs

    def _policy(self, loc: dict, n: int) -> dict[str, Any]:
        model = self.model
        out: dict[str, Any] = {"policy_version": int(getattr(model, "_n_updates", 0))}
        if self._on_policy:
            log_probs = loc.get("log_probs")
            values = loc.get("values")
            if values is not None:
                out["value"] = values.cpu().numpy().reshape(n)
            if log_probs is not None:
                logp = out["logp"] = log_probs.cpu().numpy()
                if self.entropy:
                    ent = self._entropy(loc, log_probs, logp)
                    if ent is not None:
                        out["entropy"] = ent
        elif self._dqn and self.q_values:
            q = self._q_of_last_obs(n)
            warmup = model.num_timesteps - n < model.learning_starts
            eps = 1.0 if warmup else float(model.exploration_rate)
            actions = np.asarray(loc["actions"]).reshape(n)
            logp, entropy, value = epsilon_greedy(q, actions, eps)
            out.update(q=q, logp=logp, entropy=entropy, value=value)
        return out

    def _q_of_last_obs(self, n: int) -> np.ndarray:
        """Q(s, ·) for the observations this step's actions were chosen from.

        A greedy step already ran the Q-network on them (caught by a forward
        hook; forgotten at rollout boundaries, where SB3 trains the network);
        exploration and warm-up steps did not, and are computed here.
        """
        model = self.model
        obs = model._last_obs
        seen, self._q_seen = self._q_seen, None
        if seen is not None and not isinstance(obs, dict):
            inputs, output = seen
            if output.shape[0] == n:
                shown = inputs.cpu().numpy().reshape(n, -1)
                if np.array_equal(shown, np.asarray(obs).reshape(n, -1).astype(shown.dtype, copy=False)):
                    self._q_reused += 1
                    return output.cpu().numpy().reshape(n, -1)
        obs_tensor = model.policy.obs_to_tensor(obs)[0]
        with self._torch.no_grad():
            q = model.q_net(obs_tensor).cpu().numpy().reshape(n, -1)
        self._q_seen = None
        return q

    def _watch_q_net(self) -> None:
        def hook(module, inputs, output):
            if not output.requires_grad and inputs and hasattr(inputs[0], "shape"):
                self._q_seen = (inputs[0], output)

        self._q_seen = None
        self._q_hook = self.model.q_net.register_forward_hook(hook)

    def _entropy(self, loc: dict, log_probs: Any, logp: np.ndarray) -> np.ndarray | list[float] | None:
        """Entropy of the acting policy at this step's observations.

        SB3 builds the action distribution in place in ``policy(obs)``, so the
        policy's distribution object still holds this step's: for a
        categorical policy the entropy comes from its logits, after
        checking that they give the recorded log-probs of the taken actions;
        a diagonal Gaussian's entropy depends only on ``log_std``.  Otherwise
        (another callback ran the policy since, other distributions) the
        distribution is computed again from this step's observations.
        """
        policy = self.model.policy
        dist = getattr(policy, "action_dist", None)
        kind = type(dist).__name__
        try:
            if kind == "CategoricalDistribution":
                ent = _categorical_entropy(dist.distribution.logits, np.asarray(loc["actions"]).reshape(-1), logp)
                if ent is not None:
                    return ent
            elif kind == "DiagGaussianDistribution" and getattr(policy, "log_std", None) is not None:
                version = getattr(self.model, "_n_updates", None)
                if self._gauss_entropy is None or self._gauss_entropy[0] != version:
                    log_std = policy.log_std.detach().cpu().numpy()
                    self._gauss_entropy = (version, float(np.sum(log_std + 0.5 * (1.0 + math.log(2 * math.pi)))))
                return np.full(len(logp), self._gauss_entropy[1])
        except Exception:
            pass
        self._entropy_fallbacks += 1
        obs_tensor = loc.get("obs_tensor")
        if obs_tensor is None:
            return None
        with self._torch.no_grad():
            ent = policy.get_distribution(obs_tensor).entropy()
        return None if ent is None else ent.cpu().numpy()

    # -- evaluation env ------------------------------------------------------------

    def _eval_offset(self, wrapper: Any) -> int | None:
        if self.recorder is None or self._n <= 0:
            return None
        offset = self._n
        for env in self._eval_envs:
            if env is wrapper:
                return offset
            offset += env.num_envs
        self._eval_envs.append(wrapper)
        return offset

    def _record_eval(self, wrapper: Any, call: str, *args: Any, **kwargs: Any) -> None:
        try:
            offset = self._eval_offset(wrapper)
            if offset is None:
                return
            rec = self.recorder
            rec.phase = "eval"
            try:
                rec.global_step = self._base + int(self.model.num_timesteps)  # the training step it ran during
                if call == "reset":
                    rec.reset_batch(*args, env_offset=offset, **kwargs)
                else:
                    rec.step_batch(*args, env_offset=offset, **kwargs)
            finally:
                rec.phase = "train"
                rec.global_step = self._next_step
        except Exception as exc:
            self._problem("eval", exc)

    # -- logger ----------------------------------------------------------------------

    def _attach_writer(self) -> None:
        logger = self.model.logger
        if self._writer is None:
            self._writer = _classes()["MetricsWriter"](self)
        if logger is not self._writer_logger:
            self._detach_writer()
        if not any(f is self._writer for f in logger.output_formats):
            logger.output_formats.append(self._writer)
        self._writer_logger = logger

    def _detach_writer(self) -> None:
        logger = self._writer_logger
        if logger is not None:
            logger.output_formats[:] = [f for f in logger.output_formats if f is not self._writer]
        self._writer_logger = None

    def _log(self, key_values: Mapping[str, Any], step: int) -> None:
        rec = self.recorder
        if rec is None:
            return
        pending, self._pending = self._pending, {}
        scalars = {}
        for key, v in key_values.items():
            if _numeric(v) and not (key in pending and pending[key] is v):
                scalars[metric_name(key)] = float(v)
        if scalars:
            rec.log_metrics(self._base + int(step), **scalars)

    # -- problems --------------------------------------------------------------------

    def _problem(self, where: str, exc: BaseException) -> None:
        """Count an error of the recording path; training goes on."""
        rec = self.recorder
        reason = f"TrajectoryCallback {where}: {type(exc).__name__}: {exc}"
        if rec is not None:
            rec._drop(reason)
        else:
            warnings.warn(f"rlaudit: nothing is recorded ({reason})", RecorderWarning, stacklevel=2)


class _RecordEvalVecEnv:
    """A VecEnv wrapper recording the evaluation episodes of a TrajectoryCallback's run."""

    def __init__(self, env: Any, callback: _TrajectoryCallback):
        from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

        if not isinstance(env, VecEnv):
            env = DummyVecEnv([lambda: env])
        super().__init__(env)
        self.callback = callback

    def reset(self):
        obs = self.venv.reset()
        self.callback._record_eval(self, "reset", obs)
        return obs

    def step_wait(self):
        obs, rewards, dones, infos = self.venv.step_wait()
        cb = self.callback
        try:
            dones_b = np.asarray(dones, dtype=bool)
            n = len(dones_b)
            truncated = np.zeros(n, bool)
            ended = np.flatnonzero(dones_b)
            for k in ended:
                truncated[k] = bool(infos[k].get("TimeLimit.truncated", False))
            final = final_observations(obs, infos, ended) if len(ended) else None
            rec = cb.recorder
            drop = rec._drop if rec is not None else (lambda reason: None)
            cb._record_eval(
                self, "step", self._actions, obs, rewards, dones_b & ~truncated, truncated,
                vector_infos(infos, drop), autoreset_mode="same_step", final_obs=final,
            )
        except Exception as exc:
            cb._problem("eval", exc)
        return obs, rewards, dones, infos

    def step_async(self, actions):
        self._actions = actions
        self.venv.step_async(actions)


_built: dict[str, type] = {}


def _classes() -> dict[str, type]:
    """The SB3 subclasses, built on first use (stable-baselines3 is imported here)."""
    if not _built:
        require_sb3()
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.logger import KVWriter
        from stable_baselines3.common.vec_env import VecEnvWrapper

        class TrajectoryCallback(_TrajectoryCallback, BaseCallback):
            __doc__ = _TrajectoryCallback.__doc__

        class RecordEvalVecEnv(_RecordEvalVecEnv, VecEnvWrapper):
            __doc__ = _RecordEvalVecEnv.__doc__

        class MetricsWriter(KVWriter):
            """SB3 logger output that puts every dumped scalar into the run's metrics table."""

            def __init__(self, callback: _TrajectoryCallback):
                self.callback = weakref.proxy(callback)

            def write(self, key_values, key_excluded, step=0):
                try:
                    self.callback._log(key_values, step)
                except Exception as exc:
                    try:
                        self.callback._problem("logger", exc)
                    except Exception:
                        pass

            def close(self):
                pass

        for cls in (TrajectoryCallback, RecordEvalVecEnv, MetricsWriter):
            cls.__module__ = __name__
        _built.update(TrajectoryCallback=TrajectoryCallback, RecordEvalVecEnv=RecordEvalVecEnv,
                      MetricsWriter=MetricsWriter)
    return _built


def __getattr__(name: str):
    if name in ("TrajectoryCallback", "RecordEvalVecEnv"):
        return _classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
