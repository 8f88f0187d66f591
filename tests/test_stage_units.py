"""Unit concerns of the slow stages, tested as units (no trained model, no Spark): the scoring
spec refusal, the worker loop's run state, the date parser, the old models' import path."""

from __future__ import annotations

import dataclasses
import math
import pickle

import pytest
import torch

from hinet_spark.config import load_config
from hinet_spark.dates import DateError, parse_date, parse_range, shift
from hinet_spark.errors import OperatorError
from hinet_spark.features.spec import FeatureSpec, FeatureSpecError
from hinet_spark.models import ModelSpec, build_model
from hinet_spark.scoring.batch import ScoringError, transform_spec
from hinet_spark.train.loop import RunState
from hinet_spark.train.optim import SplitOptimizer

SPEC = FeatureSpec(("a", "b"), {"price": (1.0, 5.0)}, {"city": ("x", "y")}, {"user_id": 10},
                   ("2026-01-01", "2026-01-02"), 1)


def test_scoring_refuses_a_pipeline_spec_that_is_not_the_model_s(tmp_path):
    other = dataclasses.replace(SPEC, min_count=2)
    assert other.hash != SPEC.hash
    other.save(tmp_path / "spec.json")
    cfg = load_config(None, [f"storage.root={tmp_path}", f"features.spec_path={tmp_path}/spec.json"])
    with pytest.raises(FeatureSpecError, match=rf"trained with feature spec {SPEC.short_hash}, but the candidates "
                                               rf"would be transformed with feature spec {other.short_hash}"):
        transform_spec(cfg, SPEC)
    assert transform_spec(cfg, other).hash == other.hash  # the same spec: used
    own = load_config(None, [f"storage.root={tmp_path}", "scoring.feature_spec=model"])
    assert transform_spec(own, SPEC) is SPEC  # the model's own, whatever the pipeline holds
    none = load_config(None, [f"storage.root={tmp_path / 'empty'}"])
    with pytest.raises(ScoringError, match=r"scoring\.feature_spec=pipeline: no feature spec at .*feature_spec\.json"):
        transform_spec(none, SPEC)


def _model_and_optimizer(seed: int):
    torch.manual_seed(seed)
    cfg = load_config(None, ["model.embedding_dim=4", "model.sei_hidden=[8]", "model.cgc_hidden=[8]",
                             "model.tower_hidden=[4]"])
    model = build_model(ModelSpec(cfg.model, (5, 6, 7), 2))
    return model, SplitOptimizer(model, 0.01, sparse=True)


def test_run_state_saves_and_restores_itself(tmp_path):
    model, opt = _model_and_optimizer(0)
    state = RunState(epoch=2)
    assert state.improve(0.61, model, rank=0) and state.bad == 0 and state.best_state is not None
    assert not state.improve(0.60, model, rank=0) and state.bad == 1 and state.best == 0.61
    state.history.append({"epoch": 2, "val_auc_mean": 0.61})
    state.save(tmp_path / "latest.pt", model, opt, fingerprint="fp")
    assert not (tmp_path / "latest.tmp").exists()  # written atomically
    fresh, fresh_opt = _model_and_optimizer(1)
    restored = RunState.restore(tmp_path / "latest.pt", fresh, fresh_opt, torch.device("cpu"))
    assert (restored.epoch, restored.best, restored.bad, restored.history) == (3, 0.61, 1, state.history)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    saved = torch.load(tmp_path / "latest.pt", weights_only=False)
    assert (saved["fingerprint"], saved["completed"], saved["epoch"]) == ("fp", False, 2)
    assert not RunState().improve(-math.inf, model, rank=1)  # nothing beats -inf; other ranks keep no weights
    other_rank = RunState()
    assert other_rank.improve(0.5, model, rank=1) and other_rank.best_state is None


def test_dates_have_one_parser_and_one_error_text():
    assert parse_date("2026-01-31").isoformat() == "2026-01-31"
    assert shift("2026-01-31", 1) == "2026-02-01" and shift(None, 3) is None
    with pytest.raises(DateError, match=r"--date: expected a date YYYY-MM-DD, got '2026-02-30'"):
        parse_date("2026-02-30", "--date")
    with pytest.raises(DateError, match=r"empty date range: start 2026-01-02 is after end 2026-01-01"):
        parse_range("2026-01-02", "2026-01-01")
    assert issubclass(DateError, OperatorError) and issubclass(DateError, ValueError)


def test_models_registered_before_the_redesign_still_find_their_class():
    # their pickles name hinet_spark.tracking.HiNetPyfunc (protocol 0 spelling of a class reference)
    from hinet_spark.serving import HiNetPyfunc

    assert pickle.loads(b"chinet_spark.tracking\nHiNetPyfunc\n.") is HiNetPyfunc
    assert pickle.loads(b"chinet_spark.serving\nHiNetPyfunc\n.") is HiNetPyfunc


