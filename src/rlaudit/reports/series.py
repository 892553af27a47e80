"""Plot data for the report: per-run signals downsampled to a few hundred points.

:func:`compute_series` runs a handful of DuckDB aggregates over the
``steps`` and ``metrics`` views (one scan each, grouped into at most
``BINS`` bins of ``global_step`` per run) and returns plain data that
``Audit.series`` carries into ``audit.json``. The HTML report draws only
what is here; docs/audit-format.md documents the shape.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

#: bins of global_step per run (points per signal)
BINS = 200
#: cells per axis of the state-visitation heatmap
HEAT_BINS = 16
#: steps per run the heatmap counts at most: all of a shorter run, else evenly spaced windows
VISIT_STEPS = 262_144
VISIT_WINDOWS = 4
#: global_step ranges closer than this (the recorder's row group) are read as one
MERGE_GAP = 65_536
#: points kept per phase-space trajectory
TRAJECTORY_POINTS = 200
#: at most this many actions get their own share curve and heatmap panel
MAX_ACTIONS = 12
#: at most this many metrics are kept per run
MAX_METRICS = 16
#: significant digits kept in the series (plots need no more)
DIGITS = 5

#: names of observation dimensions for envs whose observation is a flat vector, and the two drawn
OBS_LAYOUTS = {
    "rlaudit/Career-v0": (("salary_norm", "burnout", "tenure_norm", "market"), (0, 1)),
}


def _r(x: Any) -> Any:
    """Round to DIGITS significant digits; None for missing or non-finite values."""
    if x is None:
        return None
    x = float(x)
    if not math.isfinite(x):
        return None
    return float(f"{x:.{DIGITS}g}")


def _rl(values) -> list:
    """_r over a sequence, vectorised."""
    arr = np.asarray([np.nan if v is None else v for v in values], dtype=float)
    if not arr.size:
        return []
    finite = np.isfinite(arr) & (arr != 0)
    mag = np.zeros_like(arr)
    mag[finite] = np.floor(np.log10(np.abs(arr[finite])))
    scale = 10.0 ** (DIGITS - 1 - mag)
    rounded = np.round(arr * scale) / scale
    return [None if not math.isfinite(v) else v for v in rounded.tolist()]


def _bins_of(steps: int) -> int:
    """Global steps per bin for a run of ``steps`` rows."""
    return max(1, math.ceil(max(steps, 1) / BINS))


def _with_runs(extra: str = "") -> str:
    """A CTE ``w(run_id, width[, ...])`` from bound list parameters."""
    return f"WITH w AS (SELECT unnest($ids) AS run_id, unnest($widths) AS width{extra}) "


def _env_id(manifest: dict) -> str | None:
    env = manifest.get("env")
    env_id = env.get("id") if isinstance(env, dict) else env
    return env_id if isinstance(env_id, str) else None


def _reward_name(manifest: dict) -> str | None:
    reward = manifest.get("reward")
    name = reward.get("name") if isinstance(reward, dict) else reward
    return name if isinstance(name, str) else None


def _discrete_actions(manifest: dict) -> int | None:
    space = (manifest.get("spaces") or {}).get("action") or {}
    if space.get("type") == "Discrete" and isinstance(space.get("n"), int):
        return int(space["n"]) + int(space.get("start") or 0)
    return None


def _box_bounds(manifest: dict, dims: tuple[int, int]) -> list[list[float]] | None:
    """[[lo, hi], [lo, hi]] of two Box dimensions, when the manifest gives finite bounds."""
    space = (manifest.get("spaces") or {}).get("observation") or {}
    if space.get("type") != "Box":
        return None
    out = []
    for d in dims:
        pair = []
        for key in ("low", "high"):
            b = space.get(key)
            v = b[d] if isinstance(b, list) and d < len(b) else b
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                return None
            pair.append(float(v))
        if pair[1] <= pair[0]:
            return None
        out.append(pair)
    return out


def _binned(bins: np.ndarray, values: np.ndarray, quantiles=(0.25, 0.75)):
    """Per distinct bin (sorted): bin, mean, low quantile, high quantile, count."""
    keep = np.isfinite(values)
    bins, values = bins[keep], values[keep]
    if not len(bins):
        return [], [], [], [], []
    order = np.lexsort((values, bins))
    bins, values = bins[order], values[order]
    uniq, start, counts = np.unique(bins, return_index=True, return_counts=True)
    means = np.add.reduceat(values, start) / counts

    def quantile(q):
        pos = start + q * (counts - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.ceil(pos).astype(np.int64)
        return values[lo] + (pos - lo) * (values[hi] - values[lo])

    return uniq.tolist(), means.tolist(), quantile(quantiles[0]).tolist(), quantile(quantiles[1]).tolist(), \
        counts.tolist()


def _centre(bins, width: int) -> list[int]:
    return [int(b) * width + width // 2 for b in bins]


def _struct_names(store, column: str) -> tuple[str, ...]:
    names: list[str] = []
    for run in store.runs.values():
        for name in run.struct_fields.get(column, ()):
            if name not in names:
                names.append(name)
    return tuple(names)


def _obs_layout(store) -> dict[str, tuple[tuple[int, int], tuple[str, str]]]:
    """Per run with a flat float observation of two or more dimensions: the two dimensions drawn and their labels."""
    out = {}
    typ = _column_type(store, "obs")
    if typ is None or not typ.endswith("[]") or typ.startswith(("STRUCT", "MAP")):
        return out
    for rid, run in store.runs.items():
        space = (run.manifest.get("spaces") or {}).get("observation") or {}
        shape = space.get("shape")
        if space.get("type") != "Box" or not isinstance(shape, list) or len(shape) != 1 or shape[0] < 2:
            continue
        names, dims = OBS_LAYOUTS.get(_env_id(run.manifest) or "", (None, (0, 1)))
        labels = tuple(names[d] if names and d < len(names) else f"obs[{d}]" for d in dims)
        out[rid] = (dims, labels)
    return out


def _column_type(store, column: str) -> str | None:
    if column not in store.step_columns:
        return None
    for name, typ, *_ in store.sql("DESCRIBE steps").rows():
        if name == column:
            return str(typ)
    return None


def compute_series(store) -> dict[str, Any]:
    """The report's plot data for every run of ``store`` (see docs/audit-format.md, ``series``)."""
    ids = list(store.run_ids)
    if not ids:
        return {"bins": BINS, "runs": {}, "groups": []}
    widths = [_bins_of(store.runs[r].steps) for r in ids]
    width_of = dict(zip(ids, widths))
    runs: dict[str, dict[str, Any]] = {rid: {"bin_width": width_of[rid]} for rid in ids}
    cols = set(store.step_columns)

    episodes = _episode_table(store, ids, widths, cols)
    for rid in ids:
        runs[rid].update(_episode_series(store.runs[rid], episodes.get(rid), width_of[rid]))
    _step_series(store, ids, widths, cols, runs)
    layout = _obs_layout(store)
    _trajectories(store, episodes, runs, layout)
    _visitation(store, ids, runs, layout)
    _metrics(store, ids, widths, runs)
    return {"bins": BINS, "runs": runs, "groups": _groups(store, ids, episodes)}


