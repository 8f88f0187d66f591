"""Feature pipeline throughput: build_samples on 1M and 4M synthetic exposures.

    .venv/bin/python -m benchmarks.bench_features [--sizes 1000000 4000000] [--root benchmarks/out]
    .venv/bin/python -m benchmarks.bench_features --behaviour [--rows-per-day 1000000] [--history 7 30]
    .venv/bin/python -m benchmarks.bench_features --vs-sql [--rows-per-day 100000] [--rounds 3]

``--vs-sql``: the price of the project's checks. Generates one day (not timed) and builds it
once (not timed: that night fitted the spec); then, alternating ``--rounds`` times, the
nightly ``build_samples`` of the day (spec reused: quarantine, counts, reconciliation, spec
claim, two Delta writes) and benchmarks/features_sql.py's minimal Spark SQL (the same
dedup, joins and ids, one write). Compares the two outputs row for row (``same_rows=``) and
prints the medians and ``ratio=`` (SQL time / build time; goal >= 0.7).

``--behaviour``: the nightly cost of behaviour counters. Generates ``max(history) + 1`` days
at ``--rows-per-day`` (not timed) and aggregates the history into behaviour_daily (not timed:
earlier nights did it); then, for each history length H, builds day H + 1 once without
counters and once with them (windows 1, 7, 30 over user, item, user+scenario, item+scenario,
every count and rate: the day's aggregation plus the window lookups; each arm reuses the spec
that its build of day H fitted, not timed, as a nightly build does), and prints the times,
``ratio=`` (with / without) and the with-counters time at each H against the shortest (the
cost must not follow the history).

For each size it generates one day of synthetic raw logs (not timed), then times
``build_samples`` for that day (fitting the feature spec, labels, quarantine, both Delta
writes) in the same local Spark session. Prints exposures/s per size and the time ratio of
the largest to the smallest size against the ratio of their row counts (linear scaling:
4x rows in at most 4.4x time).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import shutil
import statistics
import time
from pathlib import Path

from delta.tables import DeltaTable

from benchmarks.features_sql import samples_sql
from hinet_spark.config import load_config
from hinet_spark.features.behaviour import Counters, write_days
from hinet_spark.features.build import build_samples
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.ops.io import read_table, table_location
from hinet_spark.ops.spark import get_spark
from jobs import generate_synthetic

COUNTERS = ["features.behaviour.entities=[user, item, user+scenario, item+scenario]",
            "features.behaviour.windows=[1, 7, 30]"]


def behaviour(args: argparse.Namespace) -> None:
    days = max(args.history) + 1
    root = Path(args.root) / "behaviour"
    shutil.rmtree(root, ignore_errors=True)
    data = [f"storage.root={root}", "synthetic.enabled=true", f"synthetic.days={days}",
            f"synthetic.exposures_per_day={args.rows_per_day}", "synthetic.candidates_per_day=0",
            "synthetic.behaviour_weight=0.8", "spark.driver_memory=8g", "features.dedup_lookback_days=0"]
    assert generate_synthetic.main([x for o in data for x in ("--set", o)]) == 0
    # each arm its own samples table and spec, so both reuse their spec as a nightly build does
    with_cfg = load_config(None, [*data, *COUNTERS])
    without_cfg = load_config(None, [*data, "storage.tables.samples=samples_plain",
                                     "storage.tables.quarantine=quarantine_plain",
                                     "storage.tables.feature_spec_log=feature_spec_log_plain",
                                     f"features.spec_path={root}/feature_spec_plain.json"])
    spark = get_spark(with_cfg)
    counters = Counters.from_section(with_cfg.features.behaviour)
    first = dt.date.fromisoformat(with_cfg.synthetic.start_date)
    start = time.perf_counter()
    write_days(spark, with_cfg, counters, [first + dt.timedelta(days=i - 30) for i in range(30 + days - 1)])
    print(f"history: {days - 1} days x {args.rows_per_day:,d} exposures aggregated in "
          f"{time.perf_counter() - start:.1f} s (not part of a nightly run)", flush=True)
    timed: dict[int, float] = {}
    for h in sorted(args.history):
        day = (first + dt.timedelta(days=h)).isoformat()
        before = (first + dt.timedelta(days=h - 1)).isoformat()
        for cfg in (without_cfg, with_cfg):  # the previous night, which fitted the spec (not timed)
            build_samples(spark, cfg, before, before, refit=True)
        spent = {}
        # the night of `day` has not aggregated it yet: its aggregation is part of the timed build
        DeltaTable.forPath(spark, table_location(with_cfg, "behaviour_daily")).delete(f"dt = '{day}'")
        for name, cfg in (("without", without_cfg), ("with", with_cfg)):
            start = time.perf_counter()
            build_samples(spark, cfg, day, day)  # the nightly build: the spec is reused
            spent[name] = time.perf_counter() - start
        timed[h] = spent["with"]
        print(f"history {h:>2d} days, build {day}: without counters {spent['without']:6.1f} s, with "
              f"{len(counters.feature_names())} counters {spent['with']:6.1f} s, "
              f"ratio={spent['with'] / spent['without']:.2f} (goal <= 1.5)", flush=True)
    short, long = min(timed), max(timed)
    print(f"with counters: {long} days of history {timed[long]:.1f} s vs {short} days {timed[short]:.1f} s: "
          f"x{timed[long] / timed[short]:.2f} (goal <= 1.2)")


def vs_sql(args: argparse.Namespace) -> None:
    root = Path(args.root) / "vs_sql"
    shutil.rmtree(root, ignore_errors=True)
    data = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=1",
            f"synthetic.exposures_per_day={args.rows_per_day}", "synthetic.candidates_per_day=0",
            "spark.driver_memory=8g"]
    assert generate_synthetic.main([x for o in data for x in ("--set", o)]) == 0
    cfg = load_config(None, data)
    spark = get_spark(cfg)
    day = cfg.synthetic.start_date
    build_samples(spark, cfg, day, day, refit=True)  # the night that fitted the spec (not timed)
    spec = FeatureSpec.load(root / "feature_spec.json")
    tables = {}
    for key in ("raw_exposures", "raw_clicks", "raw_orders", "samples"):
        view = f"bench_{key}"
        spark.read.format("delta").load(table_location(cfg, key)).createOrReplaceTempView(view)
        tables[key] = view
    columns = spark.table(tables["raw_exposures"]).columns
    query = samples_sql(cfg, spec, dt.date.fromisoformat(day), tables, columns)
    out = str(root / "samples_sql")
    spent: dict[str, list[float]] = {"build": [], "sql": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        build_samples(spark, cfg, day, day)
        spent["build"].append(time.perf_counter() - start)
        start = time.perf_counter()
        spark.sql(query).write.format("delta").mode("overwrite").partitionBy("scenario", "dt").save(out)
        spent["sql"].append(time.perf_counter() - start)
        print(f"build_samples {spent['build'][-1]:6.1f} s, minimal SQL {spent['sql'][-1]:6.1f} s", flush=True)
    mine = read_table(spark, cfg, "samples").where(f"dt = '{day}'")
    theirs = spark.read.format("delta").load(out).select(*mine.columns)
    only_mine, only_sql = mine.exceptAll(theirs).count(), theirs.exceptAll(mine).count()
    build, sql = statistics.median(spent["build"]), statistics.median(spent["sql"])
    print(f"{args.rows_per_day:,d} exposures, {mine.count():,d} samples: build_samples {build:.1f} s, minimal SQL "
          f"{sql:.1f} s (medians of {args.rounds}); same_rows={'yes' if only_mine == only_sql == 0 else 'NO'} "
          f"(only in build_samples: {only_mine}, only in the SQL: {only_sql}); ratio={sql / build:.2f} (goal >= 0.7)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--root", default="benchmarks/out/features")
    ap.add_argument("--behaviour", action="store_true", help="the nightly cost of behaviour counters")
    ap.add_argument("--vs-sql", action="store_true", help="build_samples against a minimal Spark SQL of one day")
    ap.add_argument("--rounds", type=int, default=3, help="--vs-sql: alternating timed rounds")
    ap.add_argument("--rows-per-day", type=int, default=None, help="default 1,000,000 (--behaviour), 100,000 (--vs-sql)")
    ap.add_argument("--history", type=int, nargs="+", default=[7, 30])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.vs_sql:
        args.rows_per_day = args.rows_per_day or 100_000
        vs_sql(args)
        return
    if args.behaviour:
        args.rows_per_day = args.rows_per_day or 1_000_000
        behaviour(args)
        return
    times: dict[int, float] = {}
    spark = None
    for n in args.sizes:
        root = Path(args.root) / f"n{n}"
        shutil.rmtree(root, ignore_errors=True)
        overrides = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=1", f"synthetic.exposures_per_day={n}",
                     "synthetic.candidates_per_day=0", "spark.driver_memory=8g"]
        assert generate_synthetic.main([x for o in overrides for x in ("--set", o)]) == 0
        cfg = load_config(None, overrides)
        spark = spark or get_spark(cfg)
        start = time.perf_counter()
        report = build_samples(spark, cfg, cfg.synthetic.start_date, cfg.synthetic.start_date, refit=True)
        times[n] = time.perf_counter() - start
        written = sum(v["samples_written"] for v in report.per_scenario.values())
        print(f"{n:>10,d} exposures: {times[n]:7.1f} s, {n / times[n]:9,.0f} exposures/s "
              f"({written:,d} samples written)", flush=True)
    small, large = min(times), max(times)
    if small != large:
        print(f"rows x{large / small:.1f} -> time x{times[large] / times[small]:.2f} "
              f"(linear scaling goal: <= x{1.1 * large / small:.1f})")


if __name__ == "__main__":
    main()
