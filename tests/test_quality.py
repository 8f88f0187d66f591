"""The quality benchmark's --quick mode as a smoke test: it trains through the project's own
``fit``, computes the oracle ceiling and writes the tables (figures are not asserted beyond
sanity: they are a benchmark's, not a test's)."""

from __future__ import annotations

import json

import pytest

from benchmarks import quality

pytestmark = pytest.mark.slow


def test_quick_mode_writes_the_tables(spark, tmp_path):
    out = tmp_path / "quality.md"
    assert quality.main(["--quick", "--root", str(tmp_path / "q"), "--out", str(out)]) == 0
    text = out.read_text()
    assert "### Table II" in text and "### Table V" in text
    assert "| hinet |" in text and "| shared_bottom |" in text and "| *oracle (true p)* |" in text
    runs = json.loads((tmp_path / "q" / "quality_runs.json").read_text())
    assert [r["model"] for r in runs] == ["hinet", "shared_bottom"]
    for r in runs:
        assert 0.0 < r["test_mean"] < 1.0 and r["params"] > r["params_dense"] > 0
    oracle_row = next(line for line in text.splitlines() if line.startswith("| *oracle"))
    assert float(oracle_row.rstrip(" |").split("|")[-1]) > 0.7  # the generator's signal is there
