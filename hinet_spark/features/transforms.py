"""Pure DataFrame -> DataFrame steps of the feature pipeline (no reads, no writes).

* :func:`check_exposures` splits exposures into good rows and quarantined rows with a reason;
* :func:`tag_clicks` / :func:`tag_orders` / :func:`labels` turn clicks and orders into CTR
  and CTCVR labels, and every event that does not become (part of) a label into a
  quarantined row with a reason (:func:`event_quarantine`);
* :func:`fit_spec` fits bucket boundaries and vocabularies with Spark aggregations;
* :func:`apply_spec` maps raw feature columns to ids (shared by training and scoring).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd
from pyspark.ml.feature import Bucketizer
from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from hinet_spark.config import FeaturesSection
from hinet_spark.features.spec import FIRST_ID, NULL_ID, OOV_ID, FeatureSpec
from hinet_spark.tasks import LABELS

logger = logging.getLogger(__name__)

EXPOSURE_KEYS = ("exposure_id", "request_id", "user_id", "item_id", "scenario", "event_time")
QUARANTINE_COLUMNS = ("source", "reason", "exposure_id", "record", "dt")


# Columns the pipeline adds to the rows it reads; a raw column of the same name would make
# every later reference ambiguous.
PIPELINE_COLUMNS = (*LABELS, "scenario_idx", "spec_hash")


def drop_colliding_columns(df: DataFrame, contract: Sequence[str], features: Sequence[str],
                           table: str) -> DataFrame:
    """Drop extra (non-contract) columns whose names the pipeline uses itself: the labels,
    ``scenario_idx``, ``spec_hash``, the ``f_<feature>`` id columns and
    ``_``-prefixed working columns. A warning names each one."""
    reserved = {*PIPELINE_COLUMNS, *(f"f_{f}" for f in features)}
    clash = [c for c in df.columns if c not in contract and (c in reserved or c.startswith("_"))]
    if clash:
        logger.warning("%s: dropping extra columns %s (their names collide with columns the pipeline adds)",
                       table, clash)
    return df.drop(*clash)


def first_reason(checks: Sequence[tuple[Column, str]]) -> Column:
    """The reason of the first failing check, or null when all pass."""
    out: Column = F.lit(None).cast("string")
    for failed, reason in reversed(list(checks)):
        out = F.when(failed, F.lit(reason)).otherwise(out)
    return out


def quarantine_rows(df: DataFrame, source: str, reason: Column | str, dt: Column | str) -> DataFrame:
    """Rows in the quarantine table's shape; the whole original row is kept as JSON."""
    reason_col = F.col(reason) if isinstance(reason, str) else reason
    dt_col = F.col(dt) if isinstance(dt, str) else dt
    payload = F.to_json(F.struct(*[F.col(c) for c in df.columns if not c.startswith("_")]))
    return df.select(
        F.lit(source).alias("source"),
        reason_col.alias("reason"),
        F.col("exposure_id").cast("string").alias("exposure_id"),
        payload.alias("record"),
        dt_col.cast("date").alias("dt"),
    )


def date_check(dt_col: str, time_col: str) -> tuple[Column, str]:
    """The partition date must be the (UTC) date of the event time: null or different dt is
    ``bad_dt`` (a null-dt row would otherwise be invisible to every date-filtered build)."""
    return (F.col(dt_col).isNull() | (F.col(dt_col) != F.to_date(time_col)), "bad_dt")


def numeric_checks(ranges: Mapping[str, tuple[float | None, float | None]]) -> list[tuple[Column, str]]:
    """``bad_numeric:<col>`` for NaN, +-inf and negatives; ``out_of_range:<col>`` outside the
    contract's [min, max] (a null numeric passes: it gets the null id)."""
    checks = []
    for c, (lo, hi) in ranges.items():
        x = F.col(c).cast("double")
        checks.append((F.isnan(x) | (F.abs(x) == float("inf")) | (x < 0), f"bad_numeric:{c}"))
        outside = F.lit(False)
        if lo is not None:
            outside = outside | (x < F.lit(lo))
        if hi is not None:
            outside = outside | (x > F.lit(hi))
        checks.append((outside, f"out_of_range:{c}"))
    return checks


def _tiebreak(df: DataFrame) -> Column:
    """A total order among rows equal in everything a window sorts on: the row's own content."""
    return F.to_json(F.struct(*[F.col(c) for c in df.columns if not c.startswith("_")]))


