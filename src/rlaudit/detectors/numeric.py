"""Numeric-health detectors: values no learner or reviewer can trust."""

from __future__ import annotations

import math
from typing import Iterator

import pyarrow as pa

from rlaudit.analyzer.store import ident
from rlaudit.detectors.context import Context
from rlaudit.detectors.model import Finding
from rlaudit.detectors.registry import detector

# Step columns never checked: bookkeeping, not learning signals.
_SKIP = {"wall_time", "run_id", "phase", "env_index", "episode", "t", "global_step", "reset_seed"}


def _checks(name: str, expr: str, t: pa.DataType) -> Iterator[tuple[str, str, str, str]]:
    """For every float leaf under ``expr``: (label, value expression, non-finite
    condition, screening expression).

    The screen is a sum: any NaN or +/-Inf value makes it non-finite, so one
    aggregate pass over all columns tells which need a closer look. (A sum
    can also overflow on huge finite values; the closer look then counts
    zero rows and nothing is reported.) min/max would not do: with NaN-aware
    Parquet reading DuckDB may answer them from file statistics as NaN.
    """
    if pa.types.is_floating(t):
        yield name, expr, f"NOT isfinite({expr})", f"sum({expr})"
    elif (pa.types.is_fixed_size_list(t) or pa.types.is_list(t)) and pa.types.is_floating(t.value_type):
        # Elements are float32: a float64 sum cannot overflow, and any NaN or
        # +/-Inf element makes the sum non-finite.
        yield name, expr, f"NOT isfinite(list_sum({expr}))", f"sum(list_sum({expr}))"
    elif pa.types.is_struct(t):
        for i in range(t.num_fields):
            child = t.field(i)
            yield from _checks(f"{name}.{child.name}", f"{expr}.{ident(child.name)}", child.type)


def _step_checks(arrow_schema: pa.Schema) -> list[tuple[str, str, str, str]]:
    out = []
    for f in arrow_schema:
        if f.name in _SKIP:
            continue
        out.extend(_checks(f.name, ident(f.name), f.type))
    return out


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


@detector("non-finite", severity="critical", needs=("reward",))
def non_finite(ctx: Context, *, cap: int = 20) -> Iterator[Finding]:
    """NaN or infinite values anywhere in a run: rewards, observations, reward terms, info, policy outputs, metrics.

    Finds:
        Every float column of the step table (reward, each float field of
        obs / final_obs, reward_terms and info, logp, entropy, value, every
        Q value) and every metric in the metrics table that holds NaN, +Inf or
        -Inf. One finding per affected column or metric, spanning the first
        to the last affected step.

    Why it matters:
        One NaN reward or observation propagates into every value target,
        advantage and gradient computed from it; a NaN loss or gradient norm
        means the weights themselves are corrupt. Statistics computed over the
        run (returns, means, the other detectors' thresholds) are meaningless
        until the values are explained.

    Evidence:
        The first affected rows in global_step order with their position
        (global_step, env_index, episode, t, phase) and the offending value;
        the counts of affected steps and of NaN versus Inf where the column is
        a scalar.

    Not flagged:
        Missing values (NULL), which mean "not recorded" (a column the run
        did not supply, final_obs outside episode ends); image observations
        (integers); bookkeeping columns (wall_time, counters).

    Fix:
        Find the first affected step in the evidence and replay the episode
        from its reset seed. Non-finite observations or rewards come from the
        environment (division by zero, overflow in the dynamics, a reward
        term of log(0)); validate them in a wrapper and terminate the episode.
        Non-finite values, losses or gradients come from training: lower the
        learning rate, clip gradients, normalise observations and rewards,
        and check log-probabilities of near-zero-probability actions.
    """
    checks = _step_checks(ctx.run.schema)
    if checks and ctx.run.steps:
        screen = ", ".join(agg for _, _, _, agg in checks)
        sums = ctx.sql(f"SELECT {screen} FROM steps WHERE run_id = $run_id").one()
        flagged = [check for check, v in zip(checks, sums) if v is not None and not math.isfinite(v)]
        for label, expr, cond, _ in flagged:
            scalar = "list_sum" not in cond
            row = ctx.sql(
                f"SELECT count(*) FILTER (WHERE {cond}), count(*) FILTER (WHERE {'isnan(' + expr + ')' if scalar else 'false'}), "
                f"min(global_step) FILTER (WHERE {cond}), max(global_step) FILTER (WHERE {cond}), "
                f"min(episode) FILTER (WHERE {cond}), max(episode) FILTER (WHERE {cond}), "
                f"min(env_index) FILTER (WHERE {cond}), max(env_index) FILTER (WHERE {cond}), "
                f"min(phase) FILTER (WHERE {cond}), max(phase) FILTER (WHERE {cond}) "
                f"FROM steps WHERE run_id = $run_id AND {cond}"
            ).one()
            n, nan, s0, s1, e0, e1, i0, i1, p0, p1 = row
            steps = ctx.run.steps
            if not n:
                continue
            detail = f" ({_plural(nan, 'NaN')}, {n - nan:,} infinite)" if scalar else ""
            evidence = ctx.evidence(
                f"SELECT global_step, env_index, episode, t, phase, {expr} AS value FROM steps "
                f"WHERE run_id = $run_id AND {cond} ORDER BY global_step, env_index",
                cap=cap,
            )
            where = "" if scalar else " element"
            yield ctx.finding(
                f"{label} has a non-finite{where} value on {_plural(n, 'step')} of {steps:,}{detail}, "
                f"first at global_step {s0:,} (episode {e0}); expected only finite values",
                score=n / steps,
                evidence=evidence,
                episode_start=e0,
                episode_end=e1,
                step_start=s0,
                step_end=s1,
                env_index=i0 if i0 == i1 else None,
                phase=p0 if p0 == p1 else None,
                actual={"column": label, "non_finite_steps": n, "steps": steps, **({"nan": nan} if scalar else {})},
                expected={"non_finite_steps": 0},
            )
    if ctx.run.metrics_files:
        rows = ctx.sql(
            "SELECT name, count(*) AS n, count(*) FILTER (WHERE isnan(value)) AS nan, "
            "min(global_step) AS s0, max(global_step) AS s1, "
            "(SELECT count(*) FROM metrics m2 WHERE m2.run_id = $run_id AND m2.name = metrics.name) AS total "
            "FROM metrics WHERE run_id = $run_id AND NOT isfinite(value) GROUP BY name ORDER BY name"
        ).rows()
        for name, n, nan, s0, s1, total in rows:
            evidence = ctx.evidence(
                "SELECT global_step, name, value FROM metrics WHERE run_id = $run_id AND name = $name "
                "AND NOT isfinite(value) ORDER BY global_step",
                cap=cap,
                name=name,
            )
            yield ctx.finding(
                f"metric {name!r} is non-finite in {_plural(n, 'update')} of {total:,} ({_plural(nan, 'NaN')}, "
                f"{n - nan:,} infinite), first at global_step {s0:,}; expected only finite values",
                score=n / total,
                evidence=evidence,
                step_start=s0,
                step_end=s1,
                actual={"metric": name, "non_finite_updates": n, "updates": total, "nan": nan},
                expected={"non_finite_updates": 0},
            )
