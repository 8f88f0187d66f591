"""Compare HiNet with the baselines (and ablations) on your samples table, and recommend one.

    spark-submit jobs/compare_models.py --conf conf/shop.yaml --end-date 2026-01-08 --seeds 3

Inputs: the samples table and feature spec build_features wrote (any data: the scenarios,
features and splits of your config; --end-date D: test on D, validate on D-1, train on the
train.window_days before). Outputs: a markdown report (--out, default
<storage.root>/comparisons/compare-<test day>.md) with test AUC and logloss per scenario x
task, test counts, paired per-seed differences against HiNet with 95% t-intervals, the
settings each model's small grid chose on validation, with --without-behaviour each model's
lift from the behaviour counters (paired seeds), and a recommendation; one MLflow run in
<mlflow.experiment>-comparisons with the report. Never registers a model or moves an alias.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import mlflow

from hinet_spark.cli import add_offset_arg, base_parser, run_job
from hinet_spark.config import Config
from hinet_spark.dates import shift
from hinet_spark.lifecycle.compare import (
    BASELINES,
    DEFAULT_GRID,
    NO_BEHAVIOUR,
    compare,
    interval,
    paired,
    parse_grid,
    recommendation,
    render,
    run_record,
)
from hinet_spark.ops.mlflow_store import tracking_uri, use_experiment
from hinet_spark.ops.spark import get_spark
from hinet_spark.train.snapshot import rolling_split

logger = logging.getLogger("compare_models")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--end-date", help="test on this day, validate on the day before, train on the "
                                           "train.window_days before that (default: the train.* split dates)")
    parser.add_argument("--models", default=",".join(("hinet", *BASELINES)),
                        help="comma-separated models and ablations (hinet_no_san, hinet_no_gating, ...); "
                             "default: HiNet and the five baselines")
    parser.add_argument("--without-behaviour", action="store_true",
                        help="also train every model without the behaviour counters (<model>-nobh, same samples, "
                             "paired seeds) and report each model's lift")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model (default 3)")
    parser.add_argument("--grid", action="append", default=None, metavar="KEY=V1,V2",
                        help="a tuning axis, repeatable (default: " + " ".join(DEFAULT_GRID) + "); "
                             "--grid none: no tuning, the config's settings")
    parser.add_argument("--out", help="markdown report (default <storage.root>/comparisons/compare-<test day>.md)")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.end_date:
        cfg = rolling_split(cfg, shift(args.end_date, args.offset_days))
    specs = list(DEFAULT_GRID) if args.grid is None else [g for g in args.grid if g != "none"]
    grid = parse_grid(specs, cfg)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if args.without_behaviour:
        models += [m + NO_BEHAVIOUR for m in models if not m.endswith(NO_BEHAVIOUR) and m + NO_BEHAVIOUR not in models]
    spark = get_spark(cfg)
    logger.info("comparing %s, %d seeds, grid of %d settings per model (%d training runs)", models, args.seeds,
                len(grid), len(models) * (len(grid) + args.seeds - 1))
    result = compare(spark, cfg, models, args.seeds, grid)
    result.train_command = " ".join(["spark-submit jobs/train_hinet.py", *(["--conf", shlex.quote(args.conf)] if args.conf else []),
                                     *(["--end-date", args.end_date] if args.end_date else []),
                                     *([f"--offset-days {args.offset_days}"] if args.offset_days else [])])
    result.overrides = dict(o.split("=", 1) for o in args.overrides)
    report = render(result)
    out = Path(args.out or Path(cfg.storage.root) / "comparisons" / f"compare-{result.dates['test'][1]}.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report)
    text, rec = recommendation(result)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    use_experiment(cfg, f"{cfg.mlflow.experiment}-comparisons")
    with mlflow.start_run(run_name=f"compare-{result.dates['test'][1]}"), tempfile.TemporaryDirectory() as tmp:
        mlflow.log_params({"models": ",".join(models), "seeds": args.seeds, "grid": " ".join(specs)[:500],
                           "test": "..".join(result.dates["test"])})
        for m in models:
            if m != "hinet":
                mean, lo, hi = interval(paired(result, m))
                mlflow.log_metrics({f"vs_hinet.{m}.mean": mean, f"vs_hinet.{m}.lo": lo, f"vs_hinet.{m}.hi": hi})
        mlflow.set_tag("recommendation", text[:5000])
        (Path(tmp) / out.name).write_text(report)
        mlflow.log_artifact(str(Path(tmp) / out.name))
        mlflow.log_dict([run_record(r) for r in [*result.tuning, *(r for r in result.runs if r.seed > 0)]],
                        "comparison_runs.json")
    logger.info("compare_models done: report %s\n%s", out, report)
    logger.info("recommendation: %s", text)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
