"""What every job entry point shares: the common flags, logging, config loading."""

from __future__ import annotations

import argparse
import datetime as dt
import logging
from collections.abc import Callable

from hinet_spark.config import Config, load_config


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", default=None,
                        help="environment config file layered over conf/base.yaml (e.g. conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.batch_size=2048 (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


def add_offset_arg(parser: argparse.ArgumentParser) -> None:
    """``--offset-days``: shift the given date(s), so a scheduler that only knows the trigger
    date (Databricks' ``{{job.trigger.time.iso_date}}``) can ask for yesterday."""
    parser.add_argument("--offset-days", type=int, default=0, metavar="N",
                        help="add N days (negative: earlier) to the date arguments, e.g. -1 for yesterday")


def shift(date: str | None, days: int) -> str | None:
    """``date`` (YYYY-MM-DD) plus ``days``; None stays None. Errors name the bad value."""
    if date is None:
        return None
    try:
        day = dt.date.fromisoformat(date)
    except ValueError as exc:
        raise ValueError(f"date {date!r}: expected YYYY-MM-DD") from exc
    return (day + dt.timedelta(days=days)).isoformat()


def setup_logging(level: str = "INFO") -> None:
    logging.basicConfig(level=getattr(logging, level),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    for noisy in ("py4j", "py4j.clientserver", "urllib3", "alembic", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.conf, args.overrides)


def run_job(main_body: Callable[[argparse.Namespace, Config], int], args: argparse.Namespace) -> int:
    """Set up logging, load the config and run ``main_body(args, cfg)``.

    Any exception is logged with its traceback and turned into exit code 1: a batch job
    never reports success after a failure.
    """
    setup_logging(args.log_level)
    log = logging.getLogger(getattr(main_body, "__module__", "job"))
    try:
        cfg = config_from_args(args)
        return int(main_body(args, cfg) or 0)
    except Exception:
        log.exception("job failed")
        return 1