def test_every_operator_error_of_the_failure_table_shares_the_base():
    from hinet_spark.config import ConfigError
    from hinet_spark.features.build import EmptyInputError, ReconciliationError
    from hinet_spark.ingest.importing import MappingError
    from hinet_spark.lifecycle.promotion import PromotionError
    from hinet_spark.ops.io import (
        ConcurrentRunError,
        ImportIncompleteError,
        StorageError,
        TableNotFoundError,
        TableReadError,
    )
    from hinet_spark.ops.schemas import SchemaError
    from hinet_spark.ops.spark import DeltaNotConfiguredError
    from hinet_spark.train.checkpoints import CheckpointError
    from hinet_spark.train.loop import TrainingError
    from hinet_spark.train.snapshot import DataError
    from hinet_spark.train.warm_start import WarmStartError

    for cls in (ConfigError, EmptyInputError, MappingError, PromotionError, ConcurrentRunError, ImportIncompleteError,
                StorageError, TableNotFoundError, TableReadError, SchemaError, DeltaNotConfiguredError, CheckpointError,
                TrainingError, DataError, WarmStartError, ScoringError, FeatureSpecError):
        assert issubclass(cls, OperatorError), cls
    assert not issubclass(ReconciliationError, OperatorError)  # a bug, not bad input: keeps its traceback


def _evaluation(probs_good: bool, n: int = 4000, seed: int = 0):
    """Two scenarios; probabilities that carry the labels' signal, or pure noise."""
    import numpy as np

    from hinet_spark.evaluation import evaluate

    rng = np.random.default_rng(seed)
    scen = rng.integers(0, 2, n)
    p = rng.uniform(0.05, 0.4, (n, 2))
    p[:, 1] = p[:, 0] * 0.3
    labels = (rng.uniform(size=(n, 2)) < p).astype(int)
    labels[:, 1] = labels[:, 1] & labels[:, 0]
    probs = p if probs_good else rng.uniform(0.05, 0.4, (n, 2))
    return evaluate(scen, labels, probs, ("a", "b"))


def test_the_promotion_floor_against_a_base_rate_predictor():
    from hinet_spark.lifecycle.promotion import base_rate_logloss, floor

    cfg = load_config(None, ["mlflow.min_positives=20"])
    assert base_rate_logloss(1, 4) == pytest.approx(-(0.25 * math.log(0.25) + 0.75 * math.log(0.75)))
    good = floor(cfg, _evaluation(True))
    assert good.passed and good.reason.startswith("above the floor"), good.reason
    noise = floor(cfg, _evaluation(False))  # AUC about 0.5 and a logloss worse than the base rate
    assert not noise.passed and "is not above chance" in noise.reason and "base-rate predictor" in noise.reason
    few = floor(load_config(None, ["mlflow.min_positives=100000"]), _evaluation(True))
    assert not few.passed and "nothing shows" in few.reason
    ev = _evaluation(True)
    ev.auc["ctcvr"]["b"] = 0.42
    named = floor(cfg, ev)
    assert named.below_chance == ["b ctcvr AUC 0.4200"] and "below chance: b ctcvr AUC 0.4200" in named.reason


def test_the_kept_best_needs_a_gain_above_min_delta():
    from hinet_spark.train.loop import best_at_last_validation, best_record

    model = build_model(ModelSpec(load_config(None, []).model, SPEC.vocab_sizes, 2))
    run, history = RunState(), []
    for auc in (0.60, 0.62, 0.6205, 0.615):
        history.append({"step": len(history) + 1, "epoch": 0, "val_auc_mean": auc,
                        "kept": run.improve(auc, model, 0, min_delta=0.001)})
    assert [h["kept"] for h in history] == [True, True, False, False] and run.bad == 2 and run.best == 0.62
    assert best_record(history)["step"] == 2 and not best_at_last_validation(history)
    assert best_at_last_validation(history[:2])
    assert best_record([{"step": 1, "val_auc_mean": 0.5}, {"step": 2, "val_auc_mean": 0.7}])["step"] == 2  # old runs


def test_progress_lines_show_the_last_exchanged_loss_with_its_step_never_nan(caplog):
    from hinet_spark.train.loop import LOSS_SYNC_STEPS, _Progress

    t = dataclasses.replace(load_config(None).train, progress_seconds=0, epochs=2)
    progress = _Progress(t, steps=100, global_batch=256)
    with caplog.at_level("INFO", logger="hinet_spark.train.loop"):
        progress.step(0, 10, 0.0, (math.nan, (0, 0)), bad=0)  # before the first exchange
        progress.step(0, 60, 0.0, (0.4123, (0, LOSS_SYNC_STEPS)), bad=0)
        progress.step(1, 5, 0.0, (0.3988, (0, 100)), bad=0)  # a new epoch before its first exchange
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and not any("nan" in line for line in lines)
    assert f"loss not yet (first mean at step {LOSS_SYNC_STEPS})" in lines[0]
    assert f"loss 0.4123 (mean of all ranks up to step {LOSS_SYNC_STEPS})" in lines[1]
    assert "loss 0.3988 (mean of all ranks up to epoch 0 step 100)" in lines[2]
