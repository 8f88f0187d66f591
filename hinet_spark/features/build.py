"""The feature pipeline end to end: raw logs of a date range -> the samples Delta table.

Reads raw_exposures, raw_clicks and raw_orders, checks them against ``schemas/`` (stopping
before any write), quarantines bad rows with a reason, attributes labels, fits or reuses the
feature spec, and replaces exactly the built dates in ``samples`` (partitioned by scenario
and dt) and ``quarantine`` (partitioned by source and dt). Every row read is either written
or quarantined; :class:`BuildReport` holds the counts and :func:`build_samples` checks
that they reconcile.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config, FeaturesSection
from hinet_spark.dates import parse_range
from hinet_spark.errors import OperatorError
from hinet_spark.features.behaviour import Counters, attach, attribution_days, ensure_days, in_range
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError
from hinet_spark.features.transforms import (
    apply_spec,
    check_exposures,
    drop_colliding_columns,
    event_quarantine,
    first_clicks,
    fit_spec,
    labels,
    tag_clicks,
    tag_orders,
)
from hinet_spark.ops.io import (
    CONFLICTS,
    ConcurrentRunError,
    create_table_if_missing,
    read_table,
    require_complete_imports,
    table_exists,
    table_location,
    write_table,
)
from hinet_spark.ops.schemas import load_schema, validate_dataframe, validate_features
from hinet_spark.ops.summary import table
from hinet_spark.tasks import LABELS

logger = logging.getLogger(__name__)

SAMPLE_KEYS = ("exposure_id", "request_id", "user_id", "item_id", "scenario", "scenario_idx",
               "event_time", "dt")


class EmptyInputError(OperatorError, ValueError):
    """A date range holds no rows to build from."""


class ReconciliationError(RuntimeError):
    """Rows read != rows written + rows quarantined (a bug: nothing may be lost)."""


@dataclass
class BuildReport:
    start: str
    end: str
    spec_hash: str
    spec_fitted: bool
    # per scenario: exposures read, samples written, clicks (label_ctr=1), orders (label_ctcvr=1)
    per_scenario: dict[str, dict[str, int]] = field(default_factory=dict)
    # per source table: rows this run accounts for, rows used, rows quarantined by reason
    read: dict[str, int] = field(default_factory=dict)
    used: dict[str, int] = field(default_factory=dict)
    quarantined: dict[str, dict[str, int]] = field(default_factory=dict)

    def check(self) -> None:
        for source, n in self.read.items():
            q = sum(self.quarantined.get(source, {}).values())
            if n != self.used.get(source, 0) + q:
                raise ReconciliationError(
                    f"{source}: read {n} rows but used {self.used.get(source, 0)} + quarantined {q}")


def spec_path(cfg: Config) -> Path:
    """The pipeline's current feature spec (what training and scoring use)."""
    return Path(cfg.features.spec_path or Path(cfg.storage.root) / "feature_spec.json")


def spec_archive(cfg: Config, spec_hash: str) -> Path:
    """Every spec ever fitted, side by side by hash (never overwritten)."""
    return spec_path(cfg).parent / "feature_specs" / f"{spec_hash}.json"


def _dated(df: DataFrame, time_col: str, a: dt.date, b: dt.date) -> DataFrame:
    """Rows of the date range by ``dt``, plus rows with a null ``dt`` whose time falls in it
    (they are quarantined as ``bad_dt``, not left invisible)."""
    return df.where(in_range("dt", a, b) | (F.col("dt").isNull() & in_range(F.to_date(time_col), a, b)))


def spec_settings(fc: FeaturesSection) -> dict:
    """The feature settings a spec is fitted from (stored in its meta, compared on reuse)."""
    return {"numeric": list(fc.numeric), "categorical": list(fc.categorical), "hashed": dict(fc.hashed),
            "numeric_buckets": fc.numeric_buckets, "quantile_relative_error": fc.quantile_relative_error,
            "min_count": fc.min_count, "fit_start": fc.fit_start, "fit_end": fc.fit_end,
            "behaviour": behaviour_settings(fc)}


def behaviour_settings(fc: FeaturesSection) -> dict:
    """The counter definition and its bucket count; {} without counters."""
    counters = Counters.from_section(fc.behaviour)
    return {**counters.to_dict(), "buckets": fc.behaviour.buckets} if counters.enabled else {}


