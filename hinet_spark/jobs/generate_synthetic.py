"""Write the embedded default's raw logs: exposures, clicks, orders, candidates and the oracle.

    spark-submit jobs/generate_synthetic.py --conf conf/local.yaml [--set synthetic.days=3]

Outputs (Delta, partitioned by dt): raw_exposures, raw_clicks, raw_orders, candidates (the
day after the last logged day) and oracle (true probabilities; never a feature). Rerunning
replaces exactly the generated dates.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
from collections.abc import Sequence

from pyspark.sql import functions as F

from hinet_spark.cli import base_parser, run_job
from hinet_spark.config import Config, ConfigError, synthetic_dates, validate_synthetic
from hinet_spark.ingest import foreign_layout
from hinet_spark.ingest.synthetic import generate, split
from hinet_spark.ops.io import drop_scratch_table, read_table, write_table
from hinet_spark.ops.progress import stage_progress
from hinet_spark.ops.spark import get_spark

logger = logging.getLogger("generate_synthetic")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--foreign-layout", metavar="DIR",
                        help="also write the logs to DIR in a made-up shop's own layout (Parquet, CSV, JSON; "
                             "hinet_spark/ingest/foreign_layout.py), the worked example of docs/your_data.md")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if not cfg.synthetic.enabled:
        raise ConfigError("synthetic.enabled is false: this config is for real logs, and the jobs would treat the "
                          "generated tables as real (no synthetic dates, ranges or SAN check); generate under a "
                          "config that says synthetic.enabled: true (conf/local.yaml does)")
    validate_synthetic(cfg)  # the one job that needs the synthetic section to fit the scenarios
    spark = get_spark(cfg)
    with stage_progress(spark, cfg.spark.progress_seconds, "generate_synthetic"):
        _generate(spark, cfg)
        if args.foreign_layout:
            counts = foreign_layout.export(spark, cfg, args.foreign_layout)
            logger.info("wrote the shop layout to %s: %s", args.foreign_layout,
                        ", ".join(f"{k} {v} rows" for k, v in counts.items()))
    return 0


def _generate(spark, cfg: Config) -> None:
    first, last, cand = synthetic_dates(cfg)
    # Stage every generated row once, then split the staged table into the raw tables.
    write_table(generate(spark, cfg), cfg, "synthetic_staging", partition_by=["dt"], scratch=True)
    try:
        staged = read_table(spark, cfg, "synthetic_staging")
        # with log_candidates_day the candidates are also logged as that day's exposures (they
        # were shown), so the scores of that day can be evaluated against real labels
        last_logged = cand if cfg.synthetic.log_candidates_day else last
        logged = staged.where(F.col("dt") <= F.lit(last_logged).cast("date"))
        tables = split(logged)
        logged_days = f"dt >= '{first}' AND dt <= '{last_logged}'"
        # a click or order may land after midnight, up to the attribution windows later
        spill_end = dt.date.fromisoformat(last_logged) + dt.timedelta(days=1 if last_logged == last else 4)
        spill = f"dt >= '{first}' AND dt <= '{spill_end.isoformat()}'"
        write_table(tables.exposures, cfg, "raw_exposures", partition_by=["dt"], replace_where=logged_days)
        write_table(tables.clicks, cfg, "raw_clicks", partition_by=["dt"], replace_where=spill)
        write_table(tables.orders, cfg, "raw_orders", partition_by=["dt"], replace_where=spill)
        candidates = split(staged.where(F.col("dt") == F.lit(cand).cast("date")))
        write_table(candidates.exposures, cfg, "candidates", partition_by=["dt"],
                    replace_where=f"dt = '{cand}'")
        write_table(split(staged).oracle, cfg, "oracle", partition_by=["dt"],
                    replace_where=f"dt >= '{first}' AND dt <= '{cand}'")
    finally:
        drop_scratch_table(spark, cfg, "synthetic_staging")
    logger.info("generated %d days %s..%s (%d exposures/day) and candidates for %s",
                cfg.synthetic.days, first, last, cfg.synthetic.exposures_per_day, cand)


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
