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
import dataclasses
import logging
import sys
from collections.abc import Sequence

from hinet_spark.cli import add_offset_arg, base_parser, run_job
from hinet_spark.config import Config
from hinet_spark.dates import shift
from hinet_spark.lifecycle.promotion import comparison_table
from hinet_spark.lifecycle.tracking import log_training
from hinet_spark.ops.spark import get_spark
from hinet_spark.ops.summary import table
from hinet_spark.train.distributed import before_spark
from hinet_spark.train.loop import fit
from hinet_spark.train.snapshot import rolling_split

logger = logging.getLogger("train_hinet")


def build_parser() -> argparse.ArgumentParser:
    parser = base_parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true",
                        help="continue from the latest checkpoint in train.checkpoint_dir")
    parser.add_argument("--end-date", help="nightly split: test on this day, validate on the day before, "
                        "train on the train.window_days before that (default: the train.* dates)")
    parser.add_argument("--warm-start", metavar="ALIAS_OR_VERSION",
                        help="start from this registered model (e.g. champion) and train on the last "
                        "train.warm_start_window_days days only; its architecture and feature spec must match")
    parser.add_argument("--no-promote", action="store_true",
                        help="register the model as challenger only; never move champion")
    parser.add_argument("--compare", action="store_true",
                        help="a comparison run (another model, other settings): log it to <experiment>-comparisons "
                        "and never register it or touch the production model's aliases (mlflow.register: false)")
    add_offset_arg(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def run(args: argparse.Namespace, cfg: Config) -> int:
    if args.end_date:
        cfg = rolling_split(cfg, shift(args.end_date, args.offset_days))
    if args.no_promote:
        cfg = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, promote=False))
    if args.compare:
        cfg = dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, register=False))
    before_spark(cfg)
    spark = get_spark(cfg)
    result = fit(spark, cfg, resume=args.resume, warm_start=args.warm_start)
    logged = log_training(cfg, result, spark)
    logger.info("train_hinet done: %s, MLflow run %s (%s)\n%s", logged["model_uri"], logged["run_id"],
                logged["run_name"], summary_table(result, logged))
    return 0


def summary_table(result, logged: dict) -> str:
    """Per scenario: validation and test rows, AUC (positives) per task; then the best point
    and the champion decision."""

    def cell(ev, task, s):
        auc = ev.auc.get(task, {}).get(s)
        return f"{'n/a' if auc is None else f'{auc:.4f}'} ({ev.positives.get(task, {}).get(s, 0):,})"

    rows = [(s, result.val.rows.get(s, 0), cell(result.val, "ctr", s), cell(result.val, "ctcvr", s),
             result.test.rows.get(s, 0), cell(result.test, "ctr", s), cell(result.test, "ctcvr", s))
            for s in result.val.rows]
    mean = (f"mean AUC: validation {result.val.mean_auc or float('nan'):.4f}, "
            f"test {result.test.mean_auc or float('nan'):.4f}")
    last = result.history[-1] if result.history else {"epoch": -1, "step": 0}
    epochs = (f"best at step {logged['best_step']} (epoch {logged['best_epoch']}) of {last['step']} trained in "
              f"{last['epoch'] + 1} epoch(s), {len(result.history)} validations, {result.train_seconds:.0f} s")
    if logged.get("best_at_last_validation"):
        epochs += ("\nbest at the last validation: the validation curve was still rising when train.epochs ran "
                   "out; more epochs would likely help (MLflow tag best_at_last_validation=true)")
    share = result.test.ctcvr_above_ctr_all
    if share is not None:
        worst = max(result.test.ctcvr_above_ctr, key=result.test.ctcvr_above_ctr.get)
        epochs += (f"\np_ctcvr > p_ctr on {100 * share:.1f}% of test rows (most in scenario {worst}: "
                   f"{100 * result.test.ctcvr_above_ctr[worst]:.1f}%; an order implies a click, "
                   f"model.task_output: esmm makes it 0)" if share > 0 else
                   "\np_ctcvr > p_ctr on no test row")
    san = ""
    if logged.get("san"):
        san = (f"\nSAN: the strongest weight of {logged['san']['in_group']}/{logged['san']['of']} scenarios "
               "falls inside their true (synthetic) group")
    out = (table(("scenario", "val rows", "val ctr AUC (pos)", "val ctcvr AUC (pos)", "test rows",
                  "test ctr AUC (pos)", "test ctcvr AUC (pos)"), rows)
           + f"\n{mean}; {epochs}{san}")
    comps = logged.get("comparison") or []
    if comps:
        out += (f"\nchallenger vs champion (version {comps[0].champion_version}) on the same rows:\n"
                + table(("scenario task", "val new", "val champ", "val pos", "test new", "test champ", "test pos"),
                        comparison_table(comps)))
    return out + f"\nchampion decision: {logged['decision']}"


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
