"""Training schedule: an earlier default against the config's defaults, same seed, same data.

    .venv/bin/python -m benchmarks.bench_schedule --root data [--launcher horovod] [--before budget]

Needs the demo's samples table and feature spec under ``--root`` (``make demo``). Trains the
same model twice from the same seed on the same snapshot: ``before`` is an earlier default,
``after`` the config's defaults. ``--before budget`` (default): the fixed one-epoch budget
(``train.epochs=1``, no ``early_stopping_min_delta``) that ``train.epochs`` as a maximum
replaced (issue #21); ``--before schedule``: one validation per epoch, up to 4 epochs (what
the in-epoch validation schedule replaced); ``--before patience``: patience alone after the
first epoch (no ``early_stopping_drop``, no early validation: the defaults of 2026-12-03). Prints per run the validation curve, the best
point, the training wall time and the test mean AUC, then the ratios.
"""

from __future__ import annotations

import argparse
import logging
import time

from hinet_spark.config import load_config
from hinet_spark.ops.spark import get_spark
from hinet_spark.train.distributed import before_spark
from hinet_spark.train.loop import best_record, fit

BEFORE = {"budget": ["train.epochs=1", "train.early_stopping_min_delta=0"],
          "patience": ["train.early_stopping_drop=0", "train.early_validation_fraction=0"],
          "schedule": ["train.validations_per_epoch=1", "train.epochs=4", "train.early_stopping_patience=2"]}


def run(name: str, overrides: list[str]) -> tuple[float, float]:
    cfg = load_config(None, overrides)
    began = time.perf_counter()
    result = fit(get_spark(cfg), cfg)
    wall = time.perf_counter() - began
    curve = ", ".join(f"{h['epoch']}:{h['step']}={h['val_auc_mean']:.4f}" for h in result.history)
    best = best_record(result.history)
    print(f"{name}: validations (epoch:step=val mean AUC) {curve}")
    print(f"{name}: best step {best['step']} (epoch {best['epoch']}), training {result.train_seconds:.0f} s "
          f"(fit wall {wall:.0f} s), test mean AUC {result.test.mean_auc:.4f}, "
          f"validation mean AUC {result.val.mean_auc:.4f}")
    return result.train_seconds, result.test.mean_auc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="data")
    ap.add_argument("--launcher", default="horovod")
    ap.add_argument("--before", choices=sorted(BEFORE), default="budget")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    common = [f"storage.root={args.root}", "synthetic.enabled=true", f"train.launcher={args.launcher}", *args.overrides]
    before_spark(load_config(None, common))
    t0, auc0 = run("before", [*common, *BEFORE[args.before]])
    t1, auc1 = run("after", common)
    print(f"training time after/before: {t1 / t0:.2f}; test mean AUC after - before: {auc1 - auc0:+.4f}")


if __name__ == "__main__":
    main()
