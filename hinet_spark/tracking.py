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
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, Schema

from hinet_spark.config import Config
from hinet_spark.feature_spec import FeatureSpec
from hinet_spark.training import TrainResult, model_config_dict

logger = logging.getLogger(__name__)

VAL_METRIC = "val_auc.mean"


def tracking_uri(cfg: Config) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    return f"sqlite:///{(Path(cfg.storage.root) / 'mlflow.db').resolve()}"


def setup(cfg: Config) -> None:
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or tracking_uri(cfg))
    mlflow.set_experiment(cfg.mlflow.experiment)


class HiNetPyfunc(mlflow.pyfunc.PythonModel):
    """Batch prediction: a DataFrame of ``f_*`` ids and ``scenario_idx`` -> p_ctr, p_ctcvr."""

    def load_context(self, context: Any) -> None:
        from hinet_spark.config import ModelSection
        from hinet_spark.models import ModelSpec, build_model

        meta = json.loads(Path(context.artifacts["model_meta"]).read_text())
        section = ModelSection(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["model"].items()})
        self.spec = FeatureSpec.load(context.artifacts["feature_spec"])
        self.columns = self.spec.columns
        self.model = build_model(ModelSpec(section, tuple(meta["vocab_sizes"]), meta["n_scenarios"]))
        self.model.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        # In a Spark task (spark_udf) use the task's cores, not every core of the machine; on
        # a worker with a GPU predict there.
        task = _spark_task()
        if task is not None:
            torch.set_num_threads(max(1, int(task.cpus())))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        missing = [c for c in (*self.columns, "scenario_idx") if c not in model_input.columns]
        if missing:
            raise ValueError(f"model input lacks columns {missing}")
        ids = torch.as_tensor(model_input[self.columns].to_numpy(dtype=np.int64), device=self.device)
        scen = torch.as_tensor(model_input["scenario_idx"].to_numpy(dtype=np.int64), device=self.device)
        with torch.no_grad():
            probs = torch.sigmoid(self.model(ids, scen)).cpu().numpy().astype(np.float64)
        return pd.DataFrame({"p_ctr": probs[:, 0], "p_ctcvr": probs[:, 1]})


def _spark_task() -> Any:
    try:
        from pyspark import TaskContext
    except ImportError:
        return None
    return TaskContext.get()


def signature(spec: FeatureSpec) -> ModelSignature:
    inputs = Schema([ColSpec("integer", c) for c in (*spec.columns, "scenario_idx")])
    outputs = Schema([ColSpec("double", "p_ctr"), ColSpec("double", "p_ctcvr")])
    return ModelSignature(inputs=inputs, outputs=outputs)


def _plots(result: TrainResult, names: tuple[str, ...], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    san = getattr(result.model, "san_matrix", lambda: None)()
    if san is not None:
        fig, ax = plt.subplots(figsize=(5, 4))
        im = ax.imshow(san.detach().numpy(), cmap="Blues")
        ax.set_xticks(range(len(names)), names)
        ax.set_yticks(range(len(names)), names)
        ax.set_xlabel("attended scenario m")
        ax.set_ylabel("scenario i")
        ax.set_title("SAN weights (Fig. 3)")
        fig.colorbar(im)
        paths.append(out / "san_heatmap.png")
        fig.savefig(paths[-1], bbox_inches="tight")
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.4
    for j, task in enumerate(("ctr", "ctcvr")):
        vals = [result.test.auc.get(task, {}).get(s) or 0.0 for s in names]
        ax.bar(np.arange(len(names)) + (j - 0.5) * width, vals, width, label=task)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("test AUC")
    ax.legend()
    paths.append(out / "test_auc_by_scenario.png")
    fig.savefig(paths[-1], bbox_inches="tight")
    plt.close(fig)
    return paths


def log_training(cfg: Config, result: TrainResult) -> dict[str, Any]:
    """Log the run, register the model, set the aliases. Returns run id, version, aliases."""
    setup(cfg)
    names = tuple(cfg.scenarios.names)
    with mlflow.start_run() as run, tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        params = cfg.flat()
        params.update({"data.samples_version": str(result.samples_version),
                       "data.feature_spec_hash": result.feature_spec.hash,
                       **{f"data.{k}_dates": f"{a}..{b}" for k, (a, b) in result.split_dates.items()},
                       **{f"loss.lambda.{s}": f"{w:.4f}" for s, w in zip(names, result.loss_weights)}})
        mlflow.log_params({k: v[:500] for k, v in params.items()})
        for record in result.history:
            mlflow.log_metrics({"train_loss": record["train_loss"], "val_auc_mean_epoch": record["val_auc_mean"],
                                "samples_per_s": record["samples_per_s"]}, step=record["epoch"])
        mlflow.log_metrics({**result.val.metrics("val"), **result.test.metrics("test"),
                            "train_seconds": result.train_seconds})
        spec_file = tmp_path / "feature_spec.json"
        result.feature_spec.save(spec_file)
        weights = tmp_path / "weights.pt"
        torch.save(result.model.state_dict(), weights)
        meta = tmp_path / "model_meta.json"
        meta.write_text(json.dumps({"model": model_config_dict(result.model_spec.config),
                                    "vocab_sizes": list(result.model_spec.vocab_sizes),
                                    "n_scenarios": result.model_spec.n_scenarios, "scenarios": list(names)}))
        (tmp_path / "history.json").write_text(json.dumps(result.history, indent=2))
        (tmp_path / "test_notes.json").write_text(json.dumps(result.test.notes, indent=2))
        mlflow.log_artifact(str(spec_file))
        mlflow.log_artifact(str(tmp_path / "history.json"))
        mlflow.log_artifact(str(tmp_path / "test_notes.json"))
        for plot in _plots(result, names, tmp_path):
            mlflow.log_artifact(str(plot), artifact_path="plots")
        example = pd.DataFrame({c: [1] for c in (*result.feature_spec.columns, "scenario_idx")}).astype("int32")
        info = mlflow.pyfunc.log_model(
            name="model", python_model=HiNetPyfunc(),
            artifacts={"weights": str(weights), "feature_spec": str(spec_file), "model_meta": str(meta)},
            signature=signature(result.feature_spec), input_example=example,
            registered_model_name=cfg.mlflow.registered_model,
        )
        version = str(info.registered_model_version)
        run_id = run.info.run_id
    aliases = promote(cfg, version, result.val.mean_auc)
    logger.info("MLflow run %s, model %s version %s, aliases %s", run_id, cfg.mlflow.registered_model,
                version, aliases)
    return {"run_id": run_id, "model_uri": f"models:/{cfg.mlflow.registered_model}/{version}",
            "version": version, "aliases": aliases}


def promote(cfg: Config, version: str, val_auc: float | None) -> list[str]:
    """challenger <- version; champion <- version when it beats the champion's validation AUC."""
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    client.set_registered_model_alias(name, "challenger", version)
    client.set_model_version_tag(name, version, VAL_METRIC, str(val_auc))
    aliases = ["challenger"]
    try:
        champion = client.get_model_version_by_alias(name, "champion")
        current = float(champion.tags.get(VAL_METRIC, "nan"))
    except mlflow.exceptions.MlflowException:
        champion, current = None, float("nan")
    better = val_auc is not None and (champion is None or not np.isfinite(current) or val_auc > current)
    if cfg.mlflow.promote and better:
        client.set_registered_model_alias(name, "champion", version)
        aliases.append("champion")
    elif champion is not None:
        logger.info("champion stays version %s (validation mean AUC %.4f >= %.4f)", champion.version,
                    current, val_auc if val_auc is not None else float("nan"))
    return aliases
