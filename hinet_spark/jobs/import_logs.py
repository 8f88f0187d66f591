"""Import your logs, in your own layout, into the raw tables through a mapping file.

    spark-submit jobs/import_logs.py --conf conf/shop.yaml --mapping conf/mappings/shop_logs.yaml \
        --start-date 2026-01-01 --end-date 2026-01-08

Inputs: your exposures, clicks and orders (and candidates), from any Spark source the mapping
names (a table, or a Parquet / Delta / CSV / JSON path). Outputs: raw_exposures, raw_clicks,
raw_orders (and candidates) for the dates given, replacing exactly those dates;
import_quarantine (the rows that broke the contract, with the reason and the original row).
Logs counts per source (read = imported + quarantined + outside the range) and a data report
per scenario. Exit code 1 on any error: a mapping that does not fit your tables names the
mapping file and the key. docs/your_data.md walks through it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from hinet_spark.cli import add_offset_arg, base_parser, run_job
from hinet_spark.config import Config, ConfigError
from hinet_spark.dates import shift
from hinet_spark.errors import UsageError
from hinet_spark.ingest.importing import import_logs, load_mapping, report_text
from hinet_spark.ops.progress import stage_progress
from hinet_spark.ops.spark import get_spark

logger = logging.getLogger("import_logs")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--mapping", required=True, help="mapping file (conf/mappings/*.yaml)")
    parser.add_argument("--date", help="import one date (YYYY-MM-DD)")
    parser.add_argument("--start-date", help="first date of the range (YYYY-MM-DD)")
    parser.add_argument("--end-date", help="last date of the range (YYYY-MM-DD)")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.date and (args.start_date or args.end_date):
        raise UsageError("give either --date or --start-date/--end-date, not both")
    if not args.date and not (args.start_date and args.end_date):
        raise UsageError("import_logs needs dates: pass --date YYYY-MM-DD, or --start-date and --end-date")
    if cfg.synthetic.enabled:
        raise ConfigError("synthetic.enabled is true: this config says the tables are generate_synthetic's, so the "
                          "synthetic layout's numeric ranges and dates would be applied to your logs; import under a "
                          "config of your own (synthetic.enabled: false, the default of conf/base.yaml; "
                          "docs/your_data.md)")
    start, end = (shift(d, args.offset_days) for d in
                  ((args.date, args.date) if args.date else (args.start_date, args.end_date)))
    mapping = load_mapping(args.mapping, cfg)
    spark = get_spark(cfg)
    with stage_progress(spark, cfg.spark.progress_seconds, "import_logs"):
        report = import_logs(spark, cfg, mapping, start, end)
    logger.debug("report: %s", json.dumps(report.__dict__, sort_keys=True, default=str))
    logger.info("import_logs %s..%s done\n%s", start, end, report_text(report))
    quiet = [r["scenario"] for r in report.per_scenario if r["rows"] == 0]
    if quiet:
        logger.warning("scenarios with no exposures in %s..%s: %s (is the mapping's scenarios: section complete?)",
                       start, end, quiet)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
