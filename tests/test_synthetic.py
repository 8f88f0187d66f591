"""The synthetic generator: determinism, Table I shape, schema conformance, oracle joins."""

from __future__ import annotations

import math

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.ingest.synthetic import generate
from hinet_spark.ops.io import read_table, table_location
from hinet_spark.ops.schemas import load_schema, validate_dataframe
from jobs import generate_synthetic

# Table I (paper), the generator's targets. Shares are relative weights (they sum to 96.6%).
SHARE = {"a": 48.7, "b": 26.7, "c": 6.4, "d": 7.2, "e": 0.4, "f": 7.2}
CTR = {"a": 0.1256, "b": 0.2250, "c": 0.1400, "d": 0.1384, "e": 0.0412, "f": 0.1117}
CTCVR = {"a": 0.0264, "b": 0.0591, "c": 0.0064, "d": 0.0054, "e": 0.0031, "f": 0.0113}
N = 250_000


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    overrides = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=1", f"synthetic.exposures_per_day={N}",
                 "synthetic.candidates_per_day=5000"]
    argv = [x for o in overrides for x in ("--set", o)]
    assert generate_synthetic.main(argv) == 0
    return load_config(None, overrides)


def _tables(spark, cfg):
    return {k: read_table(spark, cfg, k) for k in ("raw_exposures", "raw_clicks", "raw_orders",
                                                   "candidates", "oracle")}


def test_tables_meet_schemas_and_are_partitioned_by_date(spark, generated):
    for key, df in _tables(spark, generated).items():
        schema = load_schema("raw_exposures" if key == "candidates" else key)
        validate_dataframe(df, schema, key)
        detail = DeltaTable.forPath(spark, table_location(generated, key)).detail().first()
        assert detail["partitionColumns"] == ["dt"], key


def test_table_one_shares_and_rates(spark, generated):
    t = _tables(spark, generated)
    clicked = t["raw_clicks"].select("exposure_id").distinct().withColumn("c", F.lit(1))
    ordered = t["raw_orders"].select("exposure_id").distinct().withColumn("o", F.lit(1))
    rows = (
        t["raw_exposures"].join(clicked, "exposure_id", "left").join(ordered, "exposure_id", "left")
        .join(t["oracle"].select("exposure_id", "p_ctr", "p_ctcvr"), "exposure_id")
        .groupBy("scenario")
        .agg(F.count("*").alias("n"), F.avg(F.coalesce("c", F.lit(0))).alias("ctr"),
             F.avg(F.coalesce("o", F.lit(0))).alias("ctcvr"),
             F.avg("p_ctr").alias("p_ctr"), F.avg("p_ctcvr").alias("p_ctcvr"))
        .collect()
    )
    got = {r["scenario"]: r for r in rows}
    assert sum(r["n"] for r in rows) == N
    total_share = sum(SHARE.values())
    for s in SHARE:
        r = got[s]
        share = SHARE[s] / total_share
        assert abs(r["n"] / N - share) <= 0.10 * share + 4 * math.sqrt(share / N), (s, r["n"])
        # Expected rates (the oracle's mean probabilities) are calibrated: within 10% everywhere.
        assert r["p_ctr"] == pytest.approx(CTR[s], rel=0.10), s
        assert r["p_ctcvr"] == pytest.approx(CTCVR[s], rel=0.10), s
        # Realized rates: within 10%, or within 4 binomial standard deviations where the
        # scenario is too small for 10% to be reachable (e has ~1,000 exposures here).
        for got_rate, target in ((r["ctr"], CTR[s]), (r["ctcvr"], CTCVR[s])):
            sd = math.sqrt(target * (1 - target) / r["n"])
            assert abs(got_rate - target) <= max(0.10 * target, 4 * sd), (s, got_rate, target)


def test_events_join_to_exposures_and_oracle(spark, generated):
    t = _tables(spark, generated)
    exposures = t["raw_exposures"].select("exposure_id")
    n_exp = exposures.count()
    assert exposures.distinct().count() == n_exp
    for key in ("raw_clicks", "raw_orders"):
        assert t[key].join(exposures, "exposure_id", "left_anti").count() == 0, key
    # Every order's exposure was clicked, and no order precedes its click.
    first_click = t["raw_clicks"].groupBy("exposure_id").agg(F.min("click_time").alias("ct"))
    orders = t["raw_orders"].join(first_click, "exposure_id", "left")
    assert orders.where(F.col("ct").isNull() | (F.col("order_time") < F.col("ct"))).count() == 0
    # The oracle holds exactly one row per exposure and per candidate.
    oracle = t["oracle"]
    assert oracle.count() == n_exp + t["candidates"].count()
    assert exposures.join(oracle, "exposure_id", "left_anti").count() == 0
    assert t["candidates"].join(oracle, "exposure_id", "left_anti").count() == 0


def test_duplicates_overlap_nulls_and_candidate_day(spark, generated):
    t = _tables(spark, generated)
    clicks = t["raw_clicks"]
    assert clicks.count() > clicks.select("exposure_id").distinct().count()  # some logged twice
    exp = t["raw_exposures"]
    multi = exp.groupBy("user_id").agg(F.countDistinct("scenario").alias("k")).where("k >= 2").count()
    assert multi / exp.select("user_id").distinct().count() > 0.5  # users overlap across scenarios
    assert exp.where(F.col("user_age_group").isNull()).count() > 0
    assert exp.select("item_brand").distinct().count() > 1000  # long tail
    days = [r[0].isoformat() for r in t["candidates"].select("dt").distinct().collect()]
    assert days == ["2026-01-02"]
    assert t["candidates"].count() == 5000


def test_deterministic_for_a_seed(spark, cfg_factory):
    cfg = cfg_factory("synthetic.exposures_per_day=3000", "synthetic.days=1",
                      "synthetic.candidates_per_day=0", "synthetic.calibration_rows_per_scenario=2000")
    cols = ["exposure_id", "scenario", "user_id", "item_id", "price", "p_ctr", "clicked", "ordered"]
    first = generate(spark, cfg).select(*cols)
    second = generate(spark, cfg).select(*cols)
    assert_df_equality(first, second, ignore_row_order=True)
    other = generate(spark, cfg_factory("synthetic.exposures_per_day=3000", "synthetic.days=1",
                                        "synthetic.candidates_per_day=0", "synthetic.seed=8",
                                        "synthetic.calibration_rows_per_scenario=2000")).select(*cols)
    assert first.exceptAll(other).count() > 0