def settings_differences(spec: FeatureSpec, cfg: Config) -> list[str]:
    """``features.<key>`` (and ``scenarios.names``) whose config value differs from what the
    stored spec was fitted with."""
    now = spec_settings(cfg.features)
    stored = dict(spec.meta.get("settings") or {})
    # what the spec content itself says (also for specs written before settings were stored)
    stored.update({"numeric": list(spec.numeric), "categorical": list(spec.categorical),
                   "hashed": dict(spec.hashed), "min_count": spec.min_count})
    if not spec.behaviour:  # a spec without counters (also every spec written before they existed)
        stored["behaviour"] = {}
    diffs = [f"features.{k}: spec {stored[k]!r}, config {now[k]!r}" for k in now
             if k in stored and stored[k] != now[k] and k not in ("fit_start", "fit_end")]
    for k, i in (("fit_start", 0), ("fit_end", 1)):
        if now[k] is not None and now[k] != spec.fit_window[i]:
            diffs.append(f"features.{k}: spec {spec.fit_window[i]!r}, config {now[k]!r}")
    if spec.scenarios != tuple(cfg.scenarios.names):
        diffs.append(f"scenarios.names: spec {list(spec.scenarios)}, config {list(cfg.scenarios.names)}")
    return diffs


def late_events(fc: FeaturesSection) -> dt.timedelta:
    """How many days after its exposure's date a click or order can be dated (the windows)."""
    return dt.timedelta(days=attribution_days(fc))


def feature_kinds(fc: FeaturesSection) -> dict[str, tuple[str, ...]]:
    return {"features.numeric": tuple(fc.numeric), "features.categorical": tuple(fc.categorical),
            "features.hashed": tuple(fc.hashed)}


def numeric_ranges(cfg: Config) -> dict[str, tuple[float | None, float | None]]:
    """[min, max] per numeric feature: ``features.numeric_ranges``, over the synthetic layout's
    own ranges (schemas/synthetic_exposures.json) when the config says the tables are the
    generator's (``synthetic.enabled``), whatever tables the root holds."""
    fc = cfg.features
    ranges = {n: (None, None) for n in fc.numeric}
    if cfg.synthetic.enabled:
        ranges.update({n: r for n, r in load_schema("synthetic_exposures").ranges(fc.numeric).items()
                       if r != (None, None)})
    return {**ranges, **fc.numeric_ranges}


SPEC_LOG_SCHEMA = ("slot string, spec_hash string, previous_hash string, claimed_by string, claimed_at timestamp, "
                   "fit_start string, fit_end string")


def claimed_spec(spark: SparkSession, cfg: Config) -> dict | None:
    """The row of ``feature_spec_log``: the spec the last fitting build claimed, or None."""
    if not table_exists(spark, cfg, "feature_spec_log"):
        return None
    row = read_table(spark, cfg, "feature_spec_log").where("slot = 'current'").first()
    return row.asDict() if row else None


def load_or_fit_spec(spark: SparkSession, cfg: Config, good_exposures: DataFrame, start: str, end: str,
                     refit: bool) -> tuple[FeatureSpec, bool, str | None]:
    """Reuse the current spec unless ``refit`` or none exists yet; then fit a new one.

    The current spec is the one claimed in ``feature_spec_log`` (falling back to
    ``feature_spec.json`` for roots written before the log existed). Returns the spec,
    whether it was fitted, and the claimed hash this run read (what :func:`claim_spec`
    expects to replace). A fitted spec becomes ``feature_spec.json`` only once the samples
    built with it are committed (:func:`commit_spec`).
    """
    path = spec_path(cfg)
    claim = claimed_spec(spark, cfg)
    current = claim["spec_hash"] if claim else None
    if (current or path.is_file()) and not refit:
        if current and spec_archive(cfg, current).is_file():
            spec = FeatureSpec.load(spec_archive(cfg, current))
        else:
            spec = FeatureSpec.load(path)
        diffs = settings_differences(spec, cfg)
        if diffs:
            raise FeatureSpecError(
                f"{path} was fitted with other feature settings than the config ({'; '.join(diffs)}); "
                "pass --refit to fit a new spec (and retrain), or restore the settings")
        logger.info("reusing feature spec %s from %s", spec.short_hash, path)
        return spec, False, current
    fc = cfg.features
    window = (fc.fit_start or start, fc.fit_end or end)
    a, b = parse_range(*window)
    fit_rows = good_exposures.where(in_range("dt", a, b))
    counters = Counters.from_section(fc.behaviour)
    spec = fit_spec(fit_rows, fc, cfg.scenarios.names, window, counters.to_dict(), counters.feature_names())
    spec = dataclasses.replace(spec, meta={**spec.meta, "settings": spec_settings(fc)})
    logger.info("fitted feature spec %s on %s..%s", spec.short_hash, window[0], window[1])
    return spec, True, current


