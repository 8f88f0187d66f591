"""Import your logs, in your own layout, into the raw tables through a mapping file.

spark-submit entry point of ``hinet_spark/jobs/import_logs.py`` (its docstring has the usage, inputs
and outputs); in the wheel the same main is the console script ``hinet-import-logs``.
"""

import sys

from hinet_spark.jobs.import_logs import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
