"""Score one day's candidates with the registered HiNet and write the Delta scores table.

spark-submit entry point of ``hinet_spark/jobs/score_candidates.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-score-candidates``.
"""

import sys

from hinet_spark.jobs.score_candidates import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
