"""Import a user's logs, in their own layout, into the raw tables (``jobs/import_logs.py``).

A mapping file (``conf/mappings/*.yaml``, docs/your_data.md) says where each of their tables
is (a table name, or a path and a format: parquet, delta, csv, json), which of their columns
is which contract column, how their times are written (epoch seconds / ms / us, a string
format, or timestamps) and in which time zone, which of their scenario values is which
scenario, constants for contract columns they lack, and which further columns to keep as
features. Clicks and orders may be tables of their own, or flags on the exposure rows.

For a date range the import writes ``raw_exposures``, ``raw_clicks``, ``raw_orders`` (and
``candidates`` when the mapping has them), replacing exactly those dates, and puts every row
that breaks the contract into ``import_quarantine`` with the reason. Rows dated outside the
range are counted and left for the import of their own dates. Counts reconcile per source:
read = imported + quarantined + outside the range, checked against what the tables hold
after the write.

Several mappings may feed the same raw tables (apps, regions): every row carries the
mapping's ``source`` name, and an import replaces only its own source's rows of its dates.
An import is checked whole before its first write (time zones, epoch units against the
range, conversions that cannot overflow) and is recorded in ``import_log``: ``started``
before the first write, ``complete`` after the last, so ``build_features`` refuses dates
whose import did not finish (:func:`check_imports_complete`). Wall-clock times that a
daylight-saving change makes ambiguous (the repeated hour) or non-existent (the skipped
hour) are counted and resolved by the section's ``time.ambiguous`` / ``time.nonexistent``
rule.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import uuid
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark.config import Config, ConfigError, safe_yaml
from hinet_spark.dates import parse_range
from hinet_spark.errors import OperatorError
from hinet_spark.features.build import ReconciliationError, late_events
from hinet_spark.features.transforms import first_reason
from hinet_spark.ops.io import (
    add_column_if_missing,
    read_table,
    record_import,
    table_exists,
    write_table,
)
from hinet_spark.ops.schemas import load_schema
from hinet_spark.ops.summary import table
from hinet_spark.tasks import LABELS

logger = logging.getLogger(__name__)

# mapping section -> (contract table, its time column)
SOURCES = {"exposures": ("raw_exposures", "event_time"), "clicks": ("raw_clicks", "click_time"),
           "orders": ("raw_orders", "order_time"), "candidates": ("candidates", "event_time")}
FORMATS = ("parquet", "delta", "csv", "json")
UNITS = {"s": "timestamp_seconds", "ms": "timestamp_millis", "us": "timestamp_micros"}
SECTION_KEYS = {"source", "where", "columns", "time", "defaults", "features", "flag"}
TIME_KEYS = {"unit", "format", "zone", "ambiguous", "nonexistent"}
AMBIGUOUS_RULES = ("earlier", "later", "quarantine")  # the repeated hour of a DST change
NONEXISTENT_RULES = ("shift", "quarantine")  # the skipped hour: shift = later by the gap (Java's rule)
# epoch numbers per second of each unit, and the plausible span of an event time (years 1990..2199)
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000}
PLAUSIBLE_SECONDS = (631_152_000, 7_258_118_400)
_LAST_SECOND = 253_402_300_799  # 9999-12-31 23:59:59: beyond it a conversion overflows
TOP_KEYS = {*SOURCES, "scenarios", "time_zone", "source"}
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
# names a kept feature may not take: what the pipeline adds to the rows it reads and writes
PIPELINE_NAMES = {"source", *LABELS, "scenario_idx", "spec_hash", "reason", "record"}


class MappingError(OperatorError, ValueError):
    """A mapping file that cannot describe the user's tables; the message names file and key."""


@dataclass(frozen=True)
class Section:
    """One of the user's sources, as the mapping describes it."""

    name: str  # exposures | clicks | orders | candidates
    source: dict[str, Any]
    columns: dict[str, str]  # contract column -> their column
    time: dict[str, str]
    defaults: dict[str, Any]
    features: dict[str, str]  # their column -> feature column
    where: str | None = None
    flag: str | None = None  # clicks/orders as a flag column of the exposures source, or a SQL condition on it


@dataclass(frozen=True)
class Mapping:
    path: str
    scenarios: dict[str, str]  # their value -> scenario name
    time_zone: str
    sections: dict[str, Section]
    source: str = "default"  # the name of this feed in the raw tables' ``source`` column

    def fail(self, key: str, problem: str) -> MappingError:
        return MappingError(f"{self.path}: {key}: {problem}")


