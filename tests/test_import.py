"""import_logs: a user's tables in their own layout (Parquet, Delta, CSV, JSON, a catalog
table) -> the raw tables, with the quarantine, the reconciliation and the mapping's errors."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import pandas as pd
import pytest
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.features.build import build_samples
from hinet_spark.ingest.importing import MappingError, import_logs, load_mapping
from hinet_spark.ops.io import read_table
from jobs import generate_synthetic
from jobs import import_logs as import_job

REPO = Path(__file__).resolve().parent.parent
SCENARIOS = "scenarios.names=[feed, banner]"
FEATURES = ["features.numeric=[basket]", "features.categorical=[tier]", "features.hashed={user_id: 100}"]


def write_mapping(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def cfg_for(tmp_path, *extra):
    return load_config(None, [f"storage.root={tmp_path / 'data'}", SCENARIOS, *FEATURES, *extra])


BASE_MAPPING = """
time_zone: Asia/Shanghai
scenarios: {{"1": feed, "2": banner}}
exposures:
  source: {{path: {src}/imps, format: csv, options: {{header: true}}}}
  columns: {{exposure_id: id, request_id: req, user_id: who, item_id: what, scenario: slot, event_time: at}}
  time: {{format: "yyyy-MM-dd HH:mm:ss"}}
  features: {{basket_value: basket, level: tier}}
clicks:
  source: {{path: {src}/clicks, format: json}}
  columns: {{exposure_id: id, click_time: ts}}
  time: {{unit: ms}}
orders:
  source: {{path: {src}/orders, format: delta}}
  columns: {{exposure_id: id, order_time: ts}}
  defaults: {{amount: 1.0}}
  time: {{unit: s}}
candidates:
  source: {{table: their_candidates}}
  columns: {{exposure_id: id, request_id: req, user_id: who, item_id: what, scenario: slot, event_time: at}}
  features: {{basket_value: basket, level: tier}}
