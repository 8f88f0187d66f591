"""Spark batch scoring throughput next to the bare model's batched inference, and 4M vs 1M.

    .venv/bin/python -m benchmarks.bench_scoring [--rows 1000000] [--scale 4] [--root benchmarks/out/scoring]

Generates a small log (2 days), builds samples, trains one default-size HiNet for a few
steps (its weights do not matter for speed) and registers it, then generates ``--rows`` and
``--rows x --scale`` candidates for one day and, for each size:

- the full job (``score_candidates``: read, checks, features, UDF, two Delta writes, stats,
  MLflow run) in rows/s;
- the UDF stage alone: the feature ids cached, ``spark_udf`` + a no-op sink, in rows/s;
- the bare model: the same feature rows as a pandas frame, ``HiNetPyfunc.predict`` on
  ``scoring.batch_size`` row batches with as many torch threads as Spark has cores.

Prints the rows/s, the ratios Spark / bare model (goal: >= 0.7) and the time ratio of the
large vs the small size (goal: <= 4.4 for 4x the rows).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import time
from pathlib import Path

import mlflow
import torch
from pyspark.sql import functions as F

from hinet_spark.config import load_config
from hinet_spark.features.build import build_samples
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.features.transforms import apply_spec
from hinet_spark.lifecycle.tracking import log_training
from hinet_spark.ops.io import read_table
from hinet_spark.ops.mlflow_store import setup as setup_mlflow
from hinet_spark.ops.spark import get_spark
from hinet_spark.scoring.batch import RESULT_TYPE, resolve_model, score_candidates
from hinet_spark.train.loop import fit
from jobs import generate_synthetic

DATE = "2026-01-03"


def overrides(root: Path, rows: int, model_root: Path) -> list[str]:
    return [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=2", "synthetic.exposures_per_day=20000",
            f"synthetic.candidates_per_day={rows}", "synthetic.calibration_rows_per_scenario=5000",
            "train.launcher=local", "train.epochs=1", "train.max_steps_per_epoch=30",
            "mlflow.floor=false",  # a few steps of training: speed does not depend on the weights
            "train.train_start=2026-01-01", "train.train_end=2026-01-01", "train.val_start=2026-01-02",
            "train.val_end=2026-01-02", "train.test_start=2026-01-02", "train.test_end=2026-01-02",
            f"mlflow.tracking_uri=sqlite:///{model_root.resolve()}/mlflow.db",
            f"features.spec_path={model_root.resolve()}/feature_spec.json"]


def bare_rate(frame, columns: list[str], model_uri: str, batch: int, threads: int) -> float:
    pyfunc = mlflow.pyfunc.load_model(model_uri).unwrap_python_model()
    torch.set_num_threads(threads)
    inputs = frame[[*columns, "scenario_idx"]]
    pyfunc.predict(None, inputs.iloc[:batch])  # warm-up
    began = time.perf_counter()
    for i in range(0, len(inputs), batch):
        pyfunc.predict(None, inputs.iloc[i:i + batch])
    return len(inputs) / (time.perf_counter() - began)


def measure(spark, cfg, rows: int) -> dict[str, float]:
    began = time.perf_counter()
    report = score_candidates(spark, cfg, DATE)
    job_s = time.perf_counter() - began
    print(f"  job phases: {report.timings}", flush=True)
    assert sum(report.scored.values()) == rows, report.scored

    spec = FeatureSpec.load(cfg.features.spec_path)
    feats = apply_spec(read_table(spark, cfg, "candidates").where(F.col("dt") == DATE), spec) \
        .select(*spec.columns, "scenario_idx").persist()
    feats.count()
    ref = resolve_model(cfg)
    udf = mlflow.pyfunc.spark_udf(spark, ref.uri, result_type=RESULT_TYPE, env_manager="local")
    began = time.perf_counter()
    feats.select(udf(F.struct(*spec.columns, "scenario_idx")).alias("p")).write.format("noop").mode("overwrite").save()
    udf_s = time.perf_counter() - began
    frame = feats.toPandas().astype("int32")
    feats.unpersist()
    match = re.fullmatch(r"local\[(\d+)\]", spark.sparkContext.master)
    cores = int(match.group(1)) if match else os.cpu_count()  # the cores Spark's tasks run on
    bare = bare_rate(frame, list(spec.columns), ref.uri, cfg.scoring.batch_size, cores)
    return {"rows": rows, "job_s": job_s, "job_rate": rows / job_s, "udf_rate": rows / udf_s, "bare_rate": bare,
            "cores": cores}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--scale", type=int, default=4, help="the second size, x --rows (1: one size only)")
    ap.add_argument("--root", default="benchmarks/out/scoring")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = Path(args.root)
    shutil.rmtree(base, ignore_errors=True)
    model_root = base / "model"
    cfg = load_config(None, overrides(model_root, 1000, model_root))
    spark = get_spark(cfg)
    assert generate_synthetic.main([x for o in overrides(model_root, 1000, model_root) for x in ("--set", o)]) == 0
    build_samples(spark, cfg, "2026-01-01", "2026-01-02")
    setup_mlflow(cfg)
    log_training(cfg, fit(spark, cfg))

    results = []
    for rows in (args.rows, args.rows * args.scale)[:1 if args.scale <= 1 else 2]:
        root = base / f"rows{rows}"
        ov = overrides(root, rows, model_root)
        began = time.perf_counter()
        assert generate_synthetic.main([x for o in ov for x in ("--set", o)]) == 0
        print(f"generated {rows} candidates in {time.perf_counter() - began:.0f} s", flush=True)
        results.append(measure(spark, load_config(None, ov), rows))
        r = results[-1]
        print(f"{rows:>9} rows: job {r['job_s']:.1f} s = {r['job_rate']:.0f} rows/s; UDF stage {r['udf_rate']:.0f} "
              f"rows/s; bare model ({r['cores']} threads) {r['bare_rate']:.0f} rows/s; ratio UDF/bare "
              f"{r['udf_rate'] / r['bare_rate']:.2f}, job/bare {r['job_rate'] / r['bare_rate']:.2f}", flush=True)
    if len(results) < 2:
        return
    small, large = results
    print(f"time ratio {large['rows']} vs {small['rows']} rows (full job): {large['job_s'] / small['job_s']:.2f}")


if __name__ == "__main__":
    main()
