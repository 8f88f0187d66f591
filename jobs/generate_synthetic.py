"""Write the embedded default's raw logs: exposures, clicks, orders, candidates and the oracle.

    spark-submit jobs/generate_synthetic.py --conf conf/local.yaml [--set synthetic.days=3]

Outputs (Delta, partitioned by dt): raw_exposures, raw_clicks, raw_orders, candidates (the
day after the last logged day) and oracle (true probabilities; never a feature). Rerunning
replaces exactly the generated dates.

The job itself is ``hinet_spark/jobs/generate_synthetic.py``, inside the wheel, where it is also the console
script ``hinet-generate-synthetic`` (what the Databricks bundle's python_wheel_task runs); this file is
the spark-submit entry point.
"""

import sys

from hinet_spark.jobs.generate_synthetic import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
