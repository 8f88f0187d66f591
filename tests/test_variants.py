"""benchmarks/variants.py's report: paired by seed on the judged cells, as compare_models judges."""

from __future__ import annotations

import argparse

import pytest

from benchmarks.variants import render
from hinet_spark.lifecycle.compare import Comparison


def test_variants_pair_seeds_on_the_judged_cells():
    frame = Comparison([], ["a", "b"], {}, {"a": 900, "b": 30}, {"ctr": {"a": 100, "b": 2}, "ctcvr": {"a": 60, "b": 0}},
                       min_positives=50)
    rows = []
    for tag, a, b in (("two towers", [0.70, 0.72], [0.2, 0.9]), ("esmm", [0.71, 0.74], [0.9, 0.1])):
        for seed in range(2):
            auc = {"ctr": {"a": a[seed], "b": b[seed]}, "ctcvr": {"a": a[seed] + 0.05, "b": None}}
            rows.append({"tag": tag, "seed": seed, "test_auc": auc, "test_mean": (2 * a[seed] + 0.05 + b[seed]) / 3,
                         "val_mean": 0.7, "above": 0.0, "epochs": 2, "seconds": 10.0})
    assert frame.judged_mean(rows[0]["test_auc"], rows[0]["test_mean"]) == pytest.approx(0.725)  # a CTR 0.70 and a CTCVR 0.75; b CTR (2) not judged
    args = argparse.Namespace(study="esmm", quick=False, conf="conf/shop.yaml", overrides=[], end_date="2026-01-08",
                              seeds=2)
    report = render(args, frame, ["two towers", "esmm"], rows, 60.0)
    assert "Not judged (fewer than mlflow.min_positives test positives): b CTR (2), b CTCVR (0)." in report
    assert "| esmm | +0.0100, +0.0200 | +0.0150 [" in report  # the wild b CTR (+0.7, -0.8) does not decide it