def check_exposures(exposures: DataFrame, scenarios: Sequence[str],
                    ranges: Mapping[str, tuple[float | None, float | None]],
                    source: str = "raw_exposures", seen_ids: DataFrame | None = None) -> tuple[DataFrame, DataFrame]:
    """(good exposures, quarantined rows). Reasons, first match wins:

    ``null_key:<col>``, ``bad_dt`` (dt null or not the date of event_time), ``unknown_scenario``,
    ``bad_numeric:<col>`` (negative, NaN or infinite), ``out_of_range:<col>`` (outside the
    contract's range), ``duplicate_exposure`` (the id is in ``seen_ids``, the exposures an
    earlier build already turned into samples, or appears again among this frame's valid
    rows: the earliest event is kept, exact ties broken by the row's content).
    """
    checks = [(F.col(k).isNull(), f"null_key:{k}") for k in EXPOSURE_KEYS]
    checks.append(date_check("dt", "event_time"))
    checks.append((~F.col("scenario").isin(*scenarios), "unknown_scenario"))
    checks.extend(numeric_checks(ranges))
    if seen_ids is not None:
        exposures = exposures.join(
            seen_ids.select("exposure_id").distinct().withColumn("_seen", F.lit(True)), "exposure_id", "left")
        checks.append((F.col("_seen").isNotNull(), "duplicate_exposure"))
    tagged = exposures.withColumn("_reason", first_reason(checks))
    first = Window.partitionBy("exposure_id", F.col("_reason").isNull()).orderBy(
        F.col("event_time").asc_nulls_last(), _tiebreak(exposures))
    tagged = tagged.withColumn("_rank", F.row_number().over(first)).withColumn(
        "_reason",
        F.when(F.col("_reason").isNull() & (F.col("_rank") > 1), F.lit("duplicate_exposure"))
        .otherwise(F.col("_reason")),
    ).localCheckpoint(eager=False)  # good and bad both read it: the window runs once (kept until unreferenced)
    good = tagged.where(F.col("_reason").isNull()).drop("_reason", "_rank", "_seen")
    bad = quarantine_rows(tagged.where(F.col("_reason").isNotNull()), source, "_reason",
                          F.coalesce(F.col("dt"), F.to_date("event_time")))
    return good, bad


def _scope_events(events: DataFrame, exposures_all: DataFrame, start: str, end: str, time_col: str) -> DataFrame:
    """Tag each event with its exposure (if any); keep the events this run accounts for.

    An event belongs to the run that builds its exposure's date; an event whose exposure does
    not exist (or whose key is null) belongs to the run that covers the event's own date.
    """
    joined = events.alias("e").join(
        exposures_all.alias("x"), F.col("e.exposure_id") == F.col("x.exposure_id"), "left"
    ).select("e.*", F.col("x.dt").alias("_exp_dt"), F.col("x.event_time").alias("_exp_time"),
             F.col("x._good").alias("_exp_good"))
    scope_dt = F.coalesce(F.col("_exp_dt"), F.col("dt"), F.to_date(time_col))
    return joined.withColumn("_scope_dt", scope_dt).where(
        (F.col("_scope_dt") >= F.lit(start).cast("date")) & (F.col("_scope_dt") <= F.lit(end).cast("date")))


def _tag(events: DataFrame, checks: Sequence[tuple[Column, str]], time_col: str) -> DataFrame:
    """``_reason`` = first failing check; among an exposure's valid events all but the
    earliest become ``duplicate_event``."""
    tagged = events.withColumn("_reason", first_reason(checks))
    rank = Window.partitionBy("exposure_id", F.col("_reason").isNull()).orderBy(time_col, _tiebreak(events))
    return tagged.withColumn("_rank", F.row_number().over(rank)).withColumn(
        "_reason", F.when(F.col("_reason").isNull() & (F.col("_rank") > 1), F.lit("duplicate_event"))
        .otherwise(F.col("_reason"))).drop("_rank")


def tag_clicks(clicks: DataFrame, exposures_all: DataFrame, start: str, end: str,
               window_s: int) -> DataFrame:
    """The clicks this run accounts for, each with ``_reason`` (null: the click is the label).

    ``exposures_all``: exposure_id, event_time, dt, _good for every raw exposure the events
    may point to (the build range widened by the attribution windows), one row per id.
    A click counts if at or after its exposure and within ``window_s``. Reasons:
    ``null_key``, ``bad_dt``, ``orphan_event`` (no such exposure), ``exposure_rejected`` (the exposure
    is quarantined), ``outside_window``, ``duplicate_event``.
    """
    scoped = _scope_events(clicks, exposures_all, start, end, "click_time")
    return _tag(scoped, [
        (F.col("exposure_id").isNull() | F.col("click_time").isNull(), "null_key"),
        date_check("dt", "click_time"),
        (F.col("_exp_dt").isNull(), "orphan_event"),
        (~F.col("_exp_good"), "exposure_rejected"),
        ((F.col("click_time") < F.col("_exp_time"))
         | (F.col("click_time") > F.col("_exp_time") + F.expr(f"INTERVAL {window_s} SECONDS")),
         "outside_window"),
    ], "click_time")


