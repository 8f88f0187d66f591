"""Paired-seed studies of one choice at a time, on synthetic data with drifting behaviour.

    .venv/bin/python -m benchmarks.variants --study esmm       # two towers vs ESMM (issue #21, item 6)
    .venv/bin/python -m benchmarks.variants --study behaviour  # without vs with behaviour counters (#20)
    .venv/bin/python -m benchmarks.variants --study lambda     # loss weights lambda_i (issue #21, item 5)
    .venv/bin/python -m benchmarks.variants --study esmm --quick   # smoke test (a few minutes)
    .venv/bin/python -m benchmarks.variants --study lambda --conf conf/shop.yaml --end-date 2026-01-08

With ``--conf`` (and ``--set``, ``--end-date`` as compare_models takes them) the study runs on
that config's own samples table instead: nothing is generated or built, every variant trains
with the config's model and settings (local launcher, as compare_models), and ``behaviour``
compares ``train.use_behaviour=false`` with the counters the samples carry.


Generates ``--days`` days of synthetic logs with ``synthetic.behaviour_weight`` (the demo's
0.8: drifting user x scenario and item x scenario propensities, what the counters estimate),
builds samples (twice for ``behaviour``: without counters and with the demo's counters, into
their own tables and specs), then trains each variant of the study with ``--seeds`` seeds
through the project's own ``fit`` (local launcher, the model sizes of benchmarks/quality.py,
the config's epoch maximum and early stopping). Every variant of a seed trains on the same
snapshot from the same seed: the differences are paired. Prints per variant the test AUC
per scenario x task, the test mean AUC, the share of test rows with p_ctcvr > p_ctr, the
epochs and seconds, then the paired differences against the first variant with a 95%
t-interval, as markdown (``--out`` also writes it to a file).
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import functions as F

from benchmarks.quality import data_overrides, model_overrides
from hinet_spark.config import Config, load_config
from hinet_spark.evaluation import TASKS
from hinet_spark.features.build import build_samples
from hinet_spark.lifecycle.compare import Comparison, comparison_frame, fmt, interval, judged_label
from hinet_spark.ops.io import read_table
from hinet_spark.ops.spark import get_spark
from hinet_spark.train.loop import fit
from hinet_spark.train.snapshot import rolling_split
from jobs import generate_synthetic

COUNTERS = ["features.behaviour.entities=[user, item, user+scenario, item+scenario]",
            "features.behaviour.windows=[1, 7]", "features.behaviour.counts=[exposures]",
            "features.behaviour.rates=[ctr, ctcvr]"]  # conf/local.yaml's
PLAIN = ["features.behaviour.entities=[]", "storage.tables.samples=samples_plain",
         "storage.tables.quarantine=quarantine_plain", "storage.tables.feature_spec_log=feature_spec_log_plain"]


def plain_spec(root: str) -> str:
    return f"features.spec_path={root}/feature_spec_plain.json"


def lambda_variants(spark, cfg: Config) -> list[tuple[str, list[str]]]:
    """Eq. 9's lambda_i = 1/share (the default) against sqrt(1/share), 1/share capped at 10, uniform."""
    t = cfg.train
    rows = read_table(spark, cfg, "samples").where(F.col("dt").between(t.train_start, t.train_end)) \
        .groupBy("scenario").count().collect()
    counts = {r["scenario"]: r["count"] for r in rows}
    total = sum(counts.values())

    def weights(f) -> list[str]:
        return ["train.scenario_weights={" + ", ".join(f"{s}: {f(total / n):.4f}" for s, n in sorted(counts.items()))
                + "}"]

    return [("1/share (Eq. 9)", []), ("sqrt(1/share)", weights(math.sqrt)),
            ("min(1/share, 10)", weights(lambda w: min(w, 10.0))), ("uniform", weights(lambda w: 1.0))]


def run_one(spark, make: Callable[[list[str]], Config], overrides: list[str], seed: int, tag: str,
            root: str) -> dict:
    """Train variant ``tag`` (``overrides`` on the study's config, built by ``make``) with ``seed``."""
    cfg = make([*overrides, f"train.seed={seed}",
                f"train.checkpoint_dir={root}/ckpt/{tag.replace('/', '_').replace(' ', '_')}-{seed}"])
    began = time.perf_counter()
    result = fit(spark, cfg)
    row = {"tag": tag, "seed": seed, "test_auc": result.test.auc, "test_mean": result.test.mean_auc,
           "val_mean": result.val.mean_auc, "above": result.test.ctcvr_above_ctr_all,
           "epochs": result.history[-1]["epoch"] + 1, "seconds": time.perf_counter() - began}
    logging.getLogger("variants").warning("%s seed %d: test mean AUC %.4f (val %.4f), p_ctcvr > p_ctr %.1f%%, "
                                          "%d epoch(s), %.0f s", tag, seed, row["test_mean"], row["val_mean"],
                                          100 * row["above"], row["epochs"], row["seconds"])
    return row


