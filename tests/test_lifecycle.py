"""Issue #12: validation inside the epoch with early stopping on the best state, and the
champion judged against the challenger on the same rows (with its own feature spec)."""

from __future__ import annotations

import copy
import dataclasses
import json

import pandas as pd
import pytest
import torch
from delta.tables import DeltaTable
from sklearn.metrics import roc_auc_score

from hinet_spark.config import ConfigError, load_config
from hinet_spark.features.build import EmptyInputError, build_samples
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.lifecycle.promotion import PromotionError, history_lines, rollback, set_champion
from hinet_spark.lifecycle.tracking import log_training
from hinet_spark.model_refs import history, history_experiment, missing_champion
from hinet_spark.models import build_model
from hinet_spark.ops.io import read_table, table_location
from hinet_spark.ops.mlflow_store import setup
from hinet_spark.scoring.batch import score_candidates
from hinet_spark.scoring.quality import evaluate_day
from hinet_spark.train.loop import best_record, fit, validation_steps
from hinet_spark.train.warm_start import WarmStartError
from jobs import evaluate_scores, generate_synthetic

pytestmark = pytest.mark.slow

SMALL = ["synthetic.enabled=true", "synthetic.days=4", "synthetic.exposures_per_day=20000", "synthetic.candidates_per_day=1000",
         "synthetic.calibration_rows_per_scenario=5000", "train.batch_size=512", "train.launcher=local",
         "model.sei_hidden=[32, 16]", "model.cgc_hidden=[32, 16]", "model.tower_hidden=[16]",
         "model.embedding_dim=8", "features.numeric_buckets=8", "mlflow.min_positives=100",
         "mlflow.max_auc_drop=0.05", "synthetic.log_candidates_day=true",
         "mlflow.floor=false"]  # on in test_promotion_compares_on_the_same_rows, which tests it


