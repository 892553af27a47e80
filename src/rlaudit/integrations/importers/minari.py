"""Import a Minari dataset (read through the ``minari`` package) as one rlaudit run.

Each Minari episode becomes one episode of the run, row by row through the
recorder: row ``t`` holds ``observations[t]`` (the observation the action was
chosen from), ``actions[t]``, ``rewards[t]``, ``terminations[t]`` and
``truncations[t]``; the episode's extra observation ``observations[L]`` is the
last row's ``final_obs``. Infos (``L + 1`` entries; the first is the reset's)
are stored from the step infos where they are one number, bool or string per
step; nested dicts are flattened with ``.``. The reset seed of each episode is
kept when it fits in int64.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from rlaudit.errors import ConfigError, StoreError
from rlaudit.integrations.importers.common import ImportResult, check_free, refuse_reimport, require, resolved, run_id_from
from rlaudit.recorder.core import Recorder

_INT64_MAX = 2**63 - 1


def _item(values: Any, k: int) -> Any:
    """Step ``k`` of an episode's observations/actions (array, dict or tuple of arrays)."""
    if isinstance(values, dict):
        return {key: _item(v, k) for key, v in values.items()}
    if isinstance(values, tuple):
        return tuple(_item(v, k) for v in values)
    return values[k]


def _flat_infos(infos: Any, length: int, prefix: str = "") -> Iterator[tuple[str, np.ndarray | None]]:
    """(name, per-step values) for every info entry; None for entries that are not one scalar per step."""
    if not isinstance(infos, dict):
        return
    for key, v in infos.items():
        name = f"{prefix}{key}"
        if isinstance(v, dict):
            yield from _flat_infos(v, length, name + ".")
            continue
        arr = np.asarray(v)
        if arr.dtype == object and arr.ndim == 1 and len(arr) and all(isinstance(d, dict) for d in arr):
            # Minari's arrow storage gives a nested info as one dict per step
            keys = dict.fromkeys(k for d in arr for k in d)
            if all(set(d) == set(keys) for d in arr):
                yield from _flat_infos({k: [d[k] for d in arr] for k in keys}, length, name + ".")
                continue
        if arr.ndim == 1 and len(arr) == length + 1 and arr.dtype.kind in "biufUS":
            yield name, arr
        elif arr.ndim == 2 and arr.shape == (length + 1, 1) and arr.dtype.kind in "biuf":
            yield name, arr[:, 0]
        else:
            yield name, None


def _plain(x: Any) -> Any:
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.floating):
        return float(x)
    if isinstance(x, bytes):
        return x.decode(errors="replace")
    return str(x) if isinstance(x, np.str_) else x


def open_dataset(source: str) -> tuple[Any, str]:
    """The MinariDataset named by ``source`` (a dataset folder, its ``data`` folder, or a local dataset id)."""
    minari = require("minari", "minari")
    path = Path(source)
    if path.exists():
        data = path / "data" if (path / "data" / "metadata.json").exists() else path
        if not (data / "metadata.json").exists():
            raise StoreError(
                f"expected a Minari dataset folder (with data/metadata.json), found {source} without one; "
                "pass the dataset's folder or its id"
            )
        try:
            return minari.MinariDataset(str(data)), resolved(data)
        except Exception as exc:
            raise StoreError(f"cannot read the Minari dataset in {data}: {type(exc).__name__}: {exc}") from None
    try:
        dataset = minari.load_dataset(source, download=False)
    except FileNotFoundError:
        where = os.environ.get("MINARI_DATASETS_PATH") or "~/.minari/datasets"
        raise StoreError(
            f"expected a Minari dataset folder or a local dataset id, found neither: {source!r} is not a path "
            f"and not a dataset under {where} (set MINARI_DATASETS_PATH, or download it with 'minari download')"
        ) from None
    except ValueError as exc:
        raise ConfigError(f"{source!r} is neither a path nor a Minari dataset id: {exc}") from None
    return dataset, resolved(dataset.spec.data_path)


