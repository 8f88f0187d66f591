"""Batch scoring: one day's candidates -> the registered HiNet (Spark UDF) -> the Delta scores table.

The candidates go through the feature pipeline's own code (``check_exposures``, then
``apply_spec`` with the model's feature spec), so a candidate is transformed exactly as a
training sample was. The model is ``mlflow.pyfunc.spark_udf``: each Python worker loads it
once and predicts Arrow batches of ``scoring.batch_size`` rows (on the worker's GPU when it
has one). Rows are never dropped silently: every candidate read is either scored or in
``scores_quarantine`` with a reason, and the job checks ``read = scored + quarantined``.

The scores are written in one Delta commit per table that replaces exactly the date and the
scenarios scored (``replaceWhere``), so a failed run leaves the previous content visible and
a rerun is idempotent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark import model_refs, plots
from hinet_spark.config import Config
from hinet_spark.dates import parse_range
from hinet_spark.errors import OperatorError
from hinet_spark.features.behaviour import Counters, attach
from hinet_spark.features.build import (
    EmptyInputError,
    ReconciliationError,
    numeric_ranges,
    spec_path,
)
from hinet_spark.features.spec import OOV_ID, FeatureSpec, FeatureSpecError, differences
from hinet_spark.features.transforms import apply_spec, check_exposures, drop_colliding_columns
from hinet_spark.model_refs import ModelRef
from hinet_spark.ops.io import create_table_if_missing, read_table, table_version, write_table
from hinet_spark.ops.mlflow_store import setup as setup_mlflow
from hinet_spark.ops.mlflow_store import use_experiment
from hinet_spark.ops.schemas import load_schema, validate_dataframe, validate_features
from hinet_spark.serving import COMPILE_ENV, WEIGHTS_TAG, file_sha256
from hinet_spark.tasks import SCORES

logger = logging.getLogger(__name__)

KEYS = ("exposure_id", "request_id", "user_id", "item_id")
RESULT_TYPE = T.StructType([T.StructField(c, T.DoubleType()) for c in SCORES])


class ScoringError(OperatorError, RuntimeError):
    pass


@dataclass
class ScoreReport:
    date: str
    scenarios: tuple[str, ...]
    model: ModelRef
    feature_spec_hash: str
    candidates_version: int
    read: dict[str, int] = field(default_factory=dict)
    scored: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, int] = field(default_factory=dict)  # reason -> rows
    oov: dict[str, int] = field(default_factory=dict)  # categorical feature -> scored rows with the OOV id
    stats: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)  # task -> scenario -> stat
    ctcvr_above_ctr: dict[str, float] = field(default_factory=dict)  # scenario -> share of p_ctcvr > p_ctr
    scores_version: int | None = None
    mlflow_run_id: str | None = None
    timings: dict[str, float] = field(default_factory=dict)  # phase -> seconds

    def check(self) -> None:
        read, scored, bad = sum(self.read.values()), sum(self.scored.values()), sum(self.quarantined.values())
        if read != scored + bad:
            raise ReconciliationError(
                f"candidates {self.date}: read {read} != scored {scored} + quarantined {bad}")


def resolve_model(cfg: Config, ref: str | None = None) -> ModelRef:
    """``champion`` (an alias), ``3`` (a version), a run id or ``runs:/<id>/model``."""
    ref = ref or cfg.scoring.model
    name = cfg.mlflow.registered_model
    try:
        return model_refs.resolve(cfg, ref)
    except mlflow.exceptions.MlflowException as exc:
        why = ""
        if ref == "champion":
            with contextlib.suppress(mlflow.exceptions.MlflowException):
                why = f"; {model_refs.missing_champion(cfg)}"
        first = (exc.message or "").strip().splitlines()[0][:300] if exc.message else type(exc).__name__
        raise ScoringError(f"scoring.model={ref!r}: no such model in the registry "
                           f"({name!r} at {mlflow.get_registry_uri()}): {first}{why}") from exc


def download_model(ref: ModelRef, dst: str) -> Path:
    """The model's files, or a :class:`ScoringError` naming the version and its store location."""
    try:
        return Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=dst))
    except Exception as exc:  # a moved or deleted artifact folder, an unreachable store
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ScoringError(f"{ref.describe()}: its files cannot be downloaded ({first})") from exc


