"""Presets: named sets of detectors, as plain data.

``None`` (the ``all`` preset) means every registered detector, built-in or
plug-in, except the ``legacy-*`` ones: those reproduce the predecessors'
rules, defects included, for one-to-one comparison, and are selected only
through ``legacy-rfl`` / ``legacy-rewardscope`` or by name. Every
other preset lists detector names; selecting a preset that names an
unregistered detector is an error, and a test checks that every name here is
registered. Add a detector to the presets it belongs to when you add it.
"""

from __future__ import annotations

LEGACY_PREFIX = "legacy-"

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
    # learners against heuristic baselines on the same task (needs several seeds per agent)
    "baselines": ("below-baseline",),
    # the recorded data itself: values a detector or a reviewer cannot trust
    "data-integrity": ("irreproducible", "non-finite"),
    # RL Failure Lab's four detectors as its experiment runner used them (docs/failure-playbook.md)
    "legacy-rfl": ("legacy-rfl-nonstationarity", "legacy-rfl-policy-collapse", "legacy-rfl-reward-hacking",
                   "legacy-rfl-value-explosion"),
    # RewardScope's five step-level detectors, first layer only
    "legacy-rewardscope": ("legacy-rewardscope-action-repetition", "legacy-rewardscope-boundary-exploitation",
                           "legacy-rewardscope-component-imbalance", "legacy-rewardscope-reward-spiking",
                           "legacy-rewardscope-state-cycling"),
}
