"""AUC and logloss (behind every metric the project reports) against scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from hinet_spark.evaluation import auc, calibration, evaluate, logloss


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(2000) < 0.1
    scores = np.round(rng.random(2000) + 0.3 * y, 1)  # one decimal: many ties
    assert auc(y, scores) == pytest.approx(roc_auc_score(y, scores), abs=1e-12)


def test_auc_small_groups_and_constant_labels():
    assert auc(np.array([0, 1]), np.array([0.2, 0.7])) == 1.0
    assert auc(np.array([1, 0]), np.array([0.2, 0.7])) == 0.0
    assert auc(np.array([0, 1, 0, 1]), np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # all tied
    assert auc(np.array([0, 1, 1]), np.array([0.1, 0.1, 0.9])) == pytest.approx(
        roc_auc_score([0, 1, 1], [0.1, 0.1, 0.9]))
    assert auc(np.zeros(5), np.arange(5.0)) is None
    assert auc(np.ones(3), np.arange(3.0)) is None


def test_logloss_matches_sklearn():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.3).astype(float)
    p = rng.random(500)
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)
    # clipped at 1e-7: a confident wrong prediction is large but finite
    assert logloss(np.array([1.0]), np.array([0.0])) == pytest.approx(-np.log(1e-7))


def test_evaluate_per_scenario_counts_and_notes():
    scenario = np.array([0, 0, 0, 0, 1, 1])
    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 0], [0, 0], [1, 0]], dtype=float)
    probs = np.array([[0.9, 0.1], [0.2, 0.1], [0.6, 0.8], [0.4, 0.3], [0.3, 0.2], [0.7, 0.1]])
    ev = evaluate(scenario, labels, probs, ["a", "b", "c"])
    assert ev.auc["ctr"] == {"a": 1.0, "b": 1.0}
    assert ev.auc["ctcvr"]["a"] == 1.0 and ev.auc["ctcvr"]["b"] is None
    assert ev.rows == {"a": 4, "b": 2, "c": 0}
    assert ev.positives["ctr"] == {"a": 2, "b": 1} and ev.positives["ctcvr"] == {"a": 1, "b": 0}
    assert any("scenario b, ctcvr: label is constant (0) over 2 rows" in n for n in ev.notes)
    assert any("scenario c: no rows" in n for n in ev.notes)
    assert ev.mean_auc == pytest.approx(1.0)
    metrics = ev.metrics("test")
    assert "test_auc.ctcvr.scenario_b" not in metrics and metrics["test_positives.ctcvr.scenario_a"] == 1.0


def test_calibration_bins_by_hand():
    probs = np.array([0.1, 0.1, 0.2, 0.2, 0.8, 0.9])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert calibration(labels, probs, bins=3) == [(0.1, 0.0, 2), (0.2, 0.5, 2), (pytest.approx(0.85), 1.0, 2)]
