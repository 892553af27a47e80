"""The recorder: per-column buffers for one run, flushed as Parquet segments.

``Recorder`` is the loop API and the one engine behind the Gymnasium wrappers
and the SB3 callback.  The per-step path writes a handful of numpy scalars
and nothing else; everything derived is computed at flush time.  It never
raises into the training loop because of data: what it cannot store it counts
(``manifest["dropped"]``) and reports once as a ``RecorderWarning``.
"""

from __future__ import annotations

import atexit
import math
import os
import platform
import re
import signal
import socket
import sys
import threading
import time
import warnings
import weakref
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pyarrow as pa

from rlaudit import __version__, schema
from rlaudit.errors import ConfigError, RecorderWarning, RunExistsError, StoreError
from rlaudit.recorder.batch import BatchRecording
from rlaudit.recorder.columns import ArrayColumn, Sparse, make_column, normalise, row_bytes, scatter, snapshot, sparse_to_arrow
from rlaudit.layout import final_paths
from rlaudit.recorder.writer import finalize_run, write_parquet_atomic, write_parts_manifest

DEFAULT_FLUSH_STEPS = 65536
DEFAULT_FLUSH_SECONDS = 30.0
MAX_BUFFER_BYTES = 64 * 2**20  # per buffered column of images / large observations
_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+=-]{0,199}$")
_PHASE_CODES = {p: k for k, p in enumerate(schema.PHASES)}
_PHASE_DICT = pa.array(list(schema.PHASES), pa.string())
_POLICY_TYPES = {f.name: f.type for f in schema.POLICY_SCALAR_FIELDS}

_open_recorders: "weakref.WeakSet[Recorder]" = weakref.WeakSet()


class _Missing:
    """Marks an info key absent from one step's dict."""


_MISSING = _Missing()
_PLAIN = {float, int, bool, str}
_perf_counter = time.perf_counter

# The scalar columns of a step, written with one structured-row assignment.
_ROW_FIELDS = [
    ("env_index", np.int32), ("episode", np.int64), ("t", np.int32), ("global_step", np.int64),
    ("phase", np.int8), ("wall_time", np.float64), ("reward", np.float64),
    ("terminated", np.bool_), ("truncated", np.bool_),
]
_ROW_DTYPE = np.dtype(_ROW_FIELDS)
_COUNTER_FIELDS = ("env_index", "episode", "t", "global_step", "phase")
_ROW_DTYPE_WITH_ACTION = np.dtype(_ROW_FIELDS + [("action", np.int64)])


class _EnvState:
    """Per sub-environment counters."""

    __slots__ = ("episode", "t", "seed", "has_obs", "done")

    def __init__(self) -> None:
        self.episode = -1
        self.t = 0
        self.seed: int | None = None
        self.has_obs = False
        self.done = False


def _git_commit(start: Path) -> str | None:
    """HEAD of the git checkout around ``start``, read without running git."""
    for d in (start, *start.parents):
        git = d / ".git"
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text().strip()
                if not head.startswith("ref: "):
                    return head
                ref = head[5:]
                ref_file = git / ref
                if ref_file.exists():
                    return ref_file.read_text().strip()
                packed = git / "packed-refs"
                if packed.exists():
                    for line in packed.read_text().splitlines():
                        if line.endswith(" " + ref):
                            return line.split()[0]
            except OSError:
                return None
            return None
    return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "rlaudit": __version__}
    for name in ("numpy", "pyarrow", "gymnasium", "torch", "stable_baselines3"):
        mod = sys.modules.get(name)  # never import torch just to read a version
        if mod is None and name in ("numpy", "pyarrow", "gymnasium"):
            try:
                mod = __import__(name)
            except ImportError:
                mod = None
        if mod is not None:
            out[name] = str(getattr(mod, "__version__", "unknown"))
    return out


