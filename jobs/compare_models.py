"""Compare HiNet with the baselines (and ablations) on your samples table, and recommend one.

spark-submit entry point of ``hinet_spark/jobs/compare_models.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-compare-models``.
"""

import sys

from hinet_spark.jobs.compare_models import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
