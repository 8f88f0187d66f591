"""The feature pipeline on tiny hand-made logs, with expectations written by hand."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark.features.build import EmptyInputError, build_samples
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError, require_same
from hinet_spark.features.transforms import apply_spec, fit_spec
from hinet_spark.ops.io import TableNotFoundError, read_table, table_location, write_table
from hinet_spark.ops.schemas import SchemaError, load_schema
from jobs import build_features

D1, D2 = dt.date(2026, 1, 1), dt.date(2026, 1, 2)


def ts(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(day.year, day.month, day.day, hour, minute)


def exposure(eid: str, day=D1, hour=10, scenario="a", price=10.0, **kw) -> dict:
    row = dict(exposure_id=eid, request_id=f"r-{eid}", user_id=f"u-{eid}", item_id="i1", scenario=scenario,
               event_time=ts(day, hour), dt=day, price=price, distance_km=1.0, hour_of_day=hour,
               user_activity_30d=3.0, item_rating=4.0, user_city="c1", user_age_group="25-34",
               user_gender="f", device_type="ios", item_category="cat1", item_brand="b1")
    row.update(kw)
    return row


_PY_TYPES = {float: T.DoubleType(), str: T.StringType(), int: T.LongType()}


def write_raw(spark, cfg, exposures, clicks, orders):
    """The rows as raw tables: exposures with the synthetic layout's columns they have, plus
    any others (typed from their Python values)."""
    for key, rows in (("raw_exposures", exposures), ("raw_clicks", clicks), ("raw_orders", orders)):
        schema = load_schema("synthetic_exposures" if key == "raw_exposures" else key)
        have = set(rows[0]) if rows else set(schema.names)
        # real logs break the contract's NOT NULLs too: build them with every field nullable
        fields = [T.StructField(f.name, f.dataType, True) for f in schema.struct if f.name in have]
        fields += [T.StructField(n, _PY_TYPES[type(v)], True) for n, v in (rows[0] if rows else {}).items()
                   if n not in schema.names]
        struct = T.StructType(fields)
        df = spark.createDataFrame([tuple(r.get(c) for c in struct.fieldNames()) for r in rows], struct)
        write_table(df, cfg, key, partition_by=["dt"])


@pytest.fixture()
def cfg(cfg_factory):
    return cfg_factory("features.min_count=1", "features.numeric_buckets=4",
                       "features.quantile_relative_error=0.0")


@pytest.fixture()
def logs(spark, cfg):
    exposures = [
        exposure("e1"),                          # clicked once
        exposure("e2", scenario="b"),            # clicked twice (duplicate click)
        exposure("e3"),                          # clicked 25 h later: outside the 24 h window
        exposure("e4", hour=23),                 # clicked after midnight (late partition), ordered twice
        exposure("e5"),                          # an order without a click
        exposure("e6", scenario="zz"),           # unknown scenario
        exposure("e7", price=-1.0),              # negative numeric
        exposure("e8", price=float("nan")),      # NaN numeric
        exposure("e1", hour=11),                 # duplicate exposure id (the later one goes)
        exposure("e10", user_id=None),           # null key
        exposure("e11", price=None),             # a null numeric is fine: null bucket
        exposure("e12", day=D2),                 # another date
    ]
    clicks = [
        dict(exposure_id="e1", click_time=ts(D1, 10, 5), dt=D1),
        dict(exposure_id="e2", click_time=ts(D1, 10, 1), dt=D1),
        dict(exposure_id="e2", click_time=ts(D1, 10, 2), dt=D1),
        dict(exposure_id="e3", click_time=ts(D2, 11), dt=D2),
        dict(exposure_id="e4", click_time=ts(D2, 0, 30), dt=D2),
        dict(exposure_id="e6", click_time=ts(D1, 10, 3), dt=D1),   # its exposure is quarantined
        dict(exposure_id="e99", click_time=ts(D1, 12), dt=D1),     # orphan
        dict(exposure_id="e12", click_time=ts(D2, 10, 9), dt=D2),  # belongs to D2's build
    ]
    orders = [
        dict(exposure_id="e4", order_time=ts(D2, 1), amount=5.0, dt=D2),
        dict(exposure_id="e4", order_time=ts(D2, 1), amount=5.0, dt=D2),  # duplicate row
        dict(exposure_id="e5", order_time=ts(D1, 11), amount=7.0, dt=D1),
        dict(exposure_id="e1", order_time=ts(D1, 10, 1), amount=7.0, dt=D1),  # before its click
    ]
    write_raw(spark, cfg, exposures, clicks, orders)
    return cfg


@pytest.mark.runtime
def test_labels_and_quarantine_reasons(spark, logs):
    report = build_samples(spark, logs, "2026-01-01", "2026-01-01")
    samples = read_table(spark, logs, "samples").select("exposure_id", "scenario", "label_ctr", "label_ctcvr")
    expected = spark.createDataFrame(
        [("e1", "a", 1, 0), ("e2", "b", 1, 0), ("e3", "a", 0, 0), ("e4", "a", 1, 1), ("e5", "a", 0, 0),
         ("e11", "a", 0, 0)],
        "exposure_id string, scenario string, label_ctr int, label_ctcvr int")
    assert_df_equality(samples, expected, ignore_row_order=True, ignore_nullable=True)

    q = read_table(spark, logs, "quarantine").select("source", "reason", "exposure_id")
    expected_q = spark.createDataFrame([
        ("raw_exposures", "unknown_scenario", "e6"),
        ("raw_exposures", "bad_numeric:price", "e7"),
        ("raw_exposures", "bad_numeric:price", "e8"),
        ("raw_exposures", "duplicate_exposure", "e1"),
        ("raw_exposures", "null_key:user_id", "e10"),
        ("raw_clicks", "duplicate_event", "e2"),
        ("raw_clicks", "outside_window", "e3"),
        ("raw_clicks", "exposure_rejected", "e6"),
        ("raw_clicks", "orphan_event", "e99"),
        ("raw_orders", "duplicate_event", "e4"),
        ("raw_orders", "order_without_click", "e5"),
        ("raw_orders", "order_without_click", "e1"),
    ], "source string, reason string, exposure_id string")
    assert_df_equality(q, expected_q, ignore_row_order=True, ignore_nullable=True)

    # counts reconcile: read = used + quarantined, per table
    assert report.read == {"raw_exposures": 11, "raw_clicks": 7, "raw_orders": 4}
    assert report.used == {"raw_exposures": 6, "raw_clicks": 3, "raw_orders": 1}
    assert sum(report.quarantined["raw_exposures"].values()) == 5
    assert report.per_scenario["a"] == {"exposures_read": 9, "samples_written": 5, "clicks": 2, "orders": 1}


@pytest.mark.runtime
def test_samples_partitioned_by_scenario_and_date(spark, logs):
    build_samples(spark, logs, "2026-01-01", "2026-01-02")
    detail = DeltaTable.forPath(spark, table_location(logs, "samples")).detail().first()
    assert detail["partitionColumns"] == ["scenario", "dt"]
    detail_q = DeltaTable.forPath(spark, table_location(logs, "quarantine")).detail().first()
    assert detail_q["partitionColumns"] == ["source", "dt"]
    # e12's click is attributed in the D2 build; it is not an orphan of D1
    got = read_table(spark, logs, "samples").where("exposure_id = 'e12'").select("label_ctr").first()
    assert got["label_ctr"] == 1


@pytest.mark.runtime
def test_rerun_replaces_exactly_that_date(spark, logs):
    build_samples(spark, logs, "2026-01-01", "2026-01-02")
    table = read_table(spark, logs, "samples")
    before_d1 = table.where(F.col("dt") == D1).collect()
    before_d2 = table.where(F.col("dt") == D2).collect()
    version_before = DeltaTable.forPath(spark, table_location(logs, "samples")).history(1).first()["version"]
    build_samples(spark, logs, "2026-01-01", "2026-01-01")
    after = read_table(spark, logs, "samples")
    assert DeltaTable.forPath(spark, table_location(logs, "samples")).history(1).first()["version"] > version_before
    assert_df_equality(after.where(F.col("dt") == D1), spark.createDataFrame(before_d1, after.schema),
                       ignore_row_order=True)
    assert_df_equality(after.where(F.col("dt") == D2), spark.createDataFrame(before_d2, after.schema),
                       ignore_row_order=True)
    q = read_table(spark, logs, "quarantine")
    assert q.where(F.col("dt") == D1).count() == 12  # not doubled by the rerun


def test_bucket_ids_by_hand(spark, cfg):
    rows = [(float(x),) for x in range(1, 101)]
    df = spark.createDataFrame(rows, "price double")
    fc = dataclasses.replace(cfg.features, numeric=("price",), categorical=(), hashed={})
    spec = fit_spec(df, fc, ("a", "b"), ("2026-01-01", "2026-01-01"))
    # exact quartiles of 1..100 (relative error 0): the values at ranks 25, 50, 75
    assert spec.numeric["price"] == (25.0, 50.0, 75.0)
    probe = spark.createDataFrame([("a", 10.0), ("a", 25.0), ("a", 60.0), ("a", 100.0), ("a", None), ("b", 1e9)],
                                  "scenario string, price double")
    got = apply_spec(probe, spec).select("price", "scenario_idx", "f_price")
    expected = spark.createDataFrame([(10.0, 0, 1), (25.0, 0, 2), (60.0, 0, 3), (100.0, 0, 4), (None, 0, 0), (1e9, 1, 4)],
                                     "price double, scenario_idx int, f_price int")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    assert spec.vocab_sizes == (5,)  # null + 4 buckets


def test_vocabulary_with_oov_null_and_hashing(spark, cfg):
    fc = dataclasses.replace(cfg.features, numeric=(), categorical=("item_brand",), hashed={"user_id": 10},
                             min_count=2)
    fit = spark.createDataFrame([("x",), ("x",), ("x",), ("y",), ("y",), ("z",), (None,), (None,)], "item_brand string")
    spec = fit_spec(fit, fc, ("a",), ("2026-01-01", "2026-01-01"))
    assert spec.categorical["item_brand"] == ("x", "y")  # z is below min_count; most frequent first
    probe = spark.createDataFrame([("a", "x", "u1"), ("a", "y", None), ("a", "z", "u1"), ("a", None, "u2"),
                                   ("a", "new", "u3")], "scenario string, item_brand string, user_id string")
    got = apply_spec(probe, spec).select("item_brand", "f_item_brand")
    expected = spark.createDataFrame([("x", 2), ("y", 3), ("z", 1), (None, 0), ("new", 1)],
                                     "item_brand string, f_item_brand int")
    assert_df_equality(got, expected, ignore_row_order=True, ignore_nullable=True)
    hashed = {r["user_id"]: r["f_user_id"] for r in apply_spec(probe, spec).collect()}
    assert hashed[None] == 0 and all(2 <= v < 12 for k, v in hashed.items() if k)
    assert spec.vocab_sizes == (4, 12)


@pytest.mark.runtime
def test_spec_round_trip_reuse_and_refit(spark, logs, tmp_path):
    r1 = build_samples(spark, logs, "2026-01-01", "2026-01-01")
    path = tmp_path / "data" / "feature_spec.json"
    spec = FeatureSpec.load(path)
    assert r1.spec_fitted and spec.hash == r1.spec_hash
    assert FeatureSpec.from_json(spec.to_json()) == spec
    text = path.read_text()
    r2 = build_samples(spark, logs, "2026-01-02", "2026-01-02")
    assert not r2.spec_fitted and r2.spec_hash == spec.hash and path.read_text() == text
    hashes = {r[0] for r in read_table(spark, logs, "samples").select("spec_hash").distinct().collect()}
    assert hashes == {spec.hash}
    r3 = build_samples(spark, logs, "2026-01-02", "2026-01-02", refit=True)
    assert r3.spec_fitted and r3.spec_hash != spec.hash  # fitted on another window
    # a hand-edited spec is refused, naming the hashes
    path.write_text(text.replace('"min_count": 1', '"min_count": 2'))
    with pytest.raises(FeatureSpecError, match="does not match the stored hash"):
        FeatureSpec.load(path)
    with pytest.raises(FeatureSpecError, match=f"built with feature spec abc.*uses {spec.short_hash}"):
        require_same(spec, "abc" + "0" * 61, "the samples table")


@pytest.mark.runtime
def test_missing_column_or_wrong_type_stops_before_writing(spark, cfg):
    bad = spark.createDataFrame([Row(**exposure("e1"))]).drop("item_brand").withColumn("price", F.lit("10"))
    write_table(bad, cfg, "raw_exposures", partition_by=["dt"])
    for key in ("raw_clicks", "raw_orders"):
        write_table(spark.createDataFrame([], load_schema(key).struct), cfg, key, partition_by=["dt"])
    with pytest.raises(SchemaError, match=r"features.numeric: 'price' is string, expected a number type; "
                                          r"features.categorical: \['item_brand'\] is not a column"):
        build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    # a required column (keys, scenario, times, date) missing or mistyped
    bad = spark.createDataFrame([Row(**exposure("e1"))]).drop("request_id").withColumn("user_id", F.lit(7))
    write_table(bad, cfg, "raw_exposures", partition_by=["dt"])
    with pytest.raises(SchemaError, match=r"missing columns \['request_id'\]; wrong types: user_id \(expected "
                                          r"string, got int\)"):
        build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    assert not os.path.exists(table_location(cfg, "samples"))  # nothing written


def test_missing_table_and_empty_range(spark, logs, cfg_factory):
    with pytest.raises(EmptyInputError, match="no rows dated 2025-01-01..2025-01-02"):
        build_samples(spark, logs, "2025-01-01", "2025-01-02")
    with pytest.raises(ValueError, match="start 2026-01-02 is after end 2026-01-01"):
        build_samples(spark, logs, "2026-01-02", "2026-01-01")
    empty_root = cfg_factory("storage.root=/nonexistent/hinet")
    with pytest.raises(TableNotFoundError, match="'raw_exposures' not found"):
        build_samples(spark, empty_root, "2026-01-01", "2026-01-01")


def test_job_exit_codes(spark, logs, tmp_path):
    root = tmp_path / "data"
    ok = build_features.main(["--set", f"storage.root={root}", "--set", "features.min_count=1",
                              "--date", "2026-01-01"])
    assert ok == 0
    assert build_features.main(["--set", f"storage.root={root}", "--date", "2024-01-01"]) == 1
    assert build_features.main(["--set", f"storage.root={root}", "--date", "2026-01-01",
                                "--start-date", "2026-01-01"]) == 1
    # only the successful run wrote: D1's six samples (see test_labels_and_quarantine_reasons)
    assert sorted(r[0] for r in read_table(spark, logs, "samples").select("exposure_id").collect()) == [
        "e1", "e11", "e2", "e3", "e4", "e5"]
