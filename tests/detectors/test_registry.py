"""The registry contract, presets, parameters, and plug-ins via entry points."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import rlaudit
from rlaudit.detectors import DOC_SECTIONS, PRESETS, Registry, detector, get_registry, parse_set, run_detectors
from rlaudit.detectors.model import SEVERITIES
from rlaudit.errors import ConfigError
from tests.detectors.plants import PLANTS

REGISTRY = get_registry()
BUILTIN = [s.name for s in REGISTRY.specs() if s.origin == "builtin"]
# legacy-* reproduce the predecessors' rules with their defects: test_legacy.py replays their documented alarms
CATALOGUE_BUILTIN = [n for n in BUILTIN if not n.startswith("legacy-")]


def test_there_are_builtin_detectors():
    assert {"non-finite", "reward-spike"} <= set(BUILTIN)


@pytest.mark.parametrize("name", BUILTIN)
def test_every_detector_has_the_docstring_sections(name):
    spec = REGISTRY.get(name)
    assert spec.summary and spec.summary.endswith(".")
    for section in DOC_SECTIONS:
        assert len(spec.sections[section]) > 40, f"{name}: section {section!r} is too thin"
    assert spec.severity in SEVERITIES
    for key, default in spec.params.items():
        assert f"``{key}``" in " ".join(spec.sections.values()) or key == "cap", (
            f"{name}: parameter {key!r} is not explained in the docstring")


@pytest.mark.parametrize("name", CATALOGUE_BUILTIN)
def test_every_detector_finds_its_plant_and_not_its_clean_twin(name, tmp_path):
    assert name in PLANTS, f"detector {name!r} has no planted failure in tests/detectors/plants.py"
    plant = PLANTS[name]
    planted = plant.plant(tmp_path / "planted")
    clean_id = plant.clean(tmp_path / "clean")
    spec = REGISTRY.get(name)
    if spec.scope == "store":
        # a store-wide detector judges a whole store: the planted one and the clean one
        with rlaudit.open(tmp_path / "planted") as store:
            out = run_detectors(store, [spec])
        assert [r.status for r in out.results] == ["found"], out.results
        with rlaudit.open(tmp_path / "clean") as store:
            clean = run_detectors(store, [spec])
            assert clean_id in store.runs
        assert [r.status for r in clean.results] == ["clean"], clean.findings
    else:
        with rlaudit.open(tmp_path / "planted", tmp_path / "clean") as store:
            out = run_detectors(store, [spec])
        status = {r.run_id: r.status for r in out.results}
        assert status[planted.run_id] == "found", out.results
        assert status[clean_id] == "clean", out.findings
    found = [f for f in out.findings if f.run_id == planted.run_id]
    assert len(found) == 1, "one finding per condition, not one per episode"
    f = found[0]
    assert (f.episode_start, f.episode_end, f.step_start, f.step_end) == (
        planted.episode_start, planted.episode_end, planted.step_start, planted.step_end)


def test_presets_name_registered_detectors():
    assert PRESETS["all"] is None
    for preset, members in PRESETS.items():
        for m in members or ():
            assert m in REGISTRY, f"preset {preset!r} names unregistered detector {m!r}"
    assert REGISTRY.preset("all") == [n for n in REGISTRY.names() if not n.startswith("legacy-")]
    chosen = [s.name for s in REGISTRY.select(["reward-hacking"], ["non-finite"])]
    assert chosen == sorted({"non-finite", *PRESETS["reward-hacking"]}) and "reward-spike" in chosen


def test_unknown_names_say_did_you_mean():
    with pytest.raises(ConfigError, match=r"did you mean 'non-finite'"):
        REGISTRY.get("non-finit")
    with pytest.raises(ConfigError, match=r"did you mean 'training-health'"):
        REGISTRY.select(["training-healt"])


def test_parse_set_and_coercion():
    assert parse_set(["reward-spike.z=8", "reward-spike.min_steps=5", "non-finite.cap=3"]) == {
        "reward-spike": {"z": "8", "min_steps": "5"}, "non-finite": {"cap": "3"}}
    spec = REGISTRY.get("reward-spike")
    params = spec.resolve_params({"z": "8", "min_steps": "1e3"})
    assert params["z"] == 8.0 and isinstance(params["z"], float)
    assert params["min_steps"] == 1000 and isinstance(params["min_steps"], int)
    for bad in ({"z": "nan"}, {"z": "x"}, {"min_steps": "3.5"}, {"nope": "1"}):
        with pytest.raises(ConfigError):
            spec.resolve_params(bad)


def test_registration_enforces_the_contract():
    reg = Registry()

    def undocumented(ctx, *, k: int = 1):
        """Short summary only."""

    with pytest.raises(ConfigError, match="missing Finds, Why it matters, Evidence, Not flagged, Fix"):
        reg.register(undocumented, name="x-y", severity="info")

    def documented(ctx, k=1):
        """Summary.

        Finds: a. Why it matters: no.
        Why it matters: b
        Evidence: c
        Not flagged: d
        Fix: e
        """

    with pytest.raises(ConfigError, match="keyword-only"):
        reg.register(documented, name="x-y", severity="info")
    with pytest.raises(ConfigError, match="lower-case words"):
        reg.register(documented, name="X_Y", severity="info")
    with pytest.raises(ConfigError, match="unknown severity"):
        reg.register(documented, name="x-y", severity="fatal")


PLUGIN = '''
from rlaudit.detectors import detector

@detector("plug-always", severity="info", needs=("reward",))
def always(ctx, *, level: float = 1.0):
    """Always reports the number of steps (a test plug-in).

    Finds: every run.
    Why it matters: it proves plug-ins load.
    Evidence: the step count.
    Not flagged: nothing.
    Fix: none needed.
    """
    n = ctx.sql("SELECT count(*) FROM steps WHERE run_id = $run_id").scalar()
    yield ctx.finding(f"{n} steps seen (expected any)", score=level * n)
'''


def _plugin_env(tmp_path, body, name="plugdemo"):
    site = tmp_path / "site"
    site.mkdir()
    (site / f"{name}.py").write_text(body)
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[rlaudit.detectors]\n{name} = {name}\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    return env


def test_entry_point_plugin_is_listed_and_runs(tmp_path):
    from tests.analyzer.recording import record_run

    env = _plugin_env(tmp_path, PLUGIN)
    store = record_run(tmp_path / "store", "r", [[1.0] * 3]).parent
    listed = subprocess.run([sys.executable, "-m", "rlaudit.cli", "detectors"], env=env,
                            capture_output=True, text=True, check=True)
    assert "plug-always" in listed.stdout and "Always reports the number of steps" in listed.stdout
    res = subprocess.run([sys.executable, "-m", "rlaudit.cli", "analyze", str(store), "-d", "plug-always",
                          "--set", "plug-always.level=2", "--out", str(tmp_path / "out"), "--fail-on", "info"],
                         env=env, capture_output=True, text=True)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "3 steps seen" in res.stdout
    import json
    audit = json.loads((tmp_path / "out" / "audit.json").read_text())
    assert audit["detectors"][0]["origin"].startswith("entry point plugdemo")
    assert audit["findings"][0]["score"] == 6.0


def test_broken_plugin_is_reported_not_fatal(tmp_path):
    env = _plugin_env(tmp_path, "raise RuntimeError('plug-in exploded')\n", name="plugbroken")
    listed = subprocess.run([sys.executable, "-m", "rlaudit.cli", "detectors"], env=env,
                            capture_output=True, text=True)
    assert listed.returncode == 0
    assert "plug-in not loaded" in listed.stderr and "plug-in exploded" in listed.stderr
    assert "reward-spike" in listed.stdout


def test_missing_columns_give_skipped_with_reason(tmp_path):
    from tests.analyzer.recording import record_run

    reg = Registry()

    @detector("needs-entropy", severity="warning", needs=("entropy", "reward_terms.alive"), registry=reg)
    def needs_entropy(ctx):
        """Uses entropy.

        Finds: x.
        Why it matters: x.
        Evidence: x.
        Not flagged: x.
        Fix: x.
        """
        return []

    record_run(tmp_path, "with", [[1.0]], entropy=lambda k, t: 0.1, terms=lambda k, t, r: {"alive": 1.0})
    record_run(tmp_path, "without", [[1.0]])
    with rlaudit.open(tmp_path) as store:
        out = run_detectors(store, [reg.get("needs-entropy")])
    by_run = {r.run_id: r for r in out.results}
    assert by_run["with"].status == "clean"
    assert by_run["without"].status == "skipped"
    assert by_run["without"].reason == "needs column 'entropy', which run 'without' does not have"