@dataclass
class ImportReport:
    start: str
    end: str
    counts: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> read/imported/quarantined/outside
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> reason -> rows
    per_scenario: list[dict[str, Any]] = field(default_factory=list)
    null_rates: dict[str, float] = field(default_factory=dict)  # feature column -> share of null values
    source: str = "default"
    # source -> {"ambiguous": rows, "nonexistent": rows}: wall-clock times a DST change affects
    dst: dict[str, dict[str, int]] = field(default_factory=dict)
    # source -> rows read but dated outside the range that no nightly import of their own date reads
    uncovered: dict[str, dict[str, int]] = field(default_factory=dict)
    replaced_legacy: dict[str, int] = field(default_factory=dict)  # table -> rows without a source replaced


def load_mapping(path: str | Path, cfg: Config) -> Mapping:
    """Read and check a mapping file; every error names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file not found: {path}")
    try:
        raw = safe_yaml(path.read_text(), str(path)) or {}
    except (yaml.YAMLError, ConfigError) as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    m = Mapping(str(path), {}, "UTC", {})
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise m.fail(str(unknown[0]), f"unknown key; known: {sorted(TOP_KEYS)}")
    source = str(raw.get("source") or path.stem)
    if not SOURCE_NAME.match(source):
        raise m.fail("source", f"{source!r}: a source name is letters, digits, '_', '.' and '-' (at most 64)")
    zone = str(raw.get("time_zone") or "UTC")
    check_zone(m, "time_zone", zone)
    scenarios = {str(k): str(v) for k, v in (raw.get("scenarios") or {}).items()}
    bad = {k: v for k, v in scenarios.items() if v not in cfg.scenarios.names}
    if bad:
        k, v = next(iter(bad.items()))
        raise m.fail(f"scenarios.{k}", f"{v!r} is not one of scenarios.names {list(cfg.scenarios.names)}")
    if "exposures" not in raw:
        raise m.fail("exposures", "missing: the mapping must say where the exposures are")
    sections = {name: _section(m, name, raw[name]) for name in SOURCES if name in raw}
    for name in ("clicks", "orders"):
        if name not in sections:
            raise m.fail(name, "missing: give a source and columns, or a flag column of the exposures")
    return Mapping(str(path), scenarios, zone, sections, source)


def check_zone(m: Mapping, key: str, zone: str) -> None:
    """A region id (Europe/Amsterdam), UTC/GMT, or a fixed offset (+08:00, UTC+8): what
    Spark's to_utc_timestamp takes. Anything else would fail in the middle of the write."""
    if re.match(r"^(UTC|GMT|Z)?([+-]\d{1,2}(:?\d{2})?)?$", zone) and zone:
        return
    try:
        zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise m.fail(key, f"{zone!r} is not a time zone (a region id such as Europe/Amsterdam, UTC, or an "
                          "offset such as +08:00)") from None


