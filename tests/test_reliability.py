"""Issue #16: storage escapes, accidental deletes, date-grouping-independent dedup, and bad
input that is named. Every test here failed on the code before the fix (see the issue note)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from pyspark.sql import functions as F
from pyspark.sql import types as T

from hinet_spark.config import ConfigError, load_config
from hinet_spark.features.build import build_samples, numeric_ranges, spec_archive, spec_path
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError
from hinet_spark.features.transforms import check_exposures
from hinet_spark.ops.io import (
    ConcurrentRunError,
    StorageError,
    drop_scratch_table,
    read_table,
    table_location,
    write_table,
)
from hinet_spark.ops.schemas import SchemaError, load_schema
from hinet_spark.train.checkpoints import CheckpointError, check_resumable, fingerprint
from jobs import build_features
from tests.test_features import D1, D2, exposure, ts, write_raw

D3 = dt.date(2026, 1, 3)
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture()
def cfg(cfg_factory):
    return cfg_factory("features.min_count=1", "features.numeric_buckets=4",
                       "features.quantile_relative_error=0.0")


def at_once(fn, args) -> dict:
    """``fn(a)`` for each of ``args`` in its own thread, at once: ``a -> None`` (it returned) or
    the exception it raised."""
    outcomes: dict = {}

    def call(a):
        try:
            fn(a)
            outcomes[a] = None
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            outcomes[a] = exc

    threads = [threading.Thread(target=call, args=(a,)) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return outcomes


def _rows(spark, cfg, key, cols=("exposure_id",)):
    return sorted(tuple(r) for r in read_table(spark, cfg, key).select(*cols).collect())


# --------------------------------------------------------------------------------------
# 1-3, 14: config and storage
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../victim_dir", "a/b", "has space", "..", "", "_delta_log", "checkpoints"])
def test_table_names_must_be_plain_identifiers(name):
    with pytest.raises(ConfigError, match=r"storage\.tables\.synthetic_staging: .*(plain table name|reserved)"):
        load_config(None, [f"storage.tables.synthetic_staging={name!r}"])


def test_two_keys_one_table_name_is_refused():
    with pytest.raises(ConfigError, match=r"storage\.tables\.synthetic_staging: 'candidates' is also the name "
                                          r"of storage\.tables\.candidates"):
        load_config(None, ["storage.tables.synthetic_staging=candidates"])


def test_range_errors_name_their_source_and_model_name_is_checked_at_load(tmp_path):
    with pytest.raises(ConfigError, match=r"features\.numeric_buckets: must be > 0, got 0 "
                                          r"\(from --set features\.numeric_buckets=0\)"):
        load_config(None, ["features.numeric_buckets=0"])
    env = tmp_path / "env.yaml"
    env.write_text("train:\n  launcher: horovd\n")
    with pytest.raises(ConfigError, match=r"train\.launcher: .*'horovd' \(from .*env\.yaml\)"):
        load_config(env)
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'hinett'; known: \[.*'hinet'.*\] "
                                          r"\(from --set model\.name=hinett\)"):
        load_config(None, ["model.name=hinett"])


def test_paths_never_leave_storage_root(spark, cfg, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    root = Path(cfg.storage.root)
    root.mkdir(parents=True)
    (root / "scores").symlink_to(outside)  # a table folder that points elsewhere
    with pytest.raises(StorageError, match=r"storage\.tables\.scores='scores' resolves to .*outside"):
        table_location(cfg, "scores")
    assert (outside / "keep.txt").read_text() == "precious"


def test_scratch_writes_and_drops_never_touch_other_data(spark, cfg):
    """A staging name that points at a real table (or a folder of someone's files) is neither
    overwritten nor deleted; a real scratch table is."""
    loc = Path(table_location(cfg, "synthetic_staging"))
    loc.mkdir(parents=True)
    (loc / "keep.txt").write_text("precious")
    df = spark.createDataFrame([(1, D1)], "x int, dt date")
    with pytest.raises(StorageError, match="exists and is not a scratch table"):
        write_table(df, cfg, "synthetic_staging", partition_by=["dt"], scratch=True)
    drop_scratch_table(spark, cfg, "synthetic_staging")
    assert (loc / "keep.txt").read_text() == "precious"
    write_table(df, cfg, "candidates", partition_by=["dt"])  # a real table is not dropped either
    drop_scratch_table(spark, cfg, "candidates")
    assert read_table(spark, cfg, "candidates").count() == 1

    (loc / "keep.txt").unlink()
    loc.rmdir()
    write_table(df, cfg, "synthetic_staging", partition_by=["dt"], scratch=True)
    assert read_table(spark, cfg, "synthetic_staging").count() == 1
    drop_scratch_table(spark, cfg, "synthetic_staging")
    assert not loc.exists()


# --------------------------------------------------------------------------------------
# 4, 11: one answer per exposure, however the dates are grouped
# --------------------------------------------------------------------------------------


def _dup_logs(spark, cfg):
    exposures = [
        exposure("e1", day=D1), exposure("e2", day=D1),
        exposure("e1", day=D2),                          # e1 again, a day later
        exposure("e3", day=D2, scenario="zz"),          # a bad row on D2 ...
        exposure("e3", day=D3),                          # ... so D3's e3 is the first valid one
        exposure("e4", day=D3),
    ]
    clicks = [dict(exposure_id="e1", click_time=ts(D1, 10, 5), dt=D1),
              dict(exposure_id="e1", click_time=ts(D2, 10, 5), dt=D2)]
    write_raw(spark, cfg, exposures, clicks, [])


def test_duplicate_exposure_same_answer_for_range_and_nightly_builds(spark, cfg, cfg_factory, tmp_path):
    _dup_logs(spark, cfg)
    build_samples(spark, cfg, "2026-01-01", "2026-01-03")
    ranged = (_rows(spark, cfg, "samples", ("exposure_id", "dt", "label_ctr")),
              _rows(spark, cfg, "quarantine", ("source", "reason", "exposure_id", "dt")))

    nightly_cfg = cfg_factory(f"storage.root={tmp_path / 'nightly'}", "features.min_count=1",
                              "features.numeric_buckets=4", "features.quantile_relative_error=0.0")
    _dup_logs(spark, nightly_cfg)
    for day in ("2026-01-01", "2026-01-02", "2026-01-03"):
        build_samples(spark, nightly_cfg, day, day)
    nightly = (_rows(spark, nightly_cfg, "samples", ("exposure_id", "dt", "label_ctr")),
               _rows(spark, nightly_cfg, "quarantine", ("source", "reason", "exposure_id", "dt")))
    assert ranged == nightly
    samples, quarantine = ranged
    assert [r[0] for r in samples] == ["e1", "e2", "e3", "e4"]  # each exposure once
    assert ("raw_exposures", "duplicate_exposure", "e1", D2) in quarantine
    assert ("raw_exposures", "unknown_scenario", "e3", D2) in quarantine


def test_exact_tie_duplicates_keep_the_same_row_whatever_the_input_order(spark):
    a = exposure("e1", user_city="c1")
    b = exposure("e1", user_city="c2")  # same id, same event_time: an exact tie
    schema = load_schema("synthetic_exposures")
    kept = set()
    for order in ([a, b], [b, a], [b, a, exposure("e9")]):
        df = spark.createDataFrame([tuple(r[c] for c in schema.names) for r in order], schema.struct)
        for parts in (1, 3):
            good, _ = check_exposures(df.repartition(parts), ["a"], {})
            kept |= {r["user_city"] for r in good.where("exposure_id = 'e1'").collect()}
    assert kept == {"c1"}  # one row, always the same (the smaller content)


# --------------------------------------------------------------------------------------
# 5-8: bad rows named, colliding columns, empty scenarios
# --------------------------------------------------------------------------------------


def test_colliding_extra_column_is_dropped_with_a_warning(spark, cfg, caplog):
    write_raw(spark, cfg, [exposure("e1")], [dict(exposure_id="e1", click_time=ts(D1, 10, 5), dt=D1)], [])
    schema = load_schema("synthetic_exposures")
    with_extras = spark.createDataFrame([tuple(exposure("e1")[c] for c in schema.names)], schema.struct) \
        .withColumn("label_ctr", F.lit(7)).withColumn("f_price", F.lit("x"))
    write_table(with_extras, cfg, "raw_exposures", partition_by=["dt"])
    with caplog.at_level(logging.WARNING):
        build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    assert "dropping extra columns ['label_ctr', 'f_price']" in caplog.text
    got = read_table(spark, cfg, "samples").select("exposure_id", "label_ctr").collect()
    assert [tuple(r) for r in got] == [("e1", 1)]


def test_spec_is_written_only_after_the_samples_commit(spark, cfg, monkeypatch):
    write_raw(spark, cfg, [exposure("e1")], [], [])
    import hinet_spark.features.build as samples_mod

    def failing_write(df, cfg_, key, **kw):
        raise RuntimeError(f"disk full writing {key}")

    monkeypatch.setattr(samples_mod, "write_table", failing_write)
    with pytest.raises(RuntimeError, match="disk full"):
        build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    assert not spec_path(cfg).exists()  # no current spec without samples built with it


def test_refit_killed_before_the_commit_keeps_the_old_spec_current(spark, cfg, monkeypatch):
    write_raw(spark, cfg, [exposure("e1"), exposure("e2", price=50.0, day=D2)], [], [])
    old = build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    import hinet_spark.features.build as samples_mod

    real = samples_mod.write_table

    def dies_on_quarantine(df, cfg_, key, **kw):
        if key == "quarantine":
            raise KeyboardInterrupt("killed")  # after samples were written, before the switch
        return real(df, cfg_, key, **kw)

    monkeypatch.setattr(samples_mod, "write_table", dies_on_quarantine)
    with pytest.raises(KeyboardInterrupt):
        build_samples(spark, cfg, "2026-01-02", "2026-01-02", refit=True)
    assert FeatureSpec.load(spec_path(cfg)).hash == old.spec_hash  # still the current one
    monkeypatch.setattr(samples_mod, "write_table", real)
    new = build_samples(spark, cfg, "2026-01-02", "2026-01-02", refit=True)
    assert new.spec_hash != old.spec_hash
    assert FeatureSpec.load(spec_path(cfg)).hash == new.spec_hash
    for h in (old.spec_hash, new.spec_hash):  # both kept, side by side
        assert FeatureSpec.load(spec_archive(cfg, h)).hash == h


def test_changed_feature_setting_without_refit_is_an_error(spark, cfg, cfg_factory):
    write_raw(spark, cfg, [exposure("e1")], [], [])
    build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    changed = cfg_factory("features.min_count=1", "features.numeric_buckets=10",
                          "features.quantile_relative_error=0.0")
    with pytest.raises(FeatureSpecError, match=r"features\.numeric_buckets: spec 4, config 10.*--refit"):
        build_samples(spark, changed, "2026-01-01", "2026-01-01")


def test_null_or_wrong_dt_inf_and_out_of_range_are_quarantined(spark, cfg, caplog):
    schema = load_schema("synthetic_exposures")
    exposures = [exposure("ok"), exposure("nodt", dt=None), exposure("wrongdt", dt=D2),
                 exposure("inf", price=float("inf")), exposure("hour", hour_of_day=99),
                 exposure("rating", item_rating=7.5), exposure("ordered"),
                 exposure("undated", dt=None, event_time=None)]  # no build can place it: warned, not read
    clicks = [dict(exposure_id="ordered", click_time=ts(D1, 10, 5), dt=D1),
              dict(exposure_id="ok", click_time=ts(D1, 10, 5), dt=None),
              dict(exposure_id="ok", click_time=None, dt=None)]
    orders = [dict(exposure_id="ordered", order_time=ts(D1, 11), amount=float("nan"), dt=D1)]
    write_raw(spark, cfg, exposures, clicks, orders)
    # these are not generate_synthetic's tables: the ranges are the user's (features.numeric_ranges)
    cfg = dataclasses.replace(cfg, features=dataclasses.replace(
        cfg.features, numeric_ranges={"hour_of_day": (0, 23), "item_rating": (0, 5)}))
    with caplog.at_level(logging.WARNING):
        report = build_samples(spark, cfg, "2026-01-01", "2026-01-02")
    undated = sorted(r.getMessage().split(";")[0] for r in caplog.records if "neither dt nor" in r.getMessage())
    assert undated == ["raw_clicks: 1 rows have neither dt nor click_time",
                       "raw_exposures: 1 rows have neither dt nor event_time"]
    q = _rows(spark, cfg, "quarantine", ("source", "reason", "exposure_id"))
    assert q == sorted([
        ("raw_exposures", "bad_dt", "nodt"), ("raw_exposures", "bad_dt", "wrongdt"),
        ("raw_exposures", "bad_numeric:price", "inf"), ("raw_exposures", "out_of_range:hour_of_day", "hour"),
        ("raw_exposures", "out_of_range:item_rating", "rating"), ("raw_clicks", "bad_dt", "ok"),
        ("raw_orders", "bad_amount", "ordered")])
    labels = dict(_rows(spark, cfg, "samples", ("exposure_id", "label_ctcvr")))
    assert labels == {"ok": 0, "ordered": 0}  # a NaN amount is no order
    assert report.read["raw_exposures"] == 7 and schema.ranges(["hour_of_day"]) == {"hour_of_day": (0, 23)}


def test_feature_columns_are_whatever_features_names(spark, cfg_factory):
    # the contract requires keys, scenario, times and date; features are the configured columns
    cfg = cfg_factory("features.numeric=[basket_value]", "features.categorical=[tier]",
                      "features.hashed={user_id: 100}", "features.min_count=1", "features.numeric_buckets=2",
                      "features.numeric_ranges={basket_value: [0, 100]}")
    required = load_schema("raw_exposures").names
    rows = [{**{c: exposure(e)[c] for c in required}, "basket_value": v, "tier": t}
            for e, v, t in (("e1", 10.0, "gold"), ("e2", 500.0, "gold"), ("e3", 20.0, "silver"))]
    write_raw(spark, cfg, rows, [dict(exposure_id="e1", click_time=ts(D1, 10, 5), dt=D1)], [])
    report = build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    assert _rows(spark, cfg, "quarantine", ("reason", "exposure_id")) == [("out_of_range:basket_value", "e2")]
    assert report.used["raw_exposures"] == 2
    assert {"f_basket_value", "f_tier", "f_user_id"} <= set(read_table(spark, cfg, "samples").columns)
    # a configured feature missing or of the wrong type: named, with the key
    wrong = cfg_factory("features.numeric=[tier]", "features.categorical=[colour]", "features.hashed={}")
    with pytest.raises(SchemaError, match=r"table raw_exposures: features.numeric: 'tier' is string, expected a "
                                          r"number type; features.categorical: \['colour'\] is not a column"):
        build_samples(spark, wrong, "2026-01-01", "2026-01-01")


def test_every_configured_scenario_is_reported_with_zeros(spark, cfg, caplog):
    write_raw(spark, cfg, [exposure("e1")], [], [])
    with caplog.at_level(logging.WARNING):
        report = build_samples(spark, cfg, "2026-01-01", "2026-01-01")
    assert list(report.per_scenario) == ["a", "b", "c", "d", "e", "f"]
    assert report.per_scenario["e"] == {"exposures_read": 0, "samples_written": 0, "clicks": 0, "orders": 0}
    assert "scenarios with no exposures in 2026-01-01..2026-01-01: ['b', 'c', 'd', 'e', 'f']" in caplog.text


# --------------------------------------------------------------------------------------
# 9, 15: damaged tables and concurrent runs get one line
# --------------------------------------------------------------------------------------


def _job_log(capsys, argv):
    code = build_features.main(argv)
    return code, capsys.readouterr().err


def test_damaged_tables_fail_with_one_line_naming_table_and_path(spark, cfg, capsys):
    write_raw(spark, cfg, [exposure("e1"), exposure("e2")], [], [])
    argv = ["--set", f"storage.root={cfg.storage.root}", "--date", "2026-01-01"]
    loc = Path(table_location(cfg, "raw_exposures"))
    next(loc.rglob("*.parquet")).unlink()  # a data file deleted behind Delta's back
    code, err = _job_log(capsys, argv)
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert code == 1 and len(errors) == 1, err
    assert f"Delta table 'raw_exposures' at {loc}: a file its log references is missing" in errors[0]
    assert "Traceback" not in err and "at org.apache" not in err

    for log_file in (loc / "_delta_log").glob("*.json"):
        log_file.unlink()  # the log itself deleted
    (loc / "_delta_log" / "00000000000000000001.json").write_text("{}\n")
    code, err = _job_log(capsys, argv)
    errors = [line for line in err.splitlines() if " ERROR " in line]
    assert code == 1 and len(errors) == 1, err
    assert f"Delta table 'raw_exposures' at {loc} cannot be read" in errors[0]
    assert "Traceback" not in err


def test_concurrent_writers_loser_gets_one_clear_error(spark, cfg):
    """Two writers replace the same partition at once; Delta lets one commit; the other gets
    ConcurrentRunError saying a rerun is safe, and the table holds one writer's rows."""
    write_table(spark.createDataFrame([("x", 0, D1)], "w string, i int, dt date"), cfg, "scores",
                partition_by=["dt"])
    slow = F.udf(lambda i: time.sleep(3) or i, T.IntegerType())
    def writer(name):
        df = spark.range(4).select(F.lit(name).alias("w"), slow(F.col("id").cast("int")).alias("i"),
                                   F.lit(D1).alias("dt")).coalesce(1)
        write_table(df, cfg, "scores", partition_by=["dt"], replace_where="dt = '2026-01-01'")

    outcomes = at_once(writer, ("one", "two"))
    failed = [e for e in outcomes.values() if e is not None]
    assert len(failed) == 1, outcomes
    assert isinstance(failed[0], ConcurrentRunError)
    assert "another run committed to dt = '2026-01-01' first" in str(failed[0])
    assert "A rerun is safe" in str(failed[0])
    rows = read_table(spark, cfg, "scores").collect()
    assert len(rows) == 4 and len({r["w"] for r in rows}) == 1


# --------------------------------------------------------------------------------------
# 10: checkpoints belong to one run
# --------------------------------------------------------------------------------------


def test_resume_refuses_finished_or_foreign_checkpoints(tmp_path):
    cfg = load_config()
    dates = {"train": ("2026-01-01", "2026-01-05"), "val": ("2026-01-06", "2026-01-06"),
             "test": ("2026-01-07", "2026-01-07")}
    fp = fingerprint(3, dates, "abc", cfg.model, cfg.train)
    path = tmp_path / "latest.pt"
    check_resumable({"fingerprint": fp, "completed": False, "epoch": 0}, fp, path)  # the same run: fine
    with pytest.raises(CheckpointError, match="from a run that finished"):
        check_resumable({"fingerprint": fp, "completed": True, "epoch": 1}, fp, path)
    newer = fingerprint(4, dates, "abc", cfg.model, cfg.train)
    with pytest.raises(CheckpointError, match="samples_version: checkpoint 3, now 4"):
        check_resumable({"fingerprint": fp, "completed": False}, newer, path)
    other_lr = load_config(None, ["train.learning_rate=0.01", "train.epochs=9"])
    with pytest.raises(CheckpointError, match=r"train\.learning_rate: checkpoint 0\.001, now 0\.01") as err:
        check_resumable({"fingerprint": fp}, fingerprint(3, dates, "abc", other_lr.model, other_lr.train), path)
    assert "epochs" not in str(err.value)  # more epochs is a legitimate resume
    torch.save({"epoch": 0}, path)
    with pytest.raises(CheckpointError, match="does not record"):
        check_resumable(torch.load(path, weights_only=False), fp, path)


# --------------------------------------------------------------------------------------
# 3, 9 as an operator sees them: real job processes, a storage.root with a space
# --------------------------------------------------------------------------------------

TINY = ["synthetic.enabled=true", "synthetic.days=2", "synthetic.exposures_per_day=500", "synthetic.candidates_per_day=100",
        "synthetic.calibration_rows_per_scenario=1000"]


def _job(script: str, root: Path, *args: str) -> subprocess.CompletedProcess:
    sets = [x for o in (f"storage.root={root}", *TINY) for x in ("--set", o)]
    return subprocess.run([sys.executable, f"jobs/{script}.py", *sets, *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_root_with_a_space_works_and_a_deleted_file_is_one_line(tmp_path):
    root = tmp_path / "odd root" / "data"
    for script in ("generate_synthetic", "build_features"):
        done = _job(script, root)
        assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "samples" / "_delta_log").is_dir()
    victim = next((root / "raw_exposures").rglob("*.parquet"))
    victim.unlink()
    done = _job("build_features", root)
    out = done.stdout + done.stderr
    assert done.returncode == 1
    ours = [line for line in out.splitlines() if " ERROR " in line and "job failed" in line]
    assert len(ours) == 1 and f"Delta table 'raw_exposures' at {root / 'raw_exposures'}: a file its log " \
                                "references is missing" in ours[0], out[-3000:]
    assert "Traceback" not in out and "\tat org.apache" not in out, out[-3000:]


# --------------------------------------------------------------------------------------
# Issue #25: concurrent builds and trainings, copied roots, config bombs
# --------------------------------------------------------------------------------------


def test_concurrent_builds_cannot_mix_feature_specs(spark, cfg, monkeypatch):
    """Two builds on a fresh root fit different specs at once; one commit wins, the other
    writes nothing and says why; samples and feature_spec.json agree on one spec."""
    import hinet_spark.features.build as samples_mod
    from hinet_spark.features.build import claimed_spec

    write_raw(spark, cfg, [exposure("e1", price=10.0), exposure("e2", price=90.0, day=D2)], [], [])
    real = samples_mod.claim_spec
    both_fitted = threading.Barrier(2, timeout=120)

    def claim_together(*args, **kw):
        both_fitted.wait()  # each build has read "no spec" and fitted its own: the race of the issue
        return real(*args, **kw)

    monkeypatch.setattr(samples_mod, "claim_spec", claim_together)
    outcomes = at_once(lambda day: build_samples(spark, cfg, day, day), ("2026-01-01", "2026-01-02"))
    failed = {d: e for d, e in outcomes.items() if e is not None}
    assert len(failed) == 1, outcomes
    (loser, exc), = failed.items()
    assert isinstance(exc, ConcurrentRunError) and "wrote no samples" in str(exc), repr(exc)
    hashes = {r["spec_hash"] for r in read_table(spark, cfg, "samples").select("spec_hash").distinct().collect()}
    winner = claimed_spec(spark, cfg)["spec_hash"]
    assert hashes == {winner} == {FeatureSpec.load(spec_path(cfg)).hash}
    assert {str(r["dt"]) for r in read_table(spark, cfg, "samples").select("dt").distinct().collect()} == \
        {d for d in ("2026-01-01", "2026-01-02") if d != loser}
    monkeypatch.setattr(samples_mod, "claim_spec", real)
    again = build_samples(spark, cfg, loser, loser)  # the loser's rerun builds with the winner's spec
    assert again.spec_hash == winner and not again.spec_fitted


def test_checkpoints_belong_to_their_run(tmp_path):
    from hinet_spark.train.checkpoints import foreign_checkpoint, run_dir, run_lock

    cfg = load_config()
    dates = {"train": ("2026-01-01", "2026-01-05"), "val": ("2026-01-06", "2026-01-06"),
             "test": ("2026-01-07", "2026-01-07")}
    one = fingerprint(3, dates, "abc", cfg.model, cfg.train)
    other_cfg = load_config(None, ["train.learning_rate=0.01"])
    two = fingerprint(3, dates, "abc", other_cfg.model, other_cfg.train)
    assert run_dir(tmp_path, one) != run_dir(tmp_path, two)  # overlapping runs never share latest.pt
    assert run_dir(tmp_path, one) == run_dir(tmp_path, fingerprint(3, dates, "abc", cfg.model, cfg.train))
    with run_lock(run_dir(tmp_path, one)):
        with pytest.raises(CheckpointError, match=r"another training run with the same data and settings holds"):
            with run_lock(run_dir(tmp_path, one)):
                pass
    assert not (run_dir(tmp_path, one) / "run.lock").exists()
    # a lock left by a process that is gone is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import json as _json
    import socket

    (run_dir(tmp_path, one) / "run.lock").write_text(_json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with run_lock(run_dir(tmp_path, one)):
        pass
    # --resume without a checkpoint of its own finds the other run's, to name what differs
    run_dir(tmp_path, two).mkdir(parents=True)
    torch.save({"fingerprint": two, "completed": False}, run_dir(tmp_path, two) / "latest.pt")
    found = foreign_checkpoint(tmp_path, run_dir(tmp_path, one))
    assert found == run_dir(tmp_path, two) / "latest.pt"
    with pytest.raises(CheckpointError, match=r"train\.learning_rate: checkpoint 0\.01, now 0\.001"):
        check_resumable(torch.load(found, weights_only=False), one, found)


def test_a_copied_root_never_writes_into_the_original(tmp_path):
    import shutil

    from hinet_spark.ops.mlflow_store import setup

    original = tmp_path / "prod"
    setup(load_config(None, [f"storage.root={original}"]))
    shutil.copytree(original, tmp_path / "staging")
    with pytest.raises(StorageError, match=rf"keeps its artifacts at {re.escape((original / 'mlflow_artifacts').as_uri())}"
                                           r"/hinet-spark, outside this storage\.root's .*staging/mlflow_artifacts"):
        setup(load_config(None, [f"storage.root={tmp_path / 'staging'}"]))
    setup(load_config(None, [f"storage.root={original}"]))  # the original itself is fine


def test_yaml_alias_bombs_are_refused_and_long_values_clipped(tmp_path):
    lines = ["spark:", "  extra_conf: {}", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 40)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    assert bomb.stat().st_size < 2000
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"bomb\.yaml: expands to [\d,]+ values through YAML aliases"):
        load_config(bomb)
    assert time.perf_counter() - started < 10  # refused before anything walks it (was: MemoryError after 167 s)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["train.batch_size=" + "9x" * 362])
    assert len(str(err.value)) < 400 and "... (726 characters)" in str(err.value), err.value


def test_an_oracle_table_under_the_root_does_not_make_real_logs_synthetic(spark, cfg_factory):
    # a root that once held generate_synthetic's tables (its oracle is still there) now holds
    # real logs: only the real config's ranges apply (synthetic.enabled is false, the default),
    # whatever tables the root holds; the synthetic layout's own ranges only when the config says so
    real = cfg_factory("synthetic.enabled=false", "features.min_count=1", "features.numeric_buckets=4",
                       "features.quantile_relative_error=0.0", "features.numeric_ranges={item_rating: [0, 10]}")
    write_table(spark.createDataFrame([("x", 0.1, 0.01, D1)], "exposure_id string, p_ctr double, p_ctcvr double, "
                                      "dt date"), real, "oracle", partition_by=["dt"])
    write_raw(spark, real, [exposure("ok"), exposure("hot", hour_of_day=99), exposure("eight", item_rating=8.0),
                            exposure("eleven", item_rating=11.0)], [], [])
    build_samples(spark, real, "2026-01-01", "2026-01-01")
    assert _rows(spark, real, "quarantine", ("reason", "exposure_id")) == [("out_of_range:item_rating", "eleven")]
    synthetic = dataclasses.replace(real, synthetic=dataclasses.replace(real.synthetic, enabled=True))
    assert numeric_ranges(synthetic)["hour_of_day"] == (0, 23)  # schemas/synthetic_exposures.json
    assert numeric_ranges(real)["hour_of_day"] == (None, None)
    assert numeric_ranges(synthetic)["item_rating"] == (0, 10)  # the config's own range wins over the layout's