def _model_spec(local_model: Path, ref: ModelRef) -> FeatureSpec:
    path = local_model / "artifacts" / "feature_spec.json"
    if not path.is_file():
        raise ScoringError(f"{ref.describe()} has no feature_spec.json artifact: its files were moved or "
                           "deleted, or it is not a hinet-spark model")
    try:
        return FeatureSpec.load(path)
    except FeatureSpecError as exc:
        raise ScoringError(f"{ref.describe()}: its feature_spec.json is damaged ({exc})") from exc


def check_model(local_model: Path, ref: ModelRef) -> None:
    """Load the model once on the driver, before any Spark work or write: a damaged weights
    file (or any file the model needs) fails here, in one line naming the version."""
    verify_weights(local_model, ref)
    try:
        mlflow.pyfunc.load_model(str(local_model))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise ScoringError(f"{ref.describe()} cannot be loaded: {type(exc).__name__}: {first}. Nothing was "
                           "written; score with another version (scoring.model=N) or roll back the champion") from exc


def verify_weights(local_model: Path, ref: ModelRef) -> None:
    """The weights' sha256 against the ``weights_sha256`` tag the registry holds for the
    version (written when training registered it); versions registered before the tag
    existed are loaded unchecked, with a warning."""
    if not ref.version.isdigit():
        return
    tags = MlflowClient().get_model_version(ref.name, ref.version).tags
    expected = tags.get(WEIGHTS_TAG)
    weights = local_model / "artifacts" / "weights.pt"
    if expected is None:
        logger.warning("%s has no %s tag (registered before it existed): its weights are not verified",
                       ref.describe(), WEIGHTS_TAG)
        return
    if not weights.is_file():
        raise ScoringError(f"{ref.describe()} has no weights.pt artifact: its files were moved or deleted")
    actual = file_sha256(weights)
    if actual != expected:
        raise ScoringError(f"{ref.describe()}: weights.pt has sha256 {actual[:16]}..., the registry says "
                           f"{expected[:16]}...: the file was replaced or damaged after registration; refusing to "
                           "load it (docs/operations.md, 'Trust boundary')")


def transform_spec(cfg: Config, model_spec: FeatureSpec) -> FeatureSpec:
    """The spec the candidates are transformed with; refused when it is not the model's."""
    if cfg.scoring.feature_spec == "model":
        return model_spec
    path = spec_path(cfg)
    if not path.is_file():
        raise ScoringError(f"scoring.feature_spec=pipeline: no feature spec at {path} "
                           "(run build_features first, or set scoring.feature_spec=model)")
    pipeline = FeatureSpec.load(path)
    if pipeline.hash != model_spec.hash:
        raise FeatureSpecError(
            f"the model was trained with feature spec {model_spec.short_hash}, but the candidates would be "
            f"transformed with feature spec {pipeline.short_hash} ({path}; they differ in "
            f"{', '.join(differences(model_spec, pipeline)) or 'nothing but the hash'}): refusing to score. Retrain on "
            "samples built with the current spec, or set scoring.feature_spec=model to use the model's own")
    return pipeline


def read_candidates(spark: SparkSession, cfg: Config, date: str, scenarios: tuple[str, ...] | None) -> DataFrame:
    df = read_table(spark, cfg, "candidates")
    validate_dataframe(df, load_schema("candidates"), "table candidates")
    df = df.where(F.col("dt") == F.lit(date).cast("date"))
    if scenarios is not None:
        df = df.where(F.col("scenario").isin(*scenarios))
    return df


