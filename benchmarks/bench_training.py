"""End-to-end training throughput next to model-only throughput.

    .venv/bin/python -m benchmarks.bench_training --root data [--launcher horovod] [--num-proc 2]

Needs a built samples table and feature spec under ``--root`` (``make demo`` or the jobs).
Runs ``fit`` (Delta snapshot -> Petastorm -> launcher -> model) for ``--epochs`` and reports
the training samples/s of its last epoch, then the same model and batch size trained on
tensors already in memory in this process with ``--num-proc`` x ``threads_per_worker`` torch
threads, and the ratio (goal: >= 0.8).
"""

from __future__ import annotations

import argparse
import logging

import torch

from benchmarks.bench_model import fwd_bwd_rate
from hinet_spark.config import load_config
from hinet_spark.models import ModelSpec, build_model
from hinet_spark.spark import get_spark
from hinet_spark.training import fit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data")
    ap.add_argument("--launcher", default="horovod")
    ap.add_argument("--num-proc", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = load_config(None, [f"storage.root={args.root}", f"train.launcher={args.launcher}",
                             f"train.num_proc={args.num_proc}", f"train.epochs={args.epochs}",
                             f"train.early_stopping_patience={args.epochs}", *args.overrides])
    result = fit(get_spark(cfg), cfg)
    e2e = result.history[-1]["samples_per_s"]
    workers = args.num_proc if args.launcher != "local" else 1
    torch.set_num_threads(workers * cfg.train.threads_per_worker)
    spec = ModelSpec(cfg.model, result.feature_spec.vocab_sizes, len(cfg.scenarios.names))
    model = build_model(spec)
    g = torch.Generator().manual_seed(0)
    b = cfg.train.batch_size * workers
    batches = [(torch.stack([torch.randint(0, v, (b,), generator=g) for v in spec.vocab_sizes], 1),
                torch.randint(0, spec.n_scenarios, (b,), generator=g),
                torch.randint(0, 2, (b, 2), generator=g).float()) for _ in range(12)]
    alone = fwd_bwd_rate(model, batches)
    print(f"model {cfg.model.name}, batch {cfg.train.batch_size} x {workers} workers, launcher {args.launcher}")
    print(f"end-to-end training (last epoch): {e2e:9.0f} samples/s")
    print(f"model only, tensors in memory    : {alone:9.0f} samples/s")
    print(f"ratio: {e2e / alone:.2f}")


if __name__ == "__main__":
    main()
