"""All Delta reads and writes.

A table is named by its key in ``storage.tables`` (``raw_exposures``...). In the embedded
default it is the folder ``<storage.root>/<name>``; with ``storage.catalog_schema`` set it is
the catalog table ``<catalog_schema>.<name>``.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config
from hinet_spark.dates import day_range
from hinet_spark.errors import OperatorError

logger = logging.getLogger(__name__)


class TableNotFoundError(OperatorError, LookupError):
    """A table a job needs does not exist."""


class StorageError(OperatorError, RuntimeError):
    """A write or delete would leave ``storage.root`` or touch a table the job does not own."""


class TableReadError(OperatorError, RuntimeError):
    """A Delta table exists but cannot be read (a damaged log, a data file deleted under it)."""


class ConcurrentRunError(OperatorError, RuntimeError):
    """Another run committed to the same table partition between this run's read and commit."""


# Delta's optimistic-concurrency conflicts (io.delta.exceptions.*): the other writer won.
CONFLICTS = ("ConcurrentAppendException", "ConcurrentWriteException", "ConcurrentDeleteReadException",
              "ConcurrentDeleteDeleteException", "ConcurrentTransactionException", "MetadataChangedException",
              "ProtocolChangedException", "DELTA_CONCURRENT_")
_MISSING_FILE = re.compile(r"(?:FileNotFoundException|DELTA_FILE_NOT_FOUND|FAILED_READ_FILE|"
                           r"does not exist|cannot be found)")


def _first_line(exc: BaseException) -> str:
    """The cause in one line: the Java exception's message rather than py4j's "An error
    occurred while calling o583.load"."""
    for line in str(exc).strip().splitlines():
        line = line.strip().lstrip(":").strip()
        if line and not line.startswith("An error occurred while calling"):
            return re.sub(r"^[\w.$]+(Exception|Error): ", "", line)[:300]
    return type(exc).__name__


def explain_failure(exc: BaseException, cfg: Config) -> str | None:
    """One line naming the table, its path and the likely cause of a Spark/Delta failure that
    surfaced after the read (Spark reads lazily), or None when it is not one of those."""
    text = str(exc)
    if not _MISSING_FILE.search(text):
        return None
    if cfg.storage.catalog_schema:
        return None
    for key in cfg.storage.tables:
        try:
            loc = table_location(cfg, key).rstrip("/")
        except StorageError:
            continue
        for form in (loc, loc.replace(" ", "%20")):  # Hadoop prints paths raw or URL-encoded
            start = text.find(f"file:{form}/")
            if start >= 0:
                path = text[start + len("file:"):].split("\n")[0].split(". ")[0].removesuffix(" does not exist")
                return (f"Delta table {key!r} at {loc}: a file its log references is missing ({path}); "
                        "someone deleted data files under the table (not through Delta). Restore the file, "
                        "or RESTORE/rewrite the affected dates (docs/operations.md, failure modes)")
    return None
# A scratch table (the generator's staging) carries this marker file (Delta ignores files
# starting with "_") or, in a catalog, this table property. drop_scratch_table removes nothing else.
SCRATCH_MARKER = "_hinet_scratch"
SCRATCH_PROPERTY = "hinet_spark.scratch"


def table_name(cfg: Config, key: str) -> str:
    try:
        return cfg.storage.tables[key]
    except KeyError:
        raise KeyError(
            f"storage.tables has no entry {key!r}; known: {sorted(cfg.storage.tables)}"
        ) from None


def table_location(cfg: Config, key: str) -> str:
    """The path (embedded) or the qualified catalog name (cluster) of a table.

    A path always resolves to a folder directly inside ``storage.root`` (config validation
    allows plain names only; this check also catches a symlink pointing elsewhere).
    """
    name = table_name(cfg, key)
    if cfg.storage.catalog_schema:
        return f"{cfg.storage.catalog_schema}.{name}"
    root = Path(cfg.storage.root).resolve()
    path = (root / name).resolve()
    if path.parent != root:
        raise StorageError(f"storage.tables.{key}={name!r} resolves to {path}, outside storage.root {root}")
    return str(path)


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
    try:  # loading replays the Delta log now: a damaged log fails here, named
        if _by_path(cfg):
            return spark.read.format("delta").load(loc)
        return spark.read.table(loc)
    except Exception as exc:
        raise TableReadError(f"Delta table {key!r} at {loc} cannot be read: its transaction log is damaged or "
                             f"a log file was deleted ({_first_line(exc)}); restore _delta_log from a backup "
                             "or rebuild the table (docs/operations.md, failure modes)") from exc


