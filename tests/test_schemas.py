import datetime as dt

import pytest
from pyspark.sql import types as T

from hinet_spark.ops.schemas import SchemaError, load_schema, validate_dataframe


def test_schemas_load_as_structs():
    exp = load_schema("raw_exposures")
    assert exp.partition_columns == ("dt",)
    assert exp.struct["event_time"].dataType == T.TimestampType()
    assert exp.struct["dt"].dataType == T.DateType()
    # required: keys, scenario, times and date; features are whatever features.* names
    assert {c.role for c in exp.columns} == {"key", "scenario", "time", "date"}
    assert load_schema("candidates").names == exp.names
    synthetic = load_schema("synthetic_exposures")  # the generator's own layout keeps its columns
    assert synthetic.names[:len(exp.names)] == exp.names
    assert "price" in synthetic.by_role("numeric") and "item_brand" in synthetic.by_role("categorical")
    for name in ("raw_clicks", "raw_orders", "oracle"):
        assert "exposure_id" in load_schema(name).names


def test_unknown_schema_is_named():
    with pytest.raises(SchemaError, match="no schema 'nope'"):
        load_schema("nope")


def test_validate_accepts_conforming_frame(spark):
    clicks = load_schema("raw_clicks")
    df = spark.createDataFrame(
        [("e1", dt.datetime(2026, 1, 1, 10), dt.date(2026, 1, 1))], clicks.struct)
    validate_dataframe(df, clicks)  # no error


def test_validate_names_missing_and_mistyped_columns(spark):
    orders = load_schema("raw_orders")
    df = spark.createDataFrame([("e1", "2026-01-01 10:00:00", 3)], "exposure_id string, order_time string, amount long")
    with pytest.raises(SchemaError) as err:
        validate_dataframe(df, orders, "my_orders")
    msg = str(err.value)
    assert "my_orders" in msg
    assert "missing columns ['dt']" in msg
    assert "order_time (expected timestamp, got string)" in msg
    assert "amount (expected double, got bigint)" in msg


def test_generated_docs_are_up_to_date():
    from scripts.gen_docs import CONFIG_OUT, OUT, render, render_config

    assert OUT.read_text() == render(), "run scripts/gen_docs.py"
    assert CONFIG_OUT.read_text() == render_config(), "run scripts/gen_docs.py"
