"""A run's ``risk``: the conformal rank of its strongest finding against clean benchmark runs.

The detection benchmark (``benchmarks/detection.py``) audits clean runs
(honest controllers, random policies and learners on the career env and
Gymnasium's classic-control tasks) and stores, per detector, the strongest
finding score on every clean run (none when the detector found nothing). From
that calibration set:

1. per detector D, a finding of score ``s`` has the rank
   ``u_D(s) = #{clean runs whose D score is below s or absent} / (n + 1)``:
   the share of clean runs D finds less on (a detector absent from the
   calibration set is taken as silent on every clean run);
2. a run's strength ``T`` is its largest rank over the detectors that found
   something (0 without findings);
3. its **risk** is ``1 - p`` with the conformal p-value
   ``p = (1 + #{clean runs c : T_c >= T}) / (n + 1)``, where ``T_c`` is the
   strength of clean run c computed without c (leave one out).

Meaning: if the audited run is exchangeable with the clean calibration runs,
``P(risk >= 1 - alpha) <= alpha`` for every ``alpha`` (Vovk et al. 2005;
Bates et al. 2023); a run without findings has risk 0, and the finest
resolution is ``1 / (n + 1)``. Runs unlike the calibration set (another
environment family, far longer runs) keep the ranking but lose the
guarantee; the benchmark measures it on held-out seeds (docs/detection.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Mapping, Sequence

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")


@dataclass(frozen=True)
class Calibration:
    """Per-detector strongest scores on ``n`` clean runs (None: no finding) and the clean runs' strengths."""

    scores: Mapping[str, tuple[float | None, ...]]
    strengths: tuple[float, ...]
    source: str = ""

    @property
    def n(self) -> int:
        return len(self.strengths)

    def rank(self, detector: str, score: float, *, leave_out: int | None = None) -> float:
        """u_D(score): the share of clean runs whose ``detector`` score is below ``score`` or absent."""
        column = self.scores.get(detector)
        n = self.n - (leave_out is not None)
        if column is None:
            return n / (n + 1)
        below = sum(1 for i, s in enumerate(column) if i != leave_out and (s is None or s < score))
        return below / (n + 1)

    def strength(self, scores: Mapping[str, float], *, leave_out: int | None = None) -> float:
        """T: the largest rank of the run's strongest score per detector (0 without findings)."""
        return max((self.rank(d, s, leave_out=leave_out) for d, s in scores.items()), default=0.0)

    def risk(self, scores: Mapping[str, float]) -> float:
        """1 - the conformal p-value of the run's strength among the clean runs' strengths."""
        if not scores or not self.n:
            return 0.0
        t = self.strength(scores)
        at_least = sum(1 for tc in self.strengths if tc >= t)
        # 12 significant digits, as audit.json stores floats, so a loaded audit equals the computed one
        return float(f"{1.0 - (1 + at_least) / (self.n + 1):.12g}")

    def to_dict(self) -> dict:
        return {"source": self.source, "runs": self.n, "strengths": list(self.strengths),
                "scores": {d: list(v) for d, v in sorted(self.scores.items())}}

    @classmethod
    def from_dict(cls, data: Mapping) -> "Calibration":
        return cls(scores={d: tuple(v) for d, v in data["scores"].items()}, strengths=tuple(data["strengths"]),
                   source=data.get("source", ""))


def build_calibration(clean_runs: Sequence[Mapping[str, float]], detectors: Iterable[str], source: str = "") -> Calibration:
    """A calibration from the strongest score per detector of each clean run (absent: no finding)."""
    detectors = sorted(set(detectors))
    scores = {d: tuple(run.get(d) for run in clean_runs) for d in detectors}
    partial = Calibration(scores=scores, strengths=tuple(0.0 for _ in clean_runs), source=source)
    strengths = tuple(partial.strength(run, leave_out=i) for i, run in enumerate(clean_runs))
    return Calibration(scores=scores, strengths=strengths, source=source)


def strongest_scores(findings: Iterable) -> dict[str, dict[str, float]]:
    """run_id -> detector -> the largest finding score of that detector on that run."""
    out: dict[str, dict[str, float]] = {}
    for f in findings:
        per_run = out.setdefault(f.run_id or "", {})
        per_run[f.detector] = max(f.score, per_run.get(f.detector, float("-inf")))
    return out


@lru_cache(maxsize=1)
def load_calibration(path: str | None = None) -> Calibration | None:
    """The calibration shipped with rlaudit (None when the file is missing)."""
    file = Path(path) if path else CALIBRATION_FILE
    if not file.exists():
        return None
    return Calibration.from_dict(json.loads(file.read_text(encoding="utf-8")))
