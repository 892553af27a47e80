"""Detectors: the registry, the findings model and the catalogue.

Write a detector::

    from rlaudit.detectors import detector

    @detector("reward-spike", severity="warning", needs=("reward",))
    def reward_spike(ctx, *, z=10.0):
        \"\"\"One-line summary.

        Finds: ...
        Why it matters: ...
        Evidence: ...
        Not flagged: ...
        Fix: ...
        \"\"\"
        row = ctx.sql("SELECT ... FROM steps WHERE run_id = $run_id").one()
        yield ctx.finding("what was seen vs what was expected", score=..., evidence=ctx.evidence("SELECT ..."))

Built-in detectors live in one module per family (``numeric``, ``reward``);
:func:`get_registry` imports them and the ``rlaudit.detectors`` entry points.
"""

from rlaudit.detectors.context import Context, SkipDetector
from rlaudit.detectors.model import (
    SEVERITIES,
    STATUSES,
    DetectorResult,
    Evidence,
    Finding,
)
from rlaudit.detectors.presets import PRESETS
from rlaudit.detectors.registry import (
    DOC_SECTIONS,
    ENTRY_POINT_GROUP,
    REGISTRY,
    DetectorSpec,
    Registry,
    detector,
    get_registry,
    parse_set,
)
from rlaudit.detectors.runner import DetectionOutcome, run_detectors

__all__ = [
    "Context", "SkipDetector", "SEVERITIES", "STATUSES", "DetectorResult", "Evidence", "Finding",
    "PRESETS", "DOC_SECTIONS", "ENTRY_POINT_GROUP", "REGISTRY", "DetectorSpec", "Registry",
    "detector", "get_registry", "parse_set", "DetectionOutcome", "run_detectors",
]