"""


def _epoch_ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp() * 1000)


@pytest.fixture()
def their_logs(spark, tmp_path):
    """Hand-made tables in a foreign layout, with one row for every way to break the contract."""
    src = tmp_path / "theirs"
    imps = pd.DataFrame([
        # id, req, who, what, slot, at (Shanghai wall clock), basket_value, level
        ("x1", "r1", "7", "i1", "1", "2026-01-01 08:30:00", "12.5", "gold"),   # = 2026-01-01 00:30 UTC
        ("x2", "r1", "8", "i2", "2", "2026-01-02 07:59:00", "3", "silver"),    # = 2026-01-01 23:59 UTC
        ("x3", "r2", "9", "i3", "1", "2026-01-02 08:00:00", "1", "gold"),      # = 2026-01-02 00:00 UTC: outside
        ("x4", "r2", None, "i1", "1", "2026-01-01 09:00:00", "1", "gold"),     # null user
        ("x5", "r3", "7", "i1", "1", "yesterday", "1", "gold"),                # unparseable time
        ("x6", "r3", "7", "i2", "3", "2026-01-01 10:00:00", "1", "gold"),      # unknown slot
        ("x7", "r4", "7", "i2", "2", "2026-01-01 11:00:00", "lots", "gold"),   # basket not a number
    ], columns=["id", "req", "who", "what", "slot", "at", "basket_value", "level"])
    spark.createDataFrame(imps).write.option("header", "true").csv(str(src / "imps"))
    clicks = [{"id": "x1", "ts": _epoch_ms("2026-01-01T00:31:00")}, {"id": "x2", "ts": "soon"}]
    (src / "clicks").mkdir(parents=True)
    (src / "clicks" / "part.json").write_text("\n".join(json.dumps(c) for c in clicks) + "\n")
    orders = spark.createDataFrame([("x1", 1767228000)], "id string, ts long")  # 2026-01-01 00:40 UTC
    orders.write.format("delta").save(str(src / "orders"))
    spark.createDataFrame([("c1", "r9", "7", "i1", "2", "2026-01-03 12:00:00", "2", "gold")],
                          "id string, req string, who string, what string, slot string, at string, "
                          "basket_value string, level string").createOrReplaceTempView("their_candidates")
    return src


@pytest.mark.runtime
def test_every_format_with_bad_rows_quarantined_and_reconciled(spark, tmp_path, their_logs):
    cfg = cfg_for(tmp_path)
    mapping = load_mapping(write_mapping(tmp_path / "m.yaml", BASE_MAPPING.format(src=their_logs)), cfg)
    report = import_logs(spark, cfg, mapping, "2026-01-01", "2026-01-01")
    assert report.counts["raw_exposures"] == {"read": 7, "imported": 2, "quarantined": 4, "outside": 1}
    assert report.quarantined["raw_exposures"] == {"null:user_id": 1, "bad_time:event_time": 1,
                                                   "unknown_scenario": 1, "bad_type:basket": 1}
    assert report.counts["raw_clicks"] == {"read": 2, "imported": 1, "quarantined": 1, "outside": 0}
    assert report.quarantined["raw_clicks"] == {"bad_time:click_time": 1}
    assert report.counts["candidates"] == {"read": 1, "imported": 0, "quarantined": 0, "outside": 1}
    exp = {r["exposure_id"]: r for r in read_table(spark, cfg, "raw_exposures").collect()}
    assert sorted(exp) == ["x1", "x2"]
    # wall-clock time in Asia/Shanghai -> UTC, the date of the UTC time, ids as strings, features cast
    assert exp["x1"]["event_time"] == dt.datetime(2026, 1, 1, 0, 30) and exp["x1"]["dt"] == dt.date(2026, 1, 1)
    assert exp["x2"]["event_time"] == dt.datetime(2026, 1, 1, 23, 59)
    assert exp["x1"]["scenario"] == "feed" and exp["x2"]["scenario"] == "banner" and exp["x1"]["user_id"] == "7"
    assert exp["x1"]["basket"] == 12.5 and exp["x1"]["tier"] == "gold"
    clicks = read_table(spark, cfg, "raw_clicks").collect()
    assert [(r["exposure_id"], r["click_time"]) for r in clicks] == [("x1", dt.datetime(2026, 1, 1, 0, 31))]
    orders = read_table(spark, cfg, "raw_orders").collect()
    assert [(r["order_time"], r["amount"]) for r in orders] == [(dt.datetime(2026, 1, 1, 0, 40), 1.0)]
    q = read_table(spark, cfg, "import_quarantine")
    bad_time = q.where("reason = 'bad_time:event_time'").first()
    assert bad_time["dt"] is None and json.loads(bad_time["record"])["at"] == "yesterday"  # their row, as it was
    # the data report: one row per configured scenario
    assert [(r["scenario"], r["rows"], r["ctr"], r["ctcvr"]) for r in report.per_scenario] == \
        [("feed", 1, 1.0, 1.0), ("banner", 1, 0.0, 0.0)]
    assert report.null_rates == {"basket": 0.0, "tier": 0.0}

    # idempotent per date: a rerun leaves the same tables; the next day's import takes x3 and the candidate
    import_logs(spark, cfg, mapping, "2026-01-01", "2026-01-01")
    assert read_table(spark, cfg, "raw_exposures").count() == 2
    assert read_table(spark, cfg, "import_quarantine").count() == 5
    nxt = import_logs(spark, cfg, mapping, "2026-01-02", "2026-01-03")
    assert nxt.counts["raw_exposures"]["imported"] == 1 and nxt.counts["candidates"]["imported"] == 1
    assert read_table(spark, cfg, "raw_exposures").count() == 3
    # the imported tables are what build_features reads
    built = build_samples(spark, load_config(None, [f"storage.root={tmp_path / 'data'}", SCENARIOS, *FEATURES,
                                                    "features.min_count=1"]), "2026-01-01", "2026-01-02")
    assert built.used["raw_exposures"] == 3


def test_flags_on_the_exposure_rows(spark, tmp_path):
    rows = [{"id": "a", "at": 1767225600, "slot": "feed", "u": 1, "clk": 1, "buy": 1, "day": "2026-01-01"},
            {"id": "b", "at": 1767225700, "slot": "banner", "u": 2, "clk": 1, "buy": 0, "day": "2026-01-01"},
            {"id": "c", "at": 1767225800, "slot": "banner", "u": 3, "clk": 0, "buy": 0, "day": "2026-01-01"},
            {"id": "old", "at": 1767139200, "slot": "feed", "u": 4, "clk": 1, "buy": 0, "day": "2025-12-31"}]
    spark.createDataFrame(pd.DataFrame(rows)).write.parquet(str(tmp_path / "log"))
    mapping = write_mapping(tmp_path / "flags.yaml", f"""