def claim_spec(spark: SparkSession, cfg: Config, spec: FeatureSpec, fitted: bool, previous: str | None,
               run: str) -> None:
    """Before a build writes samples: make sure ``spec`` is the claimed spec, by one Delta commit.

    A fitting build replaces the claim only if it still holds ``previous`` (what the build
    read when it decided to fit) or already holds ``spec``; two builds that fit at once
    cannot both win: Delta refuses the second of two concurrent commits, and a later commit
    finds the claim moved. A reusing build only checks that the claim is still its spec.
    The loser writes nothing and gets :class:`ConcurrentRunError` naming the winner.
    """
    if not fitted:
        claim = claimed_spec(spark, cfg)
        if claim is None or claim["spec_hash"] == spec.hash:
            return
        raise _lost(claim, spec, previous)
    from delta.tables import DeltaTable

    now = dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)
    row = spark.createDataFrame([("current", spec.hash, previous, run, now, *spec.fit_window)], SPEC_LOG_SCHEMA)
    loc = table_location(cfg, "feature_spec_log")
    held = "t.spec_hash = s.spec_hash" + (f" OR t.spec_hash = '{previous}'" if previous else "")
    for attempt in range(3):
        try:
            create_table_if_missing(spark, cfg, "feature_spec_log", row.schema, [])
            table = DeltaTable.forName(spark, loc) if cfg.storage.catalog_schema else DeltaTable.forPath(spark, loc)
            (table.alias("t").merge(row.alias("s"), "t.slot = s.slot")
             .whenMatchedUpdateAll(condition=held).whenNotMatchedInsertAll().execute())
            break
        except Exception as exc:
            # Another build created the log table at the same moment (its first commit not yet
            # visible, or ours refused) or committed its claim first: look again, then give up.
            if attempt < 2 and not any(name in str(exc) for name in CONFLICTS):
                time.sleep(1 + attempt)
                continue
            raise ConcurrentRunError(
                f"feature spec: another build_features claimed a feature spec at the same moment as this one "
                f"({spec.short_hash}); this run wrote no samples. Rerun it: it builds with the spec that won "
                f"({type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''})"
            ) from exc
    claim = claimed_spec(spark, cfg)
    if claim is None or claim["spec_hash"] != spec.hash:
        raise _lost(claim or {}, spec, previous)


def _lost(claim: dict, spec: FeatureSpec, previous: str | None) -> ConcurrentRunError:
    return ConcurrentRunError(
        f"feature spec: build_features run {claim.get('claimed_by')} (fitted on {claim.get('fit_start')}.."
        f"{claim.get('fit_end')}, claimed at {claim.get('claimed_at')} UTC) made feature spec "
        f"{str(claim.get('spec_hash'))[:12]} current after this run read {str(previous)[:12] if previous else 'none'}; "
        f"this run (spec {spec.short_hash}) wrote no samples, so samples never mix two specs. Rerun it: it builds "
        "with the current spec (or pass --refit to replace it)")


def commit_spec(cfg: Config, spec: FeatureSpec) -> None:
    """Archive ``spec`` by hash and make it the current one (atomic rename)."""
    archived = spec_archive(cfg, spec.hash)
    if not archived.is_file():
        spec.save(archived)
    path = spec_path(cfg)
    if not path.is_file() or FeatureSpec.load(path).hash != spec.hash:
        spec.save(path)
        logger.info("feature spec %s is now current (%s)", spec.short_hash, path)


def _seen_exposure_ids(spark: SparkSession, cfg: Config, a: dt.date) -> DataFrame | None:
    """Exposure ids the samples table already holds in the ``dedup_lookback_days`` before ``a``."""
    days = cfg.features.dedup_lookback_days
    if days == 0 or not table_exists(spark, cfg, "samples"):
        return None
    earlier = read_table(spark, cfg, "samples").where(in_range("dt", a - dt.timedelta(days=days),
                                                                 a - dt.timedelta(days=1)))
    return earlier.select("exposure_id")


