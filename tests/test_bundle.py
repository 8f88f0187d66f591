"""databricks.yml, checked offline for every target: it parses, every job passes
databricks-bundles' own model, production targets satisfy the CLI's production-mode rule,
each target has its own roots (a Unity Catalog volume, never /dbfs), the launcher matches
the runtime, every task is a python_wheel_task whose entry point is in the built wheel, and
every task's parameters are accepted by that job's argument parser and give a valid config."""

from __future__ import annotations

import configparser
import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from databricks.bundles.jobs import Job

from hinet_spark.cli import config_from_args

REPO = Path(__file__).resolve().parent.parent
BUNDLE = yaml.safe_load((REPO / "databricks.yml").read_text())
TARGETS = sorted(BUNDLE["targets"])
USER = {"workspace.current_user.short_name": "tester", "workspace.current_user.userName": "tester@example.com",
        "workspace.file_path": str(REPO), "bundle.name": BUNDLE["bundle"]["name"]}


def entry_points() -> dict[str, str]:
    """console script -> module:function, from setup.cfg."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    lines = [x.strip() for x in cfg["options.entry_points"]["console_scripts"].splitlines() if x.strip()]
    return dict(tuple(p.strip() for p in line.split("=", 1)) for line in lines)


def resolve(target: str) -> dict:
    """The bundle as the CLI would deploy ``target``: its variables and job references
    substituted (variables may refer to other variables and to the workspace user)."""
    values = {k: str(v["default"]) for k, v in BUNDLE["variables"].items()}
    values.update({k: str(v) for k, v in (BUNDLE["targets"][target].get("variables") or {}).items()})
    known = {**USER, "bundle.target": target}

    def sub(text: str) -> str:
        for _ in range(5):  # variables defined through variables
            text = re.sub(r"\$\{var\.(\w+)\}", lambda m: values[m.group(1)], text)
            text = re.sub(r"\$\{(?!var\.)([\w.]+)\}", lambda m: known[m.group(1)], text)
        return text.replace("{{job.parameters.run_date}}", "2026-01-08")

    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, str):
            out = sub(node)
            return int(out) if node.startswith("${var.") and out.isdigit() else out
        return node

    resolved = walk({k: v for k, v in BUNDLE.items() if k != "variables"})
    resolved["variables"] = {k: sub(v) for k, v in values.items()}
    return resolved


def _job(target: str) -> dict:
    return resolve(target)["resources"]["jobs"]["hinet_nightly"]


def _train_launcher(job: dict) -> str:
    params = next(t for t in job["tasks"] if t["task_key"] == "train_hinet")["python_wheel_task"]["parameters"]
    return next(p.split("=", 1)[1] for p in params if p.startswith("train.launcher="))


@pytest.mark.parametrize("target", TARGETS)
def test_job_passes_the_bundle_model(target):
    raw = _job(target)
    job = Job.from_dict(raw)
    assert job.max_concurrent_runs == 1
    assert job.schedule.timezone_id and job.schedule.quartz_cron_expression
    assert job.email_notifications.on_failure
    keys = [t.task_key for t in job.tasks]
    assert keys == ["build_features", "train_hinet", "score_candidates", "rebuild_labels", "evaluate_scores"]
    for task, before in zip(job.tasks[1:], keys):  # a chain: each task after the previous one
        assert [d.task_key for d in task.depends_on] == [before]
    clusters = {c.job_cluster_key: c.new_cluster for c in job.job_clusters}
    assert all(c.data_security_mode.value == "DATA_SECURITY_MODE_DEDICATED" for c in clusters.values())  # Horovod, Petastorm: classic SparkContext
    gpu = clusters[job.tasks[1].job_cluster_key]
    assert "gpu-ml" in gpu.spark_version and gpu.spark_conf["spark.task.resource.gpu.amount"] == "1"
    for task in (job.tasks[0], *job.tasks[2:]):
        assert "gpu" not in clusters[task.job_cluster_key].spark_version and task.max_retries >= 1
    for task in job.tasks:
        assert all(lib.whl == "./dist/*.whl" for lib in task.libraries)
        assert task.python_wheel_task is not None and task.spark_python_task is None
        # retry_on_timeout acts only with a task timeout
        assert task.timeout_seconds and task.timeout_seconds > 0
    assert sum(t.timeout_seconds for t in job.tasks) <= job.timeout_seconds


def test_unknown_fields_are_rejected_by_the_checker():
    with pytest.raises(ValueError, match="bogus"):
        Job.from_dict({**_job("dev"), "bogus": 1})


@pytest.mark.parametrize("target", [t for t in TARGETS if BUNDLE["targets"][t].get("mode") == "production"])
def test_production_targets_pass_the_cli_production_mode_check(target):
    # databricks/cli PR 1712: production mode needs workspace.root_path unless run_as (or a
    # service principal deploying) is set; we set both, so a person's deploy does not fail
    spec = BUNDLE["targets"][target]
    assert spec["workspace"]["root_path"].startswith("/Workspace/Shared/.bundle/${bundle.name}/")
    assert spec["run_as"]["service_principal_name"] == "${var.service_principal}"


def test_each_target_has_its_own_roots_on_a_volume():
    roots, experiments, schemas = {}, {}, {}
    for target in TARGETS:
        v = resolve(target)["variables"]
        roots[target], experiments[target], schemas[target] = v["storage_root"], v["experiment"], v["schema"]
        assert v["storage_root"].startswith(f"/Volumes/{v['catalog']}/{v['schema']}/"), v["storage_root"]
        assert "/dbfs" not in v["storage_root"].lower()
        assert v["registered_model"] == f"{v['catalog']}.{v['schema']}.hinet"
    for seen in (roots, experiments, schemas):
        assert len(set(seen.values())) == len(TARGETS), seen  # no two targets share one
    assert "tester" in schemas["dev"] and "tester" in experiments["dev"]  # dev: per user
    assert not resolve("dev")["variables"]["experiment"].startswith("/Shared")
    cfg = yaml.safe_load((REPO / "conf" / "databricks.yaml").read_text())
    assert cfg["storage"]["root"].startswith("/Volumes/") and cfg["train"]["local_mode"] is False


@pytest.mark.parametrize("target", TARGETS)
def test_the_launcher_matches_the_runtime(target):
    job = _job(target)
    versions = {c["job_cluster_key"]: c["new_cluster"]["spark_version"] for c in job["job_clusters"]}
    launcher = _train_launcher(job)
    # Horovod and Petastorm ship up to 15.4 LTS ML only; 17.3 and 18 LTS ML train with TorchDistributor
    expected = {"15.4": ("horovod", "scala2.12"), "17.3": ("torch_distributor", "scala2.13"),
                "18.0": ("torch_distributor", "scala2.13")}
    release = versions["gpu"].split(".x")[0]
    assert release in expected, versions
    assert (launcher, versions["gpu"].rsplit("-", 1)[1]) == expected[release]
    assert versions["cpu"].split(".x")[0] == release  # one runtime (one wheel environment) per target
    # and CI tests that runtime in an environment pinned like it, with the same launcher
    env = (REPO / "envs" / f"dbr{release.removesuffix('.0')}.txt").read_text()
    assert f"# launcher: {launcher}\n" in env


@pytest.mark.parametrize("task", _job("dev")["tasks"], ids=lambda t: t["task_key"])
def test_task_parameters_are_accepted_by_its_job(task):
    wheel_task = task["python_wheel_task"]
    assert wheel_task["package_name"] == "hinet_spark"
    module_name = entry_points()[wheel_task["entry_point"]].split(":")[0]
    module = importlib.import_module(module_name)
    args = module.parse_args(wheel_task["parameters"])
    cfg = config_from_args(args)  # a bad --set key or value would raise ConfigError here
    assert cfg.storage.catalog_schema == "main.hinet_dev_tester" and cfg.mlflow.registry_uri == "databricks-uc"
    assert cfg.storage.root == "/Volumes/main/hinet_dev_tester/hinet_files/hinet-spark"
    # yesterday for the nightly build and training; 5 days back (label windows closed) for the
    # rebuild and evaluation of that day's scores
    expected = {"rebuild_labels": -5, "evaluate_scores": -5, "score_candidates": 0}.get(task["task_key"], -1)
    assert getattr(args, "offset_days", 0) == expected
    if task["task_key"] == "train_hinet":
        assert cfg.train.launcher == "torch_distributor" and cfg.train.local_mode is False and cfg.train.use_gpu


@pytest.mark.slow
def test_every_entry_point_is_in_the_wheel(tmp_path):
    had_build = (REPO / "build").exists()
    try:
        subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    finally:
        if not had_build:  # setuptools' build folder is not the test's to leave behind
            shutil.rmtree(REPO / "build", ignore_errors=True)
    wheel = next(tmp_path.glob("hinet_spark-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        ep_file = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        parser = configparser.ConfigParser()
        parser.read_string(z.read(ep_file).decode())
    scripts = dict(parser["console_scripts"])
    used = {t["python_wheel_task"]["entry_point"] for t in _job("dev")["tasks"]}
    assert used <= set(scripts), (used, scripts)
    for name in used:  # and the module it names is inside the wheel
        module = scripts[name].split(":")[0]
        assert module.replace(".", "/") + ".py" in names, module
