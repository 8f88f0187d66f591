"""MLflow: the run of a training job, the pyfunc model, the registry aliases.

A run holds the resolved config as params, per-epoch metrics, validation and test metrics
(``test_auc.ctr.scenario_a``...), the model as a custom pyfunc with a signature (inputs: the
``f_*`` id columns and ``scenario_idx``; outputs ``p_ctr``, ``p_ctcvr``) logged together with
the feature spec, and plots (SAN heatmap, per-scenario AUC bars). The new registered version
gets the alias ``challenger``, and ``champion`` when its validation mean AUC beats the
current champion's (or there is none).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from hinet_spark import plots
from hinet_spark.config import Config, ConfigError, validate_synthetic
from hinet_spark.features.build import numeric_ranges
from hinet_spark.lifecycle.promotion import (
    compare_and_decide,
    comparison_metrics,
    floor,
    record_refusal,
    set_champion,
)
from hinet_spark.ops.mlflow_store import setup, use_experiment
from hinet_spark.serving import log_pyfunc, pinned_requirements, registered_version
from hinet_spark.train.loop import TrainResult, best_at_last_validation, best_record

logger = logging.getLogger(__name__)

VAL_METRIC = "val_auc.mean"


def san_check(san: np.ndarray, names: tuple[str, ...], groups: tuple[tuple[str, ...], ...]) -> dict[str, Any]:
    """For each scenario, the other scenario SAN weighs most, and whether it is in the same
    true group (known for the synthetic data)."""
    group_of = {s: i for i, g in enumerate(groups) for s in g}
    strongest, inside = {}, 0
    for i, s in enumerate(names):
        row = san[i].copy()
        row[i] = -np.inf
        m = names[int(np.argmax(row))]
        strongest[s] = m
        inside += int(group_of.get(s) is not None and group_of.get(s) == group_of.get(m))
    return {"strongest": strongest, "in_group": inside, "of": len(names)}


def _plots(cfg: Config, result: TrainResult, names: tuple[str, ...], out: Path) -> tuple[list[Path], dict | None]:
    paths, check = [], None
    san = getattr(result.model, "san_matrix", lambda: None)()
    if san is not None:
        weights = san.detach().numpy()
        if synthetic_groups_known(cfg):
            check = san_check(weights, names, cfg.synthetic.scenario_groups)
        paths.append(plots.san_heatmap(weights, names, check, out / "san_heatmap.png"))
    paths.append(plots.auc_bars(result.val, result.test, names, out / "auc_by_scenario.png"))
    paths.append(plots.calibration_plot(result.val, names, "validation", out / "calibration_val.png"))
    paths.append(plots.calibration_plot(result.test, names, "test", out / "calibration_test.png"))
    return paths, check


def synthetic_groups_known(cfg: Config) -> bool:
    """The config says the samples are the generator's (``synthetic.enabled``) and its section
    fits the scenarios, so ``synthetic.scenario_groups`` is the truth SAN can be checked against."""
    if not cfg.synthetic.enabled:
        return False
    try:
        validate_synthetic(cfg)
    except ConfigError:
        return False
    return True


def log_training(cfg: Config, result: TrainResult, spark: Any = None) -> dict[str, Any]:
    """Log the run, register the model, compare it with the champion on the same rows, set
    the aliases. Returns run id, version, aliases, the decision and the comparison."""
    from pyspark.sql import SparkSession

    setup(cfg)
    experiment = cfg.mlflow.experiment
    if not cfg.mlflow.register:  # a comparison run: its own experiment, the registry untouched
        experiment = f"{cfg.mlflow.experiment}-comparisons"
        use_experiment(cfg, experiment)
    spark = spark or SparkSession.getActiveSession()
    names = tuple(cfg.scenarios.names)
    test_day = result.split_dates["test"][1]
    run_name = f"{'train' if cfg.mlflow.register else 'compare'}-{cfg.model.name}-{test_day}"
    # the run starts when training started: its duration in the UI is the training's, not the logging's
    from mlflow.tracking.context.registry import resolve_tags  # start_run's tags: user, source, git

    created = MlflowClient().create_run(mlflow.get_experiment_by_name(experiment).experiment_id,
                                        start_time=int(result.started_at * 1000) or None, run_name=run_name,
                                        tags=resolve_tags({"mlflow.runName": run_name}))
    with mlflow.start_run(run_id=created.info.run_id) as run, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        params = cfg.flat()
        params.update({"data.samples_version": str(result.samples_version),
                       "data.feature_spec_hash": result.feature_spec.hash,
                       "warm_start_version": str(result.warm_start_version),
                       **{f"data.{k}_dates": f"{a}..{b}" for k, (a, b) in result.split_dates.items()},
                       **{f"loss.lambda.{s}": f"{w:.4f}" for s, w in zip(names, result.loss_weights)}})
        mlflow.log_params({k: v[:500] for k, v in params.items()})
        log_samples_input(cfg, result, spark)
        for record in result.history:  # one record per validation, at its global step
            mlflow.log_metrics({"train_loss": record["train_loss"], "val_auc_mean_step": record["val_auc_mean"],
                                "samples_per_s": record["samples_per_s"], "epoch": record["epoch"]},
                               step=record["step"])
        best = best_record(result.history)
        best_epoch, best_step = best["epoch"], best["step"]
        at_last = best_at_last_validation(result.history)
        mlflow.set_tag("best_at_last_validation", str(at_last).lower())
        # The model first, then the run's summary metrics, linked to it (MLflow 3: model_id). Logged
        # the other way round, MLflow 3.0's log_model re-logs every step-0 metric of the run for the
        # model, and its sqlite store's duplicate recovery fails past 100 keys (UNIQUE constraint on
        # metrics; seen with Databricks 17.3's MLflow 3.0.1 and six scenarios).
        register = cfg.mlflow.registered_model if cfg.mlflow.register else None
        info = log_pyfunc(result.model, result.model_spec, result.feature_spec, register,
                          ranges=numeric_ranges(cfg),
                          requirements=pinned_requirements(cfg.mlflow.serving_torch, cfg.mlflow.serving_index_url))
        linked = {"model_id": info.model_id} if getattr(info, "model_id", None) else {}
        mlflow.log_metrics({**result.val.metrics("val"), **result.test.metrics("test"),
                            "train_seconds": result.train_seconds, "best_epoch": float(best_epoch),
                            "best_step": float(best_step),
                            **({"compile_seconds": result.compile_seconds} if result.compile_seconds is not None else {}),
                            **{f"train_rows.scenario_{s}": float(n) for s, n in result.split_counts["train"].items()}},
                           **linked)
        spec_file = tmp_path / "feature_spec.json"
        result.feature_spec.save(spec_file)
        (tmp_path / "history.json").write_text(json.dumps(result.history, indent=2))
        (tmp_path / "test_notes.json").write_text(json.dumps(result.test.notes, indent=2))
        mlflow.log_artifact(str(spec_file))
        mlflow.log_artifact(str(tmp_path / "history.json"))
        mlflow.log_artifact(str(tmp_path / "test_notes.json"))
        plots, san = _plots(cfg, result, names, tmp_path)
        for plot in plots:
            mlflow.log_artifact(str(plot), artifact_path="plots")
        if san is not None:
            mlflow.log_metric("san.strongest_in_true_group", san["in_group"] / san["of"], **linked)
            mlflow.log_dict(san, "san_check.json")
        run_id = run.info.run_id
    if not cfg.mlflow.register:
        decision = (f"not registered (mlflow.register: false): a comparison run in experiment "
                    f"{cfg.mlflow.experiment}-comparisons; {cfg.mlflow.registered_model} and its aliases untouched")
        with mlflow.start_run(run_id=run_id):
            describe_run(decision)
        return {"run_id": run_id, "run_name": run_name, "model_uri": info.model_uri, "version": None, "aliases": [],
                "decision": decision, "best_epoch": best_epoch, "best_step": best_step, "san": san, "comparison": [],
                "best_at_last_validation": at_last}
    version = registered_version(info, cfg.mlflow.registered_model, run_id)
    aliases, decision, comps = promote(cfg, version, result, spark)
    with mlflow.start_run(run_id=run_id):
        describe_run(decision)
        if comps:
            mlflow.log_metrics(comparison_metrics(comps))
    logger.debug("MLflow run %s (%s), model %s version %s, aliases %s", run_id, run_name,
                cfg.mlflow.registered_model, version, aliases)
    return {"run_id": run_id, "run_name": run_name, "model_uri": f"models:/{cfg.mlflow.registered_model}/{version}",
            "version": version, "aliases": aliases, "decision": decision, "best_epoch": best_epoch,
            "best_step": best_step, "san": san, "comparison": comps, "best_at_last_validation": at_last}


def describe_run(decision: str) -> None:
    """The champion decision as the run's tag and, in full, its description (the UI's Description
    box; a tag value shows truncated)."""
    mlflow.set_tag("champion_decision", decision[:5000])
    mlflow.set_tag("mlflow.note.content", f"Champion decision: {decision}"[:5000])


def log_samples_input(cfg: Config, result: TrainResult, spark: Any) -> None:
    """The samples table at the version training read, as the run's MLflow dataset (Delta source
    and version: the run's Inputs, and ``mlflow.data`` can load exactly those rows again)."""
    from hinet_spark.ops.io import table_location

    if spark is None:
        return
    where = table_location(cfg, "samples")
    by = {"table_name": where} if cfg.storage.catalog_schema else {"path": where}
    try:
        dataset = mlflow.data.load_delta(**by, version=str(result.samples_version), name=f"samples@v{result.samples_version}",
                                         digest=f"v{result.samples_version}-{result.feature_spec.hash[:12]}")
        mlflow.log_input(dataset, context="training")
    except Exception as exc:  # noqa: BLE001 - the model is worth more than its lineage record
        logger.warning("the samples table (version %s) was not attached to the run as an MLflow dataset: %s",
                       result.samples_version, str(exc).strip().splitlines()[0] if str(exc).strip() else exc)


