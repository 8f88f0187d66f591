"""The one place a SparkSession is made.

* Embedded default: a local Spark (``spark.master``) with Delta Lake enabled, Delta's jars
  taken from ``$HINET_JARS_DIR`` (``scripts/setup.sh`` fetches them through Maven, so no
  network is needed afterwards), warehouse and Derby files under ``storage.root``.
* Under ``spark-submit`` or on Databricks: the session the cluster already configured
  (its master, its catalog, its Delta); nothing here overrides it.

Jobs call :func:`get_spark` and never build sessions themselves.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from pyspark.sql import SparkSession

from hinet_spark.config import Config
from hinet_spark.errors import OperatorError

logger = logging.getLogger(__name__)



def _installed(package: str, default: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return default


# The jars that match the installed delta-spark and pyspark (Spark 3.x: Scala 2.12; 4.x: 2.13):
# 4.0.1 / 2.13 locally, 3.2.0 / 2.12 in the Databricks 15.4 LTS environment (envs/).
DELTA_VERSION = _installed("delta-spark", "4.0.1")
SCALA_BINARY = "2.12" if _installed("pyspark", "4").startswith("3.") else "2.13"
DELTA_JARS = (f"delta-spark_{SCALA_BINARY}-{DELTA_VERSION}.jar", f"delta-storage-{DELTA_VERSION}.jar")


def jars_dir() -> Path:
    """$HINET_JARS_DIR, else the jars folder of scripts/setup.sh's cache ($HINET_CACHE, by default
    ~/.cache/hinet-spark)."""
    if os.environ.get("HINET_JARS_DIR"):
        return Path(os.environ["HINET_JARS_DIR"])
    return Path(os.environ.get("HINET_CACHE", Path.home() / ".cache" / "hinet-spark")) / "jars"


def delta_jar_paths() -> list[str]:
    folder = jars_dir()
    paths = [folder / name for name in DELTA_JARS]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise RuntimeError(
            f"Delta Lake jars not found: {missing}. Run scripts/setup.sh (it fetches them through "
            f"Maven) or point HINET_JARS_DIR at a folder holding {list(DELTA_JARS)}."
        )
    return [str(p) for p in paths]


def on_cluster() -> bool:
    """True under spark-submit (a JVM gateway was handed to us) or on Databricks."""
    return bool(os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"))


def owns_session() -> bool:
    """True when the job about to run will own its session and should stop it at the end:
    under spark-submit (not on Databricks, whose session is shared) with no session active yet
    (a notebook's or a test's session is its owner's to stop)."""
    if not os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return False
    return SparkSession.getActiveSession() is None


def stop_session() -> None:
    active = SparkSession.getActiveSession()
    if active is not None:
        logger.debug("stopping the SparkSession")
        active.stop()


def build_local_session(root: str | Path, *, master: str = "local[2]", app_name: str = "hinet-spark",
                        shuffle_partitions: int = 8, driver_memory: str = "4g",
                        extra_conf: dict[str, str] | None = None) -> SparkSession:
    """A local SparkSession with Delta enabled; every file it writes stays under ``root``."""
    root = Path(root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Python workers (UDFs, Horovod and TorchDistributor tasks) run this interpreter, the
    # project's virtualenv, not whatever python3 is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.jars", ",".join(delta_jar_paths()))
        .config("spark.sql.extensions", "io.delta.sql.DeltaSparkSessionExtension")
        .config("spark.sql.catalog.spark_catalog", "org.apache.spark.sql.delta.catalog.DeltaCatalog")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.default.parallelism", str(max(2, shuffle_partitions)))
        .config("spark.driver.memory", driver_memory)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.warehouse.dir", str(root / "spark-warehouse"))
        # quoted: Spark splits this option shell-style, and storage.root may hold spaces
        .config("spark.driver.extraJavaOptions",
                f'"-Dderby.system.home={root / "derby"}" "-Dlog4j.configurationFile={log4j_config()}"')
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.pyspark.python", os.environ["PYSPARK_PYTHON"])
        .config("spark.databricks.delta.schema.autoMerge.enabled", "false")
        .config("spark.databricks.delta.snapshotPartitions", str(max(2, shuffle_partitions)))
    )
    for key, value in (extra_conf or {}).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    return spark


def log4j_config() -> Path:
    """``conf/log4j2.properties`` (or its copy in the wheel): the local JVM's log levels."""
    from hinet_spark.config import default_conf_dir

    return default_conf_dir() / "log4j2.properties"


class DeltaNotConfiguredError(OperatorError, RuntimeError):
    """The session a job was given cannot read or write Delta tables."""


DELTA_SETTINGS = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}


def require_delta(spark: SparkSession) -> None:
    """Fail with the missing settings named, before any job touches a table.

    Databricks runtimes have Delta built in. Elsewhere (spark-submit on someone's cluster,
    a notebook's session) the Delta jars and the two session settings must be there; a
    session without them would otherwise fail much later with py4j's
    ``TypeError: 'JavaPackage' object is not callable``.
    """
    if os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return
    from py4j.java_gateway import JavaClass

    missing = []
    for key, value in DELTA_SETTINGS.items():
        if value not in (spark.conf.get(key, None) or ""):
            missing.append(f"{key}={value}")
    jvm = spark.sparkContext._jvm
    if not isinstance(jvm.io.delta.tables.DeltaTable, JavaClass):
        missing.append(f"the Delta jars (spark.jars.packages=io.delta:delta-spark_{SCALA_BINARY}:{DELTA_VERSION}, "
                       f"or spark.jars=<{' and '.join(DELTA_JARS)}>)")
    if missing:
        raise DeltaNotConfiguredError(
            "this Spark session has no Delta Lake: missing " + "; ".join(missing) + ". Pass them with --conf / "
            "--packages to spark-submit, or put them in the cluster's spark-defaults.conf "
            "(docs/operations.md, section 'Delta on your own Spark'); scripts/setup.sh writes them into "
            "this project's virtualenv.")


def job_layout(spark: SparkSession) -> None:
    """Session settings the jobs rely on whatever the cluster's defaults: adaptive execution
    (coalesces small shuffle partitions) and UTC timestamps (event dates are UTC days)."""
    spark.conf.set("spark.sql.adaptive.enabled", "true")
    spark.conf.set("spark.sql.adaptive.coalescePartitions.enabled", "true")
    spark.conf.set("spark.sql.session.timeZone", "UTC")


def get_spark(cfg: Config) -> SparkSession:
    """The session for a job: the cluster's when there is one, else the embedded local one."""
    if on_cluster():
        spark = SparkSession.builder.getOrCreate()
        require_delta(spark)
        job_layout(spark)
        logger.info("using the cluster's SparkSession (Spark %s, master %s)", spark.version,
                    spark.sparkContext.master)
        return spark
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    s = cfg.spark
    logger.info("starting local Spark %s with Delta, tables under %s", s.master, cfg.storage.root)
    return build_local_session(
        cfg.storage.root, master=s.master, app_name=s.app_name,
        shuffle_partitions=s.shuffle_partitions, driver_memory=s.driver_memory,
        extra_conf=s.extra_conf,
    )