@pytest.fixture(scope="module")
def root(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("lifecycle")
    overrides = [f"storage.root={root}", *SMALL]
    assert generate_synthetic.main([x for o in overrides for x in ("--set", o)]) == 0
    build_samples(spark, load_config(None, overrides), "2026-01-01", "2026-01-04")
    return root


def config(root, tmp_path, *extra):
    return load_config(None, [f"storage.root={root}", *SMALL, f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
                              f"train.checkpoint_dir={tmp_path}/ckpt", *extra])


def test_validation_points():
    t = load_config(None, ["train.validations_per_epoch=4"]).train
    assert sorted(validation_steps(100, t)) == [24, 49, 74, 99]
    t = load_config(None, ["train.val_every_steps=30"]).train
    assert sorted(validation_steps(100, t)) == [29, 59, 89, 99]  # and always at the epoch's end
    assert sorted(validation_steps(2, load_config(None, ["train.validations_per_epoch=5"]).train)) == [0, 1]
    # epochs after the first also validate early_validation_fraction into the epoch (one-epoch overfitting)
    t = load_config(None, ["train.validations_per_epoch=4", "train.early_validation_fraction=0.05"]).train
    assert sorted(validation_steps(100, t, epoch=1)) == [4, 24, 49, 74, 99]
    assert sorted(validation_steps(100, t, epoch=0)) == [24, 49, 74, 99]
    t = load_config(None, ["train.early_validation_fraction=0"]).train
    assert sorted(validation_steps(100, t, epoch=3)) == [24, 49, 74, 99]
    with pytest.raises(ConfigError, match="train.early_validation_fraction: a fraction of an epoch below 1, got 1.0"):
        load_config(None, ["train.early_validation_fraction=1"])


def test_a_fall_after_the_first_epoch_stops_at_once(spark, root, tmp_path, capfd):
    """train.early_stopping_drop: after epoch 0, one validation that far below the best ends the run,
    whatever the patience; the kept state is still the best one."""
    cfg = config(root, tmp_path, "train.validations_per_epoch=2", "train.epochs=6", "train.early_stopping_patience=20",
                 "train.learning_rate=0.01", "train.early_stopping_drop=0.002", "train.early_validation_fraction=0.1")
    result = fit(spark, cfg)
    log = capfd.readouterr().err  # the worker's own log lines
    aucs = [h["val_auc_mean"] for h in result.history]
    best = best_record(result.history)
    assert result.history[-1]["epoch"] >= 1 and len(aucs) < 6 * 3, aucs  # stopped long before patience or budget
    assert best["val_auc_mean"] - aucs[-1] > 0.002, aucs  # by the fall
    assert all(best["val_auc_mean"] - a <= 0.002 for a, h in zip(aucs[:-1], result.history) if h["epoch"] >= 1)
    assert f"validation AUC fell {best['val_auc_mean'] - aucs[-1]:.4f} below the best (more than " \
           "train.early_stopping_drop 0.002)" in log, log[-2000:]


def test_validates_inside_the_epoch_and_keeps_the_best_state(spark, root, tmp_path):
    cfg = config(root, tmp_path, "train.validations_per_epoch=4", "train.epochs=4", "train.early_stopping_patience=3",
                 "train.learning_rate=0.01", "train.early_stopping_drop=0")  # patience alone (the fall: next test)
    result = fit(spark, cfg)
    steps = 40000 // 512  # two training days of 20k rows, one worker
    points = [h["step"] for h in result.history]
    assert points[:4] == [s + 1 for s in sorted(validation_steps(steps, cfg.train))]
    aucs = [h["val_auc_mean"] for h in result.history]
    best = result.history.index(best_record(result.history))  # the last that gained > min_delta
    assert aucs[best] >= max(aucs) - cfg.train.early_stopping_min_delta
    # a fast learning rate overfits the ids: the run stops 3 validations after its best, inside an epoch
    assert len(aucs) == best + 4 < 16, aucs
    # the returned model is the best state, not the last: re-evaluated, it gives the best AUC
    assert result.val.mean_auc == pytest.approx(aucs[best], abs=1e-9)
    assert result.best_val_auc == aucs[best]


def _random_twin(result, auc: float):
    """The same run's bookkeeping with an untrained model, claiming validation AUC ``auc``."""
    torch.manual_seed(123)
    twin = dataclasses.replace(result, model=build_model(result.model_spec), val=copy.deepcopy(result.val))
    twin.val.auc = {t: {s: auc for s in per} for t, per in twin.val.auc.items()}
    return twin


def test_promotion_compares_on_the_same_rows(spark, root, tmp_path):
    cfg = config(root, tmp_path, "train.epochs=2", "train.learning_rate=0.01", "mlflow.floor=true")
    trained = fit(spark, cfg)
    assert trained.val.mean_auc > 0.56  # the premise: a model that has learned

    # a model at chance is registered but not promoted, even with no champion yet; a cell
    # below chance is named
    chance = _random_twin(trained, 0.5)
    chance.val.auc["ctr"]["a"] = 0.45
    refused = log_training(cfg, chance, spark)
    assert refused["version"] == "1" and refused["aliases"] == ["challenger"]
    assert refused["decision"].startswith("not promoted: below the floor: mean validation AUC ")
    assert "below chance: a ctr AUC 0.4500" in refused["decision"]
    setup(cfg)
    import mlflow

    assert mlflow.get_run(refused["run_id"]).data.tags["champion_decision"] == refused["decision"]
    assert "not promoted, champion stays none: not promoted: below the floor" in history_lines(cfg)[0]
    assert "were registered but not promoted" in missing_champion(cfg)

    # a random model that *claims* a validation AUC of 0.99 becomes champion (there is none)
    first = log_training(cfg, _random_twin(trained, 0.99), spark)
    assert first["aliases"] == ["challenger", "champion"] and first["comparison"] == []
    # the trained model's own validation AUC (~0.6) is below the 0.99 recorded for the champion,
    # but on the same rows it is better: promoted
    second = log_training(cfg, trained, spark)
    assert second["aliases"] == ["challenger", "champion"], second["decision"]
    val = second["comparison"][0]
    assert val.split == "val" and val.champion_version == first["version"]
    assert val.challenger.mean_auc > 0.55 > val.champion.mean_auc - 0.05
    assert "promoted" in second["decision"] and "same" in second["decision"]

    # a worse challenger whose own number (0.99) beats the champion's recorded one: not promoted
    third = log_training(cfg, _random_twin(trained, 0.99), spark)
    assert third["aliases"] == ["challenger"], third["decision"]
    assert "not promoted" in third["decision"]
    assert str(mlflow.MlflowClient().get_model_version_by_alias("hinet", "champion").version) == second["version"]
    run = mlflow.get_run(third["run_id"])
    assert run.data.metrics["compare.val.champion.auc.mean"] == pytest.approx(
        third["comparison"][0].champion.mean_auc)

    # --no-promote: a better model stays challenger
    off = log_training(dataclasses.replace(cfg, mlflow=dataclasses.replace(cfg.mlflow, promote=False)), trained,
                       spark)
    assert off["aliases"] == ["challenger"] and off["decision"].startswith("not promoted: promotion is off")

    # manual moves, with the history that a rollback follows
    set_champion(cfg, third["version"], "test: promote by hand", "promote")
    entry = rollback(cfg, "test: roll back")
    assert entry["version"] == second["version"] and entry["previous"] == third["version"]
    assert [h["action"] for h in history(cfg)] == ["train", "train", "train", "promote", "rollback"]
    assert history(cfg)[0]["moved"] is False  # the refusal: a rollback never goes back to it
    with pytest.raises(PromotionError, match="no version '99'"):
        set_champion(cfg, "99", "no such", "promote")

    # the history is one MLflow run per entry, not a registered-model tag that grows with each move
    client = mlflow.MlflowClient()
    assert "champion_history" not in client.get_registered_model("hinet").tags
    runs = client.search_runs([client.get_experiment_by_name(history_experiment(cfg)).experiment_id])
    assert sorted(r.info.run_name for r in runs) == sorted(
        f"{h['action']}-v{h['version']}" for h in history(cfg))
    assert {r.data.tags["mlflow.note.content"] for r in runs} == {h["reason"][:5000] for h in history(cfg)}
    # written before the alias moves: a move that fails leaves a failed entry, not counted
    before = history(cfg)

    def refuse(*_):
        raise mlflow.exceptions.MlflowException("registry unavailable")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(mlflow.MlflowClient, "set_registered_model_alias", refuse)
        with pytest.raises(mlflow.exceptions.MlflowException, match="registry unavailable"):
            set_champion(cfg, third["version"], "test: the registry fails", "promote")
    assert history(cfg) == before
    failed = client.search_runs([runs[0].info.experiment_id], "tags.`hinet.state` = 'failed'")
    assert [r.data.tags["hinet.reason"] for r in failed] == ["test: the registry fails"]
    # an older version's history tag is still read, before the runs
    legacy = [{"at": "2026-01-01T00:00:00+00:00", "action": "train", "version": "1", "previous": None,
               "reason": "kept by an older version"}]
    client.set_registered_model_tag("hinet", "champion_history", json.dumps(legacy))
    assert history(cfg) == legacy + before


def test_warm_start_loads_the_champion_and_trains_on_recent_days(spark, root, tmp_path):
    cfg = config(root, tmp_path, "train.epochs=1")
    base = fit(spark, cfg)
    log_training(cfg, base, spark)
    # a learning rate of ~0 keeps the starting weights: they are the champion's
    still = fit(spark, config(root, tmp_path, "train.epochs=1", "train.learning_rate=1.0e-12"), warm_start="champion")
    assert still.warm_start_version == "1"
    assert still.split_dates["train"] == ("2026-01-02", "2026-01-02")  # warm_start_window_days: 1
    for k, v in base.model.state_dict().items():
        torch.testing.assert_close(still.model.state_dict()[k], v, atol=1e-6, rtol=0)
    with pytest.raises(WarmStartError, match=r"model\.embedding_dim: 8 in version 1, 16 now"):
        fit(spark, config(root, tmp_path, "model.embedding_dim=16"), warm_start="champion")
    with pytest.raises(WarmStartError, match="no such version or alias"):
        fit(spark, cfg, warm_start="7")


def test_evaluate_scores_matches_a_direct_computation(spark, root, tmp_path):
    day = "2026-01-05"  # the candidates day, also logged (synthetic.log_candidates_day)
    cfg = config(root, tmp_path, "train.epochs=1")
    log_training(cfg, fit(spark, cfg), spark)
    score_candidates(spark, cfg, day)
    build_samples(spark, cfg, day, day)
    lost = read_table(spark, cfg, "samples").where(f"dt = '{day}'").orderBy("exposure_id").first()
    DeltaTable.forPath(spark, table_location(cfg, "samples")).delete(
        f"dt = '{day}' AND exposure_id = '{lost['exposure_id']}'")  # a scored candidate without a label
    argv = ["--set", f"storage.root={root}", *[x for o in SMALL for x in ("--set", o)],
            "--set", f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db", "--date", day]
    assert evaluate_scores.main(argv) == 0
    got = read_table(spark, cfg, "score_quality").where(f"dt = '{day}'").toPandas()
    scores = read_table(spark, cfg, "scores").where(f"dt = '{day}'").toPandas()
    labels = read_table(spark, cfg, "samples").where(f"dt = '{day}'").toPandas()
    both = scores.merge(labels[["exposure_id", "label_ctr", "label_ctcvr"]], on="exposure_id")
    assert len(got) == 2 * scores["scenario"].nunique()
    for _, row in got.iterrows():
        part = both[both["scenario"] == row["scenario"]]
        y, p = part[f"label_{row['task']}"], part[f"p_{row['task']}"]
        assert row["rows"] == len(part) and row["positives"] == y.sum()
        if 0 < y.sum() < len(y):
            assert row["auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
        else:
            assert pd.isna(row["auc"])
        assert row["observed_rate"] == pytest.approx(y.mean())
        assert row["unlabeled"] == (1 if row["scenario"] == lost["scenario"] else 0)
    assert evaluate_scores.main(argv) == 0  # a rerun replaces the date
    again = read_table(spark, cfg, "score_quality").where(f"dt = '{day}'").toPandas()
    key = ["scenario", "task"]
    pd.testing.assert_frame_equal(got.sort_values(key, ignore_index=True)[["auc", "rows", "logloss"]],
                                  again.sort_values(key, ignore_index=True)[["auc", "rows", "logloss"]])
    with pytest.raises(EmptyInputError, match="scores has no rows dated 2026-01-07: run score_candidates"):
        evaluate_day(spark, cfg, "2026-01-07")
    DeltaTable.forPath(spark, table_location(cfg, "samples")).delete(f"dt = '{day}'")
    with pytest.raises(EmptyInputError, match=f"samples has no labels dated {day}: run build_features"):
        evaluate_day(spark, cfg, day)


def test_champion_with_another_spec_is_evaluated_with_its_own(spark, root, tmp_path):
    cfg = config(root, tmp_path, "train.epochs=1")
    champion_run = fit(spark, cfg)
    first = log_training(cfg, champion_run, spark)
    spec_a = champion_run.feature_spec

    refit_cfg = config(root, tmp_path, "train.epochs=1", "features.numeric_buckets=5")
    build_samples(spark, refit_cfg, "2026-01-01", "2026-01-04", refit=True)
    spec_b = FeatureSpec.load(root / "feature_spec.json")
    assert spec_b.hash != spec_a.hash
    challenger = fit(spark, refit_cfg)
    logged = log_training(refit_cfg, challenger, spark)
    val = logged["comparison"][0]
    assert val.champion_spec == spec_a.hash and val.champion_version == first["version"]
    # the same validation rows through spec A's transform give the champion exactly the AUCs it
    # had when it was trained on spec A's samples
    for task, per in champion_run.val.auc.items():
        for s, auc in per.items():
            if auc is not None:
                assert val.champion.auc[task][s] == pytest.approx(auc, abs=1e-5), (task, s)
