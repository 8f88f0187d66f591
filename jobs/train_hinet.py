"""Train HiNet (or a baseline) on the samples table and log it to MLflow.

    spark-submit jobs/train_hinet.py --conf conf/local.yaml [--resume] [--set train.launcher=local]

Reads a pinned Delta version of ``samples``, splits it by date (``train.*``), feeds the
training split to ``train.num_proc`` workers through Petastorm (launcher ``train.launcher``:
horovod, torch_distributor or local), evaluates AUC and logloss per scenario x task on the
validation and test splits, and logs params, metrics, plots and the pyfunc model to MLflow,
registered as ``mlflow.registered_model`` with the aliases challenger (and champion when it
beats the current one). Exit code 1 on any error.

The job itself is ``hinet_spark/jobs/train_hinet.py``, inside the wheel, where it is also the console
script ``hinet-train`` (what the Databricks bundle's python_wheel_task runs); this file is
the spark-submit entry point.
"""

import sys

from hinet_spark.jobs.train_hinet import build_parser, main, parse_args  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