def build_samples(spark: SparkSession, cfg: Config, start: str, end: str, refit: bool = False) -> BuildReport:
    a, b = parse_range(start, end)
    fc = cfg.features
    late = late_events(fc)
    require_complete_imports(spark, cfg, a - late, b + late)

    raw = {k: read_table(spark, cfg, k) for k in ("raw_exposures", "raw_clicks", "raw_orders")}
    for key, df in raw.items():
        validate_dataframe(df, load_schema(key), f"table {key}")
    features = (*fc.numeric, *fc.categorical, *fc.hashed)
    validate_features(raw["raw_exposures"], feature_kinds(fc), "table raw_exposures")
    raw = {k: drop_colliding_columns(df, load_schema(k).names, features, k) for k, df in raw.items()}

    exposures = _dated(raw["raw_exposures"], "event_time", a, b)
    ranges = numeric_ranges(cfg)
    good, bad_exposures = check_exposures(exposures, cfg.scenarios.names, ranges,
                                          seen_ids=_seen_exposure_ids(spark, cfg, a))
    counters = Counters.from_section(fc.behaviour)
    if counters.enabled:  # the per-day aggregates the windows need, then the counters of every row
        ensure_days(spark, cfg, counters, a, b)
        good = attach(spark, cfg, good, counters, a, b)
    good = good.persist()
    # one pass over the range's exposures: the per-scenario counts also give the total
    read_by_scenario = {r["scenario"]: int(r["count"]) for r in exposures.groupBy("scenario").count().collect()}
    if not read_by_scenario:
        raise EmptyInputError(f"raw_exposures has no rows dated {start}..{end}")
    _warn_undatable(raw)

    # Every exposure an event of this run may point to, one row per id, flagged good or not.
    around = raw["raw_exposures"].where(in_range("dt", a - late, b + late))
    good_ids = good.select("exposure_id", F.lit(True).alias("_is_good"))
    exposures_all = (
        around.groupBy("exposure_id").agg(F.min("event_time").alias("event_time"), F.min("dt").alias("dt"))
        .join(good_ids, "exposure_id", "left")
        .select("exposure_id", "event_time", "dt", F.coalesce("_is_good", F.lit(False)).alias("_good"))
    )
    exposures_all = exposures_all.persist()
    clicks = tag_clicks(_dated(raw["raw_clicks"], "click_time", a - late, b + late), exposures_all,
                        start, end, fc.click_window_hours * 3600).persist()
    orders = tag_orders(_dated(raw["raw_orders"], "order_time", a - late, b + late), exposures_all,
                        first_clicks(clicks), start, end, fc.order_window_hours * 3600).persist()

    spec, fitted, previous = load_or_fit_spec(spark, cfg, good, start, end, refit)
    labeled = good.join(labels(clicks, orders), "exposure_id", "left").fillna(0, subset=list(LABELS))
    samples = apply_spec(labeled, spec).select(
        *SAMPLE_KEYS, *[F.col(c).cast("int").alias(c) for c in LABELS], *spec.columns,
        F.lit(spec.hash).alias("spec_hash")).persist()
    quarantine = bad_exposures.unionByName(event_quarantine(clicks, orders)).persist()

    # Count before writing (so a failed reconciliation writes nothing), from the persisted rows.
    events = {r["_source"]: int(r["count"]) for r in clicks.select(F.lit("clicks").alias("_source")).unionByName(
        orders.select(F.lit("orders").alias("_source"))).groupBy("_source").count().collect()}  # one job
    report = _report(start, end, spec, fitted, cfg.scenarios.names, read_by_scenario, samples, quarantine,
                     events.get("clicks", 0), events.get("orders", 0))
    report.check()
    if fitted:  # archived before the write, so the samples' spec_hash always has its file
        spec.save(spec_archive(cfg, spec.hash))
    claim_spec(spark, cfg, spec, fitted, previous, f"{start}..{end} pid {os.getpid()}")
    where = f"dt >= '{a.isoformat()}' AND dt <= '{b.isoformat()}'"
    written = report.used["raw_exposures"]
    # a refitted spec may add id columns (behaviour counters turned on): the table gains them
    write_table(samples, cfg, "samples", partition_by=["scenario", "dt"], replace_where=where, rows=written,
                merge_schema=fitted)
    write_table(quarantine, cfg, "quarantine", partition_by=["source", "dt"], replace_where=where,
                rows=sum(sum(r.values()) for r in report.quarantined.values()))
    commit_spec(cfg, spec)  # the current spec switches only now that its samples are committed
    for df in (good, exposures_all, clicks, orders, samples, quarantine):
        df.unpersist()
    report.check()
    empty = [s for s, v in report.per_scenario.items() if v["exposures_read"] == 0]
    if empty:
        logger.warning("scenarios with no exposures in %s..%s: %s", start, end, empty)
    for source, reasons in report.quarantined.items():
        n, read = sum(reasons.values()), report.read.get(source, 0)
        rate = n / read if read else 0.0
        if rate > cfg.features.quarantine_warn_rate:
            logger.warning("quarantined %d of %d rows (%.2f%%, above features.quarantine_warn_rate %.2f%%) from "
                           "%s: %s", n, read, 100 * rate, 100 * cfg.features.quarantine_warn_rate, source, reasons)
        elif n:  # the summary table lists them
            logger.debug("quarantined %d of %d rows (%.2f%%) from %s: %s", n, read, 100 * rate, source, reasons)
    return report


