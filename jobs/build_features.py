"""Build the samples table (labels + feature ids) from the raw logs of a date range.

    spark-submit jobs/build_features.py --conf conf/local.yaml --start-date 2026-01-01 --end-date 2026-01-05
    spark-submit jobs/build_features.py --conf conf/local.yaml --date 2026-01-06

Inputs: raw_exposures, raw_clicks, raw_orders (schemas/). Outputs: samples (Delta,
partitioned by scenario and dt), quarantine (partitioned by source and dt), the feature spec
JSON (fitted on the first run or with --refit, reused otherwise). Rerunning a date range
replaces exactly those dates. Exit code 1 on any error (nothing is written when the input
fails its schema check).

The job itself is ``hinet_spark/jobs/build_features.py``, inside the wheel, where it is also the console
script ``hinet-build-features`` (what the Databricks bundle's python_wheel_task runs); this file is
the spark-submit entry point.
"""

import sys

from hinet_spark.jobs.build_features import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
