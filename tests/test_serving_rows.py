"""Raw rows -> ids in pandas (what the served model does) against the Spark pipeline's apply_spec:
the same ids for every row, nulls, out-of-vocabulary values, counters and hashed strings included;
rows the batch job would quarantine are refused with their positions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import functions as F

from hinet_spark.features.rows import RowsError, ids_of_rows, raw_columns, spark_xxhash64
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.features.transforms import apply_spec

SPEC = FeatureSpec(
    scenarios=("home", "banner", "search"),
    numeric={"price": (1.0, 2.5, 10.0), "hour_of_day": (6.0, 12.0, 18.0)},
    categorical={"city": ("paris", "lyon", "nice"), "device": ("ios", "android")},
    hashed={"user_id": 97, "item_id": 13},
    fit_window=("2026-01-01", "2026-01-02"), min_count=1,
    behaviour={"entities": ["user"], "windows": [7]},
    counters={"bh_user_7d_clicks": (0.0, 1.0, 3.0), "bh_user_7d_ctr": (0.05, 0.1, 0.2)},
)


def _raw_frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = ["paris", "lyon", "nice", "oslo", "", "Zürich", "東京", None]
    ids = ["u" + "x" * int(k) for k in rng.integers(0, 70, n)]  # lengths 1..70: every XXH64 branch
    ids[:4] = ["", "é", "a" * 32, "0123456789abcdef0123456789abcdef0"]
    return pd.DataFrame({
        "scenario": rng.choice(["home", "banner", "search"], n),
        "price": np.where(rng.random(n) < 0.1, np.nan, np.round(rng.random(n) * 12, 1)),
        "hour_of_day": rng.integers(0, 24, n).astype("int32"),
        "bh_user_7d_clicks": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 6, n).astype(float)),
        "bh_user_7d_ctr": np.where(rng.random(n) < 0.3, np.nan, rng.random(n) * 0.3),
        "city": pd.Series([words[k] for k in rng.integers(0, len(words), n)], dtype="object"),
        "device": pd.Series(rng.choice(["ios", "android", "web"], n), dtype="object"),
        "user_id": pd.Series(ids, dtype="object"),
        "item_id": pd.Series([f"item-{k}" if k % 9 else None for k in rng.integers(0, 500, n)], dtype="object"),
    })


def test_ids_of_raw_rows_equal_the_spark_pipelines(spark):
    raw = _raw_frame(400, 1)
    raw["row"] = np.arange(len(raw))
    sdf = spark.createDataFrame(raw.replace({np.nan: None}), schema=(
        "scenario string, price double, hour_of_day int, bh_user_7d_clicks double, bh_user_7d_ctr double, "
        "city string, device string, user_id string, item_id string, row long"))
    expected = apply_spec(sdf, SPEC).select("row", "scenario_idx", *SPEC.columns).toPandas().sort_values("row")
    got = ids_of_rows(raw[raw_columns(SPEC)], SPEC)
    pd.testing.assert_frame_equal(got.reset_index(drop=True),
                                  expected.drop(columns="row").astype("int64").reset_index(drop=True))
    assert (got["f_city"] == 1).any() and (got["f_city"] == 0).any()  # out of vocabulary and null both seen
    assert (got["f_bh_user_7d_ctr"] == 0).any() and (got["f_price"] == 0).any()


def test_xxhash64_is_sparks(spark):
    words = ["", "a", "abc", "abcd", "abcdefgh", "x" * 31, "x" * 32, "y" * 33, "z" * 100, "Zürich", "東京都"]
    got = [spark_xxhash64(w.encode()) for w in words]
    rows = spark.createDataFrame([(w,) for w in words], "w string").select(F.xxhash64("w").alias("h")).collect()
    assert got == [r["h"] for r in rows]


def test_rows_the_batch_job_would_quarantine_are_refused_by_position():
    raw = _raw_frame(20, 2)[raw_columns(SPEC)]
    raw.loc[3, "scenario"] = "video"
    raw.loc[5, "price"] = -1.0
    raw.loc[7, "price"] = 50.0
    with pytest.raises(RowsError, match=r"3 of 20 rows cannot be scored.*unknown_scenario: rows \[3\] \(1\); "
                                        r"bad_numeric:price: rows \[5\] \(1\); out_of_range:price: rows \[7\] \(1\)"):
        ids_of_rows(raw, SPEC, {"price": (0.0, 20.0)})
    with pytest.raises(RowsError, match=r"raw rows lack columns \['bh_user_7d_ctr', 'user_id'\]"):
        ids_of_rows(raw.drop(columns=["bh_user_7d_ctr", "user_id"]), SPEC)
