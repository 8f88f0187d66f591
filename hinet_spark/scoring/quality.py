"""How did the scores of day D do? Scores (what ranking used) joined with D's labels.

Labels for D are complete once the click and order windows have closed and D was (re)built
by the feature pipeline. Per scenario x task: rows, positives, AUC (Mann-Whitney with
average ranks for ties, computed in Spark over distinct scores, so it scales), logloss, mean
predicted vs observed rate and their ratio, and a reliability curve in equal-count bins.
Scores without a label row (the candidate was never logged as an exposure) are counted per
scenario, never dropped silently.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, field

from pyspark.sql import DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark.config import Config
from hinet_spark.dates import parse_range
from hinet_spark.features.build import EmptyInputError
from hinet_spark.ops.io import read_table, table_exists, write_table
from hinet_spark.tasks import LABELS, SCORES
from hinet_spark.tasks import TASKS as TASK_NAMES

logger = logging.getLogger(__name__)

TASKS = tuple(zip(TASK_NAMES, SCORES, LABELS))  # (task, score column, label column)
EPS = 1e-7

SCHEMA = T.StructType([
    T.StructField("scenario", T.StringType(), False),
    T.StructField("task", T.StringType(), False),
    T.StructField("rows", T.LongType(), False),
    T.StructField("positives", T.LongType(), False),
    T.StructField("unlabeled", T.LongType(), False),
    T.StructField("auc", T.DoubleType(), True),
    T.StructField("logloss", T.DoubleType(), True),
    T.StructField("mean_predicted", T.DoubleType(), True),
    T.StructField("observed_rate", T.DoubleType(), True),
    T.StructField("calibration_ratio", T.DoubleType(), True),
    T.StructField("reliability", T.ArrayType(T.StructType([
        T.StructField("mean_predicted", T.DoubleType()), T.StructField("observed_rate", T.DoubleType()),
        T.StructField("rows", T.LongType())])), True),
    T.StructField("model_versions", T.StringType(), False),
    T.StructField("dt", T.DateType(), False),
])


@dataclass
class QualityReport:
    date: str
    rows: list[dict] = field(default_factory=list)  # one per scenario x task (SCHEMA's fields)
    unlabeled: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def labeled_scores(spark: SparkSession, cfg: Config, date: str) -> tuple[DataFrame, dict[str, int]]:
    """Scores of ``date`` with their labels; the count of scores without a label per scenario."""
    day = F.lit(date).cast("date")
    scores = read_table(spark, cfg, "scores").where(F.col("dt") == day)
    if not scores.limit(1).count():
        raise EmptyInputError(f"scores has no rows dated {date}: run score_candidates --date {date} first")
    samples = read_table(spark, cfg, "samples").where(F.col("dt") == day)
    if not samples.limit(1).count():
        raise EmptyInputError(f"samples has no labels dated {date}: run build_features --date {date} once its "
                              "click and order windows have closed")
    labels = samples.select("exposure_id", *LABELS, F.lit(True).alias("_labeled"))
    joined = scores.join(labels, "exposure_id", "left")
    counts = joined.groupBy("scenario").agg(F.sum(F.col("_labeled").isNull().cast("long")).alias("u")).collect()
    unlabeled = {r["scenario"]: int(r["u"]) for r in counts}
    return joined.where(F.col("_labeled")).drop("_labeled"), unlabeled


def _auc(df: DataFrame, p: str, y: str) -> dict[str, float | None]:
    """Mann-Whitney AUC per scenario with average ranks for tied scores."""
    groups = df.groupBy("scenario", F.col(p).alias("_p")).agg(
        F.count("*").alias("_n"), F.sum(F.col(y).cast("long")).alias("_pos"))
    w = Window.partitionBy("scenario").orderBy("_p").rowsBetween(Window.unboundedPreceding, -1)
    ranked = groups.withColumn("_before", F.coalesce(F.sum("_n").over(w), F.lit(0)))
    ranked = ranked.withColumn("_rank_sum", F.col("_pos") * (F.col("_before") + (F.col("_n") + 1) / 2.0))
    out = {}
    for r in ranked.groupBy("scenario").agg(F.sum("_rank_sum").alias("rs"), F.sum("_pos").alias("pos"),
                                            F.sum("_n").alias("n")).collect():
        pos, neg = int(r["pos"]), int(r["n"]) - int(r["pos"])
        out[r["scenario"]] = None if pos == 0 or neg == 0 else (float(r["rs"]) - pos * (pos + 1) / 2) / (pos * neg)
    return out


def evaluate_day(spark: SparkSession, cfg: Config, date: str) -> QualityReport:
    parse_range(date, date)
    joined, unlabeled = labeled_scores(spark, cfg, date)
    joined = joined.persist()
    report = QualityReport(date, unlabeled=unlabeled)
    bins = cfg.evaluation.reliability_bins
    versions = {r["scenario"]: ",".join(sorted(r["v"])) for r in
                joined.groupBy("scenario").agg(F.collect_set("model_version").alias("v")).collect()}
    try:
        for task, p, y in TASKS:
            aucs = _auc(joined, p, y)
            clipped = F.least(F.greatest(F.col(p), F.lit(EPS)), F.lit(1 - EPS))
            loss = -(F.col(y) * F.log(clipped) + (1 - F.col(y)) * F.log(1 - clipped))
            stats = {r["scenario"]: r for r in joined.groupBy("scenario").agg(
                F.count("*").alias("rows"), F.sum(F.col(y).cast("long")).alias("positives"),
                F.mean(loss).alias("logloss"), F.mean(p).alias("mean_predicted"),
                F.mean(F.col(y).cast("double")).alias("observed_rate")).collect()}
            tile = F.ntile(bins).over(Window.partitionBy("scenario").orderBy(p, "exposure_id"))
            curve: dict[str, list] = {}
            for r in (joined.withColumn("_bin", tile).groupBy("scenario", "_bin")
                      .agg(F.mean(p).alias("mp"), F.mean(F.col(y).cast("double")).alias("obs"),
                           F.count("*").alias("n")).orderBy("scenario", "_bin").collect()):
                curve.setdefault(r["scenario"], []).append((float(r["mp"]), float(r["obs"]), int(r["n"])))
            for s, r in sorted(stats.items()):
                ratio = r["mean_predicted"] / r["observed_rate"] if r["observed_rate"] else None
                report.rows.append({
                    "scenario": s, "task": task, "rows": int(r["rows"]), "positives": int(r["positives"]),
                    "unlabeled": unlabeled.get(s, 0), "auc": aucs.get(s), "logloss": float(r["logloss"]),
                    "mean_predicted": float(r["mean_predicted"]), "observed_rate": float(r["observed_rate"]),
                    "calibration_ratio": ratio, "reliability": curve.get(s, []),
                    "model_versions": versions.get(s, ""), "dt": dt.date.fromisoformat(date)})
    finally:
        joined.unpersist()
    _check(spark, cfg, report)
    return report


def _check(spark: SparkSession, cfg: Config, report: QualityReport) -> None:
    """Warnings: calibration ratio outside the band, AUC drop against the trailing days."""
    ev = cfg.evaluation
    trailing: dict[tuple[str, str], float] = {}
    if table_exists(spark, cfg, "score_quality"):
        day = dt.date.fromisoformat(report.date)
        past = read_table(spark, cfg, "score_quality").where(
            (F.col("dt") < F.lit(day.isoformat()).cast("date"))
            & (F.col("dt") >= F.lit((day - dt.timedelta(days=ev.trailing_days)).isoformat()).cast("date")))
        for r in past.groupBy("scenario", "task").agg(F.mean("auc").alias("a")).collect():
            if r["a"] is not None:
                trailing[(r["scenario"], r["task"])] = float(r["a"])
    for row in report.rows:
        if row["positives"] < ev.min_positives:  # a ratio or AUC over a handful of positives is noise
            continue
        name = f"{row['scenario']} {row['task']}"
        ratio = row["calibration_ratio"]
        if ratio is not None and not ev.calibration_low <= ratio <= ev.calibration_high:
            report.warnings.append(f"{name}: mean predicted / observed rate = {ratio:.2f}, outside "
                                   f"[{ev.calibration_low}, {ev.calibration_high}] ({row['positives']} positives)")
        before = trailing.get((row["scenario"], row["task"]))
        if before is not None and row["auc"] is not None and row["auc"] < before - ev.max_auc_drop:
            report.warnings.append(f"{name}: AUC {row['auc']:.4f}, {before - row['auc']:.4f} below the mean of the "
                                   f"previous {ev.trailing_days} days ({before:.4f})")
    for w in report.warnings:
        logger.warning("score quality %s: %s", report.date, w)


def write_quality(spark: SparkSession, cfg: Config, report: QualityReport) -> None:
    df = spark.createDataFrame(report.rows, SCHEMA)
    write_table(df, cfg, "score_quality", partition_by=["dt"], replace_where=f"dt = '{report.date}'")
