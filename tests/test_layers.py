"""The layer rule: which part of the package may import which (docs/architecture.md, "Layers").

Read from the source (every ``import`` / ``from ... import`` of the project, at module level
or inside a function), so an arrow against the rule fails here before it becomes a cycle or
drags the training stack into scoring.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "hinet_spark"

LEAVES = {"errors": set(), "tasks": set(), "dates": {"errors"}, "safe_yaml": {"errors"}, "evaluation": {"tasks"}}
BASE = set(LEAVES)
# part -> the parts it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    **LEAVES,
    "config": BASE,
    "ops": BASE | {"config"},
    "plots": BASE,
    "models": BASE | {"config"},
    "features": BASE | {"config", "ops"},
    "model_refs": BASE | {"config"},
    "serving": BASE | {"config", "features", "models"},
    "serving_code": {"serving"},
    "tracking": {"serving"},  # only the old models' HiNetPyfunc path
    "ingest": BASE | {"config", "ops", "features"},
    "scoring": BASE | {"config", "ops", "features", "models", "serving", "model_refs", "plots"},
    "train": BASE | {"config", "ops", "features", "models", "model_refs"},
    "lifecycle": BASE | {"config", "ops", "features", "models", "serving", "model_refs", "plots", "train"},
    "cli": BASE | {"config", "ops"},
    "jobs": None,  # the entry points may import anything
}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def project_imports(path: Path) -> list[tuple[int, str]]:
    """``(line, module)`` for every import of ``hinet_spark.*`` in the file (``from hinet_spark
    import x`` counts as ``hinet_spark.x``)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.startswith("hinet_spark.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "hinet_spark":
                found += [(node.lineno, f"hinet_spark.{a.name}") for a in node.names]
            elif node.module.startswith("hinet_spark."):
                found.append((node.lineno, node.module))
    return found


def violations(package: Path = PACKAGE) -> list[str]:
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).with_suffix("")
        if rel.parts == ("hinet_spark", "__init__"):
            continue
        part = _part(".".join(rel.parts))
        if part not in ALLOWED:
            out.append(f"{rel}: part {part!r} is not in the layer rule (add it to ALLOWED)")
            continue
        allowed = ALLOWED[part]
        if allowed is None:
            continue
        for line, module in project_imports(path):
            target = _part(module)
            if target != part and target not in allowed:
                out.append(f"{rel}.py:{line}: {part} imports {module} ({target} is not below {part})")
    return out


def test_every_import_follows_the_layer_rule():
    assert violations() == []


def test_the_rule_catches_an_arrow_against_it(tmp_path):
    # the check itself can fail: a scoring module importing the training loop is reported
    fake = tmp_path / "hinet_spark"
    (fake / "scoring").mkdir(parents=True)
    (fake / "scoring" / "bad.py").write_text("def f():\n    from hinet_spark.train.loop import fit\n")
    (fake / "config.py").write_text("from hinet_spark.models import MODELS\n")
    found = violations(fake)
    assert any("scoring imports hinet_spark.train.loop" in v for v in found), found
    assert any("config imports hinet_spark.models" in v for v in found), found


@pytest.mark.parametrize("module", ["hinet_spark.config", "hinet_spark.jobs.build_features", "hinet_spark.jobs.import_logs",
                                    "hinet_spark.jobs.generate_synthetic", "hinet_spark.jobs.evaluate_scores",
                                    "hinet_spark.jobs.score_candidates"])
def test_low_layers_do_not_load_torch_or_the_training_stack(module):
    # a fresh interpreter: what importing the module loads (torch only where models are needed)
    import subprocess
    import sys

    code = (f"import sys, {module}; bad = [m for m in ('torch', 'hinet_spark.train.loop', 'hinet_spark.lifecycle.tracking') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent).stdout.strip()
    expected = "['torch']" if module.endswith("score_candidates") else "[]"  # scoring loads the model's torch
    assert out == expected, f"{module} loads {out}"
