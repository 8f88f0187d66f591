"""End to end: the four jobs, as the README's demo and the Databricks job run them (through
their ``main(argv)``), on a tiny synthetic log; then the scores table, the registered model
and the demo summary."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import mlflow
import pytest
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.ops.io import read_table
from hinet_spark.ops.mlflow_store import setup
from jobs import build_features, generate_synthetic, score_candidates, train_hinet

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = ["synthetic.days=4", "synthetic.exposures_per_day=6000", "synthetic.candidates_per_day=2000",
        "synthetic.calibration_rows_per_scenario=3000", "train.launcher=local", "train.epochs=2",
        "train.batch_size=256", "train.window_days=2", "model.sei_hidden=[16]", "model.cgc_hidden=[16]",
        "model.tower_hidden=[8]", "model.embedding_dim=4",
        # the chain of jobs is under test, not the model: a model this small on two days of 6k rows
        # can land at chance, which the promotion floor (tests/test_lifecycle.py) would refuse
        "mlflow.floor=false"]


def test_four_jobs_end_to_end(spark, tmp_path, capsys, monkeypatch):
    sets = [x for o in [f"storage.root={tmp_path}", *TINY] for x in ("--set", o)]
    conf = ["--conf", str(REPO / "conf" / "local.yaml"), *sets]
    assert generate_synthetic.main(conf) == 0
    # the nightly shape: run_date = the candidates day; samples and training use the day before
    assert build_features.main([*conf, "--start-date", "2026-01-02", "--end-date", "2026-01-05",
                                "--offset-days", "-1"]) == 0
    assert train_hinet.main([*conf, "--end-date", "2026-01-05", "--offset-days", "-1"]) == 0
    assert score_candidates.main([*conf, "--date", "2026-01-05"]) == 0

    cfg = load_config(REPO / "conf" / "local.yaml", [f"storage.root={tmp_path}", *TINY])
    samples = read_table(spark, cfg, "samples")
    assert {str(r[0]) for r in samples.select("dt").distinct().collect()} == {
        "2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"}
    scores = read_table(spark, cfg, "scores")
    candidates = read_table(spark, cfg, "candidates").where(F.col("dt") == "2026-01-05")
    assert scores.count() == candidates.count() == 2000
    # every candidate scored exactly once (same ids), in its own scenario
    assert scores.select("exposure_id", "scenario").distinct().count() == 2000
    assert scores.join(candidates, ["exposure_id", "scenario"], "left_anti").count() == 0
    # the rows' features reach the model: scores differ between candidates of every scenario
    # with more than one candidate (a constant score per scenario would mean ids were lost)
    per = scores.groupBy("scenario").agg(F.count("*").alias("n"), F.stddev("p_ctr").alias("sd")).collect()
    assert len(per) >= 5 and all(r["sd"] > 0 for r in per if r["n"] > 1), per

    setup(cfg)
    client = mlflow.MlflowClient()
    champion = client.get_model_version_by_alias("hinet", "champion")
    assert str(champion.version) == "1" and {r["model_version"] for r in scores.select("model_version").collect()} == {"1"}
    run = client.get_run(champion.run_id)
    assert run.data.params["data.test_dates"] == "2026-01-04..2026-01-04"
    assert run.data.params["data.train_dates"] == "2026-01-01..2026-01-02"

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["demo_summary.py", *conf])
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(REPO / "scripts" / "demo_summary.py"), run_name="__main__")
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "scores" in out and "version 1: aliases ['challenger', 'champion']" in out and "mlflow ui" in out