def summary_table(report: BuildReport) -> str:
    """Per scenario: exposures, clicks, orders, samples; quarantined rows by source and reason."""
    rows = [(s, v["exposures_read"], v["clicks"], v["orders"], v["samples_written"])
            for s, v in report.per_scenario.items()]
    rows.append(("all", *(sum(r[i] for r in rows) for i in range(1, 5))))
    out = table(("scenario", "exposures", "clicks", "orders", "samples"), rows)
    q = [(f"{src}: {reason}", n) for src, reasons in sorted(report.quarantined.items())
         for reason, n in sorted(reasons.items())]
    out += "\n" + (table(("quarantined (source: reason)", "rows"), q) if q else "quarantined: none")
    spec = "fitted now (--refit or first build)" if report.spec_fitted else "reused"
    return out + f"\nfeature spec {report.spec_hash[:12]} ({spec})"


def _warn_undatable(raw: dict[str, DataFrame]) -> None:
    """Rows with neither a dt nor an event time belong to no build: name how many (one Spark job
    for the three tables; the dt filter reads only a null-dt partition)."""
    times = {"raw_exposures": "event_time", "raw_clicks": "click_time", "raw_orders": "order_time"}
    frames = [df.where(F.col("dt").isNull() & F.col(times[key]).isNull()).select(F.lit(key).alias("_table"))
              for key, df in raw.items()]
    union = frames[0]
    for f in frames[1:]:
        union = union.unionByName(f)
    for r in union.groupBy("_table").count().collect():
        logger.warning("%s: %d rows have neither dt nor %s; no date range can build them (fix them at "
                       "the source)", r["_table"], r["count"], times[r["_table"]])


def _report(start: str, end: str, spec: FeatureSpec, fitted: bool, scenarios: Sequence[str],
            read_by_scenario: dict, samples: DataFrame, quarantine: DataFrame, n_clicks: int,
            n_orders: int) -> BuildReport:
    """Counts of the rows read, the samples and the quarantined rows about to be written;
    every configured scenario is listed, with zeros when it had no rows."""
    report = BuildReport(start, end, spec.hash, fitted)
    written = {r["scenario"]: r for r in samples.groupBy("scenario").agg(
        F.count("*").alias("n"), F.sum("label_ctr").alias("clicks"), F.sum("label_ctcvr").alias("orders")).collect()}
    extra = sorted((set(read_by_scenario) | set(written)) - set(scenarios), key=lambda x: (x is None, str(x)))
    for s in [*scenarios, *extra]:
        w = written.get(s)
        report.per_scenario[str(s)] = {
            "exposures_read": int(read_by_scenario.get(s, 0)),
            "samples_written": int(w["n"]) if w else 0,
            "clicks": int(w["clicks"] or 0) if w else 0,
            "orders": int(w["orders"] or 0) if w else 0,
        }
    for r in quarantine.groupBy("source", "reason").count().collect():
        report.quarantined.setdefault(r["source"], {})[r["reason"]] = int(r["count"])
    report.read["raw_exposures"] = sum(read_by_scenario.values())
    report.used["raw_exposures"] = sum(v["samples_written"] for v in report.per_scenario.values())
    report.read["raw_clicks"] = n_clicks
    report.used["raw_clicks"] = sum(v["clicks"] for v in report.per_scenario.values())
    report.read["raw_orders"] = n_orders
    report.used["raw_orders"] = sum(v["orders"] for v in report.per_scenario.values())
    return report
