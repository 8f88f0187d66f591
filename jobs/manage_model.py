"""Move the champion alias by hand: promote a version, roll back, or show the history.

spark-submit entry point of ``hinet_spark/jobs/manage_model.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-manage-model``.
"""

import sys

from hinet_spark.jobs.manage_model import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
