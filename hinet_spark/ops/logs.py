"""Logging and warnings policy, the same in the driver and in training workers.

The project's loggers (``hinet_spark.*`` and the job's own) log at the chosen level (INFO by
default); every other library logs at WARNING unless ``--verbose``. Warnings that every
healthy run would print are filtered here, at their source, each with the reason.
"""

from __future__ import annotations

import logging
import warnings

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PROJECT_LOGGERS = ("hinet_spark", "generate_synthetic", "build_features", "train_hinet", "score_candidates",
                   "manage_model", "evaluate_scores", "demo_summary")
# Libraries that set their own logger levels at import (MLflow sets INFO); pinned to WARNING.
LIBRARY_LOGGERS = ("mlflow", "py4j", "petastorm", "horovod", "urllib3", "alembic", "matplotlib", "numba")


def quiet_library_warnings() -> None:
    # Petastorm 0.12 calls pyarrow's legacy filesystem and ParquetDataset APIs, deprecated since
    # pyarrow 5-11; ~20 FutureWarnings per reader, per process. Nothing to act on until the
    # reader moves off Petastorm's legacy path (see docs/platform.md).
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"petastorm(\..*)?$")
    # MLflow warns that a python_model object is pickled with cloudpickle: that is how this
    # project logs its pyfunc (the model's code is the installed hinet_spark package).
    warnings.filterwarnings("ignore", message=".*Passing a Python object as `python_model`.*")


def configure(level: str | int = "INFO", verbose: bool = False, job: str | None = None) -> None:
    """Root handler with one format; project loggers at ``level``; the rest at WARNING
    (or at ``level`` too when ``verbose``)."""
    lvl = getattr(logging, level) if isinstance(level, str) else level
    logging.basicConfig(level=lvl if verbose else logging.WARNING, format=FORMAT, force=True)
    for name in (*PROJECT_LOGGERS, *((job,) if job else ())):
        logging.getLogger(name).setLevel(lvl)
    for name in LIBRARY_LOGGERS:
        logging.getLogger(name).setLevel(lvl if verbose else logging.WARNING)
    # MLflow's "Calling spark_udf() with env_manager='local' does not recreate the same
    # environment" and "Passing a Python object as python_model" are logged (not warned) on
    # every scoring and training run; both describe this project's deliberate setup.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.DEBUG if verbose else logging.ERROR)
    # Petastorm warns when the cached Parquet files are under 50 MB; the converter writes
    # 2 x workers files on purpose (each worker needs row groups of its own), so small data
    # gives small files and large data large ones.
    logging.getLogger("petastorm.spark.spark_dataset_converter").setLevel(
        logging.DEBUG if verbose else logging.ERROR)
    quiet_library_warnings()
