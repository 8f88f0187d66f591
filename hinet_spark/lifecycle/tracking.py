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

from hinet_spark.config import Config
from hinet_spark.evaluation import Evaluation
from hinet_spark.ops.io import StorageError
from hinet_spark.lifecycle.promotion import compare_and_decide, comparison_metrics, set_champion
from hinet_spark.serving import log_pyfunc, registered_version
from hinet_spark.train.loop import TrainResult

logger = logging.getLogger(__name__)

VAL_METRIC = "val_auc.mean"


def tracking_uri(cfg: Config) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    return f"sqlite:///{(Path(cfg.storage.root) / 'mlflow.db').resolve()}"


def setup(cfg: Config) -> None:
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or tracking_uri(cfg))
    use_experiment(cfg, cfg.mlflow.experiment)


def artifact_root(cfg: Config) -> str | None:
    """Where new experiments keep their artifacts: ``mlflow.artifact_root``, or with a local
    (sqlite or file) store ``<storage.root>/mlflow_artifacts`` (so copying storage.root moves
    the whole result, and nothing lands in ./mlruns of the working directory). A remote
    tracking server (Databricks, http) chooses its own."""
    if cfg.mlflow.artifact_root:
        return cfg.mlflow.artifact_root
    if tracking_uri(cfg).split(":", 1)[0] in ("sqlite", "file"):  # a local store: its default is ./mlruns
        return (Path(cfg.storage.root).resolve() / "mlflow_artifacts").as_uri()
    return None


def use_experiment(cfg: Config, name: str) -> None:
    """Set the active experiment, creating it with :func:`artifact_root` when new.

    With the local store's default layout, an existing experiment must keep its artifacts
    under this ``storage.root``: a root copied with ``cp -r`` carries an ``mlflow.db`` whose
    experiments still point at the original's absolute paths, and its runs would write there.
    """
    root = artifact_root(cfg)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        MlflowClient().create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    elif root is not None and not cfg.mlflow.artifact_root and not cfg.mlflow.tracking_uri:  # the root's own store
        location = str(exp.artifact_location)
        if not (location == root or location.startswith(root.rstrip("/") + "/")):
            raise StorageError(
                f"MLflow experiment {name!r} ({tracking_uri(cfg)}) keeps its artifacts at {location}, outside this "
                f"storage.root's {root}: the root was copied from elsewhere (its mlflow.db keeps the original's "
                "absolute paths), so this run would write into the original. Give the copy its own MLflow store "
                "(set mlflow.tracking_uri to a new sqlite file, or remove the copy's mlflow.db and mlflow_artifacts), "
                "or set mlflow.artifact_root to write to that location on purpose")
    mlflow.set_experiment(name)


def _bar_labels(ev: Evaluation, names: tuple[str, ...]) -> list[str]:
    return [f"{s}\nn={ev.rows.get(s, 0):,}\n+{ev.positives.get('ctr', {}).get(s, 0):,}/"
            f"{ev.positives.get('ctcvr', {}).get(s, 0):,}" for s in names]


