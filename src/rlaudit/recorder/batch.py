"""The recorder's batched API for vector envs: one call records every sub-env.

Per sub-env counters are numpy arrays and every column is written with slice
assignments, so the cost of a call is shared by its sub-environments.  A
recorder is driven either per env (``reset``/``step``) or per batch
(``reset_batch``/``step_batch``); calls of the other kind are counted as
dropped, never raised.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np

from rlaudit.errors import ConfigError
from rlaudit.recorder.columns import Sparse, make_column, normalise, shift, snapshot

AUTORESET_MODES = ("next_step", "same_step", "disabled")


class _BatchState:
    """Counters of every sub-env, as arrays."""

    def __init__(self, n: int) -> None:
        self.episode = np.full(n, -1, np.int64)
        self.t = np.zeros(n, np.int32)
        self.done = np.zeros(n, bool)  # finished; the next NEXT_STEP call is its reset
        self.seed = np.zeros(n, np.int64)
        self.seeded = np.zeros(n, bool)
        self.unstarted = n  # sub-envs never reset (episode -1); 0 spares steps the check

    def __len__(self) -> int:
        return len(self.episode)


def _batch_size(values: Any) -> int:
    if isinstance(values, dict):
        return len(next(iter(values.values())))
    if isinstance(values, tuple):
        return len(values[0])
    return len(values)


def _item(values: Any, k: int) -> Any:
    """Sub-env ``k``'s entry of a batched observation (array, dict or tuple)."""
    if isinstance(values, dict):
        return {key: _item(v, k) for key, v in values.items()}
    if isinstance(values, tuple):
        return tuple(_item(v, k) for v in values)
    return np.asarray(values)[k]


def _scalars(arr: np.ndarray) -> list[Any]:
    """Info values of one key as storable Python scalars."""
    kind = arr.dtype.kind
    if kind == "b":
        return arr.tolist()
    if kind in "iuf":
        return arr.astype(np.float64).tolist()
    if kind in "US":
        return [str(x) for x in arr.tolist()]
    return [normalise(x) for x in arr]


