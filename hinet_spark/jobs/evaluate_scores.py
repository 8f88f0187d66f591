"""How did the scores of a day do? Join them with that day's labels and write score_quality.

    spark-submit jobs/evaluate_scores.py --conf conf/local.yaml --date 2026-01-08

Inputs: scores (what ranking used) and samples (labels built by build_features) of --date,
which must be complete: run it once the click and order windows of that day have closed and
the day was (re)built. Output: the Delta table score_quality (partitioned by dt, one row per
scenario x task: rows, positives, unlabeled scores, AUC, logloss, mean predicted, observed
rate, their ratio, reliability curve, model versions; a rerun replaces the date) and an
MLflow run in ``<mlflow.experiment>-score-quality``. Warns when a calibration ratio leaves
[evaluation.calibration_low, calibration_high] or an AUC falls more than
evaluation.max_auc_drop below the trailing evaluation.trailing_days. Exit code 1 on any
error (no scores or no labels for the date are named).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow

from hinet_spark import plots
from hinet_spark.cli import add_offset_arg, base_parser, run_job
from hinet_spark.config import Config
from hinet_spark.dates import shift
from hinet_spark.ops.mlflow_store import setup, use_experiment
from hinet_spark.ops.progress import stage_progress
from hinet_spark.ops.spark import get_spark
from hinet_spark.ops.summary import table
from hinet_spark.scoring.quality import QualityReport, evaluate_day, write_quality

logger = logging.getLogger("evaluate_scores")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", required=True, help="the day whose scores to evaluate (YYYY-MM-DD)")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    date = shift(args.date, args.offset_days)
    spark = get_spark(cfg)
    with stage_progress(spark, cfg.spark.progress_seconds, "evaluate_scores"):
        report = evaluate_day(spark, cfg, date)
        write_quality(spark, cfg, report)
    run_id = log_run(cfg, report)
    rows = [(f"{r['scenario']} {r['task']}", r["rows"], r["positives"], "n/a" if r["auc"] is None else r["auc"],
             r["logloss"], r["mean_predicted"], r["observed_rate"],
             "n/a" if r["calibration_ratio"] is None else f"{r['calibration_ratio']:.2f}") for r in report.rows]
    unlabeled = {s: n for s, n in report.unlabeled.items() if n}
    logger.info("evaluate_scores %s done: score_quality written, MLflow run %s\n%s\nscores without a label row: %s; "
                "warnings: %d", date, run_id,
                table(("scenario task", "rows", "positives", "AUC", "logloss", "mean pred", "observed", "ratio"),
                      rows), unlabeled or "none", len(report.warnings))
    return 0


def log_run(cfg: Config, report: QualityReport) -> str:
    setup(cfg)
    use_experiment(cfg, f"{cfg.mlflow.experiment}-score-quality")
    with mlflow.start_run(run_name=f"score-quality-{report.date}") as run, tempfile.TemporaryDirectory() as tmp:
        mlflow.log_param("date", report.date)
        metrics = {}
        for r in report.rows:
            key = f"{r['task']}.scenario_{r['scenario']}"
            metrics.update({f"rows.{key}": r["rows"], f"positives.{key}": r["positives"],
                            f"logloss.{key}": r["logloss"]})
            if r["auc"] is not None:
                metrics[f"auc.{key}"] = r["auc"]
            if r["calibration_ratio"] is not None:
                metrics[f"calibration_ratio.{key}"] = r["calibration_ratio"]
        metrics.update({f"unlabeled.scenario_{s}": n for s, n in report.unlabeled.items()})
        mlflow.log_metrics(metrics)
        if report.warnings:
            mlflow.set_tag("warnings", " | ".join(report.warnings)[:5000])
        path = plots.day_reliability(report.rows, report.date, Path(tmp) / "reliability.png")
        mlflow.log_artifact(str(path), artifact_path="plots")
        return run.info.run_id


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
