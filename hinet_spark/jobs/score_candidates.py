"""Score one day's candidates with the registered HiNet and write the Delta scores table.

    spark-submit jobs/score_candidates.py --conf conf/local.yaml --date 2026-01-08
    spark-submit jobs/score_candidates.py --date 2026-01-08 --scenarios a,b --model 3

Inputs: candidates (schemas/candidates.json) for --date, the model from the MLflow registry
(``scoring.model`` or --model: an alias such as champion, a version number, or a run id),
and, with ``scoring.feature_spec=pipeline``, the pipeline's feature spec, which must equal
the model's. Outputs: scores (Delta, partitioned by scenario and dt; schemas/scores.json),
scores_quarantine (candidates not scored, with the reason), and an MLflow run in the
experiment ``<mlflow.experiment>-scoring`` (rows per scenario, out-of-vocabulary counts,
score mean/p50/p99 and histograms). Rerunning a date replaces exactly that date and those
scenarios. Exit code 1 on any error; a failed run leaves the scores table as it was.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from hinet_spark.cli import add_offset_arg, base_parser, run_job
from hinet_spark.config import Config, layout_dates
from hinet_spark.dates import shift
from hinet_spark.ops.progress import stage_progress
from hinet_spark.ops.spark import get_spark
from hinet_spark.ops.summary import table
from hinet_spark.scoring.batch import score_candidates

logger = logging.getLogger("score_candidates")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--date", help="candidates date to score (YYYY-MM-DD); default: the synthetic "
                        "candidates day (the day after synthetic.start_date + synthetic.days)")
    parser.add_argument("--scenarios", help="comma-separated scenarios to score (default: all of the model's)")
    parser.add_argument("--model", help="alias, version number or run id (default: scoring.model)")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    date = shift(args.date or layout_dates(cfg, "pass --date YYYY-MM-DD (the candidates' day)")[2],
                 args.offset_days)
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip()) if args.scenarios else None
    spark = get_spark(cfg)
    with stage_progress(spark, cfg.spark.progress_seconds, "score_candidates"):
        report = score_candidates(spark, cfg, date, scenarios, args.model)
    logger.debug("report: %s", json.dumps({"date": report.date, "model": report.model.uri,
                                          "version": report.model.version, "read": report.read,
                                          "scored": report.scored, "quarantined": report.quarantined,
                                          "oov": report.oov, "scores_version": report.scores_version,
                                          "mlflow_run_id": report.mlflow_run_id}, sort_keys=True))
    logger.info("score_candidates %s done: %s (version %s), scores table version %s, MLflow run %s\n%s",
                report.date, report.model.uri, report.model.version, report.scores_version, report.mlflow_run_id,
                summary_table(report))
    return 0


def summary_table(report) -> str:
    rows = [(s, report.read.get(s, 0), n, report.stats.get("p_ctr", {}).get(s, {}).get("mean"),
             report.stats.get("p_ctcvr", {}).get(s, {}).get("mean"),
             None if s not in report.ctcvr_above_ctr else f"{100 * report.ctcvr_above_ctr[s]:.1f}%")
            for s, n in sorted(report.scored.items())]
    q = sum(report.quarantined.values())
    oov = {c: n for c, n in report.oov.items() if n}
    return (table(("scenario", "read", "scored", "mean p_ctr", "mean p_ctcvr", "p_ctcvr > p_ctr"), rows)
            + f"\nquarantined: {f'{q} {report.quarantined}' if q else 'none'}; "
            f"out-of-vocabulary ids: {oov or 'none'}")


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