def render(args, frame: Comparison, variants: list[str], rows: list[dict], seconds: float) -> str:
    scenarios = frame.scenarios
    if args.conf:
        data = (f"the samples of {args.conf}{''.join(f' --set {o}' for o in args.overrides)}"
                f"{f' --end-date {args.end_date}' if args.end_date else ''}, its model and settings")
    else:
        data = (f"{args.days} days x {args.rows_per_day:,} exposures, synthetic.behaviour_weight "
                f"{args.behaviour_weight}; HiNet")
    lines = [f"`python -m benchmarks.variants --study {args.study}{' --quick' if args.quick else ''}` "
             f"({time.strftime('%Y-%m-%d')}, {len(rows)} runs, {seconds / 60:.0f} min): {data}, "
             f"{args.seeds} seeds; test AUC mean ± std over seeds.", "",
             "| variant | " + " | ".join(f"{s} {t.upper()}" for t in TASKS for s in scenarios)
             + " | mean | judged mean | p_ctcvr > p_ctr | epochs | seconds |", "|---|" + "---|" * (2 * len(scenarios) + 5)]

    def judged(r: dict) -> float | None:
        return frame.judged_mean(r["test_auc"], r["test_mean"])

    for v in variants:
        runs = [r for r in rows if r["tag"] == v]
        lines.append(f"| {v} | " + " | ".join(fmt([r["test_auc"][t][s] for r in runs]) for t in TASKS for s in scenarios)
                     + f" | {fmt([r['test_mean'] for r in runs])} | {fmt([judged(r) for r in runs])} | "
                     f"{statistics.mean(r['above'] for r in runs) * 100:.1f}% | "
                     f"{statistics.mean(r['epochs'] for r in runs):.1f} | {statistics.mean(r['seconds'] for r in runs):.0f} |")
    if frame.unjudged and frame.judged:
        lines += ["", "Not judged (fewer than mlflow.min_positives test positives): "
                  + ", ".join(f"{x} {t.upper()} ({frame.positives[t][x]})" for t, x in frame.unjudged) + "."]
    base = {r["seed"]: judged(r) for r in rows if r["tag"] == variants[0]}
    lines += ["", f"Paired by seed against {variants[0]} ({judged_label(frame)}, variant - it), 95% t-interval:", "",
              "| variant | per seed | mean [lo, hi] |", "|---|---|---|"]
    for v in variants[1:]:
        d = [judged(r) - base[r["seed"]] for r in rows if r["tag"] == v and r["seed"] in base]
        mean, lo, hi = interval(d)
        lines.append(f"| {v} | {', '.join(f'{x:+.4f}' for x in d)} | {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    return "\n".join(lines) + "\n"


def on_synthetic(args: argparse.Namespace):
    """Generate the study's synthetic logs and build its samples (twice for ``behaviour``)."""
    data = [*data_overrides(args), f"synthetic.behaviour_weight={args.behaviour_weight}"]
    models = model_overrides(args)
    # model_overrides fixes patience 1 for the 40-run quality table; here the config's patience applies
    models = [o for o in models if not o.startswith("train.early_stopping_patience")]
    assert generate_synthetic.main([x for o in data for x in ("--set", o)]) == 0
    counters, plain = [*data, *COUNTERS], [*data, *PLAIN, plain_spec(args.root)]
    spark = get_spark(load_config(None, data))
    last = f"2026-01-{args.days:02d}"
    build_samples(spark, load_config(None, plain), "2026-01-01", last)
    if args.study == "behaviour":
        build_samples(spark, load_config(None, counters), "2026-01-01", last)
        variants = [("no counters", [*plain, *models]), ("counters", [*counters, *models])]
    elif args.study == "esmm":
        variants = [("two towers", [*plain, *models]), ("esmm", [*plain, *models, "model.task_output=esmm"])]
    else:
        variants = [(name, [*plain, *models, *w]) for name, w in lambda_variants(spark, load_config(None, plain))]
    def make(overrides: list[str]) -> Config:
        return load_config(None, overrides)

    return make, spark, variants, comparison_frame(spark, make(variants[0][1]), [])


def on_config(args: argparse.Namespace):
    """The study on ``--conf``'s own samples: its model and settings, the local launcher."""
    def make(overrides: list[str]) -> Config:
        cfg = load_config(args.conf, [*args.overrides, "train.launcher=local", *overrides])
        return rolling_split(cfg, args.end_date) if args.end_date else cfg

    base = make([])
    spark = get_spark(base)
    if args.study == "behaviour":
        if not base.features.behaviour.entities:
            raise SystemExit(f"--study behaviour: {args.conf} declares no features.behaviour counters")
        variants = [("no counters", ["train.use_behaviour=false"]), ("counters", [])]
    elif args.study == "esmm":
        variants = [("two towers", ["model.task_output=towers"]), ("esmm", ["model.task_output=esmm"])]
    else:
        variants = lambda_variants(spark, base)
    return make, spark, variants, comparison_frame(spark, base, [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--study", choices=("esmm", "behaviour", "lambda"), required=True)
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny data, 2 seeds")
    ap.add_argument("--root", default=None, help="default benchmarks/out/variants-<study>")
    ap.add_argument("--days", type=int, default=10)
    ap.add_argument("--rows-per-day", type=int, default=40000)
    ap.add_argument("--behaviour-weight", type=float, default=0.8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10, help="the epoch maximum (train.epochs' default)")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--emb", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--out", default=None, help="also write the markdown here")
    ap.add_argument("--conf", default=None, help="study this config's samples table (nothing generated)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="with --conf: override a config key (repeatable)")
    ap.add_argument("--end-date", default=None, help="with --conf: test on this day, validate on the day before")
    args = ap.parse_args()
    if args.quick:
        args.days, args.rows_per_day, args.seeds, args.epochs = 9, 6000, 2, 2
    args.root = args.root or f"benchmarks/out/variants-{args.study}"
    logging.basicConfig(level=logging.WARNING)
    began = time.perf_counter()
    if args.conf:
        make, spark, variants, frame = on_config(args)
    else:
        make, spark, variants, frame = on_synthetic(args)
    rows = [run_one(spark, make, overrides, seed, tag, args.root)
            for seed in range(args.seeds) for tag, overrides in variants]
    text = render(args, frame, [t for t, _ in variants], rows, time.perf_counter() - began)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
