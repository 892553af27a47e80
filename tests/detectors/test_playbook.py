"""docs/failure-playbook.md is the generated playbook of the registered built-in detectors."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from rlaudit.cli import main
from rlaudit.detectors import get_registry
from rlaudit.detectors.playbook import render

PLAYBOOK = Path(__file__).resolve().parents[2] / "docs" / "failure-playbook.md"


def test_committed_playbook_is_the_generated_one():
    assert PLAYBOOK.read_text(encoding="utf-8") == render(), (
        "docs/failure-playbook.md is stale: regenerate it with "
        "'rlaudit detectors --playbook > docs/failure-playbook.md'")


def test_playbook_documents_every_builtin_detector_and_its_parameters():
    text = render()
    for spec in get_registry().specs():
        if spec.origin != "builtin":
            continue
        assert f"### `{spec.name}`" in text
        entry = text.split(f"### `{spec.name}`", 1)[1].split("\n### ", 1)[0]
        for section in ("Finds", "Why it matters", "Evidence", "Not flagged", "Fix"):
            assert f"**{section}.**" in entry
        for key, default in spec.params.items():
            assert f"| `{key}` | `{default!r}` |" in entry


def test_cli_prints_the_playbook():
    res = CliRunner().invoke(main, ["detectors", "--playbook"])
    assert res.exit_code == 0 and res.output == render()