class Recorder(BatchRecording):
    """Record a training run, step by step, into ``<store>/<run_id>.parquet``.

    Use it as a context manager around a hand-written loop::

        with rlaudit.Recorder("runs/", config={"agent": "ppo", "gamma": 0.99}) as rec:
            obs, info = env.reset(seed=0)
            rec.reset(obs, seed=0, info=info)
            while training:
                action = policy(obs)
                obs, reward, terminated, truncated, info = env.step(action)
                rec.step(action, obs, reward, terminated, truncated, info, logp=logp)
                if terminated or truncated:
                    obs, info = env.reset()
                    rec.reset(obs, info=info)

    Each row holds the observation the action was chosen from.  Options:

    - ``config``: run configuration stored in the manifest; the keys ``agent``,
      ``hyperparameters``, ``gamma``, ``reward``, ``reward_params``,
      ``reward_bounds``, ``auditor_columns``, ``seed`` and ``protocol`` are lifted
      into the manifest's own fields, and ``auditor_goals`` and
      ``reward_task_terms`` too when given.
    - ``env_id``, ``env_kwargs``, ``observation_space``, ``action_space``,
      ``env_meta`` (extra facts such as ``max_episode_steps``): how to rebuild
      and read the environment.
    - ``phase``: ``"train"`` or ``"eval"``; change it with ``rec.phase = "eval"``.
    - ``info_prefix``: info entries whose key starts with it become reward terms.
    - ``component_fns``: ``{name: fn(obs, action, info)}`` computing reward terms.
    - ``flush_steps`` / ``flush_seconds``: a segment is written when either is
      reached (a crash loses at most that much).
    - ``on_exists``: ``"error"`` (default for an explicit run id) or ``"suffix"``
      (default for generated ids): what to do when the run id is taken.

    Importers also pass ``config["source"]`` (where the data came from) and
    ``config["episode_level"]`` (the run holds one row per episode, see
    docs/schema.md); both are lifted into the manifest (``schema.OPTIONAL_CONFIG_KEYS``),
    and they add rows built elsewhere with :meth:`write_segment`.
    """

    def __init__(
        self,
        store: str | os.PathLike,
        run_id: str | None = None,
        *,
        config: Mapping[str, Any] | None = None,
        env_id: str | None = None,
        env_kwargs: Mapping[str, Any] | None = None,
        observation_space: Any = None,
        action_space: Any = None,
        env_meta: Mapping[str, Any] | None = None,
        phase: str = "train",
        info_prefix: str | None = None,
        component_fns: Mapping[str, Callable[[Any, Any, dict], float]] | None = None,
        flush_steps: int = DEFAULT_FLUSH_STEPS,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        on_exists: str | None = None,
        handle_sigterm: bool = True,
    ):
        if not isinstance(flush_steps, int) or flush_steps < 1:
            raise ConfigError(f"flush_steps must be a positive integer, got {flush_steps!r}")
        if not (isinstance(flush_seconds, (int, float)) and flush_seconds > 0):
            raise ConfigError(f"flush_seconds must be a positive number, got {flush_seconds!r}")
        if on_exists not in (None, "error", "suffix"):
            raise ConfigError(f"on_exists must be 'error' or 'suffix', got {on_exists!r}")
        if info_prefix is not None and not isinstance(info_prefix, str):
            raise ConfigError(f"info_prefix must be a string, got {type(info_prefix).__name__}")
        for name, fn in (component_fns or {}).items():
            if not callable(fn):
                raise ConfigError(f"component_fns[{name!r}] must be callable fn(obs, action, info), got {type(fn).__name__}")
        config = dict(config or {})
        if phase not in _PHASE_CODES:
            raise ConfigError(f"phase must be one of {', '.join(schema.PHASES)}, got {phase!r}")

        self.store = Path(store)
        try:
            self.store.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create the store folder {self.store}: {exc}") from None
        self.run_id, self._parts = self._claim_run_id(run_id, env_id, on_exists)
        self.path = self.store / f"{self.run_id}{schema.STEPS_SUFFIX}"

        self.flush_steps = flush_steps
        self.flush_seconds = float(flush_seconds)
        self.info_prefix = info_prefix or None
        self.component_fns = dict(component_fns or {})
        self._phase_code = _PHASE_CODES[phase]

        self._obs_spec = schema.space_spec(observation_space) if observation_space is not None else None
        self._act_spec = schema.space_spec(action_space) if action_space is not None else None
        self._capacity = 0
        self._n = 0  # rows buffered in the current segment
        self._segments = 0
        self._metric_segments = 0
        self._episodes_done = 0
        self.global_step = 0
        self._envs: list[_EnvState] = []
        self._single = True  # one env stream: obs is written straight into the buffer
        self._staging = None
        self._pending_first: tuple[int, Any] | None = None  # an obs seen before the buffers exist
        self._bad_staged: set[int] = set()  # sub-envs whose staged obs could not be stored
        self._marks: list[tuple[int, int, int, int]] | None = None
        self._rows_flushed = 0
        self._abandoned = 0
        self._dropped: Counter[str] = Counter()
        self._warned = False
        self._closed = False

        self._t0 = time.perf_counter()
        self._next_flush = self._t0 + self.flush_seconds
        self._manifest = self._base_manifest(config, env_id, env_kwargs, env_meta)
        write_parts_manifest(self._parts, self._manifest)

        self._metric_rows: list[tuple[int, float, str, float]] = []
        _open_recorders.add(self)
        if handle_sigterm:
            _install_sigterm_handler()

    # -- set-up ---------------------------------------------------------------

    def _claim_run_id(self, run_id: str | None, env_id: str | None, on_exists: str | None) -> tuple[str, Path]:
        if run_id is None:
            stem = re.sub(r"[^A-Za-z0-9._-]+", "-", (env_id or "run").split(":")[-1].split("/")[-1]).strip("-") or "run"
            base = f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
            on_exists = on_exists or "suffix"
        else:
            if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id) or run_id.endswith(".metrics"):
                raise ConfigError(
                    f"run_id must be 1-200 characters of letters, digits and . _ + = - (not starting with "
                    f"one of . _ + = -), got {run_id!r}"
                )
            base = run_id
            on_exists = on_exists or "error"
        for k in range(10_000):
            candidate = base if k == 0 else f"{base}-{k}"
            steps, metrics, parts = final_paths(self.store, candidate)
            if steps.exists() or metrics.exists() or parts.exists():
                if on_exists == "error":
                    raise RunExistsError(
                        f"run {candidate!r} already exists in {self.store}; runs are never overwritten: "
                        "pick another run_id, or pass on_exists='suffix' to record as a new id"
                    )
                continue
            try:
                parts.mkdir()
            except FileExistsError:  # claimed by a concurrent recorder
                if on_exists == "error":
                    raise RunExistsError(f"run {candidate!r} was just created in {self.store} by another recorder") from None
                continue
            except OSError as exc:
                raise StoreError(f"cannot write to the store {self.store}: {exc}") from None
            return candidate, parts
        raise StoreError(f"could not find a free run id starting with {base!r} in {self.store}")

    def _base_manifest(self, config, env_id, env_kwargs, env_meta) -> dict[str, Any]:
        reward = config.get("reward")
        reward_block = None
        if reward is not None or "reward_bounds" in config or "reward_params" in config:
            reward_block = {
                "name": reward,
                "params": config.get("reward_params"),
                "bounds": config.get("reward_bounds"),
            }
        env = {"id": env_id, "kwargs": dict(env_kwargs or {}), "num_envs": 1}
        env.update(dict(env_meta or {}))
        return {
            "format": schema.FORMAT_NAME,
            "schema_version": schema.SCHEMA_VERSION,
            "run_id": self.run_id,
            "status": schema.STATUS_IN_PROGRESS,
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "ended_at": None,
            "duration_s": None,
            "env": env,
            "num_envs": env.get("num_envs", 1),
            "spaces": {"observation": self._obs_spec, "action": self._act_spec},
            "seed": config.get("seed"),
            "agent": config.get("agent"),
            "hyperparameters": config.get("hyperparameters"),
            "gamma": config.get("gamma"),
            "reward": reward_block,
            "auditor_columns": list(config.get("auditor_columns") or []),
            **{key: config[key] for key in schema.OPTIONAL_CONFIG_KEYS if config.get(key)},
            "config": config,
            "counts": {"steps": 0, "episodes": 0, "segments": 0, "metrics": 0},
            "dropped": {},
            "recorder": {
                "flush_steps": self.flush_steps,
                "flush_seconds": self.flush_seconds,
                "compression": f"{schema.COMPRESSION}-{schema.COMPRESSION_LEVEL}",
                "info_prefix": self.info_prefix,
                "component_fns": sorted(self.component_fns),
                "obs_alignment": "obs is the observation the action was chosen from",
            },
            "versions": _versions(),
            "host": {"hostname": socket.gethostname(), "platform": platform.platform()},
            "pid": os.getpid(),
            "git_commit": _git_commit(Path.cwd()),
            "error": None,
        }

    def _allocate(self, min_rows: int = 1) -> None:
        """Create the buffers once both specs are known."""
        per_row = 64 + 2 * row_bytes(self._obs_spec) + row_bytes(self._act_spec)
        cap = max(1, min(self.flush_steps, MAX_BUFFER_BYTES // per_row))
        cap = max(cap, len(self._envs), min_rows)
        self._capacity = cap
        self._manifest["recorder"]["flush_rows"] = cap
        self._obs = make_column(self._obs_spec, cap)
        # plain numeric observations are written with one numpy assignment, no method call
        self._obs_direct = self._obs.data if type(self._obs) is ArrayColumn else None
        self._action = make_column(self._act_spec, cap)
        self._action_in_row = self._act_spec["type"] == "Discrete"
        self._rows = np.zeros(cap, dtype=_ROW_DTYPE_WITH_ACTION if self._action_in_row else _ROW_DTYPE)
        if self._action_in_row:
            self._action.data = self._rows["action"]  # a Discrete action is one more field of the row
        self._fields = {name: self._rows[name] for name in self._rows.dtype.names}  # column views
        # every field but a Discrete action (the action column writes that): one batch row at a time
        self._row_fields = self._rows[[f for f in self._rows.dtype.names if f != "action"]]
        # what a single-stream step writes; its counters come from the marks
        self._step_fields = self._rows[[f for f in self._rows.dtype.names if f not in _COUNTER_FIELDS]]
        self._new_segment_state()
        self._manifest["spaces"] = {"observation": self._obs_spec, "action": self._act_spec}

    def _new_segment_state(self) -> None:
        # single stream: (row, episode, t, phase) wherever the counters jump
        self._marks: list[tuple[int, int, int, int]] | None = [] if self._single else None
        self._segment_global_step = self.global_step
        if self._single and self._envs:
            self._mark(self._envs[0])
        self._final_obs = Sparse()
        self._reset_seed = Sparse()
        self._info: dict[str, Sparse] = {}
        self._info_rows: list[int] = []
        self._info_dicts: list[dict] = []
        self._terms: dict[str, Sparse] = {}
        self._policy: dict[str, Sparse] = {}
        self._q = Sparse()
        self._obs.reset_nulls()
        self._action.reset_nulls()

    def _mark(self, st: _EnvState) -> None:
        """The single stream's counters change from the next row on."""
        if self._marks is not None:
            self._marks.append((self._n, st.episode, st.t, self._phase_code))

    def _fill_counters(self, n: int) -> None:
        """Write env_index / episode / t / global_step / phase of a single-stream segment's rows."""
        if self._marks is None or not n:
            return
        marks = np.array(self._marks, dtype=np.int64).reshape(-1, 4)
        rows = np.arange(n)
        k = np.searchsorted(marks[:, 0], rows, side="right") - 1
        f = self._fields
        f["env_index"][:n] = 0
        f["episode"][:n] = marks[k, 1]
        f["t"][:n] = marks[k, 2] + rows - marks[k, 0]
        f["global_step"][:n] = self._segment_global_step + rows
        f["phase"][:n] = marks[k, 3]

    def _leave_single(self) -> None:
        """Rows from now on carry their own counters; fill those of the rows so far."""
        if self._single:
            if self._capacity:
                self._fill_counters(self._n)
            self._single = False
            self._marks = None

    def _ensure_obs_spec(self, obs: Any) -> bool:
        if self._obs_spec is None:
            self._obs_spec = schema.infer_spec(obs)
            if self._obs_spec is None:
                self._drop(f"obs: unsupported observation type {type(obs).__name__}; nothing recorded")
                return False
        return True

    def _env(self, env_index: int) -> _EnvState:
        envs = self._envs
        while len(envs) <= env_index:
            envs.append(_EnvState())
        if env_index != 0 and self._single:
            self._go_multi()
        return envs[env_index]

    def _go_multi(self) -> None:
        """Leave single-stream mode: pending observations move to a staging buffer."""
        self._leave_single()
        if self._obs_spec is None:
            return
        self._staging = make_column(self._obs_spec, max(len(self._envs), 8))
        if self._envs and self._envs[0].has_obs:
            if self._capacity:
                self._staging.copy_row(0, self._obs, self._n)
            elif self._pending_first is not None:
                self._staging.set(0, self._pending_first[1])
                self._pending_first = None

    def _stage_obs(self, env_index: int, obs: Any) -> None:
        """Keep ``obs`` as the observation of env ``env_index``'s next row."""
        if not self._single and self._staging.capacity <= env_index:
            bigger = make_column(self._obs_spec, max(2 * self._staging.capacity, env_index + 1))
            bigger.gather(0, self._staging, np.arange(self._staging.capacity))
            self._staging = bigger
        try:
            if self._single:
                self._obs.set(self._n, obs)
            else:
                self._staging.set(env_index, obs)
                self._bad_staged.discard(env_index)
        except Exception as exc:
            self._drop(f"obs: {type(exc).__name__}: {exc} (recorded as null)")
            if self._single:
                self._obs.set_null(self._n)
            else:
                self._bad_staged.add(env_index)

    # -- the loop API -----------------------------------------------------------

    @property
    def phase(self) -> str:
        return schema.PHASES[self._phase_code]

    @phase.setter
    def phase(self, value: str) -> None:
        if value not in _PHASE_CODES:
            raise ConfigError(f"phase must be one of {', '.join(schema.PHASES)}, got {value!r}")
        self._phase_code = _PHASE_CODES[value]
        if self._single and self._envs and self._capacity:
            self._mark(self._envs[0])

    def reset(self, obs: Any, *, seed: int | None = None, env_index: int = 0, info: Mapping | None = None) -> None:
        """Start a new episode for ``env_index`` from observation ``obs``."""
        if self._closed:
            self._drop("reset after close")
            return
        try:
            if self._batch is not None:
                self._drop("reset() on a recorder driven by reset_batch(); use one API per recorder")
                return
            if not self._ensure_obs_spec(obs):
                return
            st = self._env(env_index)
            if st.has_obs and st.t > 0:
                self._abandoned += 1  # reset mid-episode: its last row has no end flag
            st.episode += 1
            st.t = 0
            st.done = False
            st.seed = None if seed is None else int(seed)
            self._mark(st)
            if self._capacity or not self._single:
                self._stage_obs(env_index, obs)
            else:
                self._pending_first = (env_index, snapshot(obs))
            st.has_obs = True
        except Exception as exc:
            self._drop(f"reset: {type(exc).__name__}: {exc}")

    def step(
        self,
        action: Any,
        next_obs: Any,
        reward: float,
        terminated: bool,
        truncated: bool,
        info: Mapping | None = None,
        *,
        env_index: int = 0,
        logp: float | None = None,
        entropy: float | None = None,
        value: float | None = None,
        q: Any = None,
        policy_version: int | None = None,
        reward_terms: Mapping[str, float] | None = None,
    ) -> None:
        """Record one transition of env ``env_index`` (arguments in ``env.step`` order)."""
        if self._closed:
            self._drop("step after close")
            return
        try:
            if not self._capacity and not self._first_step(action, next_obs):
                return
            envs = self._envs
            if env_index == 0 and self._single and envs:
                st = envs[0]
            elif self._batch is not None:
                self._drop("step() on a recorder driven by step_batch(); use one API per recorder")
                return
            else:
                st = self._env(env_index)
            i = self._n
            if not st.has_obs:
                self._obs_missing(st, i)
            elif not self._single:
                self._obs.copy_row(i, self._staging, env_index)
                if env_index in self._bad_staged:
                    self._obs.set_null(i)
            now = _perf_counter()
            try:  # one structured-row write for all scalar columns
                if self._single:  # the counters are filled at flush from the marks
                    if self._action_in_row:
                        self._step_fields[i] = (now - self._t0, reward, terminated, truncated, action)
                    else:
                        self._step_fields[i] = (now - self._t0, reward, terminated, truncated)
                        self._action.set(i, action)
                elif self._action_in_row:
                    self._rows[i] = (env_index, st.episode, st.t, self.global_step, self._phase_code,
                                     now - self._t0, reward, terminated, truncated, action)
                else:
                    self._rows[i] = (env_index, st.episode, st.t, self.global_step, self._phase_code,
                                     now - self._t0, reward, terminated, truncated)
                    self._action.set(i, action)
            except Exception:
                self._write_row_checked(i, st, env_index, now, action, reward, terminated, truncated)
            if st.seed is not None:
                self._reset_seed.add(i, st.seed)
                st.seed = None
            if info:  # copied now, turned into columns at flush (one pass per key, not per step)
                self._info_rows.append(i)
                self._info_dicts.append(dict(info))
            if self.component_fns:
                self._add_components(i, self._obs_value(i), action, info or {})
            if reward_terms:
                for name, v in reward_terms.items():
                    self._add_term(i, str(name), v)
            if logp is not None or entropy is not None or value is not None or policy_version is not None:
                self._add_policy(i, logp, entropy, value, policy_version)
            if q is not None:
                self._q.add(i, np.asarray(q, dtype=np.float32).reshape(-1))
            n = i + 1
            self._n = n
            st.t += 1
            self.global_step += 1
            if terminated or truncated:
                self._final_obs.add(i, snapshot(next_obs))
                self._episodes_done += 1
                st.done = True
                st.has_obs = False
                if n >= self._capacity or now >= self._next_flush:
                    self._flush()
                return
            if n >= self._capacity or now >= self._next_flush:
                st.has_obs = False  # nothing pending while the segment is written
                self._flush()
                n = self._n
            direct = self._obs_direct
            if direct is not None and self._single:
                try:
                    direct[n] = next_obs  # written straight into the next row
                except Exception:
                    self._stage_obs(env_index, next_obs)
            else:
                self._stage_obs(env_index, next_obs)
            st.has_obs = True
        except Exception as exc:
            self._drop(f"step: {type(exc).__name__}: {exc}")

    def _first_step(self, action: Any, next_obs: Any) -> bool:
        """Create the buffers at the first step; False if nothing can be recorded."""
        if self._act_spec is None:
            self._act_spec = self._infer_action_spec(action)
        if self._obs_spec is None and not self._ensure_obs_spec(next_obs):
            return False
        self._allocate()
        if self._pending_first is not None and self._single:
            self._stage_obs(0, self._pending_first[1])
            self._pending_first = None
        return True

    def _infer_action_spec(self, action: Any) -> dict[str, Any]:
        spec = schema.infer_spec(action)
        if spec is None:
            self._drop(f"action: unsupported action type {type(action).__name__} (recorded as null)")
            spec = {"type": "Box", "shape": [1], "dtype": "float32"}
        return spec

    def _obs_missing(self, st: _EnvState, i: int) -> None:
        """A step with no reset before it: a new episode whose first obs is unknown."""
        self._drop("step without a reset before it: observation unknown (recorded as null)")
        st.episode += 1
        st.t = 0
        st.done = False
        self._mark(st)
        self._obs.set_null(i)

    def _write_row_checked(self, i, st, env_index, now, action, reward, terminated, truncated) -> None:
        """Field by field: a value that does not fit becomes NaN / null and is counted."""
        row = self._rows
        row[i] = (env_index, st.episode, st.t, self.global_step, self._phase_code, now - self._t0,
                  math.nan, bool(terminated), bool(truncated)) + ((0,) if self._action_in_row else ())
        try:
            row["reward"][i] = reward
        except (TypeError, ValueError, OverflowError):
            self._drop(f"reward: {type(reward).__name__} is not a number (recorded as NaN)")
        try:
            self._action.set(i, action)
        except Exception as exc:
            self._action.set_null(i)
            self._drop(f"action: {type(exc).__name__}: {exc}")

    def _obs_value(self, i: int) -> Any:
        """The observation of row ``i`` as numpy, for component functions."""
        col = self._obs
        if hasattr(col, "children"):
            return {name: child.data[i] for name, child in zip(col.names, col.children)}
        return col.data[i]

    # -- dynamic columns -------------------------------------------------------

    def _fold_info(self) -> None:
        """Turn the info dicts logged since the last flush into columns, key by key.

        Keys whose values are plain bool / int / float / str take a fast path;
        anything else (numpy scalars, nested dicts, None, arrays) goes value by
        value through ``_add_info``, which flattens, converts or counts it.
        """
        rows, dicts = self._info_rows, self._info_dicts
        if not rows:
            return
        self._info_rows, self._info_dicts = [], []
        keys: dict = {}
        for d in dicts:
            keys.update(d)
        prefix = self.info_prefix
        for key in keys:
            values = [d.get(key, _MISSING) for d in dicts]
            kinds = set(map(type, values))
            missing = _Missing in kinds
            kinds.discard(_Missing)
            is_term = prefix is not None and type(key) is str and key.startswith(prefix) and len(key) > len(prefix)
            if type(key) is not str or not kinds <= _PLAIN or (is_term and str in kinds):
                for r, d in zip(rows, dicts):
                    if key in d:
                        self._add_info(r, {key: d[key]})
                continue
            key_rows = rows
            if missing:
                pairs = [(r, v) for r, v in zip(rows, values) if v is not _MISSING]
                key_rows, values = [p[0] for p in pairs], [p[1] for p in pairs]
            if is_term:
                target = self._terms.setdefault(key[len(prefix):], Sparse())
            else:
                target = self._info.setdefault(key, Sparse())
            target.extend(key_rows, values)

    def _add_info(self, i: int, info: Mapping, prefix: str = "") -> None:
        terms_prefix = self.info_prefix
        columns = self._info
        for key, v in info.items():
            if prefix or type(key) is not str:
                key = f"{prefix}{key}"
            t = type(v)
            if t is float or t is bool or t is str:  # the common case first: no isinstance chains
                pass
            elif t is int:
                v = float(v)
            elif v is None:
                continue
            elif isinstance(v, Mapping):
                self._add_info(i, v, key + ".")
                continue
            else:
                try:
                    v = normalise(v)
                except TypeError as exc:
                    self._drop(f"info[{key!r}]: {exc} is not a scalar (not stored)")
                    continue
            if terms_prefix is not None and not prefix and key.startswith(terms_prefix) and len(key) > len(terms_prefix):
                self._add_term(i, key[len(terms_prefix):], v)
                continue
            col = columns.get(key)
            if col is None:
                col = columns[key] = Sparse()
            col.rows.append(i)
            col.values.append(v)

    def _add_term(self, i: int, name: str, v: Any) -> None:
        try:
            v = float(v)
        except (TypeError, ValueError):
            self._drop(f"reward term {name!r}: {type(v).__name__} is not a number (not stored)")
            return
        col = self._terms.get(name)
        if col is None:
            col = self._terms[name] = Sparse()
        col.rows.append(i)
        col.values.append(v)

    def _add_components(self, i: int, obs: Any, action: Any, info: Mapping) -> None:
        for name, fn in self.component_fns.items():
            try:
                v = fn(obs, action, info)
            except Exception as exc:
                self._drop(f"component_fns[{name!r}] raised {type(exc).__name__}: {exc}")
                continue
            self._add_term(i, name, v)

    def _add_policy(self, i: int, logp, entropy, value, policy_version) -> None:
        for name, v in (("logp", logp), ("entropy", entropy), ("value", value), ("policy_version", policy_version)):
            if v is not None:
                col = self._policy.get(name)
                if col is None:
                    col = self._policy[name] = Sparse()
                col.rows.append(i)
                col.values.append(float(v) if name != "policy_version" else int(v))

    # -- metrics ------------------------------------------------------------------

    def log_metrics(self, global_step: int | None = None, **scalars: float) -> None:
        """Record per-update training metrics (losses, KL, ...) at ``global_step``."""
        if self._closed:
            self._drop("log_metrics after close")
            return
        try:
            gs = self.global_step if global_step is None else int(global_step)
            wall = time.perf_counter() - self._t0
            for name, v in scalars.items():
                try:
                    v = float(v)
                except (TypeError, ValueError):
                    self._drop(f"metric {name!r}: {type(v).__name__} is not a number (not stored)")
                    continue
                self._metric_rows.append((gs, wall, name, v))
            if len(self._metric_rows) >= self.flush_steps:
                self._flush_metrics()
        except Exception as exc:
            self._drop(f"log_metrics: {type(exc).__name__}: {exc}")

    # -- flushing -------------------------------------------------------------------

    def _segment_table(self, n: int) -> pa.Table:
        self._fold_info()
        self._fill_counters(n)
        rows = self._rows[:n]

        def col(name: str) -> pa.Array:
            return pa.array(np.ascontiguousarray(rows[name]))

        cols: dict[str, pa.Array] = {
            "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([self.run_id])),
            "env_index": col("env_index"),
            "episode": col("episode"),
            "t": col("t"),
            "global_step": col("global_step"),
            "phase": pa.DictionaryArray.from_arrays(col("phase"), _PHASE_DICT),
            "wall_time": col("wall_time"),
            "obs": self._obs.to_arrow(n),
            "action": self._action.to_arrow(n),
            "reward": col("reward"),
            "terminated": col("terminated"),
            "truncated": col("truncated"),
            "final_obs": self._final_obs_array(n),
            "reset_seed": self._reset_seed.to_arrow(n, pa.int64()),
        }
        if self._terms:
            cols["reward_terms"] = pa.StructArray.from_arrays(
                [c.to_arrow(n, pa.float64()) for c in self._terms.values()], names=list(self._terms)
            )
        if self._info:
            cols["info"] = pa.StructArray.from_arrays([c.to_arrow(n) for c in self._info.values()], names=list(self._info))
        for name in ("logp", "entropy", "value"):
            if name in self._policy:
                cols[name] = self._policy[name].to_arrow(n, _POLICY_TYPES[name])
        if self._q.rows:
            width = max(len(v) for v in self._q.values)
            vals = [v if len(v) == width else np.full(width, np.nan, np.float32) for v in self._q.values]
            flat = pa.array(np.concatenate(vals)) if vals else pa.array([], pa.float32())
            cols["q"] = scatter(pa.FixedSizeListArray.from_arrays(flat, width), self._q.rows, n)
        if "policy_version" in self._policy:
            cols["policy_version"] = self._policy["policy_version"].to_arrow(n, pa.int32())
        return pa.table(cols)

    def _final_obs_array(self, n: int) -> pa.Array:
        array, failures = sparse_to_arrow(self._obs_spec, self._final_obs.rows, self._final_obs.values, n)
        for reason in failures:
            self._drop(f"final_obs: {reason} (recorded as null)")
        return array

    def _flush(self) -> None:
        """Write the buffered rows as one closed Parquet segment."""
        n = self._n
        self._next_flush = time.perf_counter() + self.flush_seconds
        if n:
            try:
                table = self._segment_table(n)
                write_parquet_atomic(self._parts / schema.STEP_SEGMENT.format(self._segments), table)
                self._segments += 1
                self._rows_flushed += n
            except Exception as exc:
                self._drop(f"segment of {n} steps could not be written: {type(exc).__name__}: {exc}", n)
            pending = self._single and bool(self._envs) and self._envs[0].has_obs
            pending_is_null = pending and n in self._obs.null_rows
            if pending:
                self._obs.copy_row(0, self._obs, n)  # the pending observation moves to row 0
            self._n = 0
            self._new_segment_state()
            if pending_is_null:
                self._obs.set_null(0)
        if self._metric_rows:
            self._flush_metrics()
        self._update_parts_manifest()

    def _flush_metrics(self) -> None:
        rows, self._metric_rows = self._metric_rows, []
        gs, wall, names, values = zip(*rows)
        table = pa.table(
            {
                "run_id": pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(rows), np.int32)), pa.array([self.run_id])),
                "global_step": pa.array(gs, pa.int64()),
                "wall_time": pa.array(wall, pa.float64()),
                "name": pa.array(names, pa.string()).dictionary_encode(),
                "value": pa.array(values, pa.float64()),
            }
        ).cast(schema.METRICS_SCHEMA)
        self._flush_metrics_table(table)

    def _flush_metrics_table(self, table: pa.Table) -> None:
        rows = table.num_rows
        try:
            write_parquet_atomic(self._parts / schema.METRICS_SEGMENT.format(self._metric_segments), table)
            self._metric_segments += 1
        except Exception as exc:
            self._drop(f"metrics segment could not be written: {type(exc).__name__}: {exc}", rows)

    def _update_parts_manifest(self) -> None:
        m = self._manifest
        m["counts"] = {
            "steps": self._rows_flushed + self._n,
            "episodes": self._episodes_done,
            "abandoned_episodes": self._abandoned,
            "segments": self._segments,
            "metrics": 0,
        }
        m["dropped"] = dict(self._dropped)
        m["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            write_parts_manifest(self._parts, m)
        except Exception as exc:
            self._drop(f"manifest could not be written: {type(exc).__name__}: {exc}")

    def annotate(self, **config: Any) -> None:
        """Add entries to the manifest's ``config`` (e.g. a file saved beside the run).

        They are written with the manifest at the next flush and at ``close()``.
        """
        if self._closed:
            raise ConfigError("annotate() after close(): the manifest is final")
        self._manifest["config"].update(config)

    def write_segment(self, table: pa.Table, *, kind: str = "steps", episodes: int = 0) -> None:
        """Add rows built outside the step loop as one closed segment of this run.

        For importers whose source holds whole columns (episode summaries, a
        metrics log with its own wall times). ``kind`` is ``"steps"`` (the
        table needs the required step columns, ``run_id`` equal to this run's;
        ``episodes`` is how many of its rows end an episode) or
        ``"metrics"`` (the metrics schema). A recorder fed by ``step()`` /
        ``step_batch()`` cannot take step segments too.
        """
        if self._closed:
            raise ConfigError("write_segment after close")
        if kind == "metrics":
            table = table.select([f.name for f in schema.METRICS_SCHEMA]).cast(schema.METRICS_SCHEMA)
            self._flush_metrics_table(table)
            return
        if kind != "steps":
            raise ConfigError(f"kind must be 'steps' or 'metrics', got {kind!r}")
        if self._capacity or self._envs or self._batch is not None:
            raise ConfigError("write_segment(kind='steps') on a recorder that records steps; use one way per run")
        missing = [c for c in schema.REQUIRED_STEP_COLUMNS if c not in table.column_names]
        if missing:
            raise ConfigError(f"a step segment needs the columns {', '.join(missing)}")
        ids = table.column("run_id").unique().to_pylist()
        if any(str(i) != self.run_id for i in ids):
            raise ConfigError(f"a step segment of run {self.run_id!r} holds rows of {ids!r}")
        write_parquet_atomic(self._parts / schema.STEP_SEGMENT.format(self._segments), table)
        self._segments += 1
        self._rows_flushed += table.num_rows
        self._episodes_done += int(episodes)
        self._update_parts_manifest()

    @property
    def rows(self) -> int:
        """Rows recorded so far (written and buffered)."""
        return self._rows_flushed + self._n

    def flush(self) -> None:
        """Write buffered rows now (normally automatic)."""
        if self._capacity and not self._closed:
            self._flush()

    # -- problems ---------------------------------------------------------------------

    def _drop(self, reason: str, count: int = 1) -> None:
        reason = reason if len(reason) <= 200 else reason[:197] + "..."
        self._dropped[reason] += count
        if not self._warned:
            self._warned = True
            try:
                warnings.warn(
                    f"rlaudit recorder (run {self.run_id}): {reason}. Further problems are counted "
                    "in the run manifest under 'dropped' and not warned again.",
                    RecorderWarning,
                    stacklevel=4,
                )
            except Exception:
                pass

    @property
    def dropped(self) -> dict[str, int]:
        """What could not be stored, by reason, with counts."""
        return dict(self._dropped)

    # -- closing ------------------------------------------------------------------------

    def close(self, *, status: str = schema.STATUS_COMPLETE, error: str | None = None) -> Path | None:
        """Flush, merge the segments into ``<run_id>.parquet`` and return its path.

        Never raises because of the data: if the merge fails the parts folder
        is kept (``rlaudit recover`` finalises it) and a warning says why.
        """
        if self._closed:
            return self.path if self.path.exists() else None
        self._closed = True
        _open_recorders.discard(self)
        try:
            if self._capacity:
                self._flush()
            elif self._metric_rows:
                self._flush_metrics()
            self._update_parts_manifest()
            duration = time.perf_counter() - self._t0
            finalize_run(
                self._parts,
                status,
                {
                    "ended_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "duration_s": round(duration, 6),
                    "error": error,
                    "counts": {"episodes": self._episodes_done, "abandoned_episodes": self._abandoned},
                },
            )
            return self.path
        except Exception as exc:
            warnings.warn(
                f"rlaudit recorder (run {self.run_id}): could not finalise {self.path} ({exc}); "
                f"the data is kept in {self._parts}; run `rlaudit recover {self.store}`",
                RecorderWarning,
                stacklevel=2,
            )
            return None

    def __enter__(self) -> "Recorder":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        error = None if exc is None else f"{exc_type.__name__}: {exc}"
        self.close(error=error)


def _close_all(reason: str = "process exited without Recorder.close()") -> None:
    for rec in list(_open_recorders):
        try:
            rec.close(error=reason)
        except Exception:
            pass


atexit.register(_close_all)

_sigterm_installed = False


def _install_sigterm_handler() -> None:
    """Finalise open runs on SIGTERM (schedulers send it before SIGKILL).

    Installed only in the main thread and only over the default handler.
    """
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def _on_sigterm(signum, frame):
            _close_all("terminated by SIGTERM")
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True
    except (ValueError, OSError):
        pass
