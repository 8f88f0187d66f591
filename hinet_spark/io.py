"""All Delta reads and writes.

A table is named by its key in ``storage.tables`` (``raw_exposures``...). In the embedded
default it is the folder ``<storage.root>/<name>``; with ``storage.catalog_schema`` set it is
the catalog table ``<catalog_schema>.<name>``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession

from hinet_spark.config import Config

logger = logging.getLogger(__name__)


class TableNotFoundError(LookupError):
    """A table a job needs does not exist."""


def table_name(cfg: Config, key: str) -> str:
    try:
        return cfg.storage.tables[key]
    except KeyError:
        raise KeyError(
            f"storage.tables has no entry {key!r}; known: {sorted(cfg.storage.tables)}"
        ) from None


def table_location(cfg: Config, key: str) -> str:
    """The path (embedded) or the qualified catalog name (cluster) of a table."""
    name = table_name(cfg, key)
    if cfg.storage.catalog_schema:
        return f"{cfg.storage.catalog_schema}.{name}"
    return str(Path(cfg.storage.root).resolve() / name)


def _by_path(cfg: Config) -> bool:
    return not cfg.storage.catalog_schema


def table_exists(spark: SparkSession, cfg: Config, key: str) -> bool:
    loc = table_location(cfg, key)
    if _by_path(cfg):
        return (Path(loc) / "_delta_log").is_dir()
    return bool(spark.catalog.tableExists(loc))


def read_table(spark: SparkSession, cfg: Config, key: str) -> DataFrame:
    """Read the latest snapshot of a Delta table, or raise naming it."""
    loc = table_location(cfg, key)
    if not table_exists(spark, cfg, key):
        raise TableNotFoundError(f"Delta table {key!r} not found at {loc}")
    if _by_path(cfg):
        return spark.read.format("delta").load(loc)
    return spark.read.table(loc)


def table_version(spark: SparkSession, cfg: Config, key: str) -> int:
    """The current Delta version of a table (recorded by jobs that read it)."""
    from delta.tables import DeltaTable

    loc = table_location(cfg, key)
    table = DeltaTable.forPath(spark, loc) if _by_path(cfg) else DeltaTable.forName(spark, loc)
    return int(table.history(1).select("version").first()[0])


def write_table(df: DataFrame, cfg: Config, key: str, *, partition_by: Sequence[str],
                replace_where: str | None = None) -> None:
    """Write a Delta table, replacing only the rows matching ``replace_where`` when given.

    With ``replace_where`` the write is idempotent for that slice (a rerun of a date leaves
    an identical table, other dates untouched); Delta checks that every written row matches
    the predicate. Without it the whole table is overwritten.
    """
    loc = table_location(cfg, key)
    writer = df.write.format("delta").mode("overwrite").partitionBy(*partition_by)
    if replace_where:
        writer = writer.option("replaceWhere", replace_where)
    else:
        writer = writer.option("overwriteSchema", "true")
    logger.info("writing Delta table %s (%s)", loc, replace_where or "full overwrite")
    if _by_path(cfg):
        writer.save(loc)
    else:
        writer.saveAsTable(loc)


def drop_table(spark: SparkSession, cfg: Config, key: str) -> None:
    """Remove a table (a scratch table a job staged) if it exists."""
    loc = table_location(cfg, key)
    if _by_path(cfg):
        shutil.rmtree(loc, ignore_errors=True)
    else:
        spark.sql(f"DROP TABLE IF EXISTS {loc}")
