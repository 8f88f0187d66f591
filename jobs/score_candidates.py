"""Score one day's candidates with the registered HiNet and write the Delta scores table.

    spark-submit jobs/score_candidates.py --conf conf/local.yaml --date 2026-01-08
    spark-submit jobs/score_candidates.py --date 2026-01-08 --scenarios a,b --model 3

Inputs: candidates (schemas/candidates.json) for --date, the model from the MLflow registry
(``scoring.model`` or --model: an alias such as champion, a version number, or a run id),
and, with ``scoring.feature_spec=pipeline``, the pipeline's feature spec, which must equal
the model's. Outputs: scores (Delta, partitioned by scenario and dt; schemas/scores.json),
scores_quarantine (candidates not scored, with the reason), and an MLflow run in the
experiment ``<mlflow.experiment>-scoring`` (rows per scenario, out-of-vocabulary counts,
score mean/p50/p99 and histograms). Rerunning a date replaces exactly that date and those
scenarios. Exit code 1 on any error; a failed run leaves the scores table as it was.

The job itself is ``hinet_spark/jobs/score_candidates.py``, inside the wheel, where it is also the console
script ``hinet-score-candidates`` (what the Databricks bundle's python_wheel_task runs); this file is
the spark-submit entry point.
"""

import sys

from hinet_spark.jobs.score_candidates import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