def import_minari(source: str, store: str | os.PathLike, *, run_id: str | None = None) -> ImportResult:
    """Import the Minari dataset ``source`` into ``store`` as one run (id: the dataset id, or ``run_id``)."""
    dataset, data_path = open_dataset(source)
    spec = dataset.spec
    meta = dataset.storage.metadata
    origin = {
        "kind": "minari",
        "path": data_path,
        "dataset_id": spec.dataset_id,
        "minari_version": spec.minari_version,
        "data_format": meta.get("data_format"),
        "episodes": int(spec.total_episodes),
        "steps": int(spec.total_steps),
    }
    store = Path(store)
    refuse_reimport(store, origin, run_id is not None)
    env_spec = spec.env_spec
    env_id, env_kwargs, env_meta = None, {}, {}
    if env_spec is not None:
        env_id, env_kwargs = env_spec.id, dict(env_spec.kwargs or {})
        env_meta = {
            "max_episode_steps": env_spec.max_episode_steps,
            "entry_point": env_spec.entry_point if isinstance(env_spec.entry_point, str) else repr(env_spec.entry_point),
        }
    config: dict[str, Any] = {"source": origin}
    if meta.get("algorithm_name"):
        config["agent"] = meta["algorithm_name"]
    for key in ("author", "code_permalink", "description", "ref_min_score", "ref_max_score"):
        if meta.get(key) is not None:
            value = meta[key]
            config.setdefault("minari", {})[key] = sorted(value) if isinstance(value, set) else value

    run_id = run_id or run_id_from(spec.dataset_id)
    check_free(store, run_id)
    notes: list[str] = []
    skipped_infos: set[str] = set()
    big_seeds = 0
    indices = list(dataset.episode_indices)
    episode_meta = list(dataset.storage.get_episode_metadata(indices))
    with Recorder(
        store, run_id, config=config, env_id=env_id, env_kwargs=env_kwargs,
        observation_space=dataset.observation_space, action_space=dataset.action_space, env_meta=env_meta,
        on_exists="error", handle_sigterm=False,
    ) as rec:
        for episode, ep_meta in zip(dataset.iterate_episodes(indices), episode_meta):
            length = len(episode)
            seed = ep_meta.get("seed") if isinstance(ep_meta, dict) else None
            if seed is not None and not (0 <= int(seed) <= _INT64_MAX):
                big_seeds += 1
                seed = None
            infos: dict[str, np.ndarray] = {}
            for name, values in _flat_infos(episode.infos, length):
                if values is None:
                    skipped_infos.add(name)
                else:
                    infos[name] = values
            obs, actions = episode.observations, episode.actions
            rec.reset(_item(obs, 0), seed=None if seed is None else int(seed))
            rewards = np.asarray(episode.rewards, dtype=np.float64)
            terms = np.asarray(episode.terminations, dtype=bool)
            truncs = np.asarray(episode.truncations, dtype=bool)
            for t in range(length):
                info = {name: _plain(values[t + 1]) for name, values in infos.items()}
                rec.step(_item(actions, t), _item(obs, t + 1), float(rewards[t]), bool(terms[t]), bool(truncs[t]), info)
            if length and not (terms[-1] or truncs[-1]):
                notes.append(f"episode {episode.id} ends without a termination or truncation flag")
        steps, episodes = rec.rows, len(indices)
    if skipped_infos:
        notes.append("infos not stored (not one scalar per step): " + ", ".join(sorted(skipped_infos)))
    if big_seeds:
        notes.append(f"{big_seeds} episode seeds do not fit in int64 and were not stored (reset_seed is null)")
    dropped = rec.dropped
    if dropped:
        notes.append("recorder dropped: " + "; ".join(f"{k} ({n})" for k, n in sorted(dropped.items())))
    return ImportResult(kind="minari", source=source, run_id=rec.run_id, path=str(rec.path), steps=steps,
                        episodes=episodes, notes=tuple(notes))