class BatchRecording:
    """``reset_batch`` / ``step_batch``; mixed into :class:`rlaudit.Recorder`."""

    _batch: _BatchState | None = None

    def reset_batch(
        self, obs: Any, *, seeds: Any = None, infos: Mapping | None = None, mask: Any = None, env_offset: int = 0
    ) -> None:
        """Start new episodes for the sub-envs in ``mask`` (default: all).

        ``seeds``: one int (sub-env ``k`` gets ``seeds + k``, as Gymnasium
        does) or one seed (or None) per sub-env.  ``env_offset``: the
        ``env_index`` of the batch's first sub-env, so that a second vector
        env (an evaluation env) can share the recorder with indices after the
        first one's.
        """
        if self._closed:
            self._drop("reset after close")
            return
        try:
            self._reset_batch(obs, seeds, mask, env_offset)
        except Exception as exc:
            self._drop(f"reset_batch: {type(exc).__name__}: {exc}")

    def _batch_state(self, n: int) -> _BatchState | None:
        if self._envs:
            self._drop("reset_batch()/step_batch() on a recorder driven by reset()/step(); use one API per recorder")
            return None
        b = self._batch
        if b is None or len(b) < n:
            grown = _BatchState(n)
            if b is not None:
                for name in ("episode", "t", "done", "seed", "seeded"):
                    getattr(grown, name)[: len(b)] = getattr(b, name)
            self._batch = b = grown
            self._leave_single()
            staging = make_column(self._obs_spec, n)
            if self._staging is not None:
                staging.gather(0, self._staging, np.arange(self._staging.capacity))
            self._staging = staging
        return b

    def _reset_batch(self, obs, seeds, mask, offset: int = 0) -> None:
        n = _batch_size(obs)
        if self._obs_spec is None and not self._ensure_obs_spec(_item(obs, 0)):
            return
        b = self._batch_state(offset + n)
        if b is None:
            return
        local = np.arange(n) if mask is None else np.flatnonzero(np.asarray(mask, dtype=bool))
        self._staging.put_rows(local, obs, offset)
        rows = local + offset
        b.episode[rows] += 1
        b.t[rows] = 0
        b.done[rows] = False
        b.seeded[rows] = False
        if b.unstarted:
            b.unstarted = int(np.count_nonzero(b.episode < 0))
        if seeds is not None:
            if isinstance(seeds, (int, np.integer)):
                seed_list = [int(seeds) + k for k in range(n)]
            else:
                seed_list = list(seeds)
            for e in local:
                if seed_list[e] is not None:
                    b.seed[offset + e] = int(seed_list[e])
                    b.seeded[offset + e] = True

    def step_batch(
        self,
        actions: Any,
        next_obs: Any,
        rewards: Any,
        terminations: Any,
        truncations: Any,
        infos: Mapping | None = None,
        *,
        autoreset_mode: str = "next_step",
        final_obs: Any = None,
        logp: Any = None,
        entropy: Any = None,
        value: Any = None,
        q: Any = None,
        policy_version: Any = None,
        reward_terms: Mapping[str, Any] | None = None,
        env_offset: int = 0,
    ) -> None:
        """Record one step of a vector env (arguments in ``envs.step`` order).

        ``autoreset_mode`` follows Gymnasium 1.x: with ``"next_step"`` (its
        default) the call after a sub-env finished is that sub-env's reset and
        is not recorded as a transition; with ``"same_step"`` ``next_obs``
        already holds the reset observation and the true last observation comes
        from ``final_obs`` (or ``infos["final_obs"]``); with ``"disabled"``
        finished sub-envs must be reset with ``reset_batch(..., mask=...)``.
        Policy data are arrays with one entry per sub-env (``q``: one row).
        ``env_offset`` as in :meth:`reset_batch`.
        """
        if self._closed:
            self._drop("step after close")
            return
        if autoreset_mode not in AUTORESET_MODES:
            raise ConfigError(f"autoreset_mode must be one of {', '.join(AUTORESET_MODES)}, got {autoreset_mode!r}")
        try:
            self._step_batch(actions, next_obs, rewards, terminations, truncations, infos, autoreset_mode,
                             final_obs, logp, entropy, value, q, policy_version, reward_terms, env_offset)
        except Exception as exc:
            self._drop(f"step_batch: {type(exc).__name__}: {exc}")

    def _step_batch(self, actions, next_obs, rewards, terminations, truncations, infos, autoreset_mode,
                    final_obs, logp, entropy, value, q, policy_version, reward_terms, offset=0) -> None:
        rewards = np.asarray(rewards, dtype=np.float64).ravel()
        terminations = np.asarray(terminations, dtype=bool).ravel()
        truncations = np.asarray(truncations, dtype=bool).ravel()
        n = len(rewards)
        b = self._batch
        end = offset + n
        # np.count_nonzero, not .any(): a fraction of the cost on the few sub-envs of a batch
        if b is None or len(b) < end or (b.unstarted and np.count_nonzero(b.episode[offset:end] < 0)):
            if not self._envs:
                self._drop("step_batch without reset_batch before it: first observations unknown")
                self._reset_batch(next_obs, None, None, offset)
            else:
                self._batch_state(end)  # counts the mixed use
            self.global_step += n
            return
        if not self._capacity:
            if self._act_spec is None:
                self._act_spec = self._infer_action_spec(_item(actions, 0))
            self._allocate(min_rows=n)
        # this batch's sub-envs' counters (views: updates reach the state)
        b_episode, b_t, b_done = b.episode[offset:end], b.t[offset:end], b.done[offset:end]
        b_seed, b_seeded = b.seed[offset:end], b.seeded[offset:end]
        was_done = b_done.copy()
        any_was_done = np.count_nonzero(was_done)
        if any_was_done:
            if autoreset_mode == "disabled":
                self._drop("step_batch on a finished sub-env that was not reset (autoreset disabled)")
            idx = np.flatnonzero(~was_done)  # NEXT_STEP: these sub-envs' calls are their resets
            sel: slice | np.ndarray = idx
            k = len(idx)
        else:
            idx = None
            sel = slice(0, n)  # every sub-env took a step: slices, no fancy indexing
            k = n
        if self._n + k > self._capacity:
            self._flush()
        i = self._n
        done = terminations | truncations
        any_done = np.count_nonzero(done)
        now = time.perf_counter()
        if k:
            sl = slice(i, i + k)
            self._obs.gather(i, self._staging, shift(sel, offset))
            self._action.set_rows(i, actions, sel)
            if k == 1:  # one row: one structured write (as step() does), not one per column
                j = 0 if idx is None else int(idx[0])
                self._row_fields[i] = (offset + j, b_episode[j], b_t[j], self.global_step, self._phase_code,
                                       now - self._t0, rewards[j], terminations[j], truncations[j])
            else:
                f = self._fields
                f["env_index"][sl] = np.arange(offset, end)[sel]
                f["episode"][sl] = b_episode[sel]
                f["t"][sl] = b_t[sel]
                f["global_step"][sl] = self.global_step
                f["phase"][sl] = self._phase_code
                f["wall_time"][sl] = now - self._t0
                f["reward"][sl] = rewards[sel]
                f["terminated"][sl] = terminations[sel]
                f["truncated"][sl] = truncations[sel]
            if np.count_nonzero(b_seeded):
                seeded = np.flatnonzero(b_seeded[sel])
                envs = seeded if idx is None else idx[seeded]
                self._reset_seed.extend((i + seeded).tolist(), b_seed[envs].tolist())
                b_seeded[envs] = False
            row_ids = range(i, i + k)
            if infos:
                self._add_batch_info(i, sel, infos)
            for name, vals in (reward_terms or {}).items():
                vals = np.broadcast_to(np.asarray(vals, dtype=np.float64).ravel(), (n,))[sel]
                self._terms.setdefault(str(name), Sparse()).extend(row_ids, vals.tolist())
            for name, vals in (("logp", logp), ("entropy", entropy), ("value", value), ("policy_version", policy_version)):
                if vals is not None:
                    arr = np.asarray(vals, dtype=np.int64 if name == "policy_version" else np.float64).ravel()
                    if arr.shape[0] == n:
                        values = (arr if idx is None else arr[sel]).tolist()
                    elif arr.shape[0] == 1:  # one value for every sub-env
                        values = arr.tolist() * k
                    else:
                        raise ValueError(f"{name}: {arr.shape[0]} values for {n} sub-envs")
                    col = self._policy.get(name)
                    if col is None:
                        col = self._policy[name] = Sparse()
                    col.extend(row_ids, values)
            if q is not None:
                self._q.extend(row_ids, list(np.asarray(q, dtype=np.float32).reshape(n, -1)[sel]))
            if any_done:
                ended = np.flatnonzero(done[sel])
                if len(ended):
                    source = next_obs
                    if autoreset_mode == "same_step":
                        source = final_obs if final_obs is not None else (infos or {}).get("final_obs")
                        if source is None:
                            self._drop("same_step autoreset without final_obs: last observations not recorded", len(ended))
                    if source is not None:
                        for p in ended:
                            e = int(p) if idx is None else int(idx[p])
                            self._final_obs.add(i + int(p), snapshot(_item(source, e)))
                    self._episodes_done += len(ended)
            self._n = i + k
            b_t[sel] += 1
        self.global_step += n

        # per sub-env state, and the observations of the next call
        if not any_done and not any_was_done:
            self._staging.put_rows(slice(0, n), next_obs, offset)
        else:
            active = ~was_done
            finished = active & done
            if autoreset_mode == "same_step":  # next_obs already holds the reset observation
                b_episode[finished] += 1
                b_t[finished] = 0
                stage = np.flatnonzero(active)
            else:
                b_done |= finished
                if autoreset_mode == "next_step":  # this call was the reset of the sub-envs done before
                    b_episode[was_done] += 1
                    b_t[was_done] = 0
                    b_done[was_done] = False
                    stage = np.flatnonzero((active & ~done) | was_done)
                else:
                    stage = np.flatnonzero(active & ~done)
            if len(stage):
                self._staging.put_rows(stage, next_obs, offset)
        if self._n >= self._capacity or now >= self._next_flush:
            self._flush()

    def _add_batch_info(self, i: int, sel: np.ndarray | slice, infos: Mapping, prefix: str = "") -> None:
        """Gymnasium vector infos: ``{key: array, "_key": mask}``, nested dicts allowed."""
        terms_prefix = self.info_prefix
        for key, v in infos.items():
            if not isinstance(key, str) or key.startswith("_") or (not prefix and key in ("final_obs", "final_info")):
                continue
            name = f"{prefix}{key}"
            if isinstance(v, Mapping):
                self._add_batch_info(i, sel, v, name + ".")
                continue
            mask = infos.get("_" + key)
            try:
                values = np.asarray(v)[sel]
                if mask is None:
                    pos = np.arange(len(values))
                else:
                    pos = np.flatnonzero(np.asarray(mask, dtype=bool)[sel])
                    values = values[pos]
                if not len(pos):
                    continue
                vals = _scalars(values)
            except (TypeError, IndexError, ValueError) as exc:
                self._drop(f"info[{name!r}]: {exc} is not a scalar (not stored)")
                continue
            if terms_prefix is not None and not prefix and name.startswith(terms_prefix) and len(name) > len(terms_prefix):
                col = self._terms.setdefault(name[len(terms_prefix):], Sparse())
                vals = [float(x) for x in vals]
            else:
                col = self._info.setdefault(name, Sparse())
            col.extend((i + pos).tolist(), vals)
