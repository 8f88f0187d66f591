"""The registered model: a self-contained MLflow pyfunc.

The model carries what it needs to load anywhere MLflow runs (Databricks Model Serving,
``mlflow models serve``, ``spark_udf(env_manager="virtualenv")``, a plain
``mlflow.pyfunc.load_model`` on a machine without this project):

* its code: the ``hinet_spark`` package is logged with the model (``code_paths``) and put on
  ``sys.path`` when it loads; loading imports only this module, ``hinet_spark.models``,
  ``hinet_spark.config`` and ``hinet_spark.features.spec`` (torch, numpy, pandas, PyYAML; no
  Spark);
* its environment: ``requirements.txt`` / ``conda.yaml`` pin the training environment's
  versions of torch, numpy, pandas, mlflow, cloudpickle and PyYAML, and nothing that is on
  no package index;
* its inputs, in either of two forms, both in its signature (every column optional; outputs
  ``p_ctr``, ``p_ctcvr``): **raw rows** as the candidates table holds them (``scenario``, the
  feature columns, the behaviour counters ``bh_*`` as values), to which the model applies its
  logged feature spec itself (:mod:`hinet_spark.features.rows`, the ids the batch pipeline
  gives), or **ids** (the ``f_*`` columns and ``scenario_idx``, any integer width), what the
  batch UDF sends; a frame that holds every id column is taken as ids;
* no pickle: it is logged as MLflow "models from code" (``serving_code.py`` sets the model),
  the weights are a ``state_dict`` read with ``weights_only=True``, config and spec are JSON.
  ``model_meta.json`` records the weights' sha256 (checked when the model loads) and the
  registered version carries it as the tag ``weights_sha256`` (checked by scoring against the
  registry before anything runs: docs/operations.md, "Trust boundary").
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from hinet_spark.features.rows import RowsError, ids_of_rows, raw_columns
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.tasks import SCORES

# What loading and predicting import; pinned to the versions of the environment that trained.
RUNTIME_PACKAGES = ("torch", "numpy", "pandas", "mlflow", "cloudpickle", "pyyaml")
# set to "1" in the scoring UDF's workers by score_candidates when scoring.compile is true
COMPILE_ENV = "HINET_SCORING_COMPILE"
WEIGHTS_TAG = "weights_sha256"  # the registered version's tag holding the weights' content hash


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class HiNetPyfunc(mlflow.pyfunc.PythonModel):
    """Prediction: a DataFrame of raw rows, or of ``f_*`` ids and ``scenario_idx`` -> p_ctr, p_ctcvr."""

    def load_context(self, context: Any) -> None:
        from hinet_spark.config import ModelSection
        from hinet_spark.models import ModelSpec, build_model

        meta = json.loads(Path(context.artifacts["model_meta"]).read_text())
        section = ModelSection(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["model"].items()})
        self.spec = FeatureSpec.load(context.artifacts["feature_spec"])
        self.columns = self.spec.columns
        # the batch job's numeric ranges (rows outside are refused, as it quarantines them)
        self.ranges = {k: tuple(v) for k, v in (meta.get("numeric_ranges") or {}).items()}
        self.model = build_model(ModelSpec(section, tuple(meta["vocab_sizes"]), meta["n_scenarios"]))
        expected = meta.get("weights_sha256")  # models logged before it was recorded have none
        if expected is not None and file_sha256(context.artifacts["weights"]) != expected:
            raise ValueError(f"weights.pt does not match the sha256 in model_meta.json ({expected[:16]}...): the "
                             "file was replaced or damaged after the model was logged")
        self.model.load_state_dict(torch.load(context.artifacts["weights"], map_location="cpu", weights_only=True))
        # In a Spark task (spark_udf) use the task's cores, not every core of the machine; on
        # a worker with a GPU predict there.
        task = _spark_task()
        if task is not None:
            torch.set_num_threads(max(1, int(task.cpus())))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.model.to(self.device).eval()
        self.forward = self.model
        if os.environ.get(COMPILE_ENV) == "1":  # scoring.compile: the batch job sets it in its UDF workers
            from hinet_spark.models import compile_model

            self.forward = compile_model(self.model)

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        id_columns = (*self.columns, "scenario_idx")
        if not all(c in model_input.columns for c in id_columns):
            if not any(c in model_input.columns for c in raw_columns(self.spec)):
                raise RowsError(f"model input has neither raw rows ({raw_columns(self.spec)}) nor ids "
                                f"({list(id_columns)}); it has {list(model_input.columns)}")
            model_input = ids_of_rows(model_input, self.spec, self.ranges)
        elif model_input[list(id_columns)].isna().any().any():
            raise RowsError("model input: ids may not be null (a null feature has id 0)")
        ids = torch.as_tensor(model_input[self.columns].to_numpy(dtype=np.int64), device=self.device)
        scen = torch.as_tensor(model_input["scenario_idx"].to_numpy(dtype=np.int64), device=self.device)
        with torch.no_grad():
            probs = torch.sigmoid(self.forward(ids, scen)).cpu().numpy().astype(np.float64)
        return pd.DataFrame({c: probs[:, j] for j, c in enumerate(SCORES)})


def _spark_task() -> Any:
    try:
        from pyspark import TaskContext
    except ImportError:  # Model Serving, mlflow models serve: no Spark
        return None
    return TaskContext.get()


def signature(spec: FeatureSpec) -> ModelSignature:
    """Both input forms, every column optional (the model checks that one form is complete).

    Ids are long, so a caller's int64 frame (pandas' default) is taken as it is and int32 (the
    batch UDF's columns) is widened without loss; models logged before 2026-12-06 have only the
    ids, as int32 ("integer"), and refuse an int64 frame. Raw numeric features and counters are
    double (MLflow widens int8..int32; the REST server casts JSON numbers to the schema),
    categorical and hashed features string."""
    ids = [ColSpec("long", c, required=False) for c in (*spec.columns, "scenario_idx")]
    raw = [ColSpec("string", "scenario", required=False)]
    raw += [ColSpec("double", c, required=False) for c in (*spec.numeric, *spec.counters)]
    raw += [ColSpec("string", c, required=False) for c in (*spec.categorical, *spec.hashed)]
    inputs = Schema([*ids, *raw])
    outputs = Schema([ColSpec("double", c) for c in SCORES])
    return ModelSignature(inputs=inputs, outputs=outputs)


def pinned_requirements(torch_requirement: str | None = None, index_url: str | None = None) -> list[str]:
    """``name==version`` of :data:`RUNTIME_PACKAGES` as installed here (a local build tag such
    as torch's ``+cpu`` dropped: the index serves the plain version).

    ``torch_requirement`` replaces the torch line (``mlflow.serving_torch``, e.g.
    ``torch==2.13.0+cpu`` for a CPU endpoint without PyPI's CUDA libraries) and ``index_url``
    is written first as ``--extra-index-url`` (``mlflow.serving_index_url``, where that wheel
    is served)."""
    pins = [f"{name}=={metadata.version(name).split('+')[0]}" for name in RUNTIME_PACKAGES]
    if torch_requirement:
        pins = [torch_requirement if p.startswith("torch==") else p for p in pins]
    return [*([f"--extra-index-url {index_url}"] if index_url else []), *pins]


def package_dir() -> str:
    """The ``hinet_spark`` package folder, logged with the model as its code."""
    return str(Path(__file__).resolve().parent)


def log_pyfunc(model: torch.nn.Module, model_spec: Any, spec: FeatureSpec, registered_model: str | None,
               name: str = "model", *, ranges: dict[str, tuple[float | None, float | None]] | None = None,
               requirements: list[str] | None = None) -> Any:
    """Log (and register, when ``registered_model``) ``model`` as the pyfunc in the active run.

    ``model_spec`` is its :class:`hinet_spark.models.ModelSpec`; ``spec`` the feature spec
    whose ids it reads; ``ranges`` the numeric ranges outside which raw rows are refused (the
    batch job's ``numeric_ranges``); ``requirements`` its pip requirements
    (default :func:`pinned_requirements`)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = Path(tmp)
        spec.save(files / "feature_spec.json")
        torch.save(model.state_dict(), files / "weights.pt")
        (files / "model_meta.json").write_text(json.dumps({
            "model": dataclasses.asdict(model_spec.config), "vocab_sizes": list(model_spec.vocab_sizes),
            "n_scenarios": model_spec.n_scenarios, "scenarios": list(spec.scenarios),
            "weights_sha256": file_sha256(files / "weights.pt"),
            "numeric_ranges": {k: list(v) for k, v in (ranges or {}).items()}}))
        info = _log(files / "weights.pt", files / "feature_spec.json", files / "model_meta.json", spec,
                    registered_model, name, requirements or pinned_requirements())
        if registered_model:  # the registry keeps the weights' hash: scoring checks the files against it
            from mlflow.tracking import MlflowClient

            version = registered_version(info, registered_model, mlflow.active_run().info.run_id)
            MlflowClient().set_model_version_tag(registered_model, version, WEIGHTS_TAG,
                                                 file_sha256(files / "weights.pt"))
        return info


def _log(weights: Path, spec_file: Path, meta: Path, spec: FeatureSpec, registered_model: str | None,
         name: str, requirements: list[str]) -> Any:
    example = pd.DataFrame({c: [1] for c in (*spec.columns, "scenario_idx")}).astype("int64")
    # MLflow 3 names the logged model ``name``; MLflow 2 (Databricks 15.4 LTS ML ships 2.13.1)
    # calls it ``artifact_path``
    where = {"name": name} if int(mlflow.__version__.split(".")[0]) >= 3 else {"artifact_path": name}
    return mlflow.pyfunc.log_model(
        **where, python_model=model_code(), code_paths=[package_dir()],
        artifacts={"weights": str(weights), "feature_spec": str(spec_file), "model_meta": str(meta)},
        signature=signature(spec), input_example=example, pip_requirements=requirements,
        registered_model_name=registered_model,
    )


def model_code() -> str:
    """The file MLflow runs to set the model ("models from code", MLflow >= 2.13)."""
    return str(Path(__file__).resolve().parent / "serving_code.py")


def registered_version(info: Any, name: str, run_id: str) -> str:
    """The version ``log_pyfunc`` registered: from the ModelInfo (MLflow >= 2.14), else the
    newest version of ``name`` made by ``run_id`` (MLflow 2.13, Databricks 15.4 LTS ML)."""
    version = getattr(info, "registered_model_version", None)
    if version is not None:
        return str(version)
    from mlflow.tracking import MlflowClient

    found = MlflowClient().search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if not found:
        raise RuntimeError(f"model {name!r} has no version from run {run_id}")
    return str(max(int(v.version) for v in found))
