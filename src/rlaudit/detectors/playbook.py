"""The failure playbook: every built-in detector's documentation as one Markdown page.

``python -m rlaudit.detectors.playbook > docs/failure-playbook.md`` (or
``rlaudit detectors --playbook``) writes it from the registry: each
detector's summary, Finds / Why it matters / Evidence / Not flagged / Fix,
severity, needed columns and thresholds with their defaults, grouped by
preset. A test checks that the committed page equals this output.
"""

from __future__ import annotations

import sys

from rlaudit.detectors.presets import PRESETS
from rlaudit.detectors.registry import DOC_SECTIONS, DetectorSpec, Registry, get_registry, is_legacy

HEADER = """# Failure playbook

What each built-in detector finds, why it matters, the evidence it gives,
what it deliberately leaves alone, and what to do about a finding, with its
severity, the data it needs and its thresholds (override any of them with
`--set DETECTOR.PARAM=VALUE`). Generated from the detectors' docstrings and
the registry by `rlaudit detectors --playbook > docs/failure-playbook.md`;
do not edit by hand.

The `all` preset (the default of `rlaudit analyze`) runs every detector
except the `legacy-*` ones, which reproduce the rules of rlaudit's two
predecessors, defects included, so that their alarms can be compared one to
one (`--preset legacy-rfl`, `--preset legacy-rewardscope`).
"""


def _presets_of(name: str) -> list[str]:
    return [p for p, members in sorted(PRESETS.items()) if members is not None and name in members]


def _groups(specs: list[DetectorSpec]) -> list[tuple[str, list[DetectorSpec]]]:
    """Each detector under its first preset (legacy presets last); those in no named preset under 'other'."""
    order = sorted((p for p, m in PRESETS.items() if m is not None), key=lambda p: (p.startswith("legacy-"), p))
    placed: set[str] = set()
    out = []
    for preset in order:
        members = [s for s in specs if s.name in PRESETS[preset] and s.name not in placed]
        if members:
            out.append((preset, members))
            placed.update(s.name for s in members)
    rest = [s for s in specs if s.name not in placed]
    if rest:
        out.append(("other", rest))
    return out


def _entry(spec: DetectorSpec) -> list[str]:
    presets = _presets_of(spec.name)
    if not is_legacy(spec.name):
        presets = ["all"] + presets
    lines = [f"### `{spec.name}`", "", spec.summary, "",
             f"Severity **{spec.severity}**; needs {', '.join(f'`{n}`' for n in spec.needs) or 'nothing'}; "
             f"presets {', '.join(f'`{p}`' for p in presets)}.", ""]
    for section in DOC_SECTIONS:
        paragraphs = spec.sections[section].split("\n\n")
        lines.append(f"**{section}.** {paragraphs[0]}")
        for para in paragraphs[1:]:
            lines += ["", para]
        lines.append("")
    if spec.params:
        lines += ["| parameter | default |", "|---|---|"]
        lines += [f"| `{k}` | `{v!r}` |" for k, v in spec.params.items()]
        lines.append("")
    return lines


def render(registry: Registry | None = None) -> str:
    """The playbook's Markdown for the built-in detectors of ``registry``."""
    registry = registry or get_registry()
    specs = [s for s in registry.specs() if s.origin == "builtin"]
    lines = [HEADER, "## Contents", ""]
    groups = _groups(specs)
    for preset, members in groups:
        lines.append(f"- {preset}: " + ", ".join(f"[`{s.name}`](#{s.name})" for s in members))
    lines.append("")
    for preset, members in groups:
        lines += [f"## {preset}", ""]
        for spec in members:
            lines += _entry(spec)
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
