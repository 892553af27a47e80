"""The examples in examples/ run with a tiny budget and leave stores the analyser accepts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import rlaudit
from rlaudit.reports.audit import run_audit

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"

# example -> (command-line budget, modules it needs, what its run must hold)
EXAMPLES = {
    "custom_loop.py": (["--steps", "2000", "--eval-every", "2"], (), {"phases": {"train", "eval"}, "terms": True}),
    "cleanrl_ppo.py": (["--total-timesteps", "1024", "--num-steps", "64"], ("torch",), {"phases": {"train"}}),
    "sb3_ppo.py": (["--timesteps", "1024", "--n-envs", "2"], ("torch", "stable_baselines3"), {"phases": {"train", "eval"}}),
}


def _run_example(name: str, args: list[str], store: Path) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args, "--store", str(store),
                           "--run-id", "example"], capture_output=True, text=True, env=env, cwd=store.parent, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "rlaudit analyze" in proc.stdout


SLOW = {"cleanrl_ppo.py", "sb3_ppo.py"}  # torch training: tens of seconds on a busy machine


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in sorted(EXAMPLES)])
def test_example_runs_and_is_audited(name, tmp_path):
    args, modules, expect = EXAMPLES[name]
    for module in modules:
        pytest.importorskip(module)
    store = tmp_path / "runs"
    _run_example(name, args, store)

    with rlaudit.open(store) as s:
        assert s.run_ids == ["example"]
        assert s.runs["example"].status == "complete"
        manifest = json.loads(s.sql("SELECT manifest FROM runs").scalar())
        assert manifest["dropped"] == {}
        assert manifest["gamma"] == pytest.approx(0.99)
        phases = {p for (p,) in s.sql("SELECT DISTINCT phase FROM steps").rows()}
        assert phases == expect["phases"]
        assert s.sql("SELECT count(*) FROM episodes WHERE phase = 'train'").scalar() > 5
        assert s.sql("SELECT count(logp) = count(*) FROM steps WHERE phase = 'train'").scalar()
        assert s.sql("SELECT count(*) FROM metrics").scalar() > 0
        if expect.get("terms"):
            assert set(s.reward_terms) == {"alive", "centre"}

    audit = run_audit([store])
    assert [r.run_id for r in audit.runs] == ["example"]
    assert audit.runs[0].steps > 0 and not audit.problems
    assert not [r for r in audit.results if r.status == "error"]
