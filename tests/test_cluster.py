"""The jobs on a standalone-like cluster whose executors lack the project.

``spark-submit --master local-cluster[2,1,...]`` starts a master, two workers and an executor
JVM each, with their own Python workers: the closest this machine gets to a multi-node cluster.
The executors run an interpreter that has the ML stack but not ``hinet_spark`` (a venv whose only
site entry is the project venv's site-packages *directory*: its editable-install hook is not
run), so a job works there only if it carries the project itself (``hinet_spark.ops.shipping``).
The driver runs the project's venv, as a spark-submit host with the project installed would.
"""

from __future__ import annotations

import os
import re
import site
import subprocess
import sys
import venv
from pathlib import Path

import pyspark
import pytest
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.ops import shipping
from hinet_spark.ops.io import read_table, table_exists
from jobs import build_features, generate_synthetic
from tests.test_spark_submit import SPARK_SUBMIT, TINY

REPO = Path(__file__).resolve().parents[1]


def bare_python(folder: Path, with_stack: bool) -> str:
    """A venv's interpreter without the project; ``with_stack``: it sees this venv's packages."""
    venv.EnvBuilder(with_pip=False).create(folder)
    python = folder / "bin" / "python"
    if with_stack:
        packages = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                                  capture_output=True, text=True, check=True).stdout.strip()
        Path(packages, "stack.pth").write_text(site.getsitepackages()[0] + "\n")
    can = subprocess.run([str(python), "-c", "import hinet_spark"], capture_output=True, cwd=folder)
    assert can.returncode != 0, "the executors' interpreter must not see the project for this test to mean anything"
    return str(python)


def test_a_carried_call_runs_where_the_project_cannot_be_imported(tmp_path):
    python = bare_python(tmp_path / "env", with_stack=True)
    from hinet_spark.dates import shift

    shim, args, size = shipping.carry(shift, "2026-01-30", 3)
    assert 20_000 < size < 2_000_000  # the package's files, zipped: not the venv
    call = tmp_path / "call.pkl"
    code = ("import sys\nfrom pyspark import cloudpickle\n"
            "fn, args = cloudpickle.loads(open(sys.argv[1], 'rb').read())\nsys.stdout.buffer.write(fn(*args))\n")
    from pyspark import cloudpickle

    call.write_bytes(cloudpickle.dumps((shim, args)))
    done = subprocess.run([python, "-c", code, str(call)], capture_output=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert shipping.uncarry(done.stdout) == "2026-02-02"
    # the same call, not carried, fails there: the test's interpreter really lacks the project
    call.write_bytes(cloudpickle.dumps((shift, ("2026-01-30", 3))))
    plain = subprocess.run([python, "-c", code, str(call)], capture_output=True, cwd=tmp_path)
    assert plain.returncode != 0 and b"No module named 'hinet_spark'" in plain.stderr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster")
    conf = work / "tiny.yaml"
    conf.write_text(TINY.format(root=work / "data", launcher="horovod"))
    assert generate_synthetic.main(["--conf", str(conf)]) == 0
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYSPARK_PYTHON")}
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)  # spark-submit would look for it with python3
    env["SPARK_WORKER_DIR"] = str(work / "spark-work")  # else under pyspark's folder in the venv
    return work, conf, env, bare_python(work / "executor-env", with_stack=True)


def submit(cluster, executor_python: str, job: str, *args: str) -> tuple[int, str]:
    work, conf, env, _ = cluster
    cmd = [SPARK_SUBMIT, "--master", "local-cluster[2,1,1024]", "--conf", f"spark.pyspark.python={executor_python}",
           "--conf", f"spark.pyspark.driver.python={sys.executable}", "--conf", "spark.executor.memory=768m",
           "--conf", "spark.sql.shuffle.partitions=4",  # a small cluster's setting (200 tiny tasks otherwise)
           str(REPO / "jobs" / f"{job}.py"), "--conf", str(conf), *args]
    done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=900)
    return done.returncode, done.stdout + done.stderr


def errors_after_summary(log: str, job: str) -> list[str]:
    """The ERROR lines after the job's ``<job> ... done`` line (its summary follows it)."""
    done = re.search(rf"INFO {job}: {job}\b[^\n]* done", log)
    assert done, log[-3000:]
    at = done.start()
    return [line for line in log[at:].splitlines() if " ERROR " in line or line.startswith("ERROR")]


@pytest.mark.slow
def test_jobs_on_a_cluster_whose_executors_lack_the_project(spark, cluster):
    work, conf, _, executor_python = cluster
    steps = [("build_features", ("--start-date", "2026-01-01", "--end-date", "2026-01-04")),
             ("train_hinet", ()),  # Horovod on the executors
             ("train_hinet", ("--set", "train.launcher=torch_distributor", "--set", "train.local_mode=false",
                              "--no-promote")),
             ("score_candidates", ("--date", "2026-01-05"))]
    for job, args in steps:
        rc, log = submit(cluster, executor_python, job, *args)
        assert rc == 0, f"{job} {args}:\n{log[-5000:]}"
        assert "master local-cluster[2,1,1024]" in log
        assert errors_after_summary(log, job) == [], job  # the session ends cleanly
        if job == "train_hinet":
            assert "has no hinet_spark: the job carries it to them" in log
            assert "val mean AUC" in log  # rank 0's progress reaches the driver's log, both launchers
    cfg = load_config(str(conf))
    assert read_table(spark, cfg, "samples").select("dt").distinct().count() == 4
    scores = read_table(spark, cfg, "scores").where(F.col("dt") == "2026-01-05").count()
    candidates = read_table(spark, cfg, "candidates").where(F.col("dt") == "2026-01-05").count()
    rejected = read_table(spark, cfg, "scores_quarantine").where(F.col("dt") == "2026-01-05").count()
    assert scores > 0 and scores + rejected == candidates


@pytest.mark.slow
def test_executors_without_the_ml_stack_are_named_before_training(spark, cluster):
    work, conf = cluster[:2]
    if not table_exists(spark, load_config(str(conf)), "samples"):  # run alone: build them here
        assert build_features.main(["--conf", str(conf), "--start-date", "2026-01-01", "--end-date", "2026-01-04"]) == 0
    bare = bare_python(work / "bare-env", with_stack=False)
    rc, log = submit(cluster, bare, "train_hinet", "--no-promote")
    assert rc == 1
    failed = [line for line in log.splitlines() if "job failed" in line]
    assert len(failed) == 1, log[-3000:]
    assert f"the executors' Python ({bare}) cannot import numpy, pandas, pyarrow, torch, horovod" in failed[0]
    assert "Shipping the Python environment" in failed[0]
    assert "Traceback" not in log
