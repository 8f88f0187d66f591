"""Feature pipeline throughput: build_samples on 1M and 4M synthetic exposures.

    .venv/bin/python -m benchmarks.bench_features [--sizes 1000000 4000000] [--root benchmarks/out]

For each size it generates one day of synthetic raw logs (not timed), then times
``build_samples`` for that day (fitting the feature spec, labels, quarantine, both Delta
writes) in the same local Spark session. Prints exposures/s per size and the time ratio of
the largest to the smallest size against the ratio of their row counts (linear scaling:
4x rows in at most 4.4x time).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

from hinet_spark.config import load_config
from hinet_spark.features.build import build_samples
from hinet_spark.ops.spark import get_spark
from jobs import generate_synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--root", default="benchmarks/out/features")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
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
