"""The synthetic logs rewritten in a layout that is not the project's: a worked example for
``import_logs`` (docs/your_data.md) and its tests.

A made-up shop logs exposures as Parquet ``impressions`` (epoch milliseconds, its own column
names, numeric placement ids instead of scenario names, prices in cents, distances in metres), clicks as
CSV with wall-clock times in Asia/Shanghai, orders as JSON lines with epoch seconds, and the
next day's candidates as Parquet. A few rows break the contract on purpose (an unknown
placement, unparseable click times, an order amount that is not a number), so the import's
quarantine has something to show. ``conf/mappings/shop_logs.yaml`` maps it back;
``conf/shop.yaml`` is the config of the shop's own scenarios and features.
"""

from __future__ import annotations

from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config
from hinet_spark.ops.io import read_table

ZONE = "Asia/Shanghai"
PLACEMENTS = {"a": 101, "b": 102, "c": 201, "d": 301, "e": 401, "f": 501}  # scenario -> their placement id
BAD_ROWS = 3  # of each kind


def _impressions(df: DataFrame) -> DataFrame:
    placement = F.create_map(*[x for k, v in PLACEMENTS.items() for x in (F.lit(k), F.lit(v))])[F.col("scenario")]
    return df.select(
        F.col("exposure_id").alias("impression_id"), F.col("request_id").alias("page_view"),
        F.regexp_replace("user_id", "^u", "").cast("long").alias("uid"), F.col("item_id").alias("sku"),
        placement.alias("placement"), (F.unix_micros("event_time") / 1000).cast("long").alias("shown_at_ms"),
        F.round(F.col("price") * 100).cast("long").alias("price_cents"),
        F.round(F.col("distance_km") * 1000).alias("distance_m"),
        F.col("user_activity_30d").alias("visits_30d"), F.col("item_rating").alias("stars"),
        F.col("user_city").alias("city"), F.col("user_age_group").alias("age_band"),
        F.col("user_gender").alias("gender"), F.col("device_type").alias("os"),
        F.col("item_category").alias("category"), F.col("item_brand").alias("brand"),
        F.lit("spring_sale").alias("campaign"),  # a column of theirs nobody maps: ignored
        F.date_format("event_time", "yyyyMMdd").alias("log_day"),
    )


def export(spark: SparkSession, cfg: Config, out: str | Path) -> dict[str, int]:
    """Write the raw tables of ``cfg`` (as generate_synthetic made them) to ``out`` in the
    shop's layout; returns rows per file set."""
    out = Path(out).resolve()  # relative to this process's directory, whatever the JVM's is
    imps = _impressions(read_table(spark, cfg, "raw_exposures"))
    first = imps.orderBy("impression_id").limit(BAD_ROWS).select("impression_id")
    bad_placement = imps.join(first, "impression_id", "left_semi").withColumn(
        "impression_id", F.concat(F.lit("bad-"), "impression_id")).withColumn("placement", F.lit(999))
    imps = imps.unionByName(bad_placement)
    clicks = read_table(spark, cfg, "raw_clicks").select(
        F.col("exposure_id").alias("impression_id"),
        F.date_format(F.from_utc_timestamp("click_time", ZONE), "yyyy/MM/dd HH:mm:ss").alias("clicked_at"))
    bad_clicks = clicks.orderBy("impression_id").limit(BAD_ROWS).withColumn("clicked_at", F.lit("n/a"))
    orders = read_table(spark, cfg, "raw_orders").select(
        F.col("exposure_id").alias("impression_id"), F.unix_timestamp("order_time").alias("ordered_at"),
        F.format_string("%.2f", "amount").alias("gmv"))
    bad_orders = orders.orderBy("impression_id").limit(BAD_ROWS).withColumn(
        "impression_id", F.concat(F.lit("bad-"), "impression_id")).withColumn("gmv", F.lit("refunded"))
    cands = _impressions(read_table(spark, cfg, "candidates"))
    counts = {}
    for name, df, fmt in (("impressions", imps, "parquet"), ("clicks", clicks.unionByName(bad_clicks), "csv"),
                          ("orders", orders.unionByName(bad_orders), "json"), ("candidates", cands, "parquet")):
        df = df.persist()
        counts[name] = df.count()
        writer = df.write.mode("overwrite")
        if name in ("impressions", "candidates"):
            writer = writer.partitionBy("log_day")
        if fmt == "csv":
            writer = writer.option("header", "true")
        getattr(writer, fmt)(str(out / name))
        df.unpersist()
    return counts
