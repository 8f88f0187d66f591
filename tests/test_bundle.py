"""databricks.yml, checked offline: it parses, every job passes databricks-bundles' own model,
every python_file exists, every task's parameters are accepted by that job's argument parser
and give a valid config, and the schedule / clusters / retries are what operations expect."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from hinet_spark.cli import config_from_args

REPO = Path(__file__).resolve().parent.parent
BUNDLE = yaml.safe_load((REPO / "databricks.yml").read_text())
JOBS = BUNDLE["resources"]["jobs"]
TASKS = [(name, t) for name, job in JOBS.items() for t in job["tasks"]]


def substitute(text: str) -> str:
    """Bundle variables and job parameter references as a run would see them."""
    defaults = {k: str(v["default"]) for k, v in BUNDLE["variables"].items()}
    text = text.replace("${workspace.file_path}", str(REPO))
    text = re.sub(r"\$\{var\.(\w+)\}", lambda m: defaults[m.group(1)], text)
    return text.replace("{{job.parameters.run_date}}", "2026-01-08")


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_passes_the_bundle_model(name):
    job = Job.from_dict(JOBS[name])
    assert job.max_concurrent_runs == 1
    assert job.schedule.timezone_id and job.schedule.quartz_cron_expression
    assert job.email_notifications.on_failure
    keys = [t.task_key for t in job.tasks]
    assert keys == ["build_features", "train_hinet", "score_candidates", "rebuild_labels", "evaluate_scores"]
    for task, before in zip(job.tasks[1:], keys):  # a chain: each task after the previous one
        assert [d.task_key for d in task.depends_on] == [before]
    clusters = {c.job_cluster_key: c.new_cluster for c in job.job_clusters}
    gpu = clusters[job.tasks[1].job_cluster_key]
    assert "gpu-ml" in gpu.spark_version and gpu.spark_version.startswith("17.3")  # Spark 4.0
    assert gpu.spark_conf["spark.task.resource.gpu.amount"] == "1"
    assert all(c.data_security_mode.value == "SINGLE_USER" for c in clusters.values())
    for task in (job.tasks[0], *job.tasks[2:]):
        assert "gpu" not in clusters[task.job_cluster_key].spark_version and task.max_retries >= 1
    assert all(lib.whl == "./dist/*.whl" for t in job.tasks for lib in t.libraries)


def test_unknown_fields_are_rejected_by_the_checker():
    with pytest.raises(ValueError, match="bogus"):
        Job.from_dict({**JOBS["hinet_nightly"], "bogus": 1})


@pytest.mark.parametrize("name,task", TASKS, ids=[t["task_key"] for _, t in TASKS])
def test_task_file_exists_and_its_job_accepts_the_parameters(name, task):
    spt = task["spark_python_task"]
    path = REPO / spt["python_file"]
    assert path.is_file(), path
    module = importlib.import_module(f"jobs.{path.stem}")
    args = module.parse_args([substitute(p) for p in spt["parameters"]])
    cfg = config_from_args(args)  # a bad --set key or value would raise ConfigError here
    assert cfg.storage.catalog_schema == "main.hinet" and cfg.mlflow.registry_uri == "databricks-uc"
    # yesterday for the nightly build and training; 5 days back (label windows closed) for the
    # rebuild and evaluation of that day's scores
    expected = {"rebuild_labels": -5, "evaluate_scores": -5, "score_candidates": 0}.get(task["task_key"], -1)
    assert getattr(args, "offset_days", 0) == expected


def test_the_wheel_build_and_the_targets():
    assert (REPO / BUNDLE["artifacts"]["hinet_wheel"]["build"].split()[-1]).is_file()
    assert set(BUNDLE["targets"]) == {"dev", "prod"}
    dev = BUNDLE["targets"]["dev"]["resources"]["jobs"]["hinet_nightly"]["schedule"]
    assert dev["pause_status"] == "PAUSED"  # only prod runs nightly
