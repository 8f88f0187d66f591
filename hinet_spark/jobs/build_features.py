"""Build the samples table (labels + feature ids) from the raw logs of a date range.

    spark-submit jobs/build_features.py --conf conf/local.yaml --start-date 2026-01-01 --end-date 2026-01-05
    spark-submit jobs/build_features.py --conf conf/local.yaml --date 2026-01-06
    spark-submit jobs/build_features.py --conf conf/local.yaml --behaviour-only --date 2026-01-07

Inputs: raw_exposures, raw_clicks, raw_orders (schemas/). Outputs: samples (Delta,
partitioned by scenario and dt), quarantine (partitioned by source and dt), the feature spec
JSON (fitted on the first run or with --refit, reused otherwise) and, with
``features.behaviour.entities`` set, behaviour_daily (the per-day aggregates the counters sum:
the dates the windows need that it lacks are aggregated first). ``--behaviour-only``
(re)aggregates exactly the given dates into behaviour_daily and writes nothing else: the
nightly step at a day's close, before scoring the next day. Rerunning a date range replaces
exactly those dates. Exit code 1 on any error (nothing is written when the input fails its
schema check).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import sys
from collections.abc import Sequence

from hinet_spark.cli import add_offset_arg, base_parser, run_job
from hinet_spark.config import Config, layout_dates
from hinet_spark.dates import parse_range, shift
from hinet_spark.errors import UsageError
from hinet_spark.features.behaviour import Counters, write_days
from hinet_spark.features.build import build_samples, summary_table
from hinet_spark.ops.progress import stage_progress
from hinet_spark.ops.spark import get_spark

logger = logging.getLogger("build_features")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", help="build one date (YYYY-MM-DD)")
    parser.add_argument("--start-date", help="first date of the range (YYYY-MM-DD)")
    parser.add_argument("--end-date", help="last date of the range (YYYY-MM-DD)")
    parser.add_argument("--refit", action="store_true",
                        help="fit a new feature spec instead of reusing the stored one")
    parser.add_argument("--behaviour-only", action="store_true",
                        help="only (re)aggregate the dates' behaviour_daily rows (features.behaviour), no samples")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def resolve_range(args: argparse.Namespace, cfg: Config) -> tuple[str, str]:
    """--date, or --start-date/--end-date; with neither, the logged days of synthetic data
    (real logs: an error naming the options)."""
    if args.date and (args.start_date or args.end_date):
        raise UsageError("give either --date or --start-date/--end-date, not both")
    if args.date:
        return args.date, args.date
    if args.start_date or args.end_date:
        if not (args.start_date and args.end_date):
            raise UsageError("--start-date and --end-date go together")
        return args.start_date, args.end_date
    first, last, _ = layout_dates(cfg, "pass --date YYYY-MM-DD, or --start-date and --end-date")
    return first, last


def run(args: argparse.Namespace, cfg: Config) -> int:
    start, end = (shift(d, args.offset_days) for d in resolve_range(args, cfg))
    spark = get_spark(cfg)
    if args.behaviour_only:
        return _behaviour_only(spark, cfg, start, end)
    with stage_progress(spark, cfg.spark.progress_seconds, "build_features"):
        report = build_samples(spark, cfg, start, end, refit=args.refit)
    logger.debug("report: %s", json.dumps(report.__dict__, sort_keys=True))
    logger.info("build_features %s..%s done\n%s", start, end, summary_table(report))
    return 0


def _behaviour_only(spark, cfg: Config, start: str, end: str) -> int:
    counters = Counters.from_section(cfg.features.behaviour)
    if not counters.enabled:
        raise UsageError("--behaviour-only: features.behaviour.entities is empty, so there is nothing to aggregate")
    a, b = parse_range(start, end)
    with stage_progress(spark, cfg.spark.progress_seconds, "build_features"):
        rows = write_days(spark, cfg, counters, [a + dt.timedelta(days=i) for i in range((b - a).days + 1)])
    logger.info("build_features --behaviour-only %s..%s done: %d behaviour_daily rows for entities %s",
                start, end, rows, list(counters.entities))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