def table_version(spark: SparkSession, cfg: Config, key: str) -> int:
    """The current Delta version of a table (recorded by jobs that read it)."""
    from delta.tables import DeltaTable

    loc = table_location(cfg, key)
    table = DeltaTable.forPath(spark, loc) if _by_path(cfg) else DeltaTable.forName(spark, loc)
    return int(table.history(1).select("version").first()[0])


def create_table_if_missing(spark: SparkSession, cfg: Config, key: str, schema, partition_by: Sequence[str]) -> None:
    """Create an empty Delta table with ``schema`` (its NOT NULL columns become Delta
    constraints, so a later write with a null there fails instead of landing) if none exists."""
    from delta.tables import DeltaTable

    if table_exists(spark, cfg, key):
        return
    loc = table_location(cfg, key)
    builder = DeltaTable.createIfNotExists(spark)
    builder = builder.location(loc) if _by_path(cfg) else builder.tableName(loc)
    builder.addColumns(schema).partitionedBy(*partition_by).execute()
    logger.info("created Delta table %s with its contract schema", loc)


def sized_for_files(df: DataFrame, cfg: Config, partition_by: Sequence[str], rows: int | None) -> DataFrame:
    """``df`` laid out for its Delta write, whatever the session's shuffle settings are.

    Rows of one table partition (e.g. one scenario and day) go to one task, so each table
    partition gets one file while it holds up to ``spark.rows_per_file`` rows. When ``rows``
    (the rows being written, when the job knows) says a partition holds more, each one is
    spread over ``ceil(rows / partitions / rows_per_file)`` buckets of a hash of the row, so a
    big day is still written in parallel, in files of about ``rows_per_file`` rows. Empty
    shuffle partitions write nothing (and adaptive execution coalesces them).
    """
    per_file = cfg.spark.rows_per_file
    if not partition_by:
        return df.repartition(max(1, math.ceil((rows or 0) / per_file)))
    if not rows or rows <= per_file:
        return df.repartition(*partition_by)
    keys = max(1, df.select(*partition_by).distinct().count())
    buckets = math.ceil(rows / keys / per_file)
    if buckets == 1:
        return df.repartition(*partition_by)
    salt = F.pmod(F.xxhash64(*df.columns), F.lit(buckets))
    return df.repartition(keys * buckets, *partition_by, salt)


def write_table(df: DataFrame, cfg: Config, key: str, *, partition_by: Sequence[str],
                replace_where: str | None = None, scratch: bool = False, rows: int | None = None,
                merge_schema: bool = False) -> None:
    """Write a Delta table, replacing only the rows matching ``replace_where`` when given.

    With ``replace_where`` the write is idempotent for that slice (a rerun of a date leaves
    an identical table, other dates untouched); Delta checks that every written row matches
    the predicate. Without it the whole table is overwritten. ``scratch`` marks a table the
    job drops again (:func:`drop_scratch_table`); it refuses to overwrite an existing table
    that is not itself a scratch table. The file layout is the job's, not the session's
    (:func:`sized_for_files`; ``rows``: how many rows are written, when the job knows).
    ``merge_schema``: columns the table lacks are added (raw tables fed by several sources).
    """
    loc = table_location(cfg, key)
    spark = df.sparkSession
    if scratch and not _is_scratch(spark, cfg, key):
        taken = (Path(loc).exists() and any(Path(loc).iterdir())) if _by_path(cfg) else table_exists(spark, cfg, key)
        if taken:
            raise StorageError(f"storage.tables.{key}: {loc} exists and is not a scratch table of this project; "
                               "refusing to overwrite it (choose another name, or remove it yourself)")
    df = sized_for_files(df, cfg, partition_by, rows)
    writer = df.write.format("delta").mode("overwrite").partitionBy(*partition_by) \
        .option("maxRecordsPerFile", cfg.spark.rows_per_file)
    if replace_where:
        writer = writer.option("replaceWhere", replace_where)
        if merge_schema:
            writer = writer.option("mergeSchema", "true")
    else:
        writer = writer.option("overwriteSchema", "true")
    logger.debug("writing Delta table %s (%s)", loc, replace_where or "full overwrite")
    try:
        _save(writer, cfg, loc)
    except Exception as exc:
        if any(name in str(exc) for name in CONFLICTS):
            raise ConcurrentRunError(
                f"Delta table {key!r} at {loc}: another run committed to {replace_where or 'the table'} "
                "first, so this run's write was refused and nothing of it was committed; the table holds the "
                "other run's complete result. A rerun is safe (it replaces the same slice).") from exc
        raise
    if scratch and _by_path(cfg):
        (Path(loc) / SCRATCH_MARKER).write_text("a scratch table of hinet-spark; dropped when its job ends\n")
    elif scratch:
        spark.sql(f"ALTER TABLE {loc} SET TBLPROPERTIES ('{SCRATCH_PROPERTY}' = 'true')")


