"""Move the champion alias by hand: promote a version, roll back, or show the history.

    python jobs/manage_model.py --conf conf/local.yaml promote --version 3 --reason "v4 regressed on b"
    python jobs/manage_model.py --conf conf/local.yaml rollback --reason "scores drifted after v5"
    python jobs/manage_model.py --conf conf/local.yaml history

Every move (by training or by hand) is recorded with its reason, one MLflow run per move in
the experiment ``<mlflow.experiment>-champion-history``; ``rollback`` returns champion to the version it replaced. Scoring
uses ``champion`` from its next run. Exit code 1 on any error.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from hinet_spark.cli import base_parser, run_job
from hinet_spark.config import Config
from hinet_spark.lifecycle.promotion import history_lines, rollback, set_champion
from hinet_spark.ops.mlflow_store import setup

logger = logging.getLogger("manage_model")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    promote = sub.add_parser("promote", help="make a version the champion")
    promote.add_argument("--version", required=True, help="registered model version")
    promote.add_argument("--reason", required=True, help="why (kept in the history)")
    back = sub.add_parser("rollback", help="champion back to the version it replaced")
    back.add_argument("--reason", required=True, help="why (kept in the history)")
    sub.add_parser("history", help="print the champion moves")
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    setup(cfg)
    if args.action == "promote":
        entry = set_champion(cfg, args.version, args.reason, "promote")
    elif args.action == "rollback":
        entry = rollback(cfg, args.reason)
    else:
        entries = history_lines(cfg)
        logger.info("champion history of %s (%d entries, oldest first):\n%s", cfg.mlflow.registered_model,
                    len(entries), "\n".join(entries))
        return 0
    logger.info("champion of %s is now version %s (was %s)", cfg.mlflow.registered_model, entry["version"],
                entry["previous"])
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