def first_clicks(tagged_clicks: DataFrame) -> DataFrame:
    """exposure_id, _click_time: the attributed click of each clicked exposure."""
    return tagged_clicks.where(F.col("_reason").isNull()).select(
        "exposure_id", F.col("click_time").alias("_click_time"))


def tag_orders(orders: DataFrame, exposures_all: DataFrame, clicks: DataFrame, start: str, end: str,
               window_s: int) -> DataFrame:
    """Like :func:`tag_clicks` for orders; ``clicks`` is :func:`first_clicks`' output.

    An order counts if at or after the attributed click and within ``window_s`` of it; extra
    reasons ``bad_amount`` (NaN, infinite or negative; a null amount is allowed) and
    ``order_without_click``.
    """
    scoped = _scope_events(orders, exposures_all, start, end, "order_time").join(clicks, "exposure_id", "left")
    amount = F.col("amount").cast("double")
    return _tag(scoped, [
        (F.col("exposure_id").isNull() | F.col("order_time").isNull(), "null_key"),
        date_check("dt", "order_time"),
        (F.isnan(amount) | (F.abs(amount) == float("inf")) | (amount < 0), "bad_amount"),
        (F.col("_exp_dt").isNull(), "orphan_event"),
        (~F.col("_exp_good"), "exposure_rejected"),
        (F.col("_click_time").isNull() | (F.col("order_time") < F.col("_click_time")), "order_without_click"),
        (F.col("order_time") > F.col("_click_time") + F.expr(f"INTERVAL {window_s} SECONDS"),
         "outside_window"),
    ], "order_time")


def labels(tagged_clicks: DataFrame, tagged_orders: DataFrame) -> DataFrame:
    """exposure_id, label_ctr, label_ctcvr for every exposure with an attributed click."""
    ordered = tagged_orders.where(F.col("_reason").isNull()).select("exposure_id", F.lit(1).alias("_ordered"))
    return (
        first_clicks(tagged_clicks).select("exposure_id", F.lit(1).alias("label_ctr"))
        .join(ordered, "exposure_id", "left")
        .select("exposure_id", "label_ctr", F.coalesce("_ordered", F.lit(0)).alias("label_ctcvr"))
    )


def event_quarantine(tagged_clicks: DataFrame, tagged_orders: DataFrame) -> DataFrame:
    def q(df: DataFrame, source: str) -> DataFrame:
        return quarantine_rows(df.where(F.col("_reason").isNotNull()), source, "_reason", "_scope_dt")

    return q(tagged_clicks, "raw_clicks").unionByName(q(tagged_orders, "raw_orders"))


def boundaries(df: DataFrame, names: Sequence[str], buckets: int, relative_error: float
               ) -> dict[str, tuple[float, ...]]:
    """Distinct ``approxQuantile`` cut points (``buckets`` equal-count buckets) per column; nulls
    are ignored (a column of nulls gets no boundaries)."""
    if not names:
        return {}
    probs = [i / buckets for i in range(1, buckets)]
    cols = [F.col(c).cast("double").alias(c) for c in names]
    quantiles = df.select(*cols).approxQuantile(list(names), probs, relative_error)
    return {name: tuple(sorted({float(q) for q in qs})) for name, qs in zip(names, quantiles)}