exposures:
  source: {{path: {tmp_path / 'log'}, format: parquet}}
  columns: {{exposure_id: id, user_id: u, scenario: slot, event_time: at}}
  defaults: {{request_id: none, item_id: none}}
  time: {{unit: s}}
  where: "day >= '{{start}}' AND day <= '{{end}}'"   # their date partitions: only the import's are read
clicks: {{flag: clk}}
orders: {{flag: buy}}
""")
    cfg = cfg_for(tmp_path, "features.numeric=[]", "features.categorical=[]")
    report = import_logs(spark, cfg, load_mapping(mapping, cfg), "2026-01-01", "2026-01-01")
    assert report.counts["raw_exposures"] == {"read": 3, "imported": 3, "quarantined": 0, "outside": 0}
    assert report.counts["raw_clicks"]["imported"] == 2 and report.counts["raw_orders"]["imported"] == 1
    assert [(r["scenario"], r["ctr"], r["ctcvr"]) for r in report.per_scenario] == \
        [("feed", 1.0, 1.0), ("banner", 0.5, 0.0)]


def test_flags_as_conditions_and_epoch_placeholders(spark, tmp_path):
    """A click defined by a condition on their columns (rating >= 4), and a history partitioned by
    epoch seconds read by ``{start_s}``/``{end_s}``: no column made beforehand, no literal by hand."""
    day = 1767225600  # 2026-01-01 00:00 UTC
    rows = [{"id": "a", "at": day + 10, "slot": "feed", "u": 1, "rating": 5, "paid": True},
            {"id": "b", "at": day + 20, "slot": "banner", "u": 2, "rating": 4, "paid": False},
            {"id": "c", "at": day + 30, "slot": "banner", "u": 3, "rating": 2, "paid": True},
            {"id": "n", "at": day + 40, "slot": "feed", "u": 5, "rating": None, "paid": None},
            {"id": "old", "at": day - 10, "slot": "feed", "u": 4, "rating": 5, "paid": True},
            {"id": "next", "at": day + 86400, "slot": "feed", "u": 6, "rating": 5, "paid": True}]
    spark.createDataFrame(pd.DataFrame(rows)).write.parquet(str(tmp_path / "log"))
    text = f"""
exposures:
  source: {{path: {tmp_path / 'log'}, format: parquet}}
  columns: {{exposure_id: id, user_id: u, scenario: slot, event_time: at}}
  defaults: {{request_id: none, item_id: none}}
  time: {{unit: s}}
  where: "at >= {{start_s}} AND at < {{end_s}}"