def _section(m: Mapping, name: str, raw: Any) -> Section:
    if not isinstance(raw, dict):
        raise m.fail(name, f"expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - SECTION_KEYS)
    if unknown:
        raise m.fail(f"{name}.{unknown[0]}", f"unknown key; known: {sorted(SECTION_KEYS)}")
    contract = SOURCES[name][0]
    columns = {str(k): str(v) for k, v in (raw.get("columns") or {}).items()}
    defaults = dict(raw.get("defaults") or {})
    flag = raw.get("flag")
    if flag is not None and name not in ("clicks", "orders"):
        raise m.fail(f"{name}.flag", "only clicks and orders can be flags of the exposure rows")
    known = [c for c in load_schema(contract).names if c != "dt"]
    for key, cols in (("columns", columns), ("defaults", defaults)):
        extra = sorted(set(cols) - set(known))
        if extra:
            raise m.fail(f"{name}.{key}.{extra[0]}", f"not a column of the {contract} contract; known: {known}")
    if flag is None:
        if not isinstance(raw.get("source"), dict):
            raise m.fail(f"{name}.source", "missing: {table: NAME} or {path: PATH, format: parquet|delta|csv|json}")
        _check_source(m, f"{name}.source", raw["source"])
        lacking = [c for c in known if c not in columns and c not in defaults]
        if lacking:
            raise m.fail(f"{name}.columns", f"no column for {lacking} (map each to one of your columns, or give "
                                            f"{name}.defaults.<column>: a constant)")
    time = {str(k): str(v) for k, v in (raw.get("time") or {}).items()}
    if set(time) - TIME_KEYS:
        raise m.fail(f"{name}.time", f"unknown keys {sorted(set(time) - TIME_KEYS)}; "
                                     "known: unit (s|ms|us), format, zone, ambiguous, nonexistent")
    if "unit" in time and time["unit"] not in UNITS:
        raise m.fail(f"{name}.time.unit", f"{time['unit']!r}: expected one of {list(UNITS)} (epoch numbers)")
    if "zone" in time:
        check_zone(m, f"{name}.time.zone", time["zone"])
    for key, rules in (("ambiguous", AMBIGUOUS_RULES), ("nonexistent", NONEXISTENT_RULES)):
        if key in time and time[key] not in rules:
            raise m.fail(f"{name}.time.{key}", f"{time[key]!r}: expected one of {list(rules)}")
    feats = raw.get("features") or {}
    features = {str(c): str(c) for c in feats} if isinstance(feats, list) else {str(k): str(v) for k, v in feats.items()}
    _check_feature_names(m, name, features, known)
    return Section(name, dict(raw.get("source") or {}), columns, time, defaults, features, raw.get("where"),
                   str(flag) if flag is not None else None)


def _check_feature_names(m: Mapping, name: str, features: dict[str, str], contract: list[str]) -> None:
    """A kept feature's output name must not overwrite a contract column, another kept feature
    or a column the pipeline adds (``source``, labels, ``f_*`` ids, ``_`` working columns)."""
    seen: dict[str, str] = {}
    for theirs, ours in features.items():
        key = f"{name}.features.{theirs}"
        if ours in contract or ours == "dt":
            raise m.fail(key, f"output name {ours!r} is a column of the {SOURCES[name][0]} contract; it would "
                              f"overwrite {ours!r} (map that column under {name}.columns, or name the feature "
                              "otherwise)")
        if ours in PIPELINE_NAMES or ours.startswith(("_", "f_")):
            raise m.fail(key, f"output name {ours!r} is a column the pipeline adds; name the feature otherwise")
        if ours in seen:
            raise m.fail(key, f"output name {ours!r} is also the output of {name}.features.{seen[ours]}")
        seen[ours] = theirs


def _check_source(m: Mapping, key: str, src: dict) -> None:
    if "table" in src:
        if set(src) - {"table"}:
            raise m.fail(key, "a table source has only 'table'")
        return
    if "path" not in src or src.get("format") not in FORMATS:
        raise m.fail(key, f"expected {{table: NAME}} or {{path: PATH, format: one of {list(FORMATS)}, "
                          f"options: {{...}}}}, got {src!r}")
    if set(src) - {"path", "format", "options"}:
        raise m.fail(key, f"unknown keys {sorted(set(src) - {'path', 'format', 'options'})}")


def placeholders(m: Mapping, section: Section, a: dt.date, b: dt.date) -> dict[str, Any]:
    """What ``where`` may name: ``{start}``/``{end}``, the import's first and last UTC date
    (Python date formats, e.g. ``{start:%Y%m%d}``); ``{local_start}``/``{local_end}``, the
    dates in the section's time zone that those UTC days overlap (for partitions named by
    local date); ``{start_s}``/``{end_s}`` and ``{start_ms}``/``{end_ms}``, epoch seconds and
    milliseconds of the range's bounds (end exclusive: midnight UTC after the last date)."""
    first = dt.datetime.combine(a, dt.time(), dt.UTC)
    after = dt.datetime.combine(b + dt.timedelta(days=1), dt.time(), dt.UTC)
    zone = _zoneinfo(section.time.get("zone", m.time_zone))
    return {"start": a, "end": b,
            "local_start": first.astimezone(zone).date() if zone else a,
            "local_end": (after - dt.timedelta(microseconds=1)).astimezone(zone).date() if zone else b,
            "start_s": int(first.timestamp()), "end_s": int(after.timestamp()),
            "start_ms": int(first.timestamp()) * 1000, "end_ms": int(after.timestamp()) * 1000}


def _zoneinfo(zone: str) -> dt.tzinfo | None:
    try:
        return zoneinfo.ZoneInfo(zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        match = re.match(r"^(?:UTC|GMT|Z)?([+-])(\d{1,2}):?(\d{2})?$", zone)
        if match:
            sign = 1 if match.group(1) == "+" else -1
            return dt.timezone(sign * dt.timedelta(hours=int(match.group(2)), minutes=int(match.group(3) or 0)))
        return dt.UTC if zone in ("UTC", "GMT", "Z") else None


def _where(m: Mapping, section: Section, a: dt.date, b: dt.date) -> str:
    try:
        return section.where.format(**placeholders(m, section, a, b))
    except (KeyError, IndexError, ValueError) as exc:
        raise m.fail(f"{section.name}.where", f"{section.where!r}: unknown placeholder {exc} (known: "
                                              f"{sorted(placeholders(m, section, a, b))})") from None


def read_source(spark: SparkSession, m: Mapping, section: Section, a: dt.date, b: dt.date) -> DataFrame:
    """Their table, as Spark reads it, filtered by ``where`` (see :func:`placeholders`)."""
    src, key = section.source, f"{section.name}.source"
    try:
        if "table" in src:
            df = spark.table(src["table"])
        else:
            reader = spark.read.format(src["format"]).options(**{k: str(v) for k, v in (src.get("options") or {}).items()})
            df = reader.load(local_path(str(src["path"])))
    except Exception as exc:  # AnalysisException: path or table missing, unreadable format
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise m.fail(key, f"cannot read {src.get('table') or src['path']}: {first}") from None
    if section.where:
        try:
            df = df.where(_where(m, section, a, b))
        except MappingError:
            raise
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise m.fail(f"{section.name}.where", f"{section.where!r}: {first}") from None
    return df


def local_path(path: str) -> str:
    """A relative local path against the job's working directory (the JVM's own working
    directory may differ, e.g. under pytest's chdir); URIs (s3://, dbfs:/) and absolute
    paths as they are."""
    if re.match(r"^[A-Za-z][\w+.-]*:", path) or Path(path).is_absolute():
        return path
    return str(Path(path).resolve())


def _epoch(name: str, unit: str) -> str:
    """Epoch numbers -> a timestamp; null (not an overflow) beyond year 9999."""
    bound = _LAST_SECOND * PER_SECOND[unit]
    v = f"TRY_CAST(`{name}` AS BIGINT)"
    return f"CASE WHEN abs({v}) <= {bound} THEN {UNITS[unit]}({v}) END"


def _time(m: Mapping, section: Section, name: str, their_type: T.DataType) -> tuple[Column, Column, Column]:
    """Their time column ``name`` as a UTC timestamp (null where it does not parse or where the
    section's rule quarantines it), and whether it is an ambiguous / non-existent wall-clock
    time of the zone (the repeated / skipped hour of a daylight-saving change)."""
    zone = section.time.get("zone", m.time_zone)
    their = F.col(f"`{name}`")
    no = F.lit(False)
    if "unit" in section.time:  # epoch numbers: an instant, whatever the zone
        return F.expr(_epoch(name, section.time["unit"])), no, no
    if isinstance(their_type, T.TimestampType):  # an instant already
        return their, no, no
    text = f"CAST(`{name}` AS STRING)"
    fmt = section.time.get("format", "").replace("'", "\\'")
    local = F.expr(f"try_to_timestamp({text}, '{fmt}')" if fmt else f"TRY_CAST({text} AS TIMESTAMP)")
    utc = F.to_utc_timestamp(local, zone)  # wall-clock time in ``zone`` -> UTC (Java: earlier offset, gaps shifted)

    def wall(instant: Column) -> Column:
        return F.from_utc_timestamp(instant, zone)

    def shifted(instant: Column, seconds: Column) -> Column:
        return F.timestamp_micros(F.unix_micros(instant) + seconds.cast("long") * F.lit(1_000_000).cast("long"))

    def offset(instant: Column) -> Column:  # seconds east of UTC at ``instant``
        return F.unix_seconds(wall(instant)) - F.unix_seconds(instant)

    day = F.lit(86_400)
    change = F.abs(offset(shifted(utc, -day)) - offset(shifted(utc, day)))  # the DST step near this time
    later, earlier = shifted(utc, change), shifted(utc, -change)
    other_later = (change > 0) & (wall(later) == local)
    other_earlier = (change > 0) & (wall(earlier) == local)
    ambiguous = F.coalesce(other_later | other_earlier, no)
    nonexistent = F.coalesce(local.isNotNull() & (wall(utc) != local), no)
    rule = section.time.get("ambiguous", "earlier")
    if rule == "earlier":
        value = F.when(other_earlier, earlier).otherwise(utc)
    elif rule == "later":
        value = F.when(other_later, later).otherwise(utc)
    else:
        value = F.when(~ambiguous, utc)
    if section.time.get("nonexistent", "shift") == "quarantine":
        value = F.when(~nonexistent, value)
    return value, ambiguous, nonexistent


def _contract_frame(m: Mapping, section: Section, df: DataFrame, cfg: Config, exposures: bool) -> DataFrame:
    """Their rows in the contract's columns plus ``_reason`` (the first broken rule) and
    ``_record`` (their original row, as JSON)."""
    contract, time_col = SOURCES[section.name]
    schema = load_schema(contract)
    missing = [(f"{section.name}.columns.{c}", v) for c, v in section.columns.items() if v not in df.columns]
    missing += [(f"{section.name}.features.{c}", c) for c in section.features if c not in df.columns]
    if missing:
        key, col = missing[0]
        raise m.fail(key, f"{col!r} is not a column of {_describe(section)} (its columns: {sorted(df.columns)})")
    out, checks = {}, []
    ambiguous, nonexistent = F.lit(False), F.lit(False)
    their_cols = [F.col(f"`{c}`") for c in df.columns]
    for c in schema.columns:
        if c.name == "dt":
            continue
        if c.name in section.columns:
            their = F.col(f"`{section.columns[c.name]}`")
            their_type = df.schema[section.columns[c.name]].dataType
            if c.role == "time":
                value, ambiguous, nonexistent = _time(m, section, section.columns[c.name], their_type)
                if section.time.get("ambiguous") == "quarantine":
                    checks.append((ambiguous, f"ambiguous_time:{c.name}"))
                if section.time.get("nonexistent") == "quarantine":
                    checks.append((nonexistent, f"nonexistent_time:{c.name}"))
                checks.append((their.isNotNull() & value.isNull(), f"bad_time:{c.name}"))
            elif c.role == "scenario":
                s = their.cast("string")
                value = F.coalesce(_lookup(m.scenarios, s), F.when(s.isin(*cfg.scenarios.names), s))
                checks.append((s.isNotNull() & value.isNull(), "unknown_scenario"))
            else:
                value = _try_cast(section.columns[c.name], c.spark_type.simpleString())
                checks.append((their.isNotNull() & value.isNull(), f"bad_type:{c.name}"))
        else:
            value = F.lit(section.defaults[c.name]).cast(c.spark_type)
        out[c.name] = value
        if not c.nullable:
            checks.append((value.isNull(), f"null:{c.name}"))
    kinds = {n: "double" for n in cfg.features.numeric} | {n: "string" for n in (*cfg.features.categorical,
                                                                                  *cfg.features.hashed)}
    for theirs, ours in section.features.items():
        their = F.col(f"`{theirs}`")
        value = _try_cast(theirs, kinds[ours]) if ours in kinds else their
        if ours in kinds:
            checks.append((their.isNotNull() & value.isNull(), f"bad_type:{ours}"))
        out[ours] = value
    # the checks read their columns: evaluated on their frame, beside the contract columns
    dst = F.when(ambiguous, "ambiguous").when(nonexistent, "nonexistent")
    tagged = df.select(*[v.alias(k) for k, v in out.items()], F.to_json(F.struct(*their_cols)).alias("_record"),
                       first_reason(checks).alias("_reason"), dst.alias("_dst"),
                       *[flag_value(m, s, df).alias(f"_flag_{s.name}") for s in m.sections.values()
                         if exposures and s.flag is not None])
    return tagged.withColumn("dt", F.to_date(time_col))


def _try_cast(name: str, type_name: str) -> Column:
    """Null where the value does not convert (whatever spark.sql.ansi.enabled says)."""
    return F.expr(f"TRY_CAST(`{name}` AS {type_name})")


def _lookup(mapping: dict[str, str], value: Column) -> Column:
    if not mapping:
        return F.lit(None).cast("string")
    pairs = [x for k, v in mapping.items() for x in (F.lit(k), F.lit(v))]
    return F.create_map(*pairs)[value]


def _describe(section: Section) -> str:
    src = section.source
    return f"table {src['table']}" if "table" in src else f"{src.get('format')} {src.get('path')}"


def flag_value(m: Mapping, section: Section, df: DataFrame) -> Column:
    """``<section>.flag`` on the exposure rows: a column of theirs (true, 1, yes), or else a SQL
    condition on their columns (``rating >= 4``), true where it holds and false where it does not
    or is null. One that is neither stops the import naming the key."""
    if section.flag in df.columns:
        return F.col(f"`{section.flag}`")
    condition = F.coalesce(F.expr(section.flag).cast("boolean"), F.lit(False))
    try:
        _ = df.select(condition).schema  # analysed now: an unknown column or bad SQL fails here, not mid-write
    except Exception as exc:  # AnalysisException, ParseException
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise m.fail(f"{section.name}.flag", f"{section.flag!r} is neither a column of {_describe(m.sections['exposures'])}"
                                             f" nor a SQL condition on its columns ({first}); its columns: "
                                             f"{sorted(df.columns)}") from None
    return condition


def _flag_events(exposures: DataFrame, name: str) -> DataFrame:
    """Clicks or orders given as a flag on the exposure rows (true, 1, 'yes', or a condition that
    holds: :func:`flag_value`): one event per flagged, well-formed exposure, at its time."""
    time_col = SOURCES[name][1]
    flag = F.lower(F.col(f"_flag_{name}").cast("string")).isin("true", "1", "yes", "y")
    cols = [F.col("exposure_id"), F.col("event_time").alias(time_col)]
    if name == "orders":
        cols.append(F.lit(None).cast("double").alias("amount"))
    return exposures.where(flag & F.col("_reason").isNull()).select(
        *cols, F.col("_record"), F.lit(None).cast("string").alias("_reason"), F.lit(None).cast("string").alias("_dst"),
    ).withColumn("dt", F.to_date(time_col))


def check_units(m: Mapping, section: Section, raw: DataFrame) -> None:
    """Epoch numbers whose declared unit puts them outside any plausible date (years
    1990..2199) while another unit would not: a mapping error, named before any write."""
    unit = section.time.get("unit")
    column = section.columns.get(SOURCES[section.name][1])
    if unit is None or column is None:
        return
    v = F.expr(f"TRY_CAST(`{column}` AS BIGINT)")
    row = raw.agg(F.percentile_approx(v, 0.5, 1000).alias("median"), F.min(v).alias("lo"),
                  F.max(v).alias("hi")).first()
    if row is None or row["median"] is None:
        return
    lo_ok, hi_ok = PLAUSIBLE_SECONDS
    median = int(row["median"])
    if lo_ok <= median / PER_SECOND[unit] <= hi_ok:
        return
    fits = [u for u in UNITS if lo_ok <= median / PER_SECOND[u] <= hi_ok]
    seconds = median / PER_SECOND[unit]
    when = (f"year {int(1970 + seconds / 31_556_952)}" if abs(seconds) < 1e13 else "beyond any date")
    hint = (f"with time.unit {fits[0]!r} their median would be "
            f"{dt.datetime.fromtimestamp(median / PER_SECOND[fits[0]], dt.UTC):%Y-%m-%d %H:%M} UTC"
            if fits else "no unit of s, ms, us puts them between 1990 and 2199")
    raise m.fail(f"{section.name}.time.unit",
                 f"{unit!r} puts the {column!r} values of {_describe(section)} at {when} (median {median}, "
                 f"min {row['lo']}, max {row['hi']}); {hint}. Fix {section.name}.time.unit (nothing was written)")


def _uncovered(m: Mapping, section: Section, raw: DataFrame, outside: list[dt.date]) -> dict[str, int]:
    """Rows this import read but dated outside its range, that the nightly import of their
    own date would not read (its ``where`` excludes them): no nightly run imports them."""
    column = section.columns.get(SOURCES[section.name][1])
    if not section.where or not outside or column is None or len(outside) > 31:
        return {}
    value, _, _ = _time(m, section, column, raw.schema[column].dataType)
    dated = raw.withColumn("_d", F.to_date(value))
    lost = [F.sum(((F.col("_d") == F.lit(d)) & ~F.coalesce(F.expr(_where(m, section, d, d)), F.lit(False)))
                  .cast("long")).alias(d.isoformat()) for d in outside]
    row = dated.agg(*lost).first()
    return {k: int(row[k] or 0) for k in row.asDict() if row[k]}


def import_logs(spark: SparkSession, cfg: Config, mapping: Mapping, start: str, end: str) -> ImportReport:
    """Import ``start``..``end`` (inclusive) of the user's logs; see the module docstring."""
    a, b = parse_range(start, end)
    report = ImportReport(a.isoformat(), b.isoformat(), source=mapping.source)
    in_range = (F.col("dt") >= F.lit(a)) & (F.col("dt") <= F.lit(b))
    raws: dict[str, DataFrame] = {}
    staged: dict[str, DataFrame] = {}
    for name, section in mapping.sections.items():
        if section.flag is not None:
            continue
        raws[name] = read_source(spark, mapping, section, a, b)
        check_units(mapping, section, raws[name])
        staged[name] = _contract_frame(mapping, section, raws[name], cfg, exposures=name == "exposures").persist()
    for name, section in mapping.sections.items():
        if section.flag is not None:
            staged[name] = _flag_events(staged["exposures"], name).persist()
    try:
        # 1. every section counted and checked before the first write
        for name, frame in staged.items():
            _count_section(mapping, mapping.sections[name], raws.get(name), frame, report, a, b, in_range)
        # 2. the import is recorded as started, every table written, then recorded as complete
        import_id = uuid.uuid4().hex[:12]
        record_import(spark, cfg, mapping.source, a, b, "started", import_id)
        quarantine = []
        for name, frame in staged.items():
            contract, _ = SOURCES[name]
            names = load_schema(contract).names
            good = frame.where(F.col("_reason").isNull() & in_range).select(
                *names, F.lit(mapping.source).alias("source"),
                *[c for c in frame.columns if not c.startswith("_") and c not in names])
            report.replaced_legacy[contract] = _prepare_source_column(spark, cfg, contract, "source", a, b)
            write_table(good, cfg, contract, partition_by=["dt"], replace_where=_own(mapping.source, a, b),
                        rows=report.counts[contract]["imported"], merge_schema=True)
            bad = frame.where(F.col("_reason").isNotNull() & (in_range | F.col("dt").isNull()))
            quarantine.append(bad.select(F.lit(contract).alias("source"), F.col("_reason").alias("reason"),
                                         F.col("_record").alias("record"), F.col("dt"),
                                         F.lit(mapping.source).alias("import_source")))
        q = quarantine[0]
        for other in quarantine[1:]:
            q = q.unionByName(other)
        _prepare_source_column(spark, cfg, "import_quarantine", "import_source", a, b)
        write_table(q, cfg, "import_quarantine", partition_by=["source"],
                    replace_where=f"(({_between(a, b)}) OR dt IS NULL) AND {_mine('import_source', mapping.source)}")
        _reconcile(spark, cfg, report, a, b)
        record_import(spark, cfg, mapping.source, a, b, "complete", import_id)
        report.per_scenario, report.null_rates = data_report(spark, cfg, mapping, a, b)
    finally:
        for frame in staged.values():
            frame.unpersist()
    _warn(report)
    return report


def _count_section(m: Mapping, section: Section, raw: DataFrame | None, frame: DataFrame, report: ImportReport,
                   a: dt.date, b: dt.date, in_range: Column) -> None:
    """Counts of one section's rows by outcome, its quarantine reasons, DST notes, the event-time
    span of rows outside the range and the rows of other dates no nightly import would read."""
    contract, time_col = SOURCES[section.name]
    status = (F.when(F.col("_reason").isNotNull() & (in_range | F.col("dt").isNull()), "quarantined")
              .when(~in_range | F.col("dt").isNull(), "outside").otherwise("imported"))
    rows = frame.groupBy(status.alias("s"), F.col("_reason"), F.col("_dst")).agg(
        F.count("*").alias("n"), F.min(time_col).alias("lo"), F.max(time_col).alias("hi")).collect()
    counts = {"read": 0, "imported": 0, "quarantined": 0, "outside": 0}
    reasons: dict[str, int] = {}
    dst = {"ambiguous": 0, "nonexistent": 0}
    span: list[Any] = []
    for r in rows:
        n = int(r["n"])
        counts["read"] += n
        counts[r["s"]] += n
        if r["s"] == "quarantined":
            reasons[r["_reason"]] = reasons.get(r["_reason"], 0) + n
        if r["_dst"] and r["s"] != "outside":
            dst[r["_dst"]] += n
        if r["s"] == "outside":
            span += [x for x in (r["lo"], r["hi"]) if x is not None]
    report.counts[contract] = counts
    report.quarantined[contract] = reasons
    if any(dst.values()):
        report.dst[contract] = dst
    if counts["outside"] and counts["outside"] * 2 > counts["read"]:
        where = f"their {time_col} span {min(span)} .. {max(span)} UTC" if span else "none of them has a time"
        logger.warning("%s: %d of %d rows read fall outside %s..%s (%s); check %s.where and %s.time", contract,
                       counts["outside"], counts["read"], a, b, where, section.name, section.name)
    if counts["outside"] and raw is not None and section.where:
        outside = [r["dt"] for r in frame.where(~in_range & F.col("dt").isNotNull()).select("dt").distinct()
                   .limit(32).collect()]
        lost = _uncovered(m, section, raw, sorted(outside))
        if lost:
            report.uncovered[contract] = lost


def _warn(report: ImportReport) -> None:
    for contract, notes in report.dst.items():
        logger.warning("%s: %d ambiguous wall-clock times (the repeated hour of a DST change) and %d non-existent "
                       "ones (the skipped hour), resolved by the section's time.ambiguous / time.nonexistent rule "
                       "(docs/your_data.md, 'Daylight saving')", contract, notes["ambiguous"], notes["nonexistent"])
    for contract, lost in report.uncovered.items():
        logger.warning("%s: %d rows read here are dated %s, outside %s..%s, and the nightly import of their own "
                       "date would not read them (its where excludes them): no nightly run imports them. Use "
                       "{local_start}/{local_end} in the where for partitions named by local date, or import "
                       "a range that covers them (docs/your_data.md, 'Partitions by local date')", contract,
                       sum(lost.values()), sorted(lost), report.start, report.end)
    for contract, n in report.replaced_legacy.items():
        if n:
            logger.warning("%s: replaced %d rows of %s..%s written before imports recorded their source (their "
                           "source column is null)", contract, n, report.start, report.end)


def _mine(column: str, source: str) -> str:
    """This source's rows (and rows written before sources were recorded)."""
    return f"({column} = '{source}' OR {column} IS NULL)"


def _own(source: str, a: dt.date, b: dt.date) -> str:
    return f"{_between(a, b)} AND {_mine('source', source)}"


def _prepare_source_column(spark: SparkSession, cfg: Config, key: str, column: str, a: dt.date, b: dt.date) -> int:
    """Give an existing table the ``column`` it lacks (tables written before sources were
    recorded); return how many of its rows in a..b have none (they are replaced)."""
    if not table_exists(spark, cfg, key):
        return 0
    add_column_if_missing(spark, cfg, key, column, "STRING")
    if key == "import_quarantine":
        return 0
    return read_table(spark, cfg, key).where(f"{_between(a, b)} AND {column} IS NULL").count()


def _between(a: dt.date, b: dt.date) -> str:
    return f"dt >= '{a.isoformat()}' AND dt <= '{b.isoformat()}'"


def _reconcile(spark: SparkSession, cfg: Config, report: ImportReport, a: dt.date, b: dt.date) -> None:
    """What the tables hold after the write must be what the counts say."""
    quarantine = read_table(spark, cfg, "import_quarantine").where(
        f"(({_between(a, b)}) OR dt IS NULL) AND import_source = '{report.source}'")
    held_q = {r["source"]: int(r["count"]) for r in quarantine.groupBy("source").count().collect()}
    for contract, c in report.counts.items():
        held = read_table(spark, cfg, contract).where(f"{_between(a, b)} AND source = '{report.source}'").count()
        if c["read"] != c["imported"] + c["quarantined"] + c["outside"] or held != c["imported"] \
                or held_q.get(contract, 0) != c["quarantined"]:
            raise ReconciliationError(
                f"{contract}: read {c['read']} = imported {c['imported']} + quarantined {c['quarantined']} + "
                f"outside the range {c['outside']}, but the table holds {held} rows for {a}..{b} and "
                f"import_quarantine {held_q.get(contract, 0)}")


def data_report(spark: SparkSession, cfg: Config, mapping: Mapping, a: dt.date, b: dt.date
                ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per scenario of the imported exposures: rows, share, CTR (exposures with a click),
    CTCVR (with a click and an order), distinct users and items, event-time range; and the
    null rate of each kept feature column. Labels here count any click / order dated up to the
    windows' days after the range, not the exact windows build_features applies."""
    mine = f" AND source = '{mapping.source}'"
    exposures = read_table(spark, cfg, "raw_exposures").where(_between(a, b) + mine)
    events = _between(a, b + late_events(cfg.features)) + mine  # only the dates these exposures' events can have
    clicked = read_table(spark, cfg, "raw_clicks").where(events).select("exposure_id").distinct() \
        .withColumn("_c", F.lit(1))
    ordered = read_table(spark, cfg, "raw_orders").where(events).select("exposure_id").distinct() \
        .withColumn("_o", F.lit(1))
    labeled = exposures.join(clicked, "exposure_id", "left").join(ordered, "exposure_id", "left")
    rows = labeled.groupBy("scenario").agg(
        F.count("*").alias("rows"), F.avg(F.coalesce("_c", F.lit(0))).alias("ctr"),
        F.avg(F.coalesce(F.col("_c") * F.col("_o"), F.lit(0))).alias("ctcvr"),
        F.approx_count_distinct("user_id").alias("users"), F.approx_count_distinct("item_id").alias("items"),
        F.min("event_time").alias("first_event"), F.max("event_time").alias("last_event"),
    ).collect()
    total = sum(r["rows"] for r in rows) or 1
    by = {r["scenario"]: r for r in rows}
    report = []
    for s in cfg.scenarios.names:
        r = by.get(s)
        report.append({"scenario": s, "rows": r["rows"] if r else 0, "share": (r["rows"] / total) if r else 0.0,
                       "ctr": r["ctr"] if r else None, "ctcvr": r["ctcvr"] if r else None,
                       "users": r["users"] if r else 0, "items": r["items"] if r else 0,
                       "first_event": str(r["first_event"]) if r else None,
                       "last_event": str(r["last_event"]) if r else None})
    features = sorted({f for s in mapping.sections.values() if s.name == "exposures" for f in s.features.values()})
    nulls: dict[str, float] = {}
    if features:
        agg = exposures.agg(*[F.avg(F.col(f).isNull().cast("double")).alias(f) for f in features]).first()
        nulls = {f: float(agg[f] or 0.0) for f in features}
    return report, nulls


def report_text(report: ImportReport) -> str:
    """The import's log: counts per source, quarantine reasons, the per-scenario data report."""
    out = table(("source", "read", "imported", "quarantined", "outside range"),
                [(k, v["read"], v["imported"], v["quarantined"], v["outside"]) for k, v in report.counts.items()])
    q = [(f"{src}: {reason}", n) for src, reasons in report.quarantined.items() for reason, n in sorted(reasons.items())]
    out += "\n" + (table(("quarantined (source: reason)", "rows"), q) if q else "quarantined: none")
    rows = [(r["scenario"], r["rows"], f"{100 * r['share']:.1f}%",
             "-" if r["ctr"] is None else f"{100 * r['ctr']:.2f}%",
             "-" if r["ctcvr"] is None else f"{100 * r['ctcvr']:.2f}%", r["users"], r["items"],
             r["first_event"] or "-", r["last_event"] or "-") for r in report.per_scenario]
    out += "\n" + table(("scenario", "exposures", "share", "CTR", "CTCVR", "users~", "items~", "first event (UTC)",
                         "last event (UTC)"), rows)
    if report.dst:
        out += "\n" + table(("daylight saving (source)", "ambiguous", "non-existent"),
                            [(k, v["ambiguous"], v["nonexistent"]) for k, v in report.dst.items()])
    if report.uncovered:
        out += "\n" + table(("read by no nightly import (source: date)", "rows"),
                            [(f"{k}: {d}", n) for k, v in report.uncovered.items() for d, n in sorted(v.items())])
    if report.null_rates:
        out += "\n" + table(("feature column", "null rate"),
                            [(k, f"{100 * v:.2f}%") for k, v in report.null_rates.items()])
    return out
