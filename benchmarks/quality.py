"""Quality benchmark: the paper's Tables II-V on Table-I-like synthetic data, against the oracle.

    .venv/bin/python -m benchmarks.quality            # full: writes the section of docs/benchmarks.md
    .venv/bin/python -m benchmarks.quality --quick    # smoke test (a few minutes), benchmarks/out/

Generates ``--days`` days of synthetic logs (the last two are the validation and the test
day), builds samples, then trains through the project's own ``fit`` (local launcher) every
model of Table II (HiNet and the five baselines) and every Table III ablation with
``--seeds`` seeds, and the Table IV sweeps (sub-experts per SEI, task-specific experts per
scenario) with ``--sweep-seeds``. Early stopping looks at the validation day only; the test
day is read once per run, after training. Every run is logged to MLflow (experiment
``hinet-spark-quality``, no model). The oracle row is the AUC of the generator's true
probabilities on the test day: the ceiling any model can reach.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path

import mlflow
import numpy as np
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.evaluation import TASKS, auc
from hinet_spark.features.build import build_samples
from hinet_spark.lifecycle.compare import fmt
from hinet_spark.models.registry import count_parameters
from hinet_spark.ops.io import read_table
from hinet_spark.ops.mlflow_store import tracking_uri, use_experiment
from hinet_spark.ops.spark import get_spark
from hinet_spark.train.loop import fit
from jobs import generate_synthetic

TABLE2 = ["hinet", "shared_bottom", "mmoe", "hmoe", "ple", "star"]
TABLE3 = ["hinet_no_hierarchy", "hinet_no_san", "hinet_no_scenario_gating", "hinet_no_task_gating",
          "hinet_no_gating"]
MARK_START, MARK_END = "<!-- quality:start -->", "<!-- quality:end -->"


def data_overrides(args: argparse.Namespace) -> list[str]:
    last = args.days
    return [f"storage.root={args.root}", "synthetic.enabled=true", f"synthetic.days={args.days}",
            f"synthetic.exposures_per_day={args.rows_per_day}", "synthetic.candidates_per_day=0",
            "synthetic.calibration_rows_per_scenario=10000",
            f"train.val_start=2026-01-{last - 1:02d}", f"train.val_end=2026-01-{last - 1:02d}",
            f"train.test_start=2026-01-{last:02d}", f"train.test_end=2026-01-{last:02d}",
            "train.train_start=2026-01-01", f"train.train_end=2026-01-{last - 2:02d}"]


def model_overrides(args: argparse.Namespace) -> list[str]:
    """One smaller-than-default size for every model, so 40 runs fit on 2 cores (docs say so)."""
    return ["train.launcher=local", f"train.threads_per_worker={args.threads}", f"train.epochs={args.epochs}",
            "train.early_stopping_patience=1", f"train.batch_size={args.batch_size}",
            f"train.learning_rate={args.lr}", f"model.embedding_dim={args.emb}",
            "model.sei_hidden=[64, 32]", "model.cgc_hidden=[64, 32]", "model.tower_hidden=[32]",
            "model.bottom_hidden=[128, 64, 32]", "model.expert_hidden=[64, 32]",
            f"mlflow.tracking_uri=sqlite:///{Path(args.root).resolve()}/mlflow.db",
            *([f"train.max_steps_per_epoch={args.max_steps}"] if args.max_steps else [])]


def oracle_auc(spark, cfg, date: str) -> dict[str, dict[str, float | None]]:
    samples = read_table(spark, cfg, "samples").where(F.col("dt") == date)
    oracle = read_table(spark, cfg, "oracle").where(F.col("dt") == date)
    pdf = samples.select("exposure_id", "scenario", "label_ctr", "label_ctcvr").join(
        oracle.select("exposure_id", "p_ctr", "p_ctcvr"), "exposure_id").toPandas()
    out: dict[str, dict[str, float | None]] = {}
    for task in TASKS:
        for s, g in pdf.groupby("scenario"):
            out.setdefault(task, {})[s] = auc(g[f"label_{task}"].to_numpy(), g[f"p_{task}"].to_numpy())
    return out


def run_one(spark, base: list[str], name: str, seed: int, extra: list[str], tag: str) -> dict:
    cfg = load_config(None, [*base, f"model.name={name}", f"train.seed={seed}", *extra,
                             f"train.checkpoint_dir={base[0].split('=', 1)[1]}/ckpt/{tag}-{seed}"])
    began = time.perf_counter()
    result = fit(spark, cfg)
    seconds = time.perf_counter() - began
    rates = [h["samples_per_s"] for h in result.history]
    row = {"model": name, "tag": tag, "seed": seed, "test_auc": result.test.auc, "test_mean": result.test.mean_auc,
           "val_mean": result.val.mean_auc, "epochs": len(result.history), "seconds": seconds,
           "samples_per_s": float(np.median(rates)), "params": count_parameters(result.model),
           "params_dense": count_parameters(result.model, include_embeddings=False)}
    mlflow.set_tracking_uri(tracking_uri(cfg))
    use_experiment(cfg, "hinet-spark-quality")  # artifacts under storage.root, not ./mlruns
    with mlflow.start_run(run_name=f"{tag}-seed{seed}"):
        mlflow.log_params({"model": name, "tag": tag, "seed": seed, "extra": " ".join(extra)[:500]})
        mlflow.log_metrics({**result.test.metrics("test"), **result.val.metrics("val"), "train_seconds": seconds,
                            "samples_per_s": row["samples_per_s"], "params": row["params"]})
    logging.getLogger("quality").warning("%s seed %d: test mean AUC %.4f (val %.4f), %d epochs, %.0f s", tag, seed,
                                         row["test_mean"] or float("nan"), row["val_mean"] or float("nan"),
                                         row["epochs"], seconds)
    return row


def table(rows: list[dict], tags: list[str], scenarios: list[str], oracle: dict | None) -> list[str]:
    head = "| model | " + " | ".join(f"{s} {t.upper()}" for t in TASKS for s in scenarios) + " | mean |"
    lines = [head, "|" + "---|" * (len(scenarios) * 2 + 2)]
    for tag in tags:
        runs = [r for r in rows if r["tag"] == tag]
        cells = [fmt([r["test_auc"][t][s] for r in runs]) for t in TASKS for s in scenarios]
        lines.append(f"| {tag} | " + " | ".join(cells) + f" | {fmt([r['test_mean'] for r in runs])} |")
    if oracle:
        cells = [fmt([oracle[t].get(s)]) for t in TASKS for s in scenarios]
        means = [v for t in TASKS for v in oracle[t].values() if v is not None]
        lines.append("| *oracle (true p)* | " + " | ".join(cells) + f" | {statistics.mean(means):.4f} |")
    return lines


def paired(rows: list[dict], tags: list[str]) -> list[str]:
    base = {r["seed"]: r["test_mean"] for r in rows if r["tag"] == "hinet"}
    lines = ["| model | per-seed test mean AUC - HiNet's | mean ± std |", "|---|---|---|"]
    for tag in tags:
        diffs = [r["test_mean"] - base[r["seed"]] for r in rows
                 if r["tag"] == tag and base.get(r["seed"]) is not None and r["test_mean"] is not None]
        lines.append(f"| {tag} | {', '.join(f'{d:+.4f}' for d in diffs)} | {fmt(diffs)} |")
    return lines


def costs(rows: list[dict], tags: list[str]) -> list[str]:
    lines = ["| model | params | params w/o embeddings | train seconds (fit, median) | samples/s (median epoch) |",
             "|---|---|---|---|---|"]
    for tag in tags:
        runs = [r for r in rows if r["tag"] == tag]
        lines.append(f"| {tag} | {runs[0]['params']:,} | {runs[0]['params_dense']:,} | "
                     f"{np.median([r['seconds'] for r in runs]):.0f} | {np.median([r['samples_per_s'] for r in runs]):,.0f} |")
    return lines


def render(args, cfg, rows: list[dict], models: list[str], sweeps: list[tuple[str, list[str]]], oracle: dict,
           seconds: float, planned: int) -> str:
    scen = list(cfg.scenarios.names)
    done = {r["tag"] for r in rows}
    split = cfg.train
    lines = [MARK_START, "",
             f"Generated by `python -m benchmarks.quality{' --quick' if args.quick else ''}` "
             f"({time.strftime('%Y-%m-%d')}, {len(rows)} of {planned} runs, {seconds / 60:.0f} min on this machine). "
             f"Data: {args.days} days x {args.rows_per_day:,} exposures (Table I shares and rates); train "
             f"{split.train_start}..{split.train_end}, validation {split.val_start}, test {split.test_start}. "
             f"Every model: embedding {args.emb}, hidden layers 64-32 (bottom 128-64-32), batch "
             f"{args.batch_size}, Adam lr {args.lr}, at most {args.epochs} epochs with early stopping on the "
             f"validation mean AUC, local launcher, {args.threads} threads. Test AUC, mean ± std over "
             f"{args.seeds} seed(s).", "",
             "### Table II: models (test AUC per scenario x task)", "",
             *table(rows, [m for m in models if m in TABLE2 and m in done], scen, oracle), ""]
    if not args.quick:
        lines += ["### Table III: ablations", "", *table(rows, [t for t in ["hinet", *TABLE3] if t in done], scen, None),
                  "", "Paired differences (same seed, same data) of the test mean AUC against full HiNet:", "",
                  *paired(rows, [t for t in [*TABLE2[1:], *TABLE3] if t in done]), "",
                  f"### Table IV: sweeps of HiNet ({args.sweep_seeds} seed(s))", "",
                  *table(rows, [t for t, _ in sweeps if t in done], scen, None), ""]
    lines += ["### Table V: size and speed", "", *costs(rows, [m for m in models if m in done]), "", MARK_END]
    return "\n".join(lines) + "\n"


def write(out: Path, text: str) -> None:
    """Replace the marked section of ``out`` (or append one)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.is_file() and MARK_START in out.read_text():
        old = out.read_text()
        text = old[:old.index(MARK_START)] + text.rstrip("\n") + old[old.index(MARK_END) + len(MARK_END):]
    elif out.is_file():
        text = out.read_text().rstrip("\n") + "\n\n## Quality: `python -m benchmarks.quality`\n\n" + text
    out.write_text(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny data, 2 models, 1 seed, no sweeps")
    ap.add_argument("--root", default="benchmarks/out/quality")
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--rows-per-day", type=int, default=40000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--sweep-seeds", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--emb", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--models", default=None, help="comma-separated subset of the Table II/III models")
    ap.add_argument("--out", default=None, help="markdown file (default: docs/benchmarks.md section; quick: "
                    "benchmarks/out/quality_quick.md)")
    args = ap.parse_args(argv)
    if args.quick:
        args.days, args.rows_per_day, args.seeds, args.sweep_seeds, args.epochs = 4, 6000, 1, 0, 1
        args.max_steps = 30
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    data = data_overrides(args)
    cfg = load_config(None, data)
    spark = get_spark(cfg)
    began = time.perf_counter()
    assert generate_synthetic.main([x for o in data for x in ("--set", o)]) == 0
    build_samples(spark, cfg, "2026-01-01", f"2026-01-{args.days:02d}")
    test_day = f"2026-01-{args.days:02d}"
    oracle = oracle_auc(spark, cfg, test_day)
    base = [*data, *model_overrides(args)]

    rows: list[dict] = []
    models = ["hinet", "shared_bottom"] if args.quick else [*TABLE2, *TABLE3]
    if args.models:
        models = [m for m in args.models.split(",") if m]
    sweeps: list[tuple[str, list[str]]] = []
    for k in (1, 3, 5, 7):
        sweeps.append((f"sei_experts={k}", [f"model.sei_experts={k}"]))
    for n in (1, 2, 3, 4, 5):
        sweeps.append((f"task_specific_experts={n}", [f"model.task_specific_experts={n}"]))
    plan = [(name, seed, [], name) for seed in range(args.seeds) for name in models]
    plan += [("hinet", seed, extra, tag) for seed in range(args.sweep_seeds) for tag, extra in sweeps]
    out = Path(args.out) if args.out else (Path("benchmarks/out/quality_quick.md") if args.quick
                                            else Path("docs/benchmarks.md"))
    for name, seed, extra, tag in plan:
        rows.append(run_one(spark, base, name, seed, extra, tag))
        # the tables so far after every run: a long run that is stopped still leaves its results
        write(out, render(args, cfg, rows, models, sweeps, oracle, time.perf_counter() - began, len(plan)))
        (Path(args.root) / "quality_runs.json").write_text(json.dumps(rows, indent=1, default=str))
    print(f"wrote {out} ({len(rows)} runs, {(time.perf_counter() - began) / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
