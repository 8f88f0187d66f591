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

The job itself is ``hinet_spark/jobs/evaluate_scores.py``, inside the wheel, where it is also the console
script ``hinet-evaluate-scores`` (what the Databricks bundle's python_wheel_task runs); this file is
the spark-submit entry point.
"""

import sys

from hinet_spark.jobs.evaluate_scores import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
