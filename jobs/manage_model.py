"""Move the champion alias by hand: promote a version, roll back, or show the history.

    python jobs/manage_model.py --conf conf/local.yaml promote --version 3 --reason "v4 regressed on b"
    python jobs/manage_model.py --conf conf/local.yaml rollback --reason "scores drifted after v5"
    python jobs/manage_model.py --conf conf/local.yaml history

Every move (by training or by hand) is recorded with its reason in the registered model's
tag ``champion_history``; ``rollback`` returns champion to the version it replaced. Scoring
uses ``champion`` from its next run. Exit code 1 on any error.

The job itself is ``hinet_spark/jobs/manage_model.py``, inside the wheel, where it is also the console
script ``hinet-manage-model`` (what the Databricks bundle's python_wheel_task runs); this file is
the spark-submit entry point.
"""

import sys

from hinet_spark.jobs.manage_model import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
