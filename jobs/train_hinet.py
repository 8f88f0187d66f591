"""Train HiNet (or a baseline) on the samples table and log it to MLflow.

spark-submit entry point of ``hinet_spark/jobs/train_hinet.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-train``.
"""

import sys

from hinet_spark.jobs.train_hinet import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
