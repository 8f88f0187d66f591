"""Training end to end on a small synthetic table: Horovod (2 workers), TorchDistributor,
the local launcher, resume, MLflow, and the bad-input errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from pyspark.sql import functions as F

from hinet_spark.config import ConfigError, load_config
from hinet_spark.features.build import build_samples
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError
from hinet_spark.lifecycle.tracking import log_training
from hinet_spark.ops.io import read_table, write_table
from hinet_spark.ops.mlflow_store import tracking_uri
from hinet_spark.train.checkpoints import CheckpointError
from hinet_spark.train.loop import TrainingError, fit, validation_steps
from hinet_spark.train.snapshot import DataError, split_dates
from jobs import generate_synthetic

pytestmark = pytest.mark.slow
# The Databricks 17.3 LTS environment (envs/dbr17.3.txt) has no Horovod: there the Horovod
# tests are skipped and the launcher of the others is TorchDistributor.
HAS_HOROVOD = importlib.util.find_spec("horovod") is not None
LAUNCHER = "horovod" if HAS_HOROVOD else "torch_distributor"

SMALL = ["synthetic.enabled=true", "synthetic.days=4", "synthetic.exposures_per_day=20000", "synthetic.candidates_per_day=2000",
         "synthetic.calibration_rows_per_scenario=5000", "train.batch_size=512", "train.epochs=2",
         "train.validations_per_epoch=1",
         "model.sei_hidden=[32, 16]", "model.cgc_hidden=[32, 16]", "model.tower_hidden=[16]",
         "model.embedding_dim=8", "mlflow.floor=false",  # training mechanics under test (the floor: test_lifecycle)
         "train.early_stopping_drop=0"]  # every epoch the tests ask for (the fall rule: test_lifecycle)


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    overrides = [f"storage.root={root}", *SMALL]
    assert generate_synthetic.main([x for o in overrides for x in ("--set", o)]) == 0
    cfg = load_config(None, overrides)
    build_samples(spark, cfg, "2026-01-01", "2026-01-04")
    return root


def config(root, *extra):
    return load_config(None, [f"storage.root={root}", *SMALL, *extra])


@pytest.mark.runtime
@pytest.mark.skipif(not HAS_HOROVOD, reason="this runtime has no Horovod (Databricks 17.3 LTS ML)")
def test_horovod_two_workers_learn(spark, root, tmp_path):
    cfg = config(root, "train.launcher=horovod", "train.num_proc=2", "train.epochs=6", "train.batch_size=1024",
                 "train.learning_rate=0.003", "train.early_stopping_patience=6",
                 f"train.checkpoint_dir={tmp_path}/ckpt")
    result = fit(spark, cfg)
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3, 4, 5]
    # disjoint shards: the ranks' rows add up to the training split, none empty
    assert len(result.shard_rows) == 2 and min(result.shard_rows) > 0
    assert sum(result.shard_rows) == sum(result.split_counts["train"].values())
    # The large scenarios are learned (chance is 0.50). 40k training rows
    # of mostly id features overfit after 2-3 epochs, so a test AUC of ~0.56 (oracle ~0.8)
    # is what this size reaches; the shard is sorted, so it does not depend on read order.
    for s in ("a", "b"):
        assert result.test.auc["ctr"][s] > 0.54, result.test.auc
    assert result.test.mean_auc > 0.54, result.test.mean_auc
    (run_ckpt,) = (tmp_path / "ckpt").iterdir()  # the run's own folder (its fingerprint's hash)
    assert (run_ckpt / "latest.pt").is_file() and (run_ckpt / "epoch-5.pt").is_file()
    # train.batch_size is the global batch: the same config on one process takes the same
    # optimizer steps at the same validation points (2 x 512 rows there, 1024 here) and lands
    # at a validation AUC within 0.01 (the rows meet in another order: shards, shuffles).
    local = fit(spark, dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, launcher="local",
                                                                          checkpoint_dir=str(tmp_path / "local"))))
    assert [h["step"] for h in local.history] == [h["step"] for h in result.history]
    assert abs(local.best_val_auc - result.best_val_auc) < 0.01, (local.best_val_auc, result.best_val_auc)
    assert abs(local.val.mean_auc - result.val.mean_auc) < 0.01
    # train.gradient_compression fp16: the dense gradients travel as float16; the same steps,
    # and a validation AUC within 0.01 of the float32 exchange's
    half = fit(spark, dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, gradient_compression="fp16", checkpoint_dir=str(tmp_path / "fp16"))))
    assert [h["step"] for h in half.history] == [h["step"] for h in result.history]
    assert abs(half.best_val_auc - result.best_val_auc) < 0.01, (half.best_val_auc, result.best_val_auc)
    with pytest.raises(ConfigError, match=r"train.batch_size 1025 is the global batch of all workers and must "
                                          r"divide evenly among the 2 workers \(e.g. --set train.batch_size=1024\)"):
        fit(spark, dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, batch_size=1025)))


@pytest.mark.parametrize("launcher", [pytest.param("horovod", marks=pytest.mark.skipif(not HAS_HOROVOD,
                                                                                        reason="no Horovod")),
                                      "torch_distributor"])
def test_compiled_steps_train_as_eager_ones_in_two_workers(spark, root, tmp_path, launcher):
    # train.compile inside the launcher's workers (Horovod's hooks, DDP): the same seed gives the
    # same losses and validation AUC as eager steps, to the float rounding of reordered kernels
    runs = {}
    for compiled in (False, True):
        cfg = config(root, f"train.launcher={launcher}", "train.num_proc=2", "train.epochs=1",
                     "train.max_steps_per_epoch=12", "train.validations_per_epoch=2",
                     f"train.compile={str(compiled).lower()}", f"train.checkpoint_dir={tmp_path}/{compiled}")
        runs[compiled] = fit(spark, cfg)
    eager, compiled = runs[False], runs[True]
    assert eager.compile_seconds is None and compiled.compile_seconds > 0
    assert [h["step"] for h in compiled.history] == [h["step"] for h in eager.history] == [6, 12]
    for a, b in zip(eager.history, compiled.history):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-3 * a["train_loss"], (a, b)
        assert abs(a["val_auc_mean"] - b["val_auc_mean"]) < 2e-3, (a, b)
    assert abs(eager.test.mean_auc - compiled.test.mean_auc) < 2e-3


@pytest.mark.runtime
def test_torch_distributor_two_processes_on_executors(spark, root, tmp_path):
    # local_mode false: the processes are Spark tasks (a cluster's workers), not driver children
    # (the dense buckets travel as float16 here: DDP's fp16 compression hook)
    cfg = config(root, "train.launcher=torch_distributor", "train.local_mode=false", "train.num_proc=2",
                 "train.epochs=2", "train.gradient_compression=fp16",
                 "train.validations_per_epoch=2", "train.early_stopping_patience=4", "train.learning_rate=0.003",
                 f"train.checkpoint_dir={tmp_path}/ckpt")
    result = fit(spark, cfg)
    # rank 0 validates mid-epoch while the other rank waits: every point reached, no deadlock
    steps = 40000 // 512  # train.batch_size is the global batch: 256 rows per process
    points = sorted(s + 1 for s in validation_steps(steps, cfg.train))
    assert len(points) == 2
    assert [h["step"] for h in result.history] == [*points, *(steps + p for p in points)]
    assert len(result.shard_rows) == 2 and min(result.shard_rows) > 0
    assert sum(result.shard_rows) == sum(result.split_counts["train"].values())  # disjoint shards
    for s in ("a", "b"):
        assert result.test.auc["ctr"][s] > 0.52, result.test.auc  # learned (chance: 0.5)


@pytest.mark.runtime
def test_local_resume_continues_and_mlflow_holds_the_run(spark, root, tmp_path, monkeypatch):
    ckpt = f"train.checkpoint_dir={tmp_path}/ckpt"
    mlflow_uri = f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db"
    first = fit(spark, config(root, "train.launcher=local", "train.epochs=1", ckpt))
    # a finished run is not resumable; the state a kill after epoch 0 leaves is
    with pytest.raises(CheckpointError, match="from a run that finished"):
        fit(spark, config(root, "train.launcher=local", "train.epochs=2", ckpt), resume=True)
    (run_ckpt,) = [d for d in (tmp_path / "ckpt").iterdir() if d.is_dir()]  # the run's own folder
    assert not (run_ckpt / "run.lock").exists()  # released when the run ended
    shutil.copy(run_ckpt / "epoch-0.pt", run_ckpt / "latest.pt")
    resumed = fit(spark, config(root, "train.launcher=local", "train.epochs=2", ckpt), resume=True)
    assert [h["epoch"] for h in resumed.history] == [0, 1]  # continued, not restarted
    assert resumed.history[0] == first.history[0]

    cfg = config(root, "train.launcher=local", ckpt, mlflow_uri)
    logged = log_training(cfg, resumed)
    assert logged["aliases"] == ["challenger", "champion"]
    mlflow.set_tracking_uri(tracking_uri(cfg))
    run = mlflow.get_run(logged["run_id"])
    assert run.data.metrics["test_auc.ctr.scenario_a"] == pytest.approx(resumed.test.auc["ctr"]["a"])
    assert "test_auc.mean" in run.data.metrics and "test_logloss.ctcvr.scenario_b" in run.data.metrics
    assert run.data.params["data.feature_spec_hash"] == resumed.feature_spec.hash
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(logged["run_id"])}
    assert {"feature_spec.json", "history.json", "plots"} <= artifacts
    plots = {a.path for a in mlflow.MlflowClient().list_artifacts(logged["run_id"], "plots")}
    assert plots == {"plots/san_heatmap.png", "plots/auc_by_scenario.png", "plots/calibration_val.png",
                     "plots/calibration_test.png"}
    assert run.info.run_name == "train-hinet-2026-01-04" and "best_epoch" in run.data.metrics
    assert run.data.metrics["test_rows.scenario_a"] == resumed.test.rows["a"]
    assert run.data.metrics["val_positives.ctr.scenario_b"] == resumed.val.positives["ctr"]["b"] > 0
    assert run.data.tags["champion_decision"].startswith("promoted: there is no champion yet")
    # what the UI shows: the decision as the description, the run's duration covering training,
    # the samples table at the version read as the run's dataset
    assert run.data.tags["mlflow.note.content"] == f"Champion decision: {run.data.tags['champion_decision']}"
    assert run.info.start_time == int(resumed.started_at * 1000)
    assert (run.info.end_time - run.info.start_time) / 1000 >= resumed.train_seconds
    (dataset,) = [d.dataset for d in run.inputs.dataset_inputs]
    assert dataset.name == f"samples@v{resumed.samples_version}" and dataset.source_type == "delta_table"
    assert int(json.loads(dataset.source)["delta_table_version"]) == resumed.samples_version

    # a comparison run (train_hinet --compare): its own experiment, the registry untouched
    client = mlflow.MlflowClient()
    versions = len(client.search_model_versions("name='hinet'"))
    compared = log_training(config(root, "train.launcher=local", ckpt, mlflow_uri, "mlflow.register=false"), first)
    assert compared["version"] is None and compared["aliases"] == []
    assert len(client.search_model_versions("name='hinet'")) == versions
    assert str(client.get_model_version_by_alias("hinet", "champion").version) == logged["version"]
    crun = mlflow.get_run(compared["run_id"])
    assert mlflow.get_experiment(crun.info.experiment_id).name == "hinet-spark-comparisons"
    assert crun.info.run_name == "compare-hinet-2026-01-04" and "untouched" in crun.data.tags["champion_decision"]

    model = mlflow.pyfunc.load_model("models:/hinet@champion")
    rng = np.random.default_rng(0)
    cols = resumed.feature_spec.columns
    frame = pd.DataFrame({c: rng.integers(0, v, 50) for c, v in zip(cols, resumed.feature_spec.vocab_sizes)})
    frame["scenario_idx"] = rng.integers(0, 6, 50)
    frame = frame.astype("int32")
    got = model.predict(frame)
    with torch.no_grad():
        want = torch.sigmoid(resumed.model(torch.as_tensor(frame[cols].to_numpy(np.int64)),
                                           torch.as_tensor(frame["scenario_idx"].to_numpy(np.int64))))
    np.testing.assert_allclose(got[["p_ctr", "p_ctcvr"]].to_numpy(), want.numpy(), atol=1e-6)

    # a worse second version stays challenger; champion does not move
    worse = resumed
    worse.val.auc = {t: {s: 0.5 for s in v} for t, v in worse.val.auc.items()}
    second = log_training(cfg, worse)
    assert second["aliases"] == ["challenger"]
    assert str(mlflow.MlflowClient().get_model_version_by_alias("hinet", "champion").version) == logged["version"]


def test_bad_inputs_are_named(spark, root, tmp_path):
    held = read_table(spark, config(root), "samples").agg(F.min("dt"), F.max("dt")).first()
    with pytest.raises(DataError, match=rf"the val split \(2027-01-01..2027-01-01\) .* is empty: the table holds "
                       rf"{held[0]}..{held[1]}; set train.val_start/val_end \(or pass --end-date"):
        fit(spark, config(root, "train.val_start=2027-01-01", "train.val_end=2027-01-01"))
    # the dates derived from a synthetic.days the data was not generated with: the error says so
    with pytest.raises(DataError, match=r"is empty: .* the split dates came from the synthetic layout \(.*"
                       r"synthetic.days 40\): pass the --set synthetic.\* the data was generated with, or --end-date"):
        fit(spark, config(root, "synthetic.days=40"))
    # a samples table without scenario e: an error naming it (train.missing_scenario: error)
    other = tmp_path / "data"
    samples = read_table(spark, config(root), "samples").where("scenario != 'e'")
    write_table(samples, config(other), "samples", partition_by=["scenario", "dt"])
    shutil.copy(root / "feature_spec.json", other / "feature_spec.json")
    # this copy is not generate_synthetic's output (no oracle table): its split dates are explicit
    dates = [f"train.{split}_{end}={day}" for split, days in split_dates(config(root)).items()
             for end, day in zip(("start", "end"), days)]
    with pytest.raises(DataError, match=r"the train split .* has no rows for scenarios \['e'\]"):
        fit(spark, config(other, *dates))
    # samples built with another feature spec: refused, naming both hashes
    spec = FeatureSpec.load(root / "feature_spec.json")
    changed = tmp_path / "other_spec.json"
    dataclasses.replace(spec, min_count=spec.min_count + 1).save(changed)
    with pytest.raises(FeatureSpecError, match=f"built with feature spec {spec.short_hash}"):
        fit(spark, config(root, f"features.spec_path={changed}"))


def test_non_finite_loss_stops_every_rank_together(spark, root, tmp_path):
    # a learning rate of 1e30: the weights overflow within a few steps and the loss turns NaN.
    # The ranks exchange the loss every LOSS_SYNC_STEPS steps; all stop at that exchange (no
    # rank is left waiting in an allreduce), with the reason.
    cfg = config(root, f"train.launcher={LAUNCHER}", "train.num_proc=2", "train.epochs=1",
                 "train.learning_rate=1.0e+30", f"train.checkpoint_dir={tmp_path}/ckpt")
    with pytest.raises(TrainingError, match="training failed on rank-0, rank-1: TrainingError: the loss was not "
                       "finite in .* train.learning_rate is 1e"):
        fit(spark, cfg)  # returns instead of hanging: both ranks stopped, and the driver names why
