"""Behaviour counters: checked against a plain pandas computation over the raw tables, point in
time, nightly = backfill, the scoring path = the samples path, and the refusals."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path

import pandas as pd
import pytest
from delta.tables import DeltaTable
from pyspark.sql import functions as F

from hinet_spark.config import ConfigError, load_config
from hinet_spark.features.behaviour import BehaviourMissingError, Counters, attach, write_days
from hinet_spark.features.build import build_samples, spec_path
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError, differences
from hinet_spark.ops.io import read_table, table_location
from hinet_spark.scoring.batch import candidate_features, transform_spec
from jobs import build_features
from tests.test_features import exposure, ts, write_raw

DAYS = [dt.date(2026, 1, 1) + dt.timedelta(days=i) for i in range(5)]
ENTITIES = ["user", "item+scenario", "user+item_category"]
OVERRIDES = ("features.min_count=1", "features.numeric_buckets=4", "features.quantile_relative_error=0.0",
             f"features.behaviour.entities=[{', '.join(ENTITIES)}]", "features.behaviour.windows=[1, 2]",
             "features.behaviour.prior=5", "features.behaviour.buckets=4", "features.click_window_hours=12",
             "features.order_window_hours=12")
ATTRIBUTION_DAYS = 1  # ceil((12 + 12) / 24)


def random_logs(seed: int = 3):
    """Five days of exposures, clicks and orders with the cases the counting rules name: unknown
    scenarios, a dt that is not the event's date, null keys, repeated ids, clicks after midnight,
    clicks before their exposure, orphans, duplicates, a null category."""
    rng = random.Random(seed)
    exposures, clicks, orders = [], [], []
    for day in DAYS:
        for n in range(36):
            eid = f"e{day.day}-{n}"
            user, item = f"u{rng.randrange(6)}", f"i{rng.randrange(4)}"
            row = exposure(eid, day=day, hour=rng.randrange(24), scenario=rng.choice("aab"), user_id=user,
                           item_id=item, item_category=rng.choice(["cat1", "cat2", None]))
            roll = rng.random()
            if roll < 0.05:
                row["scenario"] = "zz"
            elif roll < 0.08:
                row["event_time"] = row["event_time"] - dt.timedelta(days=1)  # dt is not its date
            elif roll < 0.10:
                row["user_id"] = None
            exposures.append(row)
            if rng.random() < 0.06:
                exposures.append({**row, "event_time": row["event_time"] + dt.timedelta(minutes=5)})
            if rng.random() < 0.45:
                t = row["event_time"] + dt.timedelta(minutes=rng.choice([-30, 2, 40, 300, 900]))
                clicks.append(dict(exposure_id=eid, click_time=t, dt=t.date()))
                if rng.random() < 0.1:
                    clicks.append(dict(exposure_id=eid, click_time=t + dt.timedelta(seconds=9), dt=t.date()))
                if rng.random() < 0.4:
                    o = t + dt.timedelta(minutes=rng.choice([1, 200, 700]))
                    orders.append(dict(exposure_id=eid, order_time=o, amount=3.0, dt=o.date()))
        clicks.append(dict(exposure_id=f"orphan{day.day}", click_time=ts(day, 9), dt=day))
        clicks.append(dict(exposure_id=f"e{day.day}-0", click_time=ts(day, 9), dt=day + dt.timedelta(days=1)))
    return exposures, clicks, orders


def reference(exposures: pd.DataFrame, clicks: pd.DataFrame, orders: pd.DataFrame, scenarios) -> pd.DataFrame:
    """Every counted event (kind, dt, the exposure's columns), by the rules of docs/features.md."""
    x = exposures[exposures[["exposure_id", "user_id", "item_id", "scenario", "event_time", "dt"]].notna().all(axis=1)]
    x = x[x["scenario"].isin(scenarios) & (x["event_time"].dt.date == x["dt"])]
    x = x.sort_values("event_time").drop_duplicates(["exposure_id", "dt"])
    out = [x.assign(kind="exposures")]
    for kind, events, col in (("clicks", clicks, "click_time"), ("orders", orders, "order_time")):
        ev = events[events["exposure_id"].notna() & (events[col].dt.date == events["dt"])]
        ev = ev.groupby(["exposure_id", "dt"], as_index=False)[col].min()
        j = ev.merge(x.drop(columns=["dt"]).assign(xdt=x["dt"]), on="exposure_id")
        j = j[(j["xdt"] <= j["dt"]) & (j["xdt"] >= j["dt"] - dt.timedelta(days=ATTRIBUTION_DAYS))]
        j = j.sort_values("event_time").drop_duplicates(["exposure_id", "dt"])
        out.append(j[j[col] >= j["event_time"]].assign(kind=kind))
    return pd.concat(out, ignore_index=True)


def expected_counters(events: pd.DataFrame, row: pd.Series, entity: str, w: int, prior: float) -> dict:
    cols = Counters.columns(entity)
    day = row["dt"]
    window = events[(events["dt"] >= day - dt.timedelta(days=w)) & (events["dt"] < day)]
    window = window[window[cols].notna().all(axis=1)]
    totals = window["kind"].value_counts()
    mine = window
    for c in cols:
        mine = mine[mine[c].astype(str) == str(row[c])]
    label = Counters.label(entity)
    names = [f"bh_{label}_{w}d_{k}" for k in ("exposures", "clicks", "orders", "ctr", "cvr", "ctcvr")]
    if any(pd.isna(row[c]) for c in cols) or mine.empty:
        return dict.fromkeys(names)
    n = mine["kind"].value_counts()
    e, c, o = (float(n.get(k, 0)) for k in ("exposures", "clicks", "orders"))
    te, tc, to = (float(totals.get(k, 0)) for k in ("exposures", "clicks", "orders"))

    def rate(num, den, tnum, tden):
        return (num + prior * (tnum / tden if tden else 0.0)) / (den + prior)

    return dict(zip(names, (e, c, o, rate(c, e, tc, te), rate(o, c, to, tc), rate(o, e, to, te))))


@pytest.fixture(scope="module")
def built(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("behaviour")
    overrides = [f"storage.root={root / 'data'}", "synthetic.enabled=true", *OVERRIDES]
    cfg = load_config(None, overrides)
    write_raw(spark, cfg, *random_logs())
    build_samples(spark, cfg, DAYS[0].isoformat(), DAYS[-1].isoformat())
    return cfg, overrides


def _pdf(spark, cfg, key):
    return read_table(spark, cfg, key).toPandas()


def test_counters_match_a_pandas_computation_over_the_raw_tables(spark, built):
    cfg, _ = built
    counters = Counters.from_section(cfg.features.behaviour)
    raw = {k: _pdf(spark, cfg, k) for k in ("raw_exposures", "raw_clicks", "raw_orders")}
    events = reference(raw["raw_exposures"], raw["raw_clicks"], raw["raw_orders"], cfg.scenarios.names)
    rows = read_table(spark, cfg, "raw_exposures").where(F.col("dt") >= DAYS[1].isoformat())
    got = attach(spark, cfg, rows, counters, DAYS[1], DAYS[-1]).toPandas()
    assert len(got) == rows.count()  # rows neither added nor dropped
    checked = seen = 0
    for _, row in got.iterrows():
        for entity in counters.entities:
            for w in counters.windows:
                want = expected_counters(events, row, entity, w, counters.prior)
                for name, value in want.items():
                    if value is None:
                        assert pd.isna(row[name]), (name, row["exposure_id"], row[name])
                    else:
                        assert row[name] == pytest.approx(value, rel=1e-12, abs=1e-12), (name, row["exposure_id"])
                        seen += 1
                    checked += 1
    assert checked == len(got) * len(ENTITIES) * 2 * 6 and seen > checked // 3  # most rows have history


def test_no_event_on_or_after_the_day_changes_its_counters(spark, built):
    cfg, _ = built
    counters = Counters.from_section(cfg.features.behaviour)
    day = DAYS[2]
    rows = read_table(spark, cfg, "raw_exposures").where(F.col("dt") == day.isoformat()).localCheckpoint()
    names = ["exposure_id", *counters.feature_names()]

    def counters_of(d: dt.date) -> pd.DataFrame:
        got = attach(spark, cfg, rows.withColumn("dt", F.lit(d.isoformat()).cast("date")), counters, d, d)
        return got.select(*names).toPandas().sort_values("exposure_id").reset_index(drop=True)

    before, next_before = counters_of(day), counters_of(DAYS[3])
    events = {k: read_table(spark, cfg, k) for k in ("raw_exposures", "raw_clicks", "raw_orders")}
    originals = {k: v.toPandas() for k, v in events.items()}
    try:
        # on and after the day: every exposure logged again under a new id, a click for each, no orders
        later = events["raw_exposures"].where(F.col("dt") >= day.isoformat())
        extra = later.withColumn("exposure_id", F.concat("exposure_id", F.lit("-x")))
        clicks = events["raw_clicks"].where(F.col("dt") < day.isoformat()).unionByName(
            later.select("exposure_id", F.col("event_time").alias("click_time"), "dt"))
        orders = events["raw_orders"].where(F.col("dt") < day.isoformat())
        for key, df in (("raw_exposures", events["raw_exposures"].unionByName(extra)), ("raw_clicks", clicks),
                        ("raw_orders", orders)):
            df.localCheckpoint().write.format("delta").mode("overwrite").save(table_location(cfg, key))
        write_days(spark, cfg, counters, DAYS[2:])  # what the later nightly runs would write
        pd.testing.assert_frame_equal(before, counters_of(day))
        assert not next_before.equals(counters_of(DAYS[3]))  # the change is visible from the next day on
    finally:
        for key, pdf in originals.items():
            spark.createDataFrame(pdf, schema=read_table(spark, cfg, key).schema).write.format("delta") \
                .mode("overwrite").save(table_location(cfg, key))
        write_days(spark, cfg, counters, DAYS[2:])


def test_nightly_builds_equal_the_backfill(spark, built):
    """The range build aggregated every date at once; the nightly job (--behaviour-only, one
    date per run) rewrites the same rows."""
    cfg, overrides = built
    order = ["entity", "entity_key", "dt"]
    backfill = _pdf(spark, cfg, "behaviour_daily").sort_values(order).reset_index(drop=True)
    assert set(backfill["dt"]) == {DAYS[0] - dt.timedelta(days=2 - i) for i in range(2)} | set(DAYS)
    args = [a for o in overrides for a in ("--set", o)]
    for day in DAYS:
        assert build_features.main([*args, "--behaviour-only", "--date", day.isoformat()]) == 0
    nightly = _pdf(spark, cfg, "behaviour_daily").sort_values(order).reset_index(drop=True)
    pd.testing.assert_frame_equal(backfill, nightly)
    assert (nightly["entity_key"] == "*").sum() == len(ENTITIES) * len(set(nightly["dt"]))  # a totals row per date


@pytest.mark.runtime
def test_scoring_path_gives_the_samples_feature_ids(spark, built):
    cfg, _ = built
    spec = FeatureSpec.load(spec_path(cfg))
    assert spec.counters and spec.behaviour["entities"] == ENTITIES
    day = DAYS[3]
    candidates = read_table(spark, cfg, "raw_exposures").where(F.col("dt") == day.isoformat())
    scored, _ = candidate_features(spark, cfg, candidates, spec, day)
    samples = read_table(spark, cfg, "samples").where(F.col("dt") == day.isoformat())
    cols = ["exposure_id", "scenario_idx", *spec.columns]
    a = scored.select(*cols).toPandas().sort_values("exposure_id").reset_index(drop=True)
    b = samples.select(*cols).toPandas().sort_values("exposure_id").reset_index(drop=True)
    assert len(a) == len(b) > 20
    pd.testing.assert_frame_equal(a, b, check_dtype=False)
    counter_ids = a[[f"f_{n}" for n in spec.counters]]
    assert (counter_ids > 0).any().all() and (counter_ids == 0).any().any()  # seen and never-seen ids


def test_training_without_behaviour_reads_the_same_samples_without_the_counters(spark, built, tmp_path):
    """train.use_behaviour=false (compare_models --without-behaviour): same samples table, no f_bh_* input."""
    from hinet_spark.train.loop import fit

    cfg, overrides = built
    small = [*overrides, "train.launcher=local", "train.epochs=1", "train.max_steps_per_epoch=2", "train.batch_size=64",
             "model.embedding_dim=4", "model.sei_hidden=[8]", "model.cgc_hidden=[8]", "model.tower_hidden=[4]",
             "train.train_start=2026-01-02", "train.train_end=2026-01-03", "train.val_start=2026-01-04",
             "train.val_end=2026-01-04", "train.test_start=2026-01-05", "train.test_end=2026-01-05",
             "train.missing_scenario=warn", f"train.checkpoint_dir={tmp_path}"]
    full = FeatureSpec.load(spec_path(cfg))
    counters = [c for c in full.columns if c.startswith("f_bh_")]
    assert counters
    without = fit(spark, load_config(None, [*small, "train.use_behaviour=false"]))
    assert without.feature_spec == full.without_counters() and not without.feature_spec.counters
    assert without.model_spec.vocab_sizes == full.without_counters().vocab_sizes
    assert len(without.model_spec.vocab_sizes) == len(full.columns) - len(counters)
    with_them = fit(spark, load_config(None, small))
    assert with_them.feature_spec == full and with_them.model_spec.vocab_sizes == full.vocab_sizes


def test_a_missing_date_is_named_with_the_job_that_builds_it(spark, built):
    cfg, _ = built
    counters = Counters.from_section(cfg.features.behaviour)
    table = DeltaTable.forPath(spark, table_location(cfg, "behaviour_daily"))
    table.delete(F.col("dt") == DAYS[1].isoformat())
    try:
        rows = read_table(spark, cfg, "raw_exposures").where(F.col("dt") == DAYS[2].isoformat())
        with pytest.raises(BehaviourMissingError) as err:
            attach(spark, cfg, rows, counters, DAYS[2], DAYS[2])
        assert "2026-01-02" in str(err.value) and "build_features --behaviour-only" in str(err.value)
    finally:
        write_days(spark, cfg, counters, [DAYS[1]])


# ---------------------------------------------------------------------------------------- no Spark

@pytest.mark.parametrize("override, named", [
    ("features.behaviour.windows=[7, 0]", "features.behaviour.windows"),
    ("features.behaviour.entities=[user, shop]", "features.behaviour.entities[1]"),
    ("features.behaviour.entities=[user+colour]", "neither user, item, scenario nor a configured categorical"),
    ("features.behaviour.counts=[views]", "features.behaviour.counts: unknown ['views']"),
    ("features.behaviour.rates=[ctr, cpm]", "features.behaviour.rates: unknown ['cpm']"),
    ("features.behaviour.prior=0", "features.behaviour.prior: must be > 0"),
])
def test_bad_counter_settings_are_named(override, named):
    with pytest.raises(ConfigError) as err:
        load_config(None, ["features.behaviour.entities=[user]", override])
    assert named in str(err.value)


def test_a_spec_without_counters_keeps_its_hash_and_a_changed_definition_is_named():
    old = Path(__file__).parent / "data" / "feature_spec_before_counters.json"  # written by the code before counters
    spec = FeatureSpec.from_json(old.read_text())  # the stored hash still matches the content
    assert spec.hash == json.loads(old.read_text())["hash"] and "behaviour" not in spec.content()
    with_counters = FeatureSpec(spec.scenarios, spec.numeric, spec.categorical, spec.hashed, spec.fit_window,
                                spec.min_count, behaviour={"entities": ["user"], "windows": [7]},
                                counters={"bh_user_7d_ctr": (0.1,)})
    assert with_counters.feature_order == ["price", "bh_user_7d_ctr", "city", "user_id"]
    assert with_counters.vocab_sizes == (4, 3, 4, 12)
    other = FeatureSpec(**{**with_counters.__dict__, "behaviour": {"entities": ["user"], "windows": [1]}})
    assert differences(with_counters, other) == ["behaviour.windows"]
    assert differences(spec, with_counters) == ["behaviour", "counters"]


def test_scoring_refuses_a_model_with_other_counters(tmp_path):
    cfg = load_config(None, [f"storage.root={tmp_path}"])
    base = FeatureSpec.from_json((Path(__file__).parent / "data" / "feature_spec_before_counters.json").read_text())
    base.save(spec_path(cfg))
    model = FeatureSpec(**{**base.__dict__, "behaviour": {"entities": ["user"], "windows": [7]},
                           "counters": {"bh_user_7d_ctr": (0.1,)}})
    with pytest.raises(FeatureSpecError, match="they differ in behaviour, counters"):
        transform_spec(cfg, model)