def promote(cfg: Config, version: str, result: TrainResult, spark: Any) -> tuple[list[str], str, list]:
    """challenger <- version; champion <- version when it beats the champion on the same rows
    (:mod:`hinet_spark.lifecycle.promotion`). Returns the aliases, the decision in words, the comparisons."""
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    client.set_registered_model_alias(name, "challenger", version)
    client.set_model_version_tag(name, version, VAL_METRIC, str(result.val.mean_auc))
    aliases = ["challenger"]
    above = floor(cfg, result.val)
    if not above.passed and cfg.mlflow.floor:
        text = f"not promoted: below the floor: {above.reason}"
        if cfg.mlflow.promote:
            record_refusal(cfg, version, text)
        return aliases, text, []
    decision, comps = compare_and_decide(spark, cfg, result)
    text = decision.reason
    if decision.not_judged:
        text += "; not judged: " + ", ".join(decision.not_judged)
    if above.below_chance:
        text += "; below chance: " + ", ".join(above.below_chance)
    if not cfg.mlflow.promote:
        text = f"not promoted: promotion is off (--no-promote or mlflow.promote: false); {text}"
    elif decision.promote:
        set_champion(cfg, version, text, "train")
        aliases.append("champion")
    logger.debug("champion decision: %s", text)
    return aliases, text, comps