def fit_spec(exposures: DataFrame, fc: FeaturesSection, scenarios: Sequence[str],
             fit_window: tuple[str, str], behaviour: Mapping | None = None,
             counter_names: Sequence[str] = ()) -> FeatureSpec:
    """Fit boundaries and vocabularies on ``exposures`` (already restricted to the window).

    Quantiles come from ``approxQuantile`` and vocabularies from one grouped count; only
    those aggregates reach the driver. ``counter_names``: the behaviour counter columns
    ``exposures`` carries (``behaviour``: their definition, stored in the spec).
    """
    numeric = boundaries(exposures, fc.numeric, fc.numeric_buckets, fc.quantile_relative_error)
    counters = boundaries(exposures, counter_names, fc.behaviour.buckets, fc.quantile_relative_error)
    categorical: dict[str, tuple[str, ...]] = {name: () for name in fc.categorical}
    if fc.categorical:
        pairs = F.explode(F.array(*[
            F.struct(F.lit(c).alias("feature"), F.col(c).cast("string").alias("value")) for c in fc.categorical
        ])).alias("p")
        counts = (
            exposures.select(pairs).select("p.feature", "p.value").where(F.col("value").isNotNull())
            .groupBy("feature", "value").count().where(F.col("count") >= fc.min_count)
            .collect()
        )
        by_feature: dict[str, list[tuple[int, str]]] = {name: [] for name in fc.categorical}
        for row in counts:
            by_feature[row["feature"]].append((-int(row["count"]), row["value"]))
        categorical = {name: tuple(v for _, v in sorted(vals)) for name, vals in by_feature.items()}
    return FeatureSpec(
        scenarios=tuple(scenarios),
        numeric=numeric,
        categorical=categorical,
        hashed=dict(fc.hashed),
        fit_window=fit_window,
        min_count=fc.min_count,
        behaviour=dict(behaviour or {}),
        counters=counters,
    )


def bucket_ids(df: DataFrame, numeric: dict[str, tuple[float, ...]]) -> DataFrame:
    """Add ``f_<name>``: 0 for null, else 1 + the number of boundaries <= x.

    Uses Spark ML's Bucketizer (a binary search per value) on a double copy of each column.
    """
    if not numeric:
        return df
    names = list(numeric)
    tmp = df.select("*", *[F.col(n).cast("double").alias(f"_d_{n}") for n in names])
    bucketizer = Bucketizer(
        inputCols=[f"_d_{n}" for n in names], outputCols=[f"_b_{n}" for n in names],
        splitsArray=[[float("-inf"), *numeric[n], float("inf")] for n in names], handleInvalid="keep")
    ids = {f"f_{n}": F.when(F.col(f"_d_{n}").isNull(), F.lit(NULL_ID)).otherwise(F.col(f"_b_{n}") + 1).cast("int")
           for n in names}
    return _with_columns(df.columns, bucketizer.transform(tmp), ids)


def _with_columns(columns: Sequence[str], df: DataFrame, new: Mapping[str, Column]) -> DataFrame:
    """``columns`` of ``df`` with ``new`` added (or replaced, in place) in one projection: one
    analysis instead of one per ``withColumn`` (dozens of features and counters)."""
    kept = [new[c].alias(c) if c in new else F.col(f"`{c}`") for c in columns]
    return df.select(*kept, *[v.alias(k) for k, v in new.items() if k not in columns])


def apply_spec(df: DataFrame, spec: FeatureSpec) -> DataFrame:
    """Add ``scenario_idx`` and one int id column ``f_<feature>`` per feature of the spec.

    Categorical vocabularies are joined as small broadcast tables (no giant literal maps).
    Rows are neither added nor dropped.
    """
    spark = df.sparkSession
    # the scenario's index in spec.scenarios; -1 for an unknown one, null for null (what
    # array_position(...) - 1 gives; written as CASE WHEN because Spark 3.5's array_position
    # takes no column as the value)
    idx = F.lit(-1)
    for i, name in reversed(list(enumerate(spec.scenarios))):
        idx = F.when(F.col("scenario") == F.lit(name), F.lit(i)).otherwise(idx)
    out = df.withColumn("scenario_idx", F.when(F.col("scenario").isNull(), F.lit(None)).otherwise(idx).cast("int"))
    out = bucket_ids(out, spec.bucketed)
    columns, ids = out.columns, {}
    for name, vocab in spec.categorical.items():
        table = spark.createDataFrame(pd.DataFrame({
            f"_v_{name}": pd.Series(vocab, dtype="object"),
            f"_id_{name}": pd.Series(range(FIRST_ID, FIRST_ID + len(vocab)), dtype="int32"),
        }), f"`_v_{name}` string, `_id_{name}` int")
        out = out.join(F.broadcast(table), F.col(name).cast("string") == F.col(f"_v_{name}"), "left")
        ids[f"f_{name}"] = (F.when(F.col(name).isNull(), F.lit(NULL_ID))
                            .otherwise(F.coalesce(F.col(f"_id_{name}"), F.lit(OOV_ID))).cast("int"))
    for name, buckets in spec.hashed.items():
        ids[f"f_{name}"] = (F.when(F.col(name).isNull(), F.lit(NULL_ID))
                            .otherwise(F.pmod(F.xxhash64(F.col(name).cast("string")), F.lit(buckets)) + FIRST_ID)
                            .cast("int"))
    return _with_columns(columns, out, ids)
