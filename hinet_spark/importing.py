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
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark.config import Config
from hinet_spark.features import first_reason
from hinet_spark.io import read_table, write_table
from hinet_spark.samples import ReconciliationError, late_events, parse_range
from hinet_spark.schemas import load_schema
from hinet_spark.summary import table

logger = logging.getLogger(__name__)

# mapping section -> (contract table, its time column)
SOURCES = {"exposures": ("raw_exposures", "event_time"), "clicks": ("raw_clicks", "click_time"),
           "orders": ("raw_orders", "order_time"), "candidates": ("candidates", "event_time")}
FORMATS = ("parquet", "delta", "csv", "json")
UNITS = {"s": "timestamp_seconds", "ms": "timestamp_millis", "us": "timestamp_micros"}
SECTION_KEYS = {"source", "where", "columns", "time", "defaults", "features", "flag"}


class MappingError(ValueError):
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
    flag: str | None = None  # clicks/orders as a flag column of the exposures source


@dataclass(frozen=True)
class Mapping:
    path: str
    scenarios: dict[str, str]  # their value -> scenario name
    time_zone: str
    sections: dict[str, Section]

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


def load_mapping(path: str | Path, cfg: Config) -> Mapping:
    """Read and check a mapping file; every error names the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"mapping file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML: {exc}") from None
    m = Mapping(str(path), {}, "UTC", {})
    unknown = sorted(set(raw) - {*SOURCES, "scenarios", "time_zone"})
    if unknown:
        raise m.fail(str(unknown[0]), f"unknown key; known: {sorted({*SOURCES, 'scenarios', 'time_zone'})}")
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
    return Mapping(str(path), scenarios, str(raw.get("time_zone") or "UTC"), sections)


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
    if set(time) - {"unit", "format", "zone"}:
        raise m.fail(f"{name}.time", f"unknown keys {sorted(set(time) - {'unit', 'format', 'zone'})}; "
                                     "known: unit (s|ms|us), format, zone")
    if "unit" in time and time["unit"] not in UNITS:
        raise m.fail(f"{name}.time.unit", f"{time['unit']!r}: expected one of {list(UNITS)} (epoch numbers)")
    feats = raw.get("features") or {}
    features = {str(c): str(c) for c in feats} if isinstance(feats, list) else {str(k): str(v) for k, v in feats.items()}
    return Section(name, dict(raw.get("source") or {}), columns, time, defaults, features, raw.get("where"),
                   str(flag) if flag is not None else None)


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


def read_source(spark: SparkSession, m: Mapping, section: Section, a: dt.date, b: dt.date) -> DataFrame:
    """Their table, as Spark reads it, filtered by ``where`` (``{start}`` and ``{end}`` in it:
    the import's first and last date, with Python date formats, e.g. ``{start:%Y%m%d}``)."""
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
            df = df.where(section.where.format(start=a, end=b))
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


def _time(m: Mapping, section: Section, name: str, their_type: T.DataType) -> Column:
    """Their time column ``name`` as a UTC timestamp (null where it does not parse)."""
    zone = section.time.get("zone", m.time_zone)
    their = F.col(f"`{name}`")
    if "unit" in section.time:  # epoch numbers: an instant, whatever the zone
        return F.expr(f"{UNITS[section.time['unit']]}(TRY_CAST(`{name}` AS BIGINT))")
    if isinstance(their_type, T.TimestampType):  # an instant already
        return their
    text = f"CAST(`{name}` AS STRING)"
    fmt = section.time.get("format", "").replace("'", "\\'")
    local = F.expr(f"try_to_timestamp({text}, '{fmt}')" if fmt else f"TRY_CAST({text} AS TIMESTAMP)")
    return F.to_utc_timestamp(local, zone)  # wall-clock time in ``zone`` -> UTC


def _contract_frame(m: Mapping, section: Section, df: DataFrame, cfg: Config, exposures: bool) -> DataFrame:
    """Their rows in the contract's columns plus ``_reason`` (the first broken rule) and
    ``_record`` (their original row, as JSON)."""
    contract, time_col = SOURCES[section.name]
    schema = load_schema(contract)
    missing = [(f"{section.name}.columns.{c}", v) for c, v in section.columns.items() if v not in df.columns]
    missing += [(f"{section.name}.features.{c}", c) for c in section.features if c not in df.columns]
    if section.flag is not None and section.flag not in df.columns:
        missing.append((f"{section.name}.flag", section.flag))
    if missing:
        key, col = missing[0]
        raise m.fail(key, f"{col!r} is not a column of {_describe(section)} (its columns: {sorted(df.columns)})")
    out, checks = {}, []
    their_cols = [F.col(f"`{c}`") for c in df.columns]
    for c in schema.columns:
        if c.name == "dt":
            continue
        if c.name in section.columns:
            their = F.col(f"`{section.columns[c.name]}`")
            their_type = df.schema[section.columns[c.name]].dataType
            if c.role == "time":
                value = _time(m, section, section.columns[c.name], their_type)
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
    tagged = df.select(*[v.alias(k) for k, v in out.items()], F.to_json(F.struct(*their_cols)).alias("_record"),
                       first_reason(checks).alias("_reason"),
                       *[F.col(f"`{s.flag}`").alias(f"_flag_{s.name}") for s in m.sections.values()
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


def _flag_events(exposures: DataFrame, name: str) -> DataFrame:
    """Clicks or orders given as a flag on the exposure rows (true, 1, 'yes'): one event per
    flagged, well-formed exposure, at the exposure's time."""
    time_col = SOURCES[name][1]
    flag = F.lower(F.col(f"_flag_{name}").cast("string")).isin("true", "1", "yes", "y")
    cols = [F.col("exposure_id"), F.col("event_time").alias(time_col)]
    if name == "orders":
        cols.append(F.lit(None).cast("double").alias("amount"))
    return exposures.where(flag & F.col("_reason").isNull()).select(
        *cols, F.col("_record"), F.lit(None).cast("string").alias("_reason")).withColumn("dt", F.to_date(time_col))


def import_logs(spark: SparkSession, cfg: Config, mapping: Mapping, start: str, end: str) -> ImportReport:
    """Import ``start``..``end`` (inclusive) of the user's logs; see the module docstring."""
    a, b = parse_range(start, end)
    report = ImportReport(a.isoformat(), b.isoformat())
    in_range = (F.col("dt") >= F.lit(a)) & (F.col("dt") <= F.lit(b))
    staged: dict[str, DataFrame] = {}
    for name, section in mapping.sections.items():
        if section.flag is not None:
            continue
        raw = read_source(spark, mapping, section, a, b)
        staged[name] = _contract_frame(mapping, section, raw, cfg, exposures=name == "exposures").persist()
    for name, section in mapping.sections.items():
        if section.flag is not None:
            staged[name] = _flag_events(staged["exposures"], name).persist()
    quarantine = []
    try:
        for name, frame in staged.items():
            contract, _ = SOURCES[name]
            status = (F.when(F.col("_reason").isNotNull() & (in_range | F.col("dt").isNull()), "quarantined")
                      .when(~in_range | F.col("dt").isNull(), "outside").otherwise("imported"))
            by = {r["s"]: int(r["n"]) for r in frame.groupBy(status.alias("s")).agg(F.count("*").alias("n")).collect()}
            counts = {"read": sum(by.values()), **{k: by.get(k, 0) for k in ("imported", "quarantined", "outside")}}
            report.counts[contract] = counts
            good = frame.where(F.col("_reason").isNull() & in_range).select(
                *load_schema(contract).names, *[c for c in frame.columns if not c.startswith("_")
                                                and c not in load_schema(contract).names])
            write_table(good, cfg, contract, partition_by=["dt"], replace_where=_between(a, b),
                        rows=counts["imported"])
            bad = frame.where(F.col("_reason").isNotNull() & (in_range | F.col("dt").isNull()))
            quarantine.append(bad.select(F.lit(contract).alias("source"), F.col("_reason").alias("reason"),
                                         F.col("_record").alias("record"), F.col("dt")))
            report.quarantined[contract] = {r["reason"]: int(r["count"]) for r in
                                            bad.groupBy(F.col("_reason").alias("reason")).count().collect()}
        q = quarantine[0]
        for other in quarantine[1:]:
            q = q.unionByName(other)
        write_table(q, cfg, "import_quarantine", partition_by=["source"],
                    replace_where=f"({_between(a, b)}) OR dt IS NULL")
        _reconcile(spark, cfg, report, a, b)
        report.per_scenario, report.null_rates = data_report(spark, cfg, mapping, a, b)
    finally:
        for frame in staged.values():
            frame.unpersist()
    return report


def _between(a: dt.date, b: dt.date) -> str:
    return f"dt >= '{a.isoformat()}' AND dt <= '{b.isoformat()}'"


def _reconcile(spark: SparkSession, cfg: Config, report: ImportReport, a: dt.date, b: dt.date) -> None:
    """What the tables hold after the write must be what the counts say."""
    quarantine = read_table(spark, cfg, "import_quarantine").where(f"({_between(a, b)}) OR dt IS NULL")
    held_q = {r["source"]: int(r["count"]) for r in quarantine.groupBy("source").count().collect()}
    for contract, c in report.counts.items():
        held = read_table(spark, cfg, contract).where(_between(a, b)).count()
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
    exposures = read_table(spark, cfg, "raw_exposures").where(_between(a, b))
    events = _between(a, b + late_events(cfg.features))  # only the dates these exposures' events can have
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
    if report.null_rates:
        out += "\n" + table(("feature column", "null rate"),
                            [(k, f"{100 * v:.2f}%") for k, v in report.null_rates.items()])
    return out