clicks: {{flag: "rating >= 4"}}
orders: {{flag: "rating >= 4 AND paid"}}
"""
    cfg = cfg_for(tmp_path, "features.numeric=[]", "features.categorical=[]")
    report = import_logs(spark, cfg, load_mapping(write_mapping(tmp_path / "cond.yaml", text), cfg),
                         "2026-01-01", "2026-01-01")
    assert report.counts["raw_exposures"] == {"read": 4, "imported": 4, "quarantined": 0, "outside": 0}
    clicks = sorted(r["exposure_id"] for r in read_table(spark, cfg, "raw_clicks").collect())
    orders = sorted(r["exposure_id"] for r in read_table(spark, cfg, "raw_orders").collect())
    assert clicks == ["a", "b"] and orders == ["a"]  # a null rating is no click
    bad = write_mapping(tmp_path / "bad.yaml", text.replace('"rating >= 4"', '"ratng >= 4"'))
    with pytest.raises(MappingError, match=r"clicks.flag: 'ratng >= 4' is neither a column of parquet .* nor a SQL "
                                           r"condition on its columns .*its columns: \['at', 'id', 'paid', 'rating'"):
        import_logs(spark, cfg, load_mapping(bad, cfg), "2026-01-01", "2026-01-01")


@pytest.mark.parametrize("text, key, problem", [
    ("exposures: {source: {path: x, format: orc}}", "exposures.source", "expected {table: NAME}"),
    ("exposures: {source: {table: t}, colums: {}}", "exposures.colums", "unknown key"),
    ("scenarios: {'7': homepage}\nexposures: {}", "scenarios.7", "'homepage' is not one of scenarios.names"),
    ("exposures: {source: {table: t}, columns: {exposure_id: id}}", "exposures.columns",
     r"no column for \['request_id', 'user_id', 'item_id', 'scenario', 'event_time'\]"),
    ("exposures: {source: {table: t}, columns: {label: y}}", "exposures.columns.label",
     "not a column of the raw_exposures contract"),
    ("exposures: {source: {table: t}, columns: {exposure_id: a, request_id: b, user_id: c, item_id: d, "
     "scenario: e, event_time: f}, time: {unit: minutes}}", "exposures.time.unit", "'minutes': expected one of"),
])
def test_mapping_errors_name_the_file_and_key(tmp_path, text, key, problem):
    path = write_mapping(tmp_path / "bad.yaml", text)
    with pytest.raises(MappingError, match=f"{path}: {key}: {problem}"):
        load_mapping(path, load_config(None, ["scenarios.names=[feed, banner]"]))


def test_a_mapped_column_their_table_lacks_stops_the_job_naming_file_and_key(spark, tmp_path, their_logs, capfd):
    text = BASE_MAPPING.format(src=their_logs).replace("user_id: who", "user_id: customer")
    path = write_mapping(tmp_path / "m.yaml", text)
    args = ["--mapping", str(path), "--date", "2026-01-01", "--set", f"storage.root={tmp_path / 'data'}",
            "--set", SCENARIOS, *[x for f in FEATURES for x in ("--set", f)]]
    assert import_job.main(args) == 1  # the job's log goes to stderr
    assert f"job failed: {path}: exposures.columns.user_id: 'customer' is not a column of csv {their_logs}/imps " \
           "(its columns: ['at', 'basket_value', 'id', 'level', 'req', 'slot', 'what', 'who'])" in capfd.readouterr().err
    assert not (tmp_path / "data" / "raw_exposures").exists()  # nothing written


@pytest.mark.runtime
@pytest.mark.slow
def test_the_shop_example_round_trips(spark, tmp_path, monkeypatch):
    # docs/your_data.md: the synthetic logs in a shop's own layout (Parquet with epoch ms, CSV with
    # Shanghai wall-clock times, JSON with epoch seconds), imported back with the committed files
    monkeypatch.chdir(tmp_path)
    source = ["--set", "synthetic.enabled=true", "--set", "storage.root=data/shop_source", "--set", "synthetic.days=2",
              "--set", "synthetic.exposures_per_day=3000", "--set", "synthetic.candidates_per_day=500",
              "--set", "synthetic.calibration_rows_per_scenario=2000"]
    assert generate_synthetic.main([*source, "--foreign-layout", "data/shop_logs"]) == 0
    # relative paths are the job's working directory's, not the JVM's (which pytest's chdir does not move)
    assert {p.name for p in (tmp_path / "data" / "shop_logs").iterdir()} == {"impressions", "clicks", "orders",
                                                                             "candidates"}
    conf, mapping = REPO / "conf" / "shop.yaml", REPO / "conf" / "mappings" / "shop_logs.yaml"
    assert import_job.main(["--conf", str(conf), "--mapping", str(mapping),
                            "--start-date", "2026-01-01", "--end-date", "2026-01-03"]) == 0
    shop = load_config(conf, [])
    original = load_config(None, [x for x in source[1::2]])
    # (their user ids are numbers: "u17" there is 17 here)
    for key, cols in (("raw_exposures", ["exposure_id", "request_id", "item_id", "event_time", "dt"]),
                      ("raw_clicks", ["exposure_id", "click_time", "dt"]), ("raw_orders", ["exposure_id", "order_time"]),
                      ("candidates", ["exposure_id", "item_id", "event_time"])):
        got = read_table(spark, shop, key).select(*cols)
        want = read_table(spark, original, key).select(*cols)
        assert got.exceptAll(want).count() == 0 and want.exceptAll(got).count() == 0, key
    q = read_table(spark, shop, "import_quarantine").groupBy("source", "reason").count().collect()
    assert sorted((r["source"], r["reason"], r["count"]) for r in q) == [
        ("raw_clicks", "bad_time:click_time", 3), ("raw_exposures", "unknown_scenario", 3),
        ("raw_orders", "bad_type:amount", 3)]
    prices = read_table(spark, shop, "raw_exposures").agg(F.min("price_cents")).first()[0]
    assert prices >= 0
    # conf/shop.yaml says these are real logs (synthetic.enabled false): real-log rules apply
    report = build_samples(spark, shop, "2026-01-01", "2026-01-02")
    assert report.used["raw_exposures"] == 6000 - sum(report.quarantined.get("raw_exposures", {}).values())


# --------------------------------------------------------------------------------------
# Issue #25: hostile mappings and sources (each failed on the code before the fix)
# --------------------------------------------------------------------------------------

def _log(spark, path: Path, rows: list[dict]) -> Path:
    spark.createDataFrame(pd.DataFrame(rows)).write.mode("overwrite").parquet(str(path))
    return path


def _flag_mapping(tmp_path: Path, name: str, src: Path, *, time: str = "{unit: s}", where: str | None = None,
                  zone: str = "UTC", extra: str = "", features: str = "") -> Path:
    """Exposures with click/order flags on their rows; request and item ids constant."""
    return write_mapping(tmp_path / f"{name}.yaml", f"""
