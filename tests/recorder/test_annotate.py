"""Recorder.annotate adds entries to the manifest's config after the recorder was created."""

from __future__ import annotations

import numpy as np
import pytest

import rlaudit
from rlaudit.errors import ConfigError
from rlaudit.recorder.core import Recorder


def test_annotate_reaches_the_manifest(tmp_path):
    rec = Recorder(tmp_path, "run", config={"agent": "x"})
    rec.reset(np.zeros(2, np.float32), seed=1)
    rec.step(0, np.zeros(2, np.float32), 1.0, True, False)
    rec.annotate(policy_file="run.policy.pt")
    rec.close()
    manifest = rlaudit.open(tmp_path).runs["run"].manifest
    assert manifest["config"] == {"agent": "x", "policy_file": "run.policy.pt"}
    with pytest.raises(ConfigError, match="after close"):
        rec.annotate(late=True)
