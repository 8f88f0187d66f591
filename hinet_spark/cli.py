"""What every job entry point shares: the common flags, logging, config loading."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from hinet_spark.config import Config, load_config
from hinet_spark.errors import OperatorError
from hinet_spark.ops.logs import configure
from hinet_spark.ops.spark import owns_session, stop_session


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--conf", default=None,
                        help="environment config file layered over conf/base.yaml (e.g. conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.batch_size=2048 (repeatable)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="level of the project's own log lines (default INFO)")
    parser.add_argument("--verbose", action="store_true",
                        help="also show the INFO lines of Spark's Python side, MLflow, Horovod, Petastorm")
    return parser


def add_offset_arg(parser: argparse.ArgumentParser) -> None:
    """``--offset-days``: shift the given date(s), so a scheduler that only knows the trigger
    date (Databricks' ``{{job.trigger.time.iso_date}}``) can ask for yesterday."""
    parser.add_argument("--offset-days", type=int, default=0, metavar="N",
                        help="add N days (negative: earlier) to the date arguments, e.g. -1 for yesterday")


def setup_logging(level: str = "INFO", verbose: bool = False, job: str | None = None) -> None:
    configure(level, verbose, job)


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.conf, args.overrides)


def run_job(main_body: Callable[[argparse.Namespace, Config], int], args: argparse.Namespace) -> int:
    """Set up logging, load the config and run ``main_body(args, cfg)``.

    Any exception turns into exit code 1: a batch job never reports success after a failure.
    A known failure (an :class:`~hinet_spark.errors.OperatorError`: bad config, a damaged or
    missing table, a concurrent run, bad input) is one ERROR line that names the problem, with
    the traceback at DEBUG; anything else is logged with its traceback.

    Under spark-submit the job ends its session (:func:`~hinet_spark.ops.spark.owns_session`):
    a session left to the JVM's shutdown hooks makes a standalone cluster log hundreds of
    ERROR lines (``Master removed our application: FAILED``) after a successful job.
    """
    name = getattr(main_body, "__module__", "job").rsplit(".", 1)[-1]  # hinet_spark.jobs.X -> X
    if name == "__main__":  # run as a script: name the job, not __main__
        name = Path(getattr(sys.modules["__main__"], "__file__", "job")).stem
    setup_logging(args.log_level, getattr(args, "verbose", False), name)
    log = logging.getLogger(name)
    cfg = None
    ends_session = owns_session()
    try:
        cfg = config_from_args(args)
        return int(main_body(args, cfg) or 0)
    except Exception as exc:
        from hinet_spark.ops.io import explain_failure

        explained = explain_failure(exc, cfg) if cfg is not None else None
        if explained or isinstance(exc, OperatorError):
            log.error("job failed: %s", explained or exc)
            log.debug("traceback", exc_info=True)
        else:
            log.exception("job failed")
        return 1
    finally:
        if ends_session:
            stop_session()
