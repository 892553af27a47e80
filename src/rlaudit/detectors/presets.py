"""Presets: named sets of detectors, as plain data.

``None`` means every registered detector (built-ins and plug-ins). Every
other preset lists detector names; selecting a preset that names an
unregistered detector is an error, and a test checks that every name here is
registered. Add a detector to the presets it belongs to when you add it.
"""

from __future__ import annotations

PRESETS: dict[str, tuple[str, ...] | None] = {
    "all": None,
    # proxy-reward pathologies: the reward the learner saw is not the task
    "reward-hacking": (
        "boundary-exploitation", "reward-hacking", "reward-spike", "reward-term-dominance",
        "state-cycling", "truncation-exploitation",
    ),
    # what the policy does: degenerate actions, loops, trivial environments
    "behaviour": ("action-repetition", "degenerate-environment", "state-cycling"),
    # numerical and optimisation health of the training run
    "training-health": (
        "non-finite", "performance-collapse", "policy-collapse", "regime-shift", "sparse-reward-stall",
        "training-instability", "value-explosion",
    ),
    # the recorded data itself: values a detector or a reviewer cannot trust
    "data-integrity": ("irreproducible", "non-finite"),
}