def candidate_features(spark: SparkSession, cfg: Config, candidates: DataFrame, spec: FeatureSpec,
                       day: dt.date) -> tuple[DataFrame, DataFrame]:
    """(the model's inputs of the good candidates of ``day``, the quarantined ones): the same
    checks, behaviour counters (as of ``day``, by :func:`~hinet_spark.features.behaviour.attach`)
    and :func:`apply_spec` as the samples get."""
    validate_features(candidates, {"the model's numeric features": tuple(spec.numeric),
                                   "the model's categorical features": tuple(spec.categorical),
                                   "the model's hashed features": tuple(spec.hashed)}, "table candidates")
    candidates = drop_colliding_columns(candidates, load_schema("candidates").names, spec.feature_order,
                                        "candidates")
    ranges = numeric_ranges(cfg)
    good, bad = check_exposures(candidates, spec.scenarios,
                                {n: ranges.get(n, (None, None)) for n in spec.numeric}, source="candidates")
    good = attach(spark, cfg, good, Counters.from_dict(spec.behaviour), day, day)
    return apply_spec(good, spec).select(*KEYS, "scenario", "dt", "scenario_idx", *spec.columns), bad


def score_candidates(spark: SparkSession, cfg: Config, date: str, scenarios: tuple[str, ...] | None = None,
                     model: str | None = None) -> ScoreReport:
    """Score the candidates of ``date`` (all scenarios of the model, or ``scenarios``)."""
    clock = time.perf_counter()
    day, _ = parse_range(date, date)
    date = day.isoformat()
    setup_mlflow(cfg)
    ref = resolve_model(cfg, model)
    with tempfile.TemporaryDirectory() as tmp:
        local = download_model(ref, tmp)
        model_spec = _model_spec(local, ref)
        check_model(local, ref)
        spec = transform_spec(cfg, model_spec)
        if scenarios is not None:
            unknown = sorted(set(scenarios) - set(spec.scenarios))
            if unknown:
                raise ScoringError(f"--scenarios {unknown} are not scenarios of model {ref.uri} "
                                   f"({list(spec.scenarios)})")
        chosen = tuple(scenarios) if scenarios is not None else spec.scenarios
        logger.info("scoring candidates %s, scenarios %s, with %s (version %s, feature spec %s)", date,
                    list(chosen), ref.uri, ref.version, spec.short_hash)
        report = ScoreReport(date, chosen, ref, spec.hash, table_version(spark, cfg, "candidates"))
        scored_at = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)

        candidates = read_candidates(spark, cfg, date, scenarios)
        report.read = {str(r["scenario"]): int(r["count"]) for r in candidates.groupBy("scenario").count().collect()}
        if not report.read:
            raise EmptyInputError(f"candidates has no rows dated {date}"
                                  + (f" for scenarios {list(scenarios)}" if scenarios else ""))
        features, bad = candidate_features(spark, cfg, candidates, spec, day)
        features = features.persist()
        quarantine = bad.withColumn("scenario", F.get_json_object("record", "$.scenario")).persist()
        try:
            _count(report, features, quarantine, spec)
            report.check()
            clock = _lap(report, "prepare", clock)
            where = f"dt = '{date}'" + (f" AND scenario IN ({', '.join(repr(s) for s in chosen)})"
                                         if scenarios is not None else "")
            write_table(quarantine, cfg, "scores_quarantine", partition_by=["dt"], replace_where=where,
                        rows=sum(report.quarantined.values()))
            clock = _lap(report, "write_quarantine", clock)
            n_rows = sum(report.scored.values())
            if n_rows == 0:  # every candidate quarantined: a valid, empty day (its old scores replaced)
                logger.warning("candidates %s: none of the %d rows can be scored (all quarantined: %s); writing "
                               "no scores for the day", date, sum(report.read.values()), report.quarantined)
                scores = spark.createDataFrame([], load_schema("scores").struct)
            else:
                spark.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(cfg.scoring.batch_size))
                # scoring.compile reaches the UDF's workers as an environment variable, with the
                # driver's TORCHINDUCTOR_* settings (e.g. the compiled kernels' cache folder)
                env = {k: v for k, v in os.environ.items() if k.startswith("TORCHINDUCTOR_")}
                udf = mlflow.pyfunc.spark_udf(spark, str(local), result_type=RESULT_TYPE, env_manager="local",
                                              extra_env={**env, COMPILE_ENV: "1" if cfg.scoring.compile else "0"})
                # the UDF's task count is the job's: rows / spark.rows_per_task, not the 200 (or
                # whatever) shuffle partitions the session's settings would give the persisted frame
                tasks = max(1, math.ceil(n_rows / cfg.spark.rows_per_task))
                logger.info("scoring %d rows in %d model-UDF task(s) (spark.rows_per_task %d)", n_rows, tasks,
                            cfg.spark.rows_per_task)
                scores = features.repartition(tasks).withColumn(
                    "_p", udf(F.struct(*spec.columns, "scenario_idx"))).select(
                    *KEYS, "scenario", "dt", *(F.col(f"_p.{c}").alias(c) for c in SCORES),
                    F.lit(ref.name).alias("model_name"), F.lit(ref.version).alias("model_version"),
                    F.lit(scored_at).cast("timestamp").alias("scored_at"))
            # the first write creates the table with the contract's schema: NOT NULL keys and scores
            create_table_if_missing(spark, cfg, "scores", load_schema("scores").struct, ["scenario", "dt"])
            write_table(scores, cfg, "scores", partition_by=["scenario", "dt"], replace_where=where, rows=n_rows)
            clock = _lap(report, "score_and_write", clock)
        finally:
            features.unpersist()
            quarantine.unpersist()
    report.scores_version = table_version(spark, cfg, "scores")
    written = read_table(spark, cfg, "scores").where(F.col("dt") == F.lit(date).cast("date")) \
        .where(F.col("scenario").isin(*chosen))
    held, hist = _stats(report, written, cfg.scoring.histogram_bins)
    if held != {k: v for k, v in report.scored.items() if v}:
        raise ReconciliationError(f"scores {date}: the table holds {held} rows per scenario, "
                                  f"the job scored {report.scored}")
    clock = _lap(report, "read_back_and_stats", clock)
    report.mlflow_run_id = _log_run(cfg, report, hist)
    _lap(report, "mlflow", clock)
    logger.info("scored %s; seconds per phase %s", date, report.timings)
    return report