# ---------------------------------------------------------------------------
# episodes: returns, evaluation, value estimates
# ---------------------------------------------------------------------------


def _episode_table(store, ids, widths, cols) -> dict[str, dict[str, np.ndarray]]:
    """Per run, one entry per episode: env_index, episode, phase, length, return, discounted return,
    first/last global step, the value estimate at t = 0."""
    gammas = [store.runs[r].gamma if store.runs[r].gamma is not None else 1.0 for r in ids]
    estimate = None
    if "value" in cols:
        estimate = "max(s.value) FILTER (WHERE s.t = 0)"
    elif "q" in cols and _column_type(store, "action") in ("BIGINT", "INTEGER"):
        estimate = "max(s.q[s.action + 1]) FILTER (WHERE s.t = 0)"
    value_cols = (f", sum(s.reward * pow(w.gamma, s.t)) AS disc, {estimate} AS v0" if estimate
                  else ", NULL::DOUBLE AS disc, NULL::DOUBLE AS v0")
    rows = store.sql(
        _with_runs(", unnest($gammas) AS gamma")
        + "SELECT s.run_id, s.env_index, s.episode, any_value(s.phase) AS phase, count(*) AS length, "
        f"sum(s.reward) AS ret, min(s.global_step) AS g0, max(s.global_step) AS g1{value_cols} "
        "FROM steps s JOIN w ON s.run_id = w.run_id GROUP BY s.run_id, s.env_index, s.episode "
        "ORDER BY s.run_id, g1, s.env_index, s.episode",
        ids=ids, widths=widths, gammas=gammas,
    ).arrow()
    out: dict[str, dict[str, np.ndarray]] = {}
    if not rows.num_rows:
        return out
    run_col = np.asarray(rows.column("run_id").to_pylist(), dtype=object)
    data = {
        name: rows.column(name).to_numpy(zero_copy_only=False)
        for name in ("env_index", "episode", "length", "g0", "g1")
    }
    for name in ("ret", "disc", "v0"):
        data[name] = np.asarray(rows.column(name).to_pylist(), dtype=float)
    phase = np.asarray(rows.column("phase").to_pylist(), dtype=object)
    for rid in ids:
        sel = run_col == rid
        if sel.any():
            out[rid] = {k: v[sel] for k, v in data.items()} | {"phase": phase[sel]}
    return out


