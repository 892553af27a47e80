"""`rlaudit train` and `rlaudit demo` produce stores that `rlaudit runs` lists as complete."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rlaudit.agents.demo import demo_protocols
from rlaudit.cli import main


def run_cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def listed(store):
    """{run_id: status} from `rlaudit runs STORE`."""
    result = run_cli("runs", store)
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert lines[0].split()[:2] == ["run_id", "status"]
    return {line.split()[0]: line.split()[1] for line in lines[1:]}


def test_train_records_a_complete_run(tmp_path):
    result = run_cli(
        "train", "--agent", "burnout_threshold", "-p", "threshold=0.4", "--reward", "short_term_v2",
        "--regime", "boom", "--episodes", 5, "--eval-interval", 0, "--eval-episodes", 3, "--seed", 2,
        "--store", tmp_path,
    )
    assert result.exit_code == 0, result.output
    assert "run id: burnout_threshold-short_term_v2-boom-s2" in result.stdout
    assert "final greedy evaluation" in result.stdout
    assert listed(tmp_path) == {"burnout_threshold-short_term_v2-boom-s2": "complete"}
    manifest = json.loads(pq.read_schema(tmp_path / "burnout_threshold-short_term_v2-boom-s2.parquet")
                          .metadata[b"rlaudit.manifest"])
    protocol = manifest["config"]["protocol"]
    assert protocol["agent_params"] == {"threshold": 0.4}
    assert protocol["episodes"] == 5 and protocol["eval_episodes"] == 3 and protocol["regime"] == "boom"


def test_train_learner_with_steps_and_protocol_file(tmp_path):
    pytest.importorskip("torch")
    result = run_cli(
        "train", "--agent", "ppo", "--steps", 300, "--eval-episodes", 1, "-p", "n_steps=128",
        "--env-param", "max_steps=100", "--store", tmp_path, "--json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["protocol"]["episodes"] is None and data["protocol"]["steps"] == 300
    assert data["train_steps"] >= 300 and data["updates"] >= 2
    # the recorded protocol replays from its file; --seed and --run-id given explicitly win
    (tmp_path / "p.json").write_text(json.dumps(data))
    again = run_cli("train", "--protocol", tmp_path / "p.json", "--seed", 1, "--run-id", "again",
                    "--store", tmp_path, "--json")
    assert again.exit_code == 0, again.output
    replay = json.loads(again.stdout)["protocol"]
    assert replay == {**data["protocol"], "seed": 1, "name": "again"}
    # ... and so does the manifest stored in the run file
    manifest = pq.read_schema(tmp_path / "again.parquet").metadata[b"rlaudit.manifest"]
    (tmp_path / "manifest.json").write_bytes(manifest)
    third = run_cli("train", "--protocol", tmp_path / "manifest.json", "--run-id", "third",
                    "--store", tmp_path, "--json")
    assert third.exit_code == 0, third.output
    assert json.loads(third.stdout)["protocol"] == {**replay, "name": "third"}
    assert listed(tmp_path) == {"ppo-short_term_v1-stable-s0": "complete", "again": "complete",
                                "third": "complete"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--agent", "pp0"], "unknown agent 'pp0' (did you mean 'ppo'?)"),
        (["--reward", "shortterm_v1"], "unknown reward 'shortterm_v1' (did you mean 'short_term_v1'?)"),
        (["--regime", "bust"], "unknown regime 'bust'"),
        (["--agent", "dqn", "-p", "lr=0.1"], "unknown dqn parameter 'lr'"),
        (["-p", "n_steps"], "--agent-param must look like KEY=VALUE"),
        (["--episodes", 0], "episodes must be a positive integer; found 0"),
    ],
)
def test_train_bad_input_is_one_line_and_exit_2(tmp_path, args, message):
    result = CliRunner().invoke(main, ["train", "--store", str(tmp_path), *map(str, args)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # nothing was recorded


def test_train_never_overwrites(tmp_path):
    args = ["train", "--agent", "always_stay", "--episodes", 2, "--eval-episodes", 0, "--store", tmp_path]
    assert run_cli(*args).exit_code == 0
    before = (tmp_path / "always_stay-short_term_v1-stable-s0.parquet").read_bytes()
    again = CliRunner().invoke(main, [str(a) for a in args])
    assert again.exit_code == 2
    assert "already exists" in again.stderr
    assert (tmp_path / "always_stay-short_term_v1-stable-s0.parquet").read_bytes() == before


def test_demo_quick_records_every_planned_run_and_skips_them_on_rerun(tmp_path):
    pytest.importorskip("torch")
    planned = {p.run_id for p in demo_protocols(quick=True)}
    assert {"dqn-short_term_v1-stable-s0", "ppo-short_term_v1-stable-s0", "dqn-salary_only-stable-s0",
            "always_switch-short_term_v1-recession-s0"} <= planned
    result = run_cli("demo", "--quick", "--store", tmp_path, "--workers", 2)
    assert result.exit_code == 0, result.output
    assert f"recorded {len(planned)} runs" in result.stdout
    assert listed(tmp_path) == {run_id: "complete" for run_id in planned}
    # the demo ends by auditing the store and writing the report
    assert result.stdout.strip().splitlines()[-1] == f"report: {tmp_path / 'audit' / 'report.html'}"
    assert (tmp_path / "audit" / "audit.json").is_file() and (tmp_path / "audit" / "report.html").is_file()
    hacking = json.loads(pq.read_schema(tmp_path / "dqn-salary_only-stable-s0.parquet").metadata[b"rlaudit.manifest"])
    assert hacking["reward"]["params"]["burnout_weight"] == 0.0
    assert "info.burnout" in hacking["auditor_columns"]

    rerun = run_cli("demo", "--quick", "--store", tmp_path, "--workers", 1)
    assert rerun.exit_code == 0, rerun.output
    assert f"recorded 0 runs into {tmp_path} ({len(planned)} skipped)" in rerun.stdout


def test_two_demos_into_one_store_at_once_share_the_work(tmp_path):
    """A run another process records after the plan was made is skipped, not an error."""
    pytest.importorskip("torch")
    planned = {p.run_id for p in demo_protocols(quick=True)}
    cmd = [sys.executable, "-m", "rlaudit.cli", "demo", "--quick", "--workers", "1", "--store", str(tmp_path)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    assert listed(tmp_path) == {run_id: "complete" for run_id in planned}
    recorded = sum(int(next(line for line in out.splitlines() if line.startswith("recorded ")).split()[1])
                   for out, _ in outputs)
    assert recorded == len(planned)  # each run recorded exactly once


def test_full_demo_plan_covers_learners_heuristics_seeds_and_reward_hacking():
    protocols = demo_protocols()
    agents = {p.agent for p in protocols}
    assert {"dqn", "ppo"} <= agents and len(agents - {"dqn", "ppo"}) >= 3
    assert {p.seed for p in protocols} == {0, 1, 2}
    assert len({p.run_id for p in protocols}) == len(protocols)
    hacking = [p for p in protocols if p.reward_params.get("burnout_weight") == 0.0]
    assert len(hacking) == 3 and all("info.burnout" in p.auditor_columns for p in hacking)
    for p in protocols:
        p.validate()


@pytest.mark.slow
def test_full_demo_finishes_and_learners_learn(tmp_path):
    result = run_cli("demo", "--store", tmp_path)
    assert result.exit_code == 0, result.output
    runs = listed(tmp_path)
    assert len(runs) == len(demo_protocols()) and set(runs.values()) == {"complete"}

    import duckdb

    def episodes(run_id, phase):
        """(return, final burnout) of each episode of a phase."""
        return duckdb.sql(
            "SELECT sum(reward), last(info.burnout ORDER BY t) FROM read_parquet($path) "
            "WHERE phase = $phase GROUP BY episode ORDER BY episode",
            params={"path": str(tmp_path / f"{run_id}.parquet"), "phase": phase},
        ).fetchall()

    for agent in ("dqn", "ppo"):
        for seed in (0, 1, 2):
            final_eval = episodes(f"{agent}-short_term_v1-stable-s{seed}", "eval")[-10:]
            assert sum(r for r, _ in final_eval) / 10 > 150
    for seed in (0, 1, 2):  # the reward-hacking runs burn out: the salary trap
        train = episodes(f"dqn-salary_only-stable-s{seed}", "train")
        assert sum(b >= 1.0 for _, b in train) / len(train) > 0.8


def test_importing_agents_does_not_import_torch():
    code = (
        "import sys, rlaudit.agents, rlaudit.agents.experiments, rlaudit.agents.demo, rlaudit.cli; "
        "rlaudit.agents.ExperimentProtocol(agent='always_switch').validate(); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_learners_without_torch_are_a_one_line_error(tmp_path):
    """With torch unimportable, `rlaudit train --agent ppo` says how to install it."""
    code = (
        "import sys; sys.modules['torch'] = None; "
        "from rlaudit.cli import main; "
        f"main(['train', '--agent', 'ppo', '--store', {str(tmp_path)!r}])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        "rlaudit: error: agent 'ppo' needs torch, which is not installed; "
        "install it with: pip install 'rlaudit[torch]'"
    )


def test_every_public_agents_name_resolves():
    pytest.importorskip("torch")
    import rlaudit.agents as agents

    for name in agents.__all__:
        assert getattr(agents, name) is not None
    assert agents.list_agents()[:2] == ["dqn", "ppo"]