time_zone: {zone}
exposures:
  source: {{path: {src}, format: parquet}}
  columns: {{exposure_id: id, user_id: u, scenario: slot, event_time: at}}
  defaults: {{request_id: none, item_id: none}}
  time: {time}
{f'  where: "{where}"' if where else ''}
{features}
clicks: {{flag: clk}}
orders: {{flag: buy}}
{extra}
""")


def _bare_cfg(tmp_path, *extra):
    return cfg_for(tmp_path, "features.numeric=[]", "features.categorical=[]", *extra)


def _at(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp())


def _row(i, day="2026-01-01", hour=1, slot="feed", clk=0, buy=0, **kw):
    return {"id": f"{slot}{day}-{i}", "u": i, "slot": slot, "at": _at(f"{day}T{hour:02d}:00:00"), "clk": clk,
            "buy": buy, **kw}


@pytest.mark.parametrize("features, problem", [
    ("{price_cents: user_id}", "output name 'user_id' is a column of the raw_exposures contract"),
    ("{price_cents: dt}", "output name 'dt' is a column of the raw_exposures contract"),
    ("{price_cents: source}", "output name 'source' is a column the pipeline adds"),
    ("{price_cents: label_ctr}", "output name 'label_ctr' is a column the pipeline adds"),
    ("{price_cents: f_price}", "output name 'f_price' is a column the pipeline adds"),
    ("{price_cents: price, amount: price}", "output name 'price' is also the output of exposures.features.price_cents"),
])
def test_a_feature_output_name_cannot_overwrite_a_contract_or_pipeline_column(tmp_path, features, problem):
    path = _flag_mapping(tmp_path, "m", tmp_path / "log", features=f"  features: {features}")
    with pytest.raises(MappingError, match=re.escape(problem)):
        load_mapping(path, _bare_cfg(tmp_path))


def test_a_second_source_replaces_only_its_own_rows(spark, tmp_path):
    cfg = _bare_cfg(tmp_path)
    app = _log(spark, tmp_path / "app", [_row(i, day, clk=int(i == 0)) for day in ("2026-01-01", "2026-01-02")
                                         for i in range(5)])
    web = _log(spark, tmp_path / "web", [_row(9, "2026-01-02", slot="banner", clk=1)])
    first = load_mapping(_flag_mapping(tmp_path, "app_logs", app), cfg)
    second = load_mapping(_flag_mapping(tmp_path, "web_logs", web), cfg)
    assert (first.source, second.source) == ("app_logs", "web_logs")  # the file name by default
    import_logs(spark, cfg, first, "2026-01-01", "2026-01-02")
    report = import_logs(spark, cfg, second, "2026-01-02", "2026-01-02")
    assert report.counts["raw_exposures"]["imported"] == 1

    def held(key):
        return sorted((r["source"], str(r["dt"])) for r in read_table(spark, cfg, key).collect())

    assert held("raw_exposures") == [("app_logs", "2026-01-01")] * 5 + [("app_logs", "2026-01-02")] * 5 + \
        [("web_logs", "2026-01-02")]
    assert held("raw_clicks") == [("app_logs", "2026-01-01"), ("app_logs", "2026-01-02"), ("web_logs", "2026-01-02")]
    # a rerun of either is idempotent and leaves the other's rows alone
    import_logs(spark, cfg, first, "2026-01-02", "2026-01-02")
    import_logs(spark, cfg, second, "2026-01-02", "2026-01-02")
    assert held("raw_exposures").count(("app_logs", "2026-01-02")) == 5
    assert held("raw_exposures").count(("web_logs", "2026-01-02")) == 1
    # an explicit source name, checked
    bad = _flag_mapping(tmp_path, "named", web, extra="source: 'no spaces allowed'")
    with pytest.raises(MappingError, match="source: 'no spaces allowed': a source name is"):
        load_mapping(bad, cfg)


def test_units_and_zones_are_checked_before_the_first_write(spark, tmp_path):
    cfg = _bare_cfg(tmp_path)
    exp = _log(spark, tmp_path / "imps", [_row(i) for i in range(4)])
    orders = tmp_path / "orders"
    orders.mkdir()
    # epoch microseconds declared as seconds: today a long overflow after two tables were committed
    (orders / "part.json").write_text(json.dumps({"id": "feed2026-01-01-0", "ts": _at("2026-01-01T02:00:00")
                                                  * 1_000_000}) + "\n")
    mapping = _flag_mapping(tmp_path, "m", exp).read_text().replace(
        "orders: {flag: buy}", f"orders:\n  source: {{path: {orders}, format: json}}\n"
                               "  columns: {exposure_id: id, order_time: ts}\n  defaults: {amount: 1.0}\n"
                               "  time: {unit: s}")
    path = write_mapping(tmp_path / "orders_us.yaml", mapping)
    with pytest.raises(MappingError, match=r"orders\.time\.unit: 's' puts the 'ts' values .* beyond any date.*"
                                           r"with time\.unit 'us' their median would be 2026-01-01 02:00 UTC"):
        import_logs(spark, cfg, load_mapping(path, cfg), "2026-01-01", "2026-01-01")
    assert not (tmp_path / "data" / "raw_exposures").exists()  # nothing of the import was written
    # milliseconds declared as seconds: named with the year they would land in
    ms = _log(spark, tmp_path / "ms", [{**_row(i), "at": _row(i)["at"] * 1000} for i in range(4)])
    with pytest.raises(MappingError, match=r"exposures\.time\.unit: 's' puts the 'at' values .* at year 5[0-9]{4}.*"
                                           r"with time\.unit 'ms' their median would be 2026-01-01"):
        import_logs(spark, cfg, load_mapping(_flag_mapping(tmp_path, "ms", ms), cfg), "2026-01-01", "2026-01-01")
    with pytest.raises(MappingError, match=r"time_zone: 'Mars/Olympus_Mons' is not a time zone"):
        load_mapping(_flag_mapping(tmp_path, "mars", exp, zone="Mars/Olympus_Mons"), cfg)


def test_an_import_stopped_midway_is_refused_by_build_features(spark, tmp_path, monkeypatch):
    import hinet_spark.ingest.importing as importing
    from hinet_spark.ops.io import ImportIncompleteError

    cfg = _bare_cfg(tmp_path, "features.min_count=1")
    src = _log(spark, tmp_path / "imps", [_row(i, clk=1, buy=int(i < 2)) for i in range(6)])
    mapping = load_mapping(_flag_mapping(tmp_path, "m", src), cfg)
    real = importing.write_table

    def dies_on_orders(df, cfg_, key, **kw):
        if key == "raw_orders":
            raise KeyboardInterrupt("killed")  # raw_exposures and raw_clicks are committed by now
        return real(df, cfg_, key, **kw)

    monkeypatch.setattr(importing, "write_table", dies_on_orders)
    with pytest.raises(KeyboardInterrupt):
        import_logs(spark, cfg, mapping, "2026-01-01", "2026-01-01")
    assert read_table(spark, cfg, "raw_clicks").count() == 6  # half an import is on disk...
    with pytest.raises(ImportIncompleteError, match=r"unfinished import \(source 'm': 2026-01-01\.\.2026-01-01"):
        build_samples(spark, cfg, "2026-01-01", "2026-01-01")  # ...and no build reads it
    monkeypatch.setattr(importing, "write_table", real)
    import_logs(spark, cfg, mapping, "2026-01-01", "2026-01-01")  # the rerun completes it
    built = build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    assert built.per_scenario["feed"]["orders"] == 2


def test_nightly_imports_of_local_date_partitions_lose_no_row_unnamed(spark, tmp_path, caplog):
    cfg = _bare_cfg(tmp_path)
    # partitions named by the local (Amsterdam, UTC+2 in summer) date: local 03-30 00:xx = UTC 03-29 22:xx
    rows = [{**_row(i, "2026-03-29", hour=22), "log_day": "20260330"} for i in range(3)]
    rows += [{**_row(i, "2026-03-30", hour=10), "log_day": "20260330"} for i in range(3, 5)]
    rows += [{**_row(i, "2026-03-29", hour=10), "log_day": "20260329"} for i in range(5, 9)]
    src = _log(spark, tmp_path / "log", rows)
    plain = load_mapping(_flag_mapping(tmp_path, "plain", src, zone="Europe/Amsterdam",
                                       where="log_day = '{start:%Y%m%d}'"), cfg)
    import_logs(spark, cfg, plain, "2026-03-29", "2026-03-29")
    with caplog.at_level(logging.WARNING, logger="hinet_spark.ingest.importing"):
        night = import_logs(spark, cfg, plain, "2026-03-30", "2026-03-30")
    assert night.counts["raw_exposures"]["outside"] == 3
    assert night.uncovered["raw_exposures"] == {"2026-03-29": 3}  # today: counted "outside", then lost
    assert "3 rows read here are dated ['2026-03-29']" in caplog.text and "{local_start}" in caplog.text
    assert "raw_exposures: 3 of 5 rows read fall outside 2026-03-30..2026-03-30 (their event_time span 2026-03-29 " \
           "22:00:00 .. 2026-03-29 22:00:00 UTC)" in caplog.text  # most rows elsewhere: where they are
    assert read_table(spark, cfg, "raw_exposures").count() == 6
    # the zone's placeholders: each UTC night reads the local partitions it overlaps
    local = load_mapping(_flag_mapping(tmp_path, "local", src, zone="Europe/Amsterdam",
                                       where="log_day >= '{local_start:%Y%m%d}' AND log_day <= '{local_end:%Y%m%d}'"),
                         cfg)
    for day in ("2026-03-29", "2026-03-30"):
        report = import_logs(spark, cfg, local, day, day)
        assert report.uncovered == {}
    held = read_table(spark, cfg, "raw_exposures").where("source = 'local'")
    assert held.count() == 9  # every row, as a range import keeps them


@pytest.mark.runtime
def test_ambiguous_and_nonexistent_local_times_are_counted_and_ruled(spark, tmp_path):
    cfg = _bare_cfg(tmp_path)
    rows = [("a1", "2026-10-25 02:30:00"),   # the repeated hour: 00:30 UTC (CEST) or 01:30 UTC (CET)
            ("g1", "2026-03-29 02:30:00"),   # the skipped hour: does not exist in Amsterdam
            ("n1", "2026-10-25 04:00:00")]   # plain: 03:00 UTC
    src = _log(spark, tmp_path / "log", [{"id": i, "u": 1, "slot": "feed", "at": t, "clk": 0, "buy": 0}
                                         for i, t in rows])

    def run(name, rules):
        m = load_mapping(_flag_mapping(tmp_path, name, src, zone="Europe/Amsterdam",
                                       time=f"{{format: 'yyyy-MM-dd HH:mm:ss'{rules}}}"), cfg)
        report = import_logs(spark, cfg, m, "2026-03-29", "2026-10-25")
        times = {r["exposure_id"]: r["event_time"] for r in
                 read_table(spark, cfg, "raw_exposures").where(f"source = '{name}'").collect()}
        return report, times

    report, times = run("default", "")
    assert report.dst["raw_exposures"] == {"ambiguous": 1, "nonexistent": 1}
    assert times == {"a1": dt.datetime(2026, 10, 25, 0, 30), "g1": dt.datetime(2026, 3, 29, 1, 30),
                     "n1": dt.datetime(2026, 10, 25, 3, 0)}  # earlier offset; the gap shifted later
    _, times = run("later", ", ambiguous: later")
    assert times["a1"] == dt.datetime(2026, 10, 25, 1, 30)
    report, times = run("strict", ", ambiguous: quarantine, nonexistent: quarantine")
    assert sorted(times) == ["n1"]
    assert report.quarantined["raw_exposures"] == {"ambiguous_time:event_time": 1, "nonexistent_time:event_time": 1}
    with pytest.raises(MappingError, match=r"exposures\.time\.ambiguous: 'first': expected one of"):
        load_mapping(_flag_mapping(tmp_path, "bad", src, time="{format: x, ambiguous: first}"), cfg)