def _episode_series(run, ep: dict[str, np.ndarray] | None, width: int) -> dict[str, Any]:
    m = run.manifest
    info = {
        "env_id": _env_id(m), "agent": m.get("agent") if isinstance(m.get("agent"), str) else None,
        "reward": _reward_name(m), "seed": m.get("seed") if isinstance(m.get("seed"), int) else None,
        "duration_s": _r(m.get("duration_s")) if isinstance(m.get("duration_s"), (int, float)) else None,
        "num_envs": int(m.get("num_envs") or 1), "gamma": _r(run.gamma),
        "final_eval_return": None, "final_eval_episodes": 0,
    }
    out: dict[str, Any] = {"info": info, "train_return": None, "eval_return": None, "value": None}
    if ep is None:
        return out
    train = ep["phase"] == "train"
    ev = ep["phase"] == "eval"
    if train.any():
        b, mean, lo, hi, n = _binned(ep["g1"][train] // width, ep["ret"][train])
        if b:
            out["train_return"] = {"x": _centre(b, width), "mean": _rl(mean), "low": _rl(lo), "high": _rl(hi),
                                   "episodes": n}
    if ev.any():
        b, mean, lo, hi, n = _binned(ep["g1"][ev] // width, ep["ret"][ev], (0.0, 1.0))
        if b:
            out["eval_return"] = {"x": _centre(b, width), "mean": _rl(mean), "low": _rl(lo), "high": _rl(hi),
                                  "episodes": n}
        # the final evaluation: eval episodes after the last training episode that precedes the last eval episode
        last_eval = ep["g0"][ev].max()
        before = ep["g1"][train & (ep["g1"] < last_eval)]
        cut = before.max() if len(before) else -1
        final = ev & (ep["g0"] > cut)
        finite = final & np.isfinite(ep["ret"])
        if finite.any():
            info["final_eval_return"] = _r(ep["ret"][finite].mean())
            info["final_eval_episodes"] = int(final.sum())
    est = train & np.isfinite(ep["v0"]) & np.isfinite(ep["disc"])
    if est.any():
        b, est_mean, _, _, n = _binned(ep["g1"][est] // width, ep["v0"][est])
        _, real_mean, _, _, _ = _binned(ep["g1"][est] // width, ep["disc"][est])
        out["value"] = {"x": _centre(b, width), "estimate": _rl(est_mean), "realised": _rl(real_mean),
                        "episodes": n, "source": "value" if run.has("value") else "q"}
    return out


# ---------------------------------------------------------------------------
# steps: reward, entropy, actions, reward terms
# ---------------------------------------------------------------------------


def _step_series(store, ids, widths, cols, runs) -> None:
    discrete = _column_type(store, "action") in ("BIGINT", "INTEGER")
    terms = _struct_names(store, "reward_terms") if "reward_terms" in cols else ()
    select = [
        "s.run_id", "s.global_step // w.width AS bin",
        "s.action AS action" if discrete else "NULL AS action",
        # plain aggregates (no FILTER: it costs a second pass per column on large stores); a bin
        # holding a NaN or infinite value gets a null mean and shows as a gap, where the
        # non-finite detector's finding points
        "count(*) AS n",
        "count(s.reward) AS n_finite",
        "sum(s.reward) AS r_sum",
        "min(s.reward) AS r_min",
        "max(s.reward) AS r_max",
        "sum(s.entropy) AS ent_sum" if "entropy" in cols else "NULL AS ent_sum",
        "count(s.entropy) AS ent_n" if "entropy" in cols else "0 AS ent_n",
    ]
    for i, term in enumerate(terms):
        ref = f's.reward_terms."{term.replace(chr(34), chr(34) * 2)}"'
        select.append(f"sum({ref}) AS term_{i}")
    rows = store.sql(
        _with_runs() + "SELECT " + ", ".join(select)
        + " FROM steps s JOIN w ON s.run_id = w.run_id WHERE s.phase = 'train' GROUP BY ALL ORDER BY ALL",
        ids=ids, widths=widths,
    ).rows()
    per_run: dict[str, list[tuple]] = {}
    for row in rows:
        per_run.setdefault(row[0], []).append(row)
    for rid in ids:
        width = runs[rid]["bin_width"]
        run = store.runs[rid]
        out = runs[rid]
        out.update({"reward": None, "entropy": None, "actions": None, "reward_terms": None})
        got = per_run.get(rid)
        if not got:
            continue
        by_bin: dict[int, dict[str, Any]] = {}
        for row in got:
            _, b, action, n, nf, rsum, rmin, rmax, esum, en, *tsums = row
            acc = by_bin.setdefault(int(b), {"n": 0, "nf": 0, "rsum": 0.0, "rmin": None, "rmax": None, "esum": 0.0,
                                             "en": 0, "actions": {}, "terms": [0.0] * len(terms),
                                             "tn": [0] * len(terms)})
            acc["n"] += n
            acc["nf"] += nf
            acc["rsum"] += rsum or 0.0
            if rmin is not None:
                acc["rmin"] = rmin if acc["rmin"] is None else min(acc["rmin"], rmin)
                acc["rmax"] = rmax if acc["rmax"] is None else max(acc["rmax"], rmax)
            acc["esum"] += esum or 0.0
            acc["en"] += en or 0
            if action is not None:
                acc["actions"][int(action)] = acc["actions"].get(int(action), 0) + n
            for i, v in enumerate(tsums):
                if v is not None:
                    acc["terms"][i] += v
                    acc["tn"][i] += n
        bins = sorted(by_bin)
        x = _centre(bins, width)
        out["reward"] = {
            "x": x, "mean": [_r(by_bin[b]["rsum"] / by_bin[b]["nf"]) if by_bin[b]["nf"] else None for b in bins],
            "min": [_r(by_bin[b]["rmin"]) for b in bins], "max": [_r(by_bin[b]["rmax"]) for b in bins],
            "steps": [by_bin[b]["n"] for b in bins],
        }
        n_actions = _discrete_actions(run.manifest)
        seen = sorted({a for b in bins for a in by_bin[b]["actions"]})
        actions = list(range(n_actions)) if n_actions is not None and n_actions <= MAX_ACTIONS else seen
        share = None
        action_entropy = None
        if discrete and seen and len(actions) <= MAX_ACTIONS and set(seen) <= set(actions):
            share = [[_r(by_bin[b]["actions"].get(a, 0) / by_bin[b]["n"]) for b in bins] for a in actions]
            action_entropy = []
            for b in bins:
                p = np.array([by_bin[b]["actions"].get(a, 0) for a in actions], dtype=float) / by_bin[b]["n"]
                p = p[p > 0]
                action_entropy.append(_r(float(-(p * np.log(p)).sum())))
            out["actions"] = {"x": x, "actions": [str(a) for a in actions], "share": share}
        policy = None
        if run.has("entropy"):
            policy = [_r(by_bin[b]["esum"] / by_bin[b]["en"]) if by_bin[b]["en"] else None for b in bins]
        if policy is not None or action_entropy is not None:
            out["entropy"] = {"x": x, "policy": policy, "action": action_entropy}
        run_terms = [i for i, t in enumerate(terms) if run.has(f"reward_terms.{t}")]
        if run_terms:
            out["reward_terms"] = {"x": x, "terms": {
                terms[i]: [_r(by_bin[b]["terms"][i] / by_bin[b]["n"]) for b in bins] for i in run_terms}}


# ---------------------------------------------------------------------------
# observations: state visitation and phase-space trajectories
# ---------------------------------------------------------------------------


def _step_ranges(ranges: list[tuple[str, int, int]], exact: bool = True) -> tuple[str, dict[str, Any]]:
    """A predicate selecting global_step ranges of runs.

    The union of the ranges on ``global_step`` alone comes first: DuckDB pushes it into the
    Parquet scan, so row groups outside every range are skipped unread (an OR that also tests
    ``run_id`` is not pushed down); the exact per-run test follows unless ``exact`` is false
    (the caller then selects rows exactly itself, e.g. with a join).
    """
    spans: list[list[int]] = []
    for a, b in sorted({(int(a), int(b)) for _, a, b in ranges}):
        if spans and a - spans[-1][1] < MERGE_GAP:
            spans[-1][1] = max(spans[-1][1], b)  # a row group between them would be read anyway
        else:
            spans.append([a, b])
    params: dict[str, Any] = {}
    coarse = []
    for i, (a, b) in enumerate(spans):
        coarse.append(f"s.global_step BETWEEN $ga{i} AND $gb{i}")
        params.update({f"ga{i}": a, f"gb{i}": b})
    if not exact:
        return f"({' OR '.join(coarse)})", params
    tests = []
    for i, (rid, a, b) in enumerate(ranges):
        tests.append(f"(s.run_id = $rr{i} AND s.global_step BETWEEN $ra{i} AND $rb{i})")
        params.update({f"rr{i}": rid, f"ra{i}": int(a), f"rb{i}": int(b)})
    return f"({' OR '.join(coarse)}) AND ({' OR '.join(tests)})", params


def _windows(steps: int) -> list[tuple[int, int]]:
    """The global_step windows the heatmap counts: everything, or VISIT_WINDOWS evenly spaced windows."""
    if steps <= VISIT_STEPS:
        return [(0, max(steps, 1) + 1)]
    size = VISIT_STEPS // VISIT_WINDOWS
    starts = [round(k * (steps - size) / (VISIT_WINDOWS - 1)) for k in range(VISIT_WINDOWS)]
    return [(a, a + size - 1) for a in starts]


def _visitation(store, ids, runs, layout) -> None:
    for rid in ids:
        runs[rid]["visitation"] = None
    by_dims: dict[tuple[int, int], list[str]] = {}
    for rid in ids:
        if rid in layout:
            by_dims.setdefault(layout[rid][0], []).append(rid)
    discrete = _column_type(store, "action") in ("BIGINT", "INTEGER")
    for dims, todo in by_dims.items():
        windows = {r: _windows(store.runs[r].steps) for r in todo}
        if any(len(w) > 1 for w in windows.values()):
            where, params = _step_ranges([(r, a, b) for r in todo for a, b in windows[r]])
        else:
            where, params = "true", {}
        params.update(dx=dims[0] + 1, dy=dims[1] + 1)
        finite = "isfinite(s.obs[$dx]) AND isfinite(s.obs[$dy])"
        ranges = {r: _box_bounds(store.runs[r].manifest, dims) for r in todo}
        for rid in todo:
            if ranges[rid] is None:
                ranges[rid] = _observed_range(runs[rid]["trajectories"])
        todo = [r for r in todo if ranges.get(r)]
        if not todo:
            continue
        rows = store.sql(
            "WITH w AS (SELECT unnest($ids) AS run_id, unnest($x0) AS x0, unnest($x1) AS x1, unnest($y0) AS y0, "
            "unnest($y1) AS y1), "
            "o AS (SELECT s.run_id, " + ("s.action" if discrete else "NULL") + " AS action, s.obs[$dx] AS x, "
            f"s.obs[$dy] AS y FROM steps s WHERE s.phase = 'train' AND {finite} AND {where}) "
            "SELECT o.run_id, o.action, "
            "least(greatest(floor((o.x - w.x0) / (w.x1 - w.x0) * $nb), 0), $nb - 1)::INTEGER AS xb, "
            "least(greatest(floor((o.y - w.y0) / (w.y1 - w.y0) * $nb), 0), $nb - 1)::INTEGER AS yb, "
            "count(*) AS n FROM o JOIN w ON o.run_id = w.run_id GROUP BY ALL ORDER BY ALL",
            ids=todo, x0=[ranges[r][0][0] for r in todo], x1=[ranges[r][0][1] for r in todo],
            y0=[ranges[r][1][0] for r in todo], y1=[ranges[r][1][1] for r in todo], nb=HEAT_BINS, **params,
        ).rows()
        grids: dict[str, dict[str, np.ndarray]] = {}
        for rid, action, xb, yb, n in rows:
            g = grids.setdefault(rid, {})
            g.setdefault("all", np.zeros((HEAT_BINS, HEAT_BINS), dtype=np.int64))[yb, xb] += n
            if action is not None:
                g.setdefault(str(action), np.zeros((HEAT_BINS, HEAT_BINS), dtype=np.int64))[yb, xb] += n
        for rid in todo:
            g = grids.get(rid)
            if not g:
                continue
            by_action = {a: g[a].tolist() for a in sorted((k for k in g if k != "all"), key=int)}
            if len(by_action) > MAX_ACTIONS:
                by_action = {}
            runs[rid]["visitation"] = {
                "dims": list(dims), "labels": list(layout[rid][1]), "bins": HEAT_BINS,
                "range": [_rl(pair) for pair in ranges[rid]], "steps": int(g["all"].sum()),
                "windows": [list(w) for w in windows[rid]] if len(windows[rid]) > 1 else None,
                "counts": g["all"].tolist(), "by_action": by_action,
            }


def _observed_range(trajectories) -> list[list[float]] | None:
    """[[lo, hi], [lo, hi]] spanned by the drawn episodes, 5% wider (an unbounded observation's heatmap range;
    reading the range of every step would cost a second pass over the observations)."""
    out = []
    for key in ("x", "y"):
        vals = [v for t in trajectories for v in t[key] if v is not None]
        if not vals:
            return None
        lo, hi = min(vals), max(vals)
        pad = (hi - lo) * 0.05 if hi > lo else 1.0
        out.append([lo - pad, hi + pad])
    return out


def _trajectories(store, episodes, runs, layout) -> None:
    """The best, worst and last training episodes of each run in the two drawn observation dimensions."""
    picks = []
    for rid, run in runs.items():
        run["trajectories"] = []
        ep = episodes.get(rid)
        if rid not in layout or ep is None:
            continue
        train = np.flatnonzero((ep["phase"] == "train") & np.isfinite(ep["ret"]))
        if not len(train):
            continue
        chosen = {
            "best": train[np.argmax(ep["ret"][train])],
            "worst": train[np.argmin(ep["ret"][train])],
            "last": train[np.argmax(ep["g1"][train])],
        }
        for which, i in chosen.items():
            picks.append({"run": rid, "which": which, "env": int(ep["env_index"][i]), "episode": int(ep["episode"][i]),
                          "return": float(ep["ret"][i]), "length": int(ep["length"][i]), "g0": int(ep["g0"][i]),
                          "g1": int(ep["g1"][i]), "dims": tuple(layout[rid][0])})
    by_dims: dict[tuple, list[dict]] = {}
    for p in picks:
        by_dims.setdefault(p["dims"], []).append(p)
    paths: dict[tuple, tuple[list, list]] = {}
    for dims, group in by_dims.items():
        keys = sorted({(p["run"], p["env"], p["episode"], p["length"], p["g0"], p["g1"]) for p in group})
        where, params = _step_ranges([(k[0], k[4], k[5]) for k in keys], exact=False)
        rows = store.sql(
            "WITH e AS (SELECT unnest($ids) AS run_id, unnest($envs) AS env_index, unnest($eps) AS episode, "
            "unnest($every) AS every), "
            "o AS (SELECT s.run_id, s.env_index, s.episode, s.t, s.terminated OR s.truncated AS last, "
            f"s.obs[$dx] AS x, s.obs[$dy] AS y FROM steps s WHERE {where}) "
            "SELECT o.run_id, o.env_index, o.episode, o.t, o.x, o.y FROM o "
            "JOIN e ON o.run_id = e.run_id AND o.env_index = e.env_index AND o.episode = e.episode "
            "WHERE o.t % e.every = 0 OR o.last ORDER BY ALL",
            ids=[k[0] for k in keys], envs=[k[1] for k in keys], eps=[k[2] for k in keys],
            every=[max(1, math.ceil(k[3] / TRAJECTORY_POINTS)) for k in keys], dx=dims[0] + 1, dy=dims[1] + 1,
            **params,
        ).rows()
        for rid, env, episode, _t, x, y in rows:
            xs, ys = paths.setdefault((rid, env, episode), ([], []))
            xs.append(x)
            ys.append(y)
    for p in picks:
        xs, ys = paths.get((p["run"], p["env"], p["episode"]), ([], []))
        runs[p["run"]]["trajectories"].append({
            "which": p["which"], "env_index": p["env"], "episode": p["episode"], "return": _r(p["return"]),
            "steps": p["length"], "x": _rl(xs), "y": _rl(ys)})


# ---------------------------------------------------------------------------
# metrics and cross-seed groups
# ---------------------------------------------------------------------------


def _metrics(store, ids, widths, runs) -> None:
    for rid in ids:
        runs[rid]["metrics"] = {}
    with_metrics = [r for r, w in zip(ids, widths) if store.runs[r].metrics_files]
    if not with_metrics:
        return
    rows = store.sql(
        _with_runs()
        + "SELECT m.run_id, m.name, m.global_step // w.width AS bin, avg(m.value) FILTER (WHERE isfinite(m.value)) "
        "FROM metrics m JOIN w ON m.run_id = w.run_id GROUP BY ALL ORDER BY ALL",
        ids=ids, widths=widths,
    ).rows()
    for rid, name, b, v in rows:
        metrics = runs[rid]["metrics"]
        if name not in metrics and len(metrics) >= MAX_METRICS:
            continue
        m = metrics.setdefault(name, {"x": [], "y": []})
        m["x"].append(int(b) * runs[rid]["bin_width"] + runs[rid]["bin_width"] // 2)
        m["y"].append(_r(v))


#: two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (scipy.stats.t.ppf(0.975, df))
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def _t975(df: int) -> float:
    return _T975[df - 1] if df <= len(_T975) else 1.96 + 2.4 / df  # within 0.002 of the exact value beyond 30


def _group_key(manifest: dict) -> tuple[str, str]:
    """Runs that differ only in their seed share a key; the label names agent, reward and env."""
    env = manifest.get("env") if isinstance(manifest.get("env"), dict) else {}
    key = json.dumps({"env": _env_id(manifest), "kwargs": env.get("kwargs"), "agent": manifest.get("agent"),
                      "reward": manifest.get("reward"), "hp": manifest.get("hyperparameters")},
                     sort_keys=True, default=str)
    kwargs = env.get("kwargs") if isinstance(env.get("kwargs"), dict) else {}
    extras = [f"{k}={v}" for k, v in sorted(kwargs.items()) if isinstance(v, (str, int, float)) and k != "reward"]
    parts = [str(manifest.get("agent") or "?"), _reward_name(manifest) or "?", *extras]
    return key, " · ".join(parts)


def _groups(store, ids, episodes) -> list[dict[str, Any]]:
    """Learning curves aggregated across seeds: mean and 95% t-interval of per-run bin means."""
    grouped: dict[str, list[str]] = {}
    labels: dict[str, str] = {}
    for rid in ids:
        key, label = _group_key(store.runs[rid].manifest)
        grouped.setdefault(key, []).append(rid)
        labels[key] = label
    out = []
    used: dict[str, int] = {}
    for key in sorted(grouped, key=lambda k: (labels[k], k)):
        members = [r for r in grouped[key] if r in episodes and (episodes[r]["phase"] == "train").any()]
        if len(members) < 2:
            continue
        width = max(_bins_of(store.runs[r].steps) for r in members)
        per_run = {}
        for r in members:
            ep = episodes[r]
            train = ep["phase"] == "train"
            b, mean, *_ = _binned(ep["g1"][train] // width, ep["ret"][train])
            per_run[r] = dict(zip(b, mean))
        bins = sorted({b for m in per_run.values() for b in m})
        x, mean, low, high, n = [], [], [], [], []
        for b in bins:
            vals = np.array([per_run[r][b] for r in members if b in per_run[r]])
            if len(vals) < 2:
                continue
            m = float(vals.mean())
            half = _t975(len(vals) - 1) * float(vals.std(ddof=1)) / math.sqrt(len(vals))
            x.append(int(b) * width + width // 2)
            mean.append(_r(m))
            low.append(_r(m - half))
            high.append(_r(m + half))
            n.append(len(vals))
        label = labels[key]
        used[label] = used.get(label, 0) + 1
        if used[label] > 1:
            label = f"{label} #{used[label]}"
        out.append({"name": label, "runs": sorted(members), "bin_width": width, "x": x, "mean": mean, "low": low,
                    "high": high, "n": n})
    return out