def auc_bars(result: TrainResult, names: tuple[str, ...], path: Path) -> Path:
    """Validation and test AUC per scenario x task, rows and positives under each group,
    "n/a" where the label is constant, and the chance line."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.4
    seen = [v for ev in (result.val, result.test) for per in ev.auc.values() for v in per.values() if v is not None]
    low = min(0.4, np.floor((min(seen, default=0.5) - 0.05) * 10) / 10)
    for ax, (split, ev) in zip(axes, (("validation", result.val), ("test", result.test))):
        for j, task in enumerate(("ctr", "ctcvr")):
            xs = np.arange(len(names)) + (j - 0.5) * width
            vals = [ev.auc.get(task, {}).get(s) for s in names]
            ax.bar(xs, [v if v is not None else 0.0 for v in vals], width, label=task, color=f"C{j}")
            for x, v, s in zip(xs, vals, names):
                if v is None:
                    n = ev.rows.get(s, 0)
                    ax.text(x, low + 0.02, f"n/a: constant label\nover {n:,} rows", rotation=90, ha="center",
                            va="bottom", fontsize=6)
                else:
                    ax.text(x, v + 0.005, f"{v:.3f}", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
        ax.set_xticks(range(len(names)), _bar_labels(ev, names), fontsize=7)
        ax.set_ylim(low, 1.0)
        ax.set_title(f"{split} AUC (mean {ev.mean_auc:.4f})" if ev.mean_auc is not None else f"{split} AUC")
        ax.set_xlabel("scenario, rows, positives ctr/ctcvr")
    axes[0].set_ylabel("AUC")
    axes[1].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


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


def san_heatmap(san: np.ndarray, names: tuple[str, ...], check: dict | None, path: Path) -> Path:
    import matplotlib.pyplot as plt

    uniform = 1.0 / (len(names) - 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("lightgrey")  # the diagonal: SAN attends to the other scenarios only
    masked = np.ma.masked_array(san, mask=np.eye(len(names), dtype=bool))
    im = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=2 * uniform)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, "-" if i == j else f"{san[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("attended scenario m")
    ax.set_ylabel("scenario i")
    title = f"SAN weights (Fig. 3); white = uniform 1/(M-1) = {uniform:.2f}"
    if check is not None:
        title += f"\nstrongest weight inside the true group: {check['in_group']}/{check['of']} scenarios"
    ax.set_title(title, fontsize=9)
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_plot(ev: Evaluation, names: tuple[str, ...], split: str, path: Path) -> Path:
    """Per scenario x task (one panel each, on its own range): mean predicted vs observed
    rate in equal-count bins."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(names), figsize=(2.7 * len(names), 5.6), squeeze=False)
    for j, task in enumerate(("ctr", "ctcvr")):
        for k, s in enumerate(names):
            ax = axes[j][k]
            curve = ev.calibration.get(task, {}).get(s) or []
            top = 0.0
            if curve:
                pred, obs, _ = zip(*curve)
                ax.plot(pred, obs, "o-", color=f"C{j}", markersize=3)
                top = max(*pred, *obs)
            top = top * 1.05 or 1.0
            ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
            ax.set_xlim(0, top)
            ax.set_ylim(0, top)
            pos = ev.positives.get(task, {}).get(s, 0)
            ax.set_title(f"{task} {s}: {ev.rows.get(s, 0):,} rows, {pos:,} pos", fontsize=8)
            ax.tick_params(labelsize=6)
            if k == 0:
                ax.set_ylabel("observed rate", fontsize=8)
            if j == 1:
                ax.set_xlabel("mean predicted", fontsize=8)
    fig.suptitle(f"{split} calibration: 10 equal-count bins per panel, dashed = perfect", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plots(cfg: Config, result: TrainResult, names: tuple[str, ...], out: Path) -> tuple[list[Path], dict | None]:
    import matplotlib

    matplotlib.use("Agg")
    paths, check = [], None
    san = getattr(result.model, "san_matrix", lambda: None)()
    if san is not None:
        weights = san.detach().numpy()
        if synthetic_groups_known(cfg):
            check = san_check(weights, names, cfg.synthetic.scenario_groups)
        paths.append(san_heatmap(weights, names, check, out / "san_heatmap.png"))
    paths.append(auc_bars(result, names, out / "auc_by_scenario.png"))
    paths.append(calibration_plot(result.val, names, "validation", out / "calibration_val.png"))
    paths.append(calibration_plot(result.test, names, "test", out / "calibration_test.png"))
    return paths, check


def synthetic_groups_known(cfg: Config) -> bool:
    """The samples come from the synthetic generator (its oracle table exists) and its
    section fits the scenarios, so ``synthetic.scenario_groups`` is the truth SAN can be
    checked against."""
    from hinet_spark.config import ConfigError, validate_synthetic
    from hinet_spark.ops.io import generated_data

    if not generated_data(cfg):
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
    if not cfg.mlflow.register:  # a comparison run: its own experiment, the registry untouched
        use_experiment(cfg, f"{cfg.mlflow.experiment}-comparisons")
    spark = spark or SparkSession.getActiveSession()
    names = tuple(cfg.scenarios.names)
    test_day = result.split_dates["test"][1]
    run_name = f"train-{test_day}" if cfg.mlflow.register else f"compare-{cfg.model.name}-{test_day}"
    with mlflow.start_run(run_name=run_name) as run, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        params = cfg.flat()
        params.update({"data.samples_version": str(result.samples_version),
                       "data.feature_spec_hash": result.feature_spec.hash,
                       "warm_start_version": str(result.warm_start_version),
                       **{f"data.{k}_dates": f"{a}..{b}" for k, (a, b) in result.split_dates.items()},
                       **{f"loss.lambda.{s}": f"{w:.4f}" for s, w in zip(names, result.loss_weights)}})
        mlflow.log_params({k: v[:500] for k, v in params.items()})
        for record in result.history:  # one record per validation, at its global step
            mlflow.log_metrics({"train_loss": record["train_loss"], "val_auc_mean_step": record["val_auc_mean"],
                                "samples_per_s": record["samples_per_s"], "epoch": record["epoch"]},
                               step=record["step"])
        best = max(result.history, key=lambda r: r["val_auc_mean"]) if result.history else {"epoch": -1, "step": -1}
        best_epoch, best_step = best["epoch"], best["step"]
        mlflow.log_metrics({**result.val.metrics("val"), **result.test.metrics("test"),
                            "train_seconds": result.train_seconds, "best_epoch": float(best_epoch),
                            "best_step": float(best_step),
                            **{f"train_rows.scenario_{s}": float(n) for s, n in result.split_counts["train"].items()}})
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
            mlflow.log_metric("san.strongest_in_true_group", san["in_group"] / san["of"])
            mlflow.log_dict(san, "san_check.json")
        register = cfg.mlflow.registered_model if cfg.mlflow.register else None
        info = log_pyfunc(result.model, result.model_spec, result.feature_spec, register)
        run_id = run.info.run_id
    if not cfg.mlflow.register:
        decision = (f"not registered (mlflow.register: false): a comparison run in experiment "
                    f"{cfg.mlflow.experiment}-comparisons; {cfg.mlflow.registered_model} and its aliases untouched")
        with mlflow.start_run(run_id=run_id):
            mlflow.set_tag("champion_decision", decision)
        return {"run_id": run_id, "run_name": run_name, "model_uri": info.model_uri, "version": None, "aliases": [],
                "decision": decision, "best_epoch": best_epoch, "best_step": best_step, "san": san, "comparison": []}
    version = registered_version(info, cfg.mlflow.registered_model, run_id)
    aliases, decision, comps = promote(cfg, version, result, spark)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tag("champion_decision", decision[:5000])
        if comps:
            mlflow.log_metrics(comparison_metrics(comps))
    logger.debug("MLflow run %s (%s), model %s version %s, aliases %s", run_id, run_name,
                cfg.mlflow.registered_model, version, aliases)
    return {"run_id": run_id, "run_name": run_name, "model_uri": f"models:/{cfg.mlflow.registered_model}/{version}",
            "version": version, "aliases": aliases, "decision": decision, "best_epoch": best_epoch,
            "best_step": best_step, "san": san, "comparison": comps}


def promote(cfg: Config, version: str, result: TrainResult, spark: Any) -> tuple[list[str], str, list]:
    """challenger <- version; champion <- version when it beats the champion on the same rows
    (:mod:`hinet_spark.lifecycle.promotion`). Returns the aliases, the decision in words, the comparisons."""
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    client.set_registered_model_alias(name, "challenger", version)
    client.set_model_version_tag(name, version, VAL_METRIC, str(result.val.mean_auc))
    aliases = ["challenger"]
    decision, comps = compare_and_decide(spark, cfg, result)
    text = decision.reason
    if decision.not_judged:
        text += "; not judged: " + ", ".join(decision.not_judged)
    if not cfg.mlflow.promote:
        text = f"not promoted: promotion is off (--no-promote or mlflow.promote: false); {text}"
    elif decision.promote:
        set_champion(cfg, version, text, "train")
        aliases.append("champion")
    logger.debug("champion decision: %s", text)
    return aliases, text, comps
