"""Record a list of experiment protocols into one store: resumable and two at a time.

:func:`record_protocols` serves ``rlaudit demo``, ``rlaudit stress`` and
``rlaudit bench``. A protocol whose run file already exists in the store is
skipped (runs are deterministic, so a re-run would record the same steps),
which makes an interrupted batch resumable; an unfinished
``.parquet.parts`` folder is reported and skipped (``rlaudit recover``
finalises it). Runs are recorded by ``workers`` spawned processes, longest
first.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from rlaudit.agents.experiments import ExperimentProtocol, ExperimentResult, run_experiment
from rlaudit.errors import ConfigError, RunExistsError

# Relative cost of a run, to start the longest first.
_COST = {"dqn": 10.0, "ppo": 3.0}


@dataclass
class RecordingSummary:
    """What :func:`record_protocols` did: results of the recorded runs and the skipped ones."""

    store: str
    results: list[ExperimentResult] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (run_id, reason)


def _cost(protocol: ExperimentProtocol) -> float:
    budget = protocol.episodes if protocol.episodes is not None else (protocol.steps or 0) / 100
    cost = _COST.get(protocol.agent, 1.0) * max(budget, 1)
    if protocol.reward_params:
        cost /= 3.0  # e.g. the salary-trap runs burn out early: short episodes
    return cost


def _record(protocol_dict: dict, store: str) -> ExperimentResult:
    """Worker entry point (top level so that a spawned process can import it)."""
    return run_experiment(ExperimentProtocol.from_dict(protocol_dict), store)


def default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def record_protocols(
    protocols: Sequence[ExperimentProtocol],
    store: str | os.PathLike,
    *,
    workers: int | None = None,
    on_done: Callable[[str, ExperimentResult | None, str | None], None] | None = None,
) -> RecordingSummary:
    """Record ``protocols`` into ``store``; see the module docstring.

    ``workers`` processes record runs in parallel (default: 2, or 1 on a
    one-core machine; 1 records in this process). ``on_done(run_id, result,
    skip_reason)`` is called as each run finishes or is skipped. Results come
    back in the order of ``protocols``.
    """
    from rlaudit import schema

    if workers is None:
        workers = default_workers()
    if not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a positive integer; found {workers!r}")
    ids = [p.run_id for p in protocols]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise ConfigError(f"two protocols share the run id {dup[0]!r}; give each a distinct name")
    for protocol in protocols:
        protocol.validate()  # fail before any run starts (e.g. torch missing)
    store_path = Path(store)
    summary = RecordingSummary(store=str(store_path))
    todo: list[ExperimentProtocol] = []
    for protocol in protocols:
        run_id = protocol.run_id
        reason = None
        if (store_path / f"{run_id}{schema.STEPS_SUFFIX}").exists():
            reason = "already recorded"
        elif (store_path / f"{run_id}{schema.PARTS_SUFFIX}").exists():
            reason = "unfinished recording from an interrupted run; finalise it with `rlaudit recover`"
        if reason is None:
            todo.append(protocol)
        else:
            summary.skipped.append((run_id, reason))
            if on_done is not None:
                on_done(run_id, None, reason)
    todo.sort(key=_cost, reverse=True)
    store_path.mkdir(parents=True, exist_ok=True)

    def finished(protocol: ExperimentProtocol, outcome: Callable[[], ExperimentResult]) -> None:
        try:
            result = outcome()
        except RunExistsError:  # another process recorded this run since the check above
            reason = "recorded meanwhile by another process"
            summary.skipped.append((protocol.run_id, reason))
            if on_done is not None:
                on_done(protocol.run_id, None, reason)
            return
        summary.results.append(result)
        if on_done is not None:
            on_done(result.run_id, result, None)

    if workers == 1 or len(todo) <= 1:
        for protocol in todo:
            finished(protocol, lambda: run_experiment(protocol, store_path))
    else:
        # Spawned workers: no inherited torch thread pools or locks from this process.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            pending = {pool.submit(_record, p.to_dict(), str(store_path)): p for p in todo}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        finished(pending.pop(future), future.result)
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
    order = {run_id: i for i, run_id in enumerate(ids)}
    summary.results.sort(key=lambda r: order.get(r.run_id, len(order)))
    return summary
