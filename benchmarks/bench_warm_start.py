"""A week of nightly runs: warm start from last night's model vs retraining from scratch.

    .venv/bin/python -m benchmarks.bench_warm_start --root /tmp/hinet-warm [--days 14] [--nights 7]

Generates ``--days`` of synthetic logs (``--exposures`` per day) and builds their samples once.
Then for each night D (the last ``--nights`` days): *scratch* trains a new model on the
``--window`` days before D-1 (validation D-1, test D); *warm* starts from the previous night's
warm model (the first night: from that night's scratch model) and trains on the last
``train.warm_start_window_days`` (1) day only. Same seed, local launcher, default schedule.
Prints per night both test mean AUCs and training seconds, then the means.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics

from hinet_spark.config import load_config
from hinet_spark.features.build import build_samples
from hinet_spark.lifecycle.tracking import log_training
from hinet_spark.ops.spark import get_spark
from hinet_spark.train.loop import fit
from hinet_spark.train.snapshot import rolling_split
from jobs import generate_synthetic


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--nights", type=int, default=7)
    ap.add_argument("--window", type=int, default=7)
    ap.add_argument("--exposures", type=int, default=20000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = [f"storage.root={args.root}", "synthetic.enabled=true", f"synthetic.days={args.days}", f"synthetic.exposures_per_day={args.exposures}",
            "synthetic.candidates_per_day=1000", "train.launcher=local", f"train.window_days={args.window}",
            "mlflow.promote=false", "mlflow.registered_model=hinet-warm-bench"]
    assert generate_synthetic.main([x for o in base for x in ("--set", o)]) == 0
    cfg = load_config(None, base)
    spark = get_spark(cfg)
    start = dt.date.fromisoformat(cfg.synthetic.start_date)
    last = start + dt.timedelta(days=args.days - 1)
    build_samples(spark, cfg, start.isoformat(), last.isoformat())
    print("night       scratch AUC  scratch s  warm AUC  warm s")
    rows, warm_version = [], None
    for k in range(args.nights):
        night = (last - dt.timedelta(days=args.nights - 1 - k)).isoformat()
        nightly = rolling_split(cfg, night)
        scratch = fit(spark, nightly)
        scratch_logged = log_training(nightly, scratch, spark)
        if warm_version is None:
            warm, warm_version = scratch, scratch_logged["version"]
        else:
            warm = fit(spark, nightly, warm_start=warm_version)
            warm_version = log_training(nightly, warm, spark)["version"]
        rows.append((scratch.test.mean_auc, scratch.train_seconds, warm.test.mean_auc, warm.train_seconds))
        print(f"{night}  {rows[-1][0]:11.4f}  {rows[-1][1]:9.1f}  {rows[-1][2]:8.4f}  {rows[-1][3]:6.1f}", flush=True)
    later = rows[1:]  # the first night's warm model is its scratch model
    print(f"mean over nights 2-{len(rows)}: scratch AUC {statistics.mean(r[0] for r in later):.4f}, "
          f"{statistics.mean(r[1] for r in later):.1f} s; warm AUC {statistics.mean(r[2] for r in later):.4f}, "
          f"{statistics.mean(r[3] for r in later):.1f} s")


if __name__ == "__main__":
    main()
