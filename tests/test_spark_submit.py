"""The jobs under ``spark-submit`` exactly as the docs print them: the session is the one
spark-submit made (Delta from the environment's spark-defaults.conf, written by
scripts/setup.sh), training with Horovod on 2 workers, and a session without Delta refused
with the settings named."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.ops.io import read_table
from jobs import generate_synthetic

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SPARK_SUBMIT = str(Path(sys.executable).with_name("spark-submit"))
TINY = """\
storage:
  root: {root}
synthetic:
  enabled: true
  days: 4
  exposures_per_day: 6000
  candidates_per_day: 1500
  calibration_rows_per_scenario: 2000
train:
  launcher: {launcher}
  num_proc: 2
  batch_size: 256
  max_steps_per_epoch: 20
  validations_per_epoch: 1
  epochs: 1
mlflow:
  floor: false  # 20 steps need not learn; the floor is tested in test_lifecycle
model:
  sei_hidden: [16]
  cgc_hidden: [16]
  tower_hidden: [8]
  embedding_dim: 4
"""


def submit(*args: str, cwd: Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": str(REPO)}
    return subprocess.run([SPARK_SUBMIT, *extra, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    work = tmp_path_factory.mktemp("submit")
    launcher = "horovod" if __import__("importlib").util.find_spec("horovod") else "torch_distributor"
    conf = work / "tiny.yaml"
    conf.write_text(TINY.format(root=work / "data", launcher=launcher))
    assert generate_synthetic.main(["--conf", str(conf)]) == 0
    return work, conf


def test_three_jobs_under_spark_submit(spark, tiny):
    work, conf = tiny
    jobs = [("build_features", "--start-date", "2026-01-01", "--end-date", "2026-01-04"),
            ("train_hinet",),
            ("score_candidates", "--date", "2026-01-05")]
    for name, *args in jobs:
        done = submit(str(REPO / "jobs" / f"{name}.py"), "--conf", str(conf), *args, cwd=work)
        log = done.stdout + done.stderr
        assert done.returncode == 0, f"{name}:\n{log[-4000:]}"
        assert "using the cluster's SparkSession" in log, name  # spark-submit's session, not one of ours
    cfg = load_config(str(conf))
    samples = read_table(spark, cfg, "samples")
    assert samples.select("dt").distinct().count() == 4
    scores = read_table(spark, cfg, "scores").where(F.col("dt") == "2026-01-05")
    candidates = read_table(spark, cfg, "candidates").where(F.col("dt") == "2026-01-05").count()
    rejected = read_table(spark, cfg, "scores_quarantine").where(F.col("dt") == "2026-01-05").count()
    assert scores.count() + rejected == candidates and scores.count() > 0  # counts in = out + rejected
    # the job chose the layout: one file per (scenario, day) for this small day, not 200 shuffle partitions
    day_files = list((Path(cfg.storage.root) / "scores").glob("scenario=*/dt=2026-01-05/*.parquet"))
    assert len(day_files) == scores.select("scenario").distinct().count()


def test_a_session_without_delta_is_refused_by_name(tiny):
    work, conf = tiny
    empty = work / "no-delta.conf"
    empty.write_text("spark.ui.enabled false\n")  # replaces spark-defaults.conf: no Delta jars or settings
    done = submit(str(REPO / "jobs" / "build_features.py"), "--conf", str(conf), "--date", "2026-01-02",
                  cwd=work, extra=("--properties-file", str(empty)))
    log = done.stdout + done.stderr
    assert done.returncode == 1
    assert "this Spark session has no Delta Lake: missing spark.sql.extensions=io.delta.sql.DeltaSparkSessionExtension" \
        in log
    assert "Delta on your own Spark" in log and "JavaPackage" not in log
