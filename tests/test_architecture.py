"""Dependencies point one way: cli -> reports -> detectors -> analyzer -> schema <- recorder.

The core never imports envs, agents, torch or stable-baselines3; the CLI
imports the training packages only inside the commands that train.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "rlaudit"

# package -> rlaudit packages it may import (besides itself)
BASE = {"rlaudit", "errors", "schema", "layout"}
ALLOWED = {
    "errors": {"rlaudit"},
    "schema": {"rlaudit", "errors"},
    "layout": {"rlaudit", "errors", "schema"},
    "recorder": BASE,
    "analyzer": BASE,
    "detectors": BASE | {"analyzer"},
    "reports": BASE | {"analyzer", "detectors"},
    "envs": {"rlaudit", "errors"},
    "agents": BASE | {"envs", "recorder"},
    "integrations": BASE | {"recorder"},
    "suites": BASE | {"agents", "envs", "recorder", "analyzer", "detectors", "reports"},
    "cli": BASE | {"analyzer", "detectors", "reports", "recorder"},
}
LAZY_ONLY = {"cli": {"envs", "agents", "integrations", "suites"}}  # allowed inside functions only
CORE = {"errors", "schema", "layout", "recorder", "analyzer", "detectors", "reports", "cli"}
HEAVY = {"torch", "stable_baselines3"}
OPTIONAL = {"minari", "tensorboard", "jax", "h5py"}  # extras, imported inside the functions that need them


def _package(path: Path) -> str:
    rel = path.relative_to(SRC)
    if len(rel.parts) == 1:
        return "rlaudit" if rel.stem == "__init__" else rel.stem
    return rel.parts[0]


def _imports(tree: ast.AST):
    """(module, top_level) for every import in a module."""
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, id(node) in top


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "rlaudit":
        return None
    return parts[1] if len(parts) > 1 else "rlaudit"


MODULES = sorted(p for p in SRC.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_dependency_direction(path):
    package = _package(path)
    if package == "rlaudit":
        return
    tree = ast.parse(path.read_text())
    for module, top_level in _imports(tree):
        root = module.split(".")[0]
        if package in CORE and root in HEAVY:
            pytest.fail(f"{path.relative_to(SRC)} imports {module}: the core must not import {root}")
        if package in CORE | {"envs"} and root in HEAVY and top_level:
            pytest.fail(f"{path.relative_to(SRC)} imports {module} at module level")
        if package in CORE and root in OPTIONAL:
            pytest.fail(f"{path.relative_to(SRC)} imports {module}: only rlaudit.integrations uses {root}")
        if root in HEAVY | OPTIONAL and top_level and package == "integrations":
            pytest.fail(f"{path.relative_to(SRC)} imports {module} at module level; import it lazily with an install hint")
        target = _target(module)
        if target is None or target == package:
            continue
        allowed = ALLOWED.get(package, set())
        if target in allowed:
            continue
        if target in LAZY_ONLY.get(package, set()) and not top_level:
            continue
        pytest.fail(f"{path.relative_to(SRC)} imports {module}: {package} may not depend on {target}")


def test_every_package_is_known():
    packages = {_package(p) for p in MODULES} - {"rlaudit"}
    assert packages <= set(ALLOWED), f"add {packages - set(ALLOWED)} to the dependency rules"
