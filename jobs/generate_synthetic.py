"""Write the embedded default's raw logs: exposures, clicks, orders, candidates and the oracle.

spark-submit entry point of ``hinet_spark/jobs/generate_synthetic.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-generate-synthetic``.
"""

import sys

from hinet_spark.jobs.generate_synthetic import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
