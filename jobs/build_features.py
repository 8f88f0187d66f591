"""Build the samples table (labels + feature ids) from the raw logs of a date range.

spark-submit entry point of ``hinet_spark/jobs/build_features.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-build-features``.
"""

import sys

from hinet_spark.jobs.build_features import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
