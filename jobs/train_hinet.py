"""Train HiNet (or a baseline) on the samples table and log it to MLflow.

    spark-submit jobs/train_hinet.py --conf conf/local.yaml [--resume] [--set train.launcher=local]

Reads a pinned Delta version of ``samples``, splits it by date (``train.*``), feeds the
training split to ``train.num_proc`` workers through Petastorm (launcher ``train.launcher``:
horovod, torch_distributor or local), evaluates AUC and logloss per scenario x task on the
validation and test splits, and logs params, metrics, plots and the pyfunc model to MLflow,
registered as ``mlflow.registered_model`` with the aliases challenger (and champion when it
beats the current one). Exit code 1 on any error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hinet_spark.cli import add_offset_arg, base_parser, run_job, shift
from hinet_spark.config import Config
from hinet_spark.data import rolling_split
from hinet_spark.spark import get_spark
from hinet_spark.tracking import log_training
from hinet_spark.training import fit

logger = logging.getLogger("train_hinet")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in train.checkpoint_dir")
    parser.add_argument("--end-date", help="nightly split: test on this day, validate on the day before, "
                        "train on the train.window_days before that (default: the train.* dates)")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.end_date:
        cfg = rolling_split(cfg, shift(args.end_date, args.offset_days))
    result = fit(get_spark(cfg), cfg, resume=args.resume)
    logged = log_training(cfg, result)
    logger.info("test mean AUC %.4f; model %s (aliases %s)", result.test.mean_auc or float("nan"),
                logged["model_uri"], ", ".join(logged["aliases"]))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