def _save(writer, cfg: Config, loc: str) -> None:
    if _by_path(cfg):
        writer.save(loc)
    else:
        writer.saveAsTable(loc)


def _is_scratch(spark: SparkSession, cfg: Config, key: str) -> bool:
    loc = table_location(cfg, key)
    if _by_path(cfg):
        return (Path(loc) / SCRATCH_MARKER).is_file()
    if not table_exists(spark, cfg, key):
        return False
    props = {r["key"]: r["value"] for r in spark.sql(f"SHOW TBLPROPERTIES {loc}").collect()}
    return props.get(SCRATCH_PROPERTY) == "true"


def drop_scratch_table(spark: SparkSession, cfg: Config, key: str) -> None:
    """Remove a scratch table a job staged (written with ``scratch=True``).

    Anything else at that location, a real table or a folder the job did not create, is left
    alone with a warning: a misconfigured name never deletes data.
    """
    loc = table_location(cfg, key)
    if not _is_scratch(spark, cfg, key):
        if (_by_path(cfg) and Path(loc).exists()) or (not _by_path(cfg) and table_exists(spark, cfg, key)):
            logger.warning("not removing %s (storage.tables.%s): it is not a scratch table", loc, key)
        return
    if _by_path(cfg):
        shutil.rmtree(loc)
    else:
        spark.sql(f"DROP TABLE IF EXISTS {loc}")


def add_column_if_missing(spark: SparkSession, cfg: Config, key: str, column: str, sql_type: str) -> bool:
    """Add a nullable ``column`` to an existing table that lacks it (a metadata-only commit)."""
    if column in read_table(spark, cfg, key).columns:
        return False
    loc = table_location(cfg, key)
    target = f"delta.`{loc}`" if _by_path(cfg) else loc
    spark.sql(f"ALTER TABLE {target} ADD COLUMNS ({column} {sql_type})")
    logger.info("added column %s to %s (written before it existed)", column, loc)
    return True


# --------------------------------------------------------------------------------------
# The import log: which dates of which source were imported completely
# --------------------------------------------------------------------------------------

IMPORT_LOG_SCHEMA = "import_source string, dt date, status string, import_id string, at timestamp"


class ImportIncompleteError(OperatorError, RuntimeError):
    """The raw tables hold dates whose import started but did not finish."""


def record_import(spark: SparkSession, cfg: Config, source: str, a, b, status: str, import_id: str) -> None:
    """One row per date of ``a``..``b`` for ``source``: ``started`` before an import's first
    write, ``complete`` after its last (replacing the rows of that source and those dates)."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    days = day_range(a, b)
    rows = spark.createDataFrame([(source, d, status, import_id, now) for d in days], IMPORT_LOG_SCHEMA)
    write_table(rows, cfg, "import_log", partition_by=[], rows=len(days),
                replace_where=f"import_source = '{source}' AND dt >= '{a.isoformat()}' AND dt <= '{b.isoformat()}'")


def unfinished_imports(spark: SparkSession, cfg: Config, a, b) -> list[dict]:
    """Dates of ``a``..``b`` whose latest import of some source started and did not complete."""
    if not table_exists(spark, cfg, "import_log"):
        return []
    rows = read_table(spark, cfg, "import_log").where(
        f"dt >= '{a.isoformat()}' AND dt <= '{b.isoformat()}' AND status != 'complete'").orderBy("dt").collect()
    return [r.asDict() for r in rows]


def require_complete_imports(spark: SparkSession, cfg: Config, a, b) -> None:
    """Refuse to build from dates an import left half-written (some raw tables replaced, others not)."""
    bad = unfinished_imports(spark, cfg, a, b)
    if not bad:
        return
    by_source: dict[str, list[str]] = {}
    for r in bad:
        by_source.setdefault(r["import_source"], []).append(r["dt"].isoformat())
    parts = [f"source {src!r}: {ds[0]}..{ds[-1]} ({len(ds)} dates)" for src, ds in by_source.items()]
    raise ImportIncompleteError(
        f"the raw tables hold an unfinished import ({'; '.join(parts)}; import {bad[0]['import_id']} started "
        f"{bad[0]['at']} UTC): import_logs failed or was stopped before it wrote every raw table, so these dates may "
        "have exposures without their clicks or orders. Rerun import_logs with that mapping for those dates "
        "(a rerun replaces the same rows), then build_features")
