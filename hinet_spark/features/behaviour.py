"""Behaviour counters: what the logs say each user, item or cross did, as of the row's day.

Two steps, both pure Spark:

* :func:`aggregate_days` turns the raw logs of some dates into **per-day aggregates**: for each
  entity of ``features.behaviour.entities`` (``user``, ``item``, ``user+scenario``,
  ``user+item_category``...), each entity key and each date, how many exposures, clicks and
  orders happened on that date; plus one row per entity and date with key ``*``: the day's
  totals (written even when zero, so "this date was aggregated" can be checked). Written once
  per date to the ``behaviour_daily`` Delta table (partitioned by ``dt``; primary key
  ``(entity, entity_key, dt)``).
* :func:`attach` adds the counters to rows of days ``a..b``: for day D and window w, the sums
  over the aggregates dated D-w .. D-1, i.e. only events dated before D 00:00 (``dt`` is the
  UTC date of the event time, the pipeline's date everywhere). Rates are smoothed towards
  the window's global rate: ``(num + prior * global) / (den + prior)``. An entity with no
  events in the window gets null counters (its own id once bucketized).

Counting rules (docs/features.md, "Behaviour counters"), applied to the raw tables:

* an exposure counts on its ``dt`` if its keys (exposure_id, user_id, item_id, scenario,
  event_time) are set, its scenario is configured and ``dt`` is the date of ``event_time``;
  once per exposure id and day;
* a click (an order) counts on its own ``dt`` (the date of its time), once per exposure id and
  day, if its exposure (a counted exposure dated within the attribution days before it) was
  shown at or before it. Attribution windows do not apply: a click after the label's window is
  no label, but it is still behaviour, counted on the day it happened.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config, FeaturesSection
from hinet_spark.config.sections import BEHAVIOUR_KEYS, BehaviourSection
from hinet_spark.errors import OperatorError
from hinet_spark.ops.io import read_table, table_exists, write_table

logger = logging.getLogger(__name__)

TOTAL_KEY = "*"  # entity_key of a day's totals row (a real key is a JSON array: never "*")
COUNT_COLUMNS = ("exposures", "clicks", "orders")
RATES = {"ctr": ("clicks", "exposures"), "cvr": ("orders", "clicks"), "ctcvr": ("orders", "exposures")}
DAILY_SCHEMA = "entity string, entity_key string, dt date, exposures long, clicks long, orders long"


class BehaviourMissingError(OperatorError, ValueError):
    """The per-day aggregates a counter window needs are not there."""


@dataclass(frozen=True)
class Counters:
    """The counter definition (``features.behaviour`` without ``buckets``; stored in the spec)."""

    entities: tuple[str, ...]
    windows: tuple[int, ...]
    counts: tuple[str, ...]
    rates: tuple[str, ...]
    prior: float

    @staticmethod
    def from_section(bc: BehaviourSection) -> "Counters":
        return Counters(tuple(bc.entities), tuple(bc.windows), tuple(bc.counts), tuple(bc.rates), float(bc.prior))

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Counters":
        return Counters(tuple(d.get("entities", ())), tuple(int(w) for w in d.get("windows", ())),
                        tuple(d.get("counts", ())), tuple(d.get("rates", ())), float(d.get("prior", 0.0)))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()} if self.enabled else {}

    @property
    def enabled(self) -> bool:
        return bool(self.entities)

    @property
    def max_window(self) -> int:
        return max(self.windows) if self.enabled else 0

    @staticmethod
    def columns(entity: str) -> list[str]:
        """The row columns an entity is keyed by (``user+scenario`` -> user_id, scenario)."""
        return [BEHAVIOUR_KEYS.get(p, p) for p in entity.split("+")]

    @staticmethod
    def label(entity: str) -> str:
        return "_".join(entity.split("+"))

    def feature_names(self) -> list[str]:
        """``bh_<entity>_<w>d_<count or rate>``, entity by entity, window by window."""
        return [f"bh_{self.label(e)}_{w}d_{what}" for e in self.entities for w in self.windows
                for what in (*self.counts, *self.rates)]


def attribution_days(fc: FeaturesSection) -> int:
    """How many days before an event its exposure may be dated (the label windows, in days)."""
    return math.ceil((fc.click_window_hours + fc.order_window_hours) / 24)


def _key(entity: str) -> Column:
    """The entity key of a row: a JSON array of its key columns; null when any of them is."""
    cols = [F.col(c).cast("string") for c in Counters.columns(entity)]
    missing = F.lit(False)
    for c in cols:
        missing = missing | c.isNull()
    return F.when(~missing, F.to_json(F.array(*cols)))


def in_range(col: str | Column, a: dt.date, b: dt.date) -> Column:
    """``a <= col <= b`` for a date column (or expression)."""
    c = F.col(col) if isinstance(col, str) else col
    return (c >= F.lit(a.isoformat()).cast("date")) & (c <= F.lit(b.isoformat()).cast("date"))


def counted_exposures(raw_exposures: DataFrame, scenarios: Sequence[str], key_columns: Sequence[str]) -> DataFrame:
    """One row per (exposure_id, dt) of the exposures that count: exposure_id, dt, event_time
    and ``key_columns``, the earliest row of the day (ties by the key columns)."""
    ok = F.col("scenario").isin(*scenarios) & (F.col("dt") == F.to_date("event_time"))
    for c in ("exposure_id", "user_id", "item_id", "scenario", "event_time", "dt"):
        ok = ok & F.col(c).isNotNull()
    first = F.min(F.struct("event_time", *[F.col(c).cast("string").alias(c) for c in key_columns])).alias("_x")
    return raw_exposures.where(ok).groupBy("exposure_id", "dt").agg(first).select(
        "exposure_id", "dt", "_x.*")


def _counted_events(events: DataFrame, time_col: str, exposures: DataFrame, days: int,
                    key_columns: Sequence[str]) -> DataFrame:
    """Clicks or orders that count: one per (exposure_id, dt of the event), with their exposure's
    key columns (the earliest counted exposure with that id dated within ``days`` before)."""
    ok = F.col("exposure_id").isNotNull() & F.col(time_col).isNotNull() & (F.col("dt") == F.to_date(time_col))
    ev = events.where(ok).groupBy("exposure_id", "dt").agg(F.min(time_col).alias("_t"))
    x = exposures.select("exposure_id", F.col("dt").alias("_xdt"), "event_time", *key_columns)
    joined = ev.join(x, "exposure_id").where(
        (F.col("_xdt") <= F.col("dt")) & (F.col("_xdt") >= F.date_sub(F.col("dt"), days)))
    earliest = F.min(F.struct("event_time", *key_columns, "_t")).alias("_x")
    return (joined.groupBy("exposure_id", "dt").agg(earliest).select("exposure_id", "dt", "_x.*")
            .where(F.col("_t") >= F.col("event_time")).drop("_t"))


def aggregate_days(spark: SparkSession, cfg: Config, counters: Counters, dates: Sequence[dt.date]) -> DataFrame:
    """The ``behaviour_daily`` rows of ``dates``: per entity, key and date the exposures, clicks
    and orders, plus the totals row (key ``*``) of every entity and date, zeros included."""
    dates = sorted(set(dates))
    days = attribution_days(cfg.features)
    key_columns = list(dict.fromkeys(c for e in counters.entities for c in Counters.columns(e)))
    in_dates = F.col("dt").isin(*[d.isoformat() for d in dates])
    raw = read_table(spark, cfg, "raw_exposures").where(in_range("dt", dates[0] - dt.timedelta(days=days), dates[-1]))
    # read three times (the day's exposures, the clicks' and the orders' attribution); freed with the DataFrame
    exposures = counted_exposures(raw, cfg.scenarios.names, key_columns).localCheckpoint(eager=True)
    frames = [exposures.where(in_dates).select("dt", *key_columns, F.lit(1).alias("e"), F.lit(0).alias("c"),
                                               F.lit(0).alias("o"))]
    for table, time_col, flags in (("raw_clicks", "click_time", (0, 1, 0)), ("raw_orders", "order_time", (0, 0, 1))):
        events = read_table(spark, cfg, table).where(in_dates)
        counted = _counted_events(events, time_col, exposures, days, key_columns)
        frames.append(counted.select("dt", *key_columns, *[F.lit(v).alias(n) for v, n in zip(flags, "eco")]))
    events = frames[0].unionByName(frames[1]).unionByName(frames[2])
    per_entity = F.explode(F.array(*[F.struct(F.lit(e).alias("entity"), _key(e).alias("entity_key"))
                                     for e in counters.entities])).alias("_k")
    keyed = events.select("dt", "e", "c", "o", per_entity).select("_k.*", "dt", "e", "c", "o").where(
        F.col("entity_key").isNotNull())
    sums = [F.sum(c).cast("long").alias(n) for c, n in zip("eco", COUNT_COLUMNS)]
    rows = keyed.groupBy("entity", "entity_key", "dt").agg(*sums)
    zeros = spark.createDataFrame([(e, TOTAL_KEY, d, 0, 0, 0) for e in counters.entities for d in dates],
                                  DAILY_SCHEMA)
    totals = keyed.groupBy("entity", "dt").agg(*sums).select(
        "entity", F.lit(TOTAL_KEY).alias("entity_key"), "dt", *COUNT_COLUMNS)
    totals = totals.unionByName(zeros).groupBy("entity", "entity_key", "dt").agg(
        *[F.sum(n).cast("long").alias(n) for n in COUNT_COLUMNS])
    return rows.unionByName(totals).select(*[F.col(c) for c in ("entity", "entity_key", "dt", *COUNT_COLUMNS)])


def aggregated(spark: SparkSession, cfg: Config, counters: Counters, a: dt.date, b: dt.date) -> dict[str, set[dt.date]]:
    """Per entity, the dates of ``a..b`` that ``behaviour_daily`` holds (its totals rows)."""
    out: dict[str, set[dt.date]] = {e: set() for e in counters.entities}
    if b < a or not table_exists(spark, cfg, "behaviour_daily"):
        return out
    rows = (read_table(spark, cfg, "behaviour_daily").where(in_range("dt", a, b) & (F.col("entity_key") == TOTAL_KEY))
            .select("entity", "dt").distinct().collect())
    for r in rows:
        if r["entity"] in out:
            out[r["entity"]].add(r["dt"])
    return out


def _days(a: dt.date, b: dt.date) -> list[dt.date]:
    return [a + dt.timedelta(days=i) for i in range((b - a).days + 1)]


def missing_dates(spark: SparkSession, cfg: Config, counters: Counters, a: dt.date, b: dt.date) -> list[dt.date]:
    """Dates of ``a..b`` not aggregated for at least one entity."""
    held = aggregated(spark, cfg, counters, a, b)
    return [d for d in _days(a, b) if any(d not in held[e] for e in counters.entities)]


def write_days(spark: SparkSession, cfg: Config, counters: Counters, dates: Sequence[dt.date]) -> int:
    """Aggregate ``dates`` from the raw tables and replace exactly those dates of ``behaviour_daily``."""
    dates = sorted(set(dates))
    if not dates:
        return 0
    rows = aggregate_days(spark, cfg, counters, dates).persist()
    n = rows.count()
    where = "dt IN (" + ", ".join(f"'{d.isoformat()}'" for d in dates) + ")"
    write_table(rows, cfg, "behaviour_daily", partition_by=["dt"], replace_where=where, rows=n)
    rows.unpersist()
    logger.info("behaviour_daily: wrote %d rows for %d date(s) %s..%s", n, len(dates), dates[0], dates[-1])
    return n


def ensure_days(spark: SparkSession, cfg: Config, counters: Counters, a: dt.date, b: dt.date) -> list[dt.date]:
    """What ``build_features`` does before it attaches counters to ``a..b``: aggregate every date
    of ``a - max window .. b`` that ``behaviour_daily`` does not hold yet (dates already there are
    kept, so samples see what scoring saw). Returns the dates written."""
    todo = missing_dates(spark, cfg, counters, a - dt.timedelta(days=counters.max_window), b)
    write_days(spark, cfg, counters, todo)
    return todo


def require_days(spark: SparkSession, cfg: Config, counters: Counters, a: dt.date, b: dt.date) -> None:
    """Refuse (naming the dates and the command) when the windows of rows dated ``a..b`` need
    aggregates ``behaviour_daily`` does not hold."""
    lo, hi = a - dt.timedelta(days=counters.max_window), b - dt.timedelta(days=1)
    missing = missing_dates(spark, cfg, counters, lo, hi)
    if missing:
        shown = ", ".join(d.isoformat() for d in missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise BehaviourMissingError(
            f"behaviour counters of rows dated {a}..{b} need the per-day aggregates of {lo}..{hi} "
            f"(features.behaviour.windows up to {counters.max_window} days), but behaviour_daily lacks "
            f"{len(missing)} date(s) for entities {list(counters.entities)}: {shown}. Build them with "
            f"build_features --behaviour-only --start-date {missing[0]} --end-date {missing[-1]}")


def window_sums(spark: SparkSession, cfg: Config, counters: Counters, a: dt.date, b: dt.date) -> DataFrame:
    """entity, entity_key, _D (a day of ``a..b``) and ``<count>_<w>``: the sums over the aggregates
    dated _D-w .. _D-1 (null when the key has no row in that window)."""
    W = counters.max_window
    agg = read_table(spark, cfg, "behaviour_daily").where(
        in_range("dt", a - dt.timedelta(days=W), b - dt.timedelta(days=1))
        & F.col("entity").isin(*counters.entities))
    first = F.greatest(F.date_add("dt", 1), F.lit(a.isoformat()).cast("date"))
    last = F.least(F.date_add("dt", W), F.lit(b.isoformat()).cast("date"))
    spread = agg.select("*", F.explode(F.sequence(first, last)).alias("_D"))
    lag = F.datediff("_D", "dt")
    return spread.groupBy("entity", "entity_key", "_D").agg(*[
        F.sum(F.when(lag <= w, F.col(c))).alias(f"{c}_{w}") for w in counters.windows for c in COUNT_COLUMNS])


def attach(spark: SparkSession, cfg: Config, df: DataFrame, counters: Counters, a: dt.date, b: dt.date) -> DataFrame:
    """``df`` (rows dated ``a..b``, with the entity columns) plus one column per counter of
    :meth:`Counters.feature_names` (double; null = no events of the entity in the window).
    Rows are neither added nor dropped. The same function serves samples and scoring."""
    if not counters.enabled:
        return df
    require_days(spark, cfg, counters, a, b)
    # computed once for the day totals and every entity's join (a persist() released here would be
    # recomputed per join when the caller runs the lazy result); Spark frees it with the DataFrame
    sums = window_sums(spark, cfg, counters, a, b).localCheckpoint(eager=True)
    totals = {(r["entity"], r["_D"]): r for r in sums.where(F.col("entity_key") == TOTAL_KEY).collect()}
    k = float(counters.prior)
    out, counter_columns = df, []
    for e in counters.entities:  # one join per entity; the counters are then one projection
        label = Counters.label(e)
        g = _global_rates(spark, totals, e, counters, _days(a, b)).withColumnRenamed("_D", f"_gD_{label}")
        mine = sums.where((F.col("entity") == e) & (F.col("entity_key") != TOTAL_KEY)).select(
            F.col("entity_key").alias(f"_kr_{label}"), F.col("_D").alias(f"_D_{label}"),
            *[F.col(f"{c}_{w}").alias(f"_{label}_{c}_{w}") for w in counters.windows for c in COUNT_COLUMNS])
        out = _join_entity(out.withColumn(f"_k_{label}", _key(e)), mine, g, label)
        for w in counters.windows:
            c = {n: F.col(f"_{label}_{n}_{w}") for n in COUNT_COLUMNS}
            for what in counters.counts:
                counter_columns.append(c[what].cast("double").alias(f"bh_{label}_{w}d_{what}"))
            for what in counters.rates:
                num, den = RATES[what]
                rate = (c[num] + k * F.col(f"_g_{label}_{what}_{w}")) / (c[den] + k)
                counter_columns.append(F.when(c[num].isNotNull(), rate).alias(f"bh_{label}_{w}d_{what}"))
    return out.select(*[F.col(c) for c in df.columns], *counter_columns)


def _join_entity(df: DataFrame, mine: DataFrame, g: DataFrame, label: str) -> DataFrame:
    """Left joins of the rows with their entity's window sums (on key and day) and the global rates (on day)."""
    out = df.join(mine, (F.col(f"_k_{label}") == F.col(f"_kr_{label}")) & (F.col("dt") == F.col(f"_D_{label}")),
                  "left").drop(f"_kr_{label}")
    return out.join(F.broadcast(g), F.col("dt") == F.col(f"_gD_{label}"), "left")


def _global_rates(spark: SparkSession, totals: dict, entity: str, counters: Counters,
                  days: Sequence[dt.date]) -> DataFrame:
    """_D and ``_g_<label>_<rate>_<w>``: the window's global rate of each rate (0 when its
    denominator is 0)."""
    label = Counters.label(entity)
    names, rows = ["_D"], []
    for w in counters.windows:
        names += [f"_g_{label}_{r}_{w}" for r in RATES]
    for d in days:
        row: list[Any] = [d]
        t = totals.get((entity, d))
        for w in counters.windows:
            for num, den in RATES.values():
                n = (t[f"{num}_{w}"] or 0) if t else 0
                m = (t[f"{den}_{w}"] or 0) if t else 0
                row.append(float(n) / m if m else 0.0)
        rows.append(tuple(row))
    schema = ", ".join(["_D date", *[f"{n} double" for n in names[1:]]])
    return spark.createDataFrame(rows, schema)