def _lap(report: ScoreReport, phase: str, since: float) -> float:
    now = time.perf_counter()
    report.timings[phase] = round(now - since, 2)
    return now


def _count(report: ScoreReport, features: DataFrame, quarantine: DataFrame, spec: FeatureSpec) -> None:
    """Scored rows per scenario, OOV ids per categorical feature, quarantined rows per reason."""
    oov_cols = [F.sum((F.col(f"f_{c}") == OOV_ID).cast("long")).alias(c) for c in spec.categorical]
    rows = features.groupBy("scenario").agg(F.count("*").alias("_n"), *oov_cols).collect()
    report.scored = {str(r["scenario"]): int(r["_n"]) for r in rows}
    report.oov = {c: int(sum(r[c] or 0 for r in rows)) for c in spec.categorical}
    report.quarantined = {r["reason"]: int(r["count"]) for r in quarantine.groupBy("reason").count().collect()}


def _stats(report: ScoreReport, written: DataFrame, bins: int) -> tuple[dict[str, int], dict[str, dict[str, dict]]]:
    """Mean, p50, p99 per task x scenario into the report; returns rows per scenario and, per
    task x scenario, a histogram over that panel's own range [0, p99.9] (rows above it fall in
    the last bin), so a CTCVR panel with scores near 0.005 is not one bar at 0."""
    aggs = [F.count("*").alias("_n"), F.mean((F.col("p_ctcvr") > F.col("p_ctr")).cast("double")).alias("_above")]
    for task in SCORES:
        aggs += [F.mean(task).alias(f"{task}|mean"), F.max(task).alias(f"{task}|max"),
                 F.percentile_approx(task, [0.5, 0.99, 0.999], 10000).alias(f"{task}|q")]
    held, upper = {}, {}
    for r in written.groupBy("scenario").agg(*aggs).collect():
        s = str(r["scenario"])
        held[s] = int(r["_n"])
        report.ctcvr_above_ctr[s] = float(r["_above"])
        for task in SCORES:
            q = r[f"{task}|q"]
            report.stats.setdefault(task, {})[s] = {"mean": float(r[f"{task}|mean"]), "p50": float(q[0]),
                                                    "p99": float(q[1])}
            upper[(task, s)] = float(q[2]) if q[2] > 0 else max(float(r[f"{task}|max"]), 1e-6)
    hist: dict[str, dict[str, dict]] = {}
    if not upper:  # nothing scored: no histogram
        return held, hist
    for task in SCORES:
        top = F.create_map(*[x for (t, s), u in upper.items() if t == task for x in (F.lit(s), F.lit(u))])
        b = F.least(F.floor(F.col(task) / top[F.col("scenario")] * bins), F.lit(bins - 1)).cast("int")
        for r in written.groupBy("scenario", b.alias("b")).count().collect():
            s = str(r["scenario"])
            panel = hist.setdefault(task, {}).setdefault(s, {"upper": upper[(task, s)], "counts": [0] * bins})
            panel["counts"][r["b"]] = int(r["count"])
    return held, hist


