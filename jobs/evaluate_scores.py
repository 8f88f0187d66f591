"""How did the scores of a day do? Join them with that day's labels and write score_quality.

spark-submit entry point of ``hinet_spark/jobs/evaluate_scores.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-evaluate-scores``.
"""

import sys

from hinet_spark.jobs.evaluate_scores import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
