"""Batch scoring: UDF scores against direct predictions, idempotent reruns, the feature-spec
refusal, unseen categories, quarantine and counts, atomicity on failure, output layout."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from chispa.schema_comparer import assert_schema_equality
from delta.tables import DeltaTable
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark.config import load_config
from hinet_spark.features.build import build_samples
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError
from hinet_spark.features.transforms import apply_spec
from hinet_spark.lifecycle.tracking import log_training
from hinet_spark.ops.io import read_table, table_location, table_version, write_table
from hinet_spark.ops.mlflow_store import tracking_uri
from hinet_spark.ops.schemas import SchemaError, load_schema
from hinet_spark.scoring.batch import ScoringError, score_candidates
from hinet_spark.serving import registered_version
from hinet_spark.train.loop import fit
from jobs import generate_synthetic
from jobs import score_candidates as score_job

pytestmark = pytest.mark.slow

DATE = "2026-01-04"  # the candidates day of a 3-day synthetic log
SMALL = ["synthetic.enabled=true", "synthetic.days=3", "synthetic.exposures_per_day=8000", "synthetic.candidates_per_day=3000",
         "synthetic.calibration_rows_per_scenario=3000", "train.launcher=local", "train.epochs=1",
         "mlflow.floor=false",  # the scoring is under test, not the model (the floor: test_lifecycle)
         "train.batch_size=256", "train.max_steps_per_epoch=20", "model.sei_hidden=[16]",
         "model.cgc_hidden=[16]", "model.tower_hidden=[8]", "model.embedding_dim=4", "model.sei_experts=2",
         "train.train_start=2026-01-01", "train.train_end=2026-01-01", "train.val_start=2026-01-02",
         "train.val_end=2026-01-02", "train.test_start=2026-01-03", "train.test_end=2026-01-03"]


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    overrides = [f"storage.root={root}", *SMALL]
    assert generate_synthetic.main([x for o in overrides for x in ("--set", o)]) == 0
    cfg = load_config(None, overrides)
    build_samples(spark, cfg, "2026-01-01", "2026-01-03")
    log_training(cfg, fit(spark, cfg))
    return root


def config(root, *extra):
    return load_config(None, [f"storage.root={root}", *SMALL, *extra])


def elsewhere(root, other, *extra):
    """Tables under ``other``, the model registry and the feature spec of ``root``."""
    return config(other, f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
                  f"features.spec_path={root}/feature_spec.json", *extra)


@pytest.mark.runtime
def test_udf_scores_equal_direct_predictions(spark, root):
    cfg = config(root)
    assert score_job.main(["--set", f"storage.root={root}", *[x for o in SMALL for x in ("--set", o)]]) == 0
    scores = read_table(spark, cfg, "scores")
    # what downstream ranking reads, pinned exactly: names, order, types, NOT NULL everywhere
    expected = T.StructType([T.StructField(n, t, False) for n, t in (
        ("exposure_id", T.StringType()), ("request_id", T.StringType()), ("user_id", T.StringType()),
        ("item_id", T.StringType()), ("scenario", T.StringType()), ("dt", T.DateType()),
        ("p_ctr", T.DoubleType()), ("p_ctcvr", T.DoubleType()), ("model_name", T.StringType()),
        ("model_version", T.StringType()), ("scored_at", T.TimestampType()))])
    assert_schema_equality(scores.schema, expected)
    detail = DeltaTable.forPath(spark, table_location(cfg, "scores")).detail().first()
    assert list(detail["partitionColumns"]) == ["scenario", "dt"]

    candidates = read_table(spark, cfg, "candidates").where(F.col("dt") == DATE)
    n = candidates.count()
    assert scores.count() == n > 0  # the generator writes clean candidates: all are scored
    spec = FeatureSpec.load(root / "feature_spec.json")
    feats = apply_spec(candidates, spec).select("exposure_id", *spec.columns, "scenario_idx").toPandas()
    model = mlflow.pyfunc.load_model("models:/hinet@champion")
    direct = model.predict(feats[[*spec.columns, "scenario_idx"]].astype("int32"))
    direct["exposure_id"] = feats["exposure_id"].to_numpy()
    got = scores.select("exposure_id", "p_ctr", "p_ctcvr", "model_name", "model_version").toPandas()
    both = got.merge(direct, on="exposure_id", suffixes=("", "_direct"))
    assert len(both) == n
    np.testing.assert_allclose(both["p_ctr"], both["p_ctr_direct"], atol=1e-6)
    np.testing.assert_allclose(both["p_ctcvr"], both["p_ctcvr_direct"], atol=1e-6)
    assert set(both["model_name"]) == {"hinet"} and set(both["model_version"]) == {"1"}
    assert both["p_ctr"].std() > 0  # the model discriminates between rows

    mlflow.set_tracking_uri(tracking_uri(cfg))
    runs = mlflow.search_runs(experiment_names=["hinet-spark-scoring"])
    assert len(runs) == 1
    run = runs.iloc[0]
    assert run["metrics.rows_scored"] == n and run["metrics.rows_quarantined"] == 0
    assert 0 < run["metrics.p_ctr.mean.scenario_a"] < 1 and "metrics.p_ctcvr.p99.scenario_b" in run
    assert run["params.model_version"] == "1"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run["run_id"], "plots")}
    assert artifacts == {"plots/score_histograms.png"}


@pytest.mark.runtime
def test_rerun_replaces_exactly_that_date_and_those_scenarios(spark, root):
    cfg = config(root)
    first = score_candidates(spark, cfg, DATE)
    before = read_table(spark, cfg, "scores").toPandas().sort_values("exposure_id", ignore_index=True)
    again = score_candidates(spark, cfg, DATE)
    after = read_table(spark, cfg, "scores").toPandas().sort_values("exposure_id", ignore_index=True)
    assert again.scores_version > first.scores_version
    cols = [c for c in before.columns if c != "scored_at"]
    pd.testing.assert_frame_equal(before[cols], after[cols])  # idempotent: same rows, same scores

    only_a = score_candidates(spark, cfg, DATE, scenarios=("a",))
    assert set(only_a.scored) == {"a"}
    last = read_table(spark, cfg, "scores").toPandas().sort_values("exposure_id", ignore_index=True)
    pd.testing.assert_frame_equal(after[cols], last[cols])
    changed = last["scored_at"] != after["scored_at"]
    assert (last.loc[changed, "scenario"] == "a").all() and changed.sum() == (last["scenario"] == "a").sum()

    with pytest.raises(ScoringError, match=r"\['zz'\] are not scenarios of model"):
        score_candidates(spark, cfg, DATE, scenarios=("a", "zz"))


def test_compiled_scoring_gives_the_eager_scores(spark, root, tmp_path, monkeypatch):
    # scoring.compile: each UDF worker compiles the model (torch.compile, inductor) on its first
    # batch; the scores are those of the eager model to float32 rounding. The driver's
    # TORCHINDUCTOR_CACHE_DIR reaches the workers: their compiled kernels land there.
    kernels = tmp_path / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(kernels))
    cfg = config(root)
    score_candidates(spark, cfg, DATE)
    eager = read_table(spark, cfg, "scores").where(F.col("dt") == DATE).toPandas()
    assert not kernels.exists()  # eager: nothing compiled
    score_candidates(spark, config(root, "scoring.compile=true"), DATE)
    assert any(p.is_file() for p in kernels.rglob("*"))  # the workers compiled
    compiled = read_table(spark, cfg, "scores").where(F.col("dt") == DATE).toPandas()
    both = eager.merge(compiled, on="exposure_id", suffixes=("", "_compiled"))
    assert len(both) == len(eager) == len(compiled) > 0
    np.testing.assert_allclose(both["p_ctr"], both["p_ctr_compiled"], atol=1e-5)
    np.testing.assert_allclose(both["p_ctcvr"], both["p_ctcvr_compiled"], atol=1e-5)
    assert (both["scored_at"] != both["scored_at_compiled"]).all()  # scored again, not kept


def test_mlflow_models_serve_scores_raw_rows_as_the_job_does(spark, root, tmp_path):
    """Issue #22 item 5: the day's raw candidate rows (their behaviour counters attached by the
    pipeline's function), POSTed to ``mlflow models serve`` running from a venv of the model's own
    requirements in an empty folder, get the scores score_candidates wrote for them."""
    import datetime as dt

    from benchmarks.bench_serving import post, served, serving_venv
    from hinet_spark.features.behaviour import Counters, attach
    from hinet_spark.features.rows import raw_columns
    from hinet_spark.scoring.batch import read_candidates

    cfg = config(root)
    report = score_candidates(spark, cfg, DATE)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(tracking_uri(cfg))
    model = Path(mlflow.artifacts.download_artifacts(report.model.uri, dst_path=str(tmp_path / "model")))
    spec = FeatureSpec.load(model / "artifacts" / "feature_spec.json")
    day = dt.date.fromisoformat(DATE)
    raw = attach(spark, cfg, read_candidates(spark, cfg, DATE, None), Counters.from_dict(spec.behaviour), day, day)
    raw = raw.select("exposure_id", *raw_columns(spec)).toPandas()
    (tmp_path / "serve").mkdir()
    with served(model, serving_venv(model), tmp_path / "serve") as url:
        got = pd.concat([post(url, raw.iloc[i:i + 1000]) for i in range(0, len(raw), 1000)], ignore_index=True)
    got["exposure_id"] = raw["exposure_id"].to_numpy()
    scores = read_table(spark, cfg, "scores").where(F.col("dt") == DATE).select(
        "exposure_id", "p_ctr", "p_ctcvr").toPandas()
    both = scores.merge(got, on="exposure_id", suffixes=("", "_served"))
    assert len(both) == len(raw) == len(scores) == sum(report.scored.values()) > 0
    np.testing.assert_allclose(both[["p_ctr_served", "p_ctcvr_served"]].to_numpy(),
                               both[["p_ctr", "p_ctcvr"]].to_numpy(), atol=1e-6)
    # what served them was the model's own code: the venv cannot import the project
    venv = serving_venv(model)
    bare = subprocess.run([str(venv / "bin" / "python"), "-c", "import hinet_spark"], cwd=tmp_path / "serve",
                          env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert bare.returncode != 0 and "No module named 'hinet_spark'" in bare.stderr


def test_feature_spec_mismatch_is_refused_naming_both(spark, root, tmp_path):
    spec = FeatureSpec.load(root / "feature_spec.json")
    other = dataclasses.replace(spec, min_count=spec.min_count + 1)
    other.save(tmp_path / "spec.json")
    cfg = elsewhere(root, tmp_path / "data", f"features.spec_path={tmp_path}/spec.json")
    write_table(read_table(spark, config(root), "candidates"), cfg, "candidates", partition_by=["dt"])
    with pytest.raises(FeatureSpecError, match=rf"{spec.short_hash}.*{other.short_hash}"):
        score_candidates(spark, cfg, DATE)
    assert not (tmp_path / "data" / "scores").exists()  # refused before anything was written
    with pytest.raises(ScoringError, match="no such model"):
        score_candidates(spark, config(root), DATE, model="99")


def test_bad_candidates_are_quarantined_and_counts_reconcile(spark, root, tmp_path):
    cfg = elsewhere(root, tmp_path)
    good = read_table(spark, config(root), "candidates").where(F.col("dt") == DATE).limit(300).toPandas()
    bad = good.head(6).copy()
    bad["exposure_id"] = [f"bad-{i}" for i in range(6)]
    bad.loc[0, "user_id"] = None
    bad.loc[1, "scenario"] = "zz"
    bad.loc[2, "price"] = -1.0
    bad.loc[3, "exposure_id"] = good.loc[10, "exposure_id"]  # a duplicate id (later event time wins nothing)
    bad.loc[3, "event_time"] = good.loc[10, "event_time"] + pd.Timedelta(seconds=1)
    bad.loc[4, "user_city"] = "Atlantis"  # an unseen category: scored with the OOV id
    bad.loc[5, "item_brand"] = "never-seen-brand"
    frame = pd.concat([good, bad], ignore_index=True)
    schema = T.StructType([T.StructField(f.name, f.dataType, True) for f in load_schema("synthetic_exposures").struct])
    write_table(spark.createDataFrame(frame[schema.fieldNames()], schema), cfg, "candidates", partition_by=["dt"])
    report = score_candidates(spark, cfg, DATE)
    assert sum(report.read.values()) == 306
    assert report.quarantined == {"null_key:user_id": 1, "unknown_scenario": 1, "bad_numeric:price": 1,
                                  "duplicate_exposure": 1}
    assert sum(report.scored.values()) == 302 == read_table(spark, cfg, "scores").count()
    spec = FeatureSpec.load(root / "feature_spec.json")
    oov_in_good = int((~good["user_city"].astype(str).isin(spec.categorical["user_city"])).sum())
    assert report.oov["user_city"] == oov_in_good + 1
    assert report.oov["item_brand"] >= 1
    q = read_table(spark, cfg, "scores_quarantine").toPandas()
    assert sorted(q["reason"]) == sorted(report.quarantined)
    assert (q["source"] == "candidates").all() and q["record"].str.contains("Atlantis").sum() == 0
    scored_ids = set(read_table(spark, cfg, "scores").toPandas()["exposure_id"])
    assert "bad-4" in scored_ids and "bad-5" in scored_ids and "bad-0" not in scored_ids
    # the quarantine keeps each rejected row whole (as JSON), e.g. the unknown scenario's
    unknown = q[q["reason"] == "unknown_scenario"]["record"].iloc[0]
    assert '"exposure_id":"bad-1"' in unknown and '"scenario":"zz"' in unknown


def test_missing_columns_and_empty_dates_are_named(spark, root, tmp_path):
    cfg = elsewhere(root, tmp_path)
    candidates = read_table(spark, config(root), "candidates").drop("item_rating", "device_type")
    write_table(candidates, cfg, "candidates", partition_by=["dt"])
    with pytest.raises(SchemaError, match=r"table candidates: the model's numeric features: \['item_rating'\] is not "
                                          r"a column; the model's categorical features: \['device_type'\] is not a column"):
        score_candidates(spark, cfg, DATE)
    write_table(read_table(spark, config(root), "candidates").drop("request_id"), cfg, "candidates",
                partition_by=["dt"])
    with pytest.raises(SchemaError, match=r"table candidates does not meet schema 'candidates': missing columns "
                                          r"\['request_id'\]"):
        score_candidates(spark, cfg, DATE)
    write_table(read_table(spark, config(root), "candidates"), cfg, "candidates", partition_by=["dt"])
    with pytest.raises(ValueError, match="candidates has no rows dated 2027-01-01"):
        score_candidates(spark, cfg, "2027-01-01")


def test_failure_mid_run_leaves_the_previous_scores(spark, root, tmp_path):
    cfg = config(root)
    score_candidates(spark, cfg, DATE)
    version = table_version(spark, cfg, "scores")
    before = read_table(spark, cfg, "scores").count()

    class FailsOnScenarioB(mlflow.pyfunc.PythonModel):
        """Scores scenario a, then fails when a batch holds scenario b."""

        def predict(self, context, model_input, params=None):
            if (model_input["scenario_idx"] == 1).any():
                raise RuntimeError("injected failure")
            return pd.DataFrame({"p_ctr": np.full(len(model_input), 0.5), "p_ctcvr": np.full(len(model_input), 0.1)})

    mlflow.set_tracking_uri(tracking_uri(cfg))
    where = {"name": "model"} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": "model"}
    with mlflow.start_run() as run:
        info = mlflow.pyfunc.log_model(**where, python_model=FailsOnScenarioB(),
                                       artifacts={"feature_spec": str(root / "feature_spec.json")},
                                       registered_model_name="hinet")
    with pytest.raises(Exception, match="injected failure"):
        score_candidates(spark, cfg, DATE, model=registered_version(info, "hinet", run.info.run_id))
    assert table_version(spark, cfg, "scores") == version
    scores = read_table(spark, cfg, "scores")
    assert scores.count() == before and scores.where("p_ctr = 0.5").count() == 0


# --------------------------------------------------------------------------------------
# Issue #25: hostile days and damaged or deleted models
# --------------------------------------------------------------------------------------


def test_an_all_quarantined_day_is_an_empty_day(spark, root, tmp_path):
    cfg = elsewhere(root, tmp_path)
    cands = read_table(spark, config(root), "candidates").where(F.col("dt") == DATE).limit(50) \
        .withColumn("scenario", F.lit("zz"))
    write_table(cands, cfg, "candidates", partition_by=["dt"])
    report = score_candidates(spark, cfg, DATE)  # was: an AnalysisException trace in the statistics
    assert report.scored == {} and report.quarantined == {"unknown_scenario": 50}
    assert read_table(spark, cfg, "scores").count() == 0
    assert read_table(spark, cfg, "scores_quarantine").count() == 50
    mlflow.set_tracking_uri(tracking_uri(cfg))
    run = mlflow.get_run(report.mlflow_run_id)
    assert run.data.tags["empty_day"] == "true" and run.data.metrics["rows_scored"] == 0
    assert "all 50 quarantined" in run.data.tags["mlflow.note.content"]


def _one_error_line(capfd) -> str:
    err = capfd.readouterr().err
    lines = [x for x in err.splitlines() if "job failed" in x]
    assert len(lines) == 1, err[-3000:]
    assert "Traceback" not in err[err.index(lines[0]):], err[-3000:]  # the failure is that one line
    return lines[0]


@pytest.mark.runtime
def test_a_damaged_model_fails_on_the_driver_before_any_write(spark, root, tmp_path, monkeypatch, capfd):
    import hinet_spark.scoring.batch as scoring

    cfg = config(root)
    score_candidates(spark, cfg, DATE)
    versions = {k: table_version(spark, cfg, k) for k in ("scores", "scores_quarantine")}
    real = scoring.download_model

    def truncated(ref, dst):
        local = real(ref, dst)
        weights = local / "artifacts" / "weights.pt"
        weights.write_bytes(weights.read_bytes()[:100])
        return local

    monkeypatch.setattr(scoring, "download_model", truncated)
    argv = [x for o in (f"storage.root={root}", *SMALL, "scoring.model=1") for x in ("--set", o)]
    assert score_job.main(argv) == 1
    line = _one_error_line(capfd)
    assert "model hinet version 1 (models:/hinet/1, stored at " in line and "weights.pt has sha256" in line, line
    assert {k: table_version(spark, cfg, k) for k in versions} == versions  # nothing was written

    def emptied(ref, dst):  # the artifact folder moved away: what the download brings is empty
        return Path(dst)

    monkeypatch.setattr(scoring, "download_model", emptied)
    assert score_job.main(argv) == 1
    line = _one_error_line(capfd)
    assert "model hinet version 1 (models:/hinet/1, stored at " in line and "no feature_spec.json artifact" in line


@pytest.mark.runtime
def test_deleted_versions_are_known_to_history_rollback_and_scoring(spark, root, capfd):
    from mlflow.tracking import MlflowClient

    from hinet_spark.lifecycle.promotion import history_lines, rollback, set_champion
    from hinet_spark.ops.mlflow_store import setup

    name = "hinet_deleted"
    cfg = config(root, f"mlflow.registered_model={name}")
    setup(cfg)
    client = MlflowClient()
    source = client.get_model_version("hinet", "1").source
    for _ in range(2):
        mlflow.register_model(source, name)
    set_champion(cfg, "1", "first", "promote")
    set_champion(cfg, "2", "second", "promote")
    client.delete_model_version(name, "2")
    argv = [x for o in (f"storage.root={root}", *SMALL, f"mlflow.registered_model={name}") for x in ("--set", o)]
    assert score_job.main(argv) == 1
    line = _one_error_line(capfd)
    assert "its last champion, version 2, was deleted from the registry" in line, line
    lines = history_lines(cfg)
    assert "version 2 (deleted since) replaced 1" in lines[-1], lines
    entry = rollback(cfg, "v2 is gone")  # was: "hinet has no champion to roll back"
    assert entry["version"] == "1" and "champion version 2 no longer exists" in entry["reason"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "1"