def _log_run(cfg: Config, report: ScoreReport, hist: dict[str, dict[str, dict]]) -> str:
    """One MLflow run per scoring job, in the experiment ``<mlflow.experiment>-scoring``."""
    use_experiment(cfg, f"{cfg.mlflow.experiment}-scoring")
    tags = {"job": "score_candidates"}
    if not sum(report.scored.values()):
        tags["mlflow.note.content"] = (f"no candidate of {report.date} could be scored: all "
                                       f"{sum(report.read.values())} quarantined ({report.quarantined})")
        tags["empty_day"] = "true"
    with mlflow.start_run(run_name=f"score-{report.date}", tags=tags) as run, \
            tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"date": report.date, "scenarios": ",".join(report.scenarios),
                           "model_uri": report.model.uri, "model_name": report.model.name,
                           "model_version": report.model.version, "model_run_id": report.model.run_id,
                           "feature_spec_hash": report.feature_spec_hash,
                           "candidates_version": report.candidates_version,
                           "scores_version": report.scores_version})
        metrics = {"rows_read": sum(report.read.values()), "rows_scored": sum(report.scored.values()),
                   "rows_quarantined": sum(report.quarantined.values())}
        metrics.update({f"rows_scored.scenario_{s}": n for s, n in report.scored.items()})
        metrics.update({f"oov.{c}": n for c, n in report.oov.items()})
        metrics.update({f"seconds.{phase}": v for phase, v in report.timings.items()})
        metrics.update({f"ctcvr_above_ctr.scenario_{s}": v for s, v in report.ctcvr_above_ctr.items()})
        for task, per in report.stats.items():
            for s, st in per.items():
                metrics.update({f"{task}.{k}.scenario_{s}": v for k, v in st.items()})
        mlflow.log_metrics(metrics)
        summary = Path(tmp) / "score_summary.json"
        summary.write_text(json.dumps({"read": report.read, "scored": report.scored,
                                       "quarantined": report.quarantined, "oov": report.oov,
                                       "stats": report.stats, "ctcvr_above_ctr": report.ctcvr_above_ctr,
                                       "histograms": hist}, indent=2))
        mlflow.log_artifact(str(summary))
        drawn = plots.score_histograms(hist, report.stats, report.date, Path(tmp) / "score_histograms.png")
        if drawn is not None:
            mlflow.log_artifact(str(drawn), artifact_path="plots")
        return run.info.run_id
