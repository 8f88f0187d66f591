"""Which registered model a name means, read from the MLflow registry: one resolution of
aliases (``champion``, ``challenger``), version numbers and run URIs for scoring, warm starts
and promotion, and the registry's record of champion moves.

Read-only: moving an alias is :mod:`hinet_spark.lifecycle.promotion`'s. Imports only the
config and the errors (the layer rule), so scoring can use it without the training stack.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from hinet_spark.config import Config

HISTORY_TAG = "champion_history"  # registered-model tag of older versions: the champion moves (JSON, last 50)
HISTORY_FIELDS = ("at", "action", "moved", "version", "previous", "reason")


def history_experiment(cfg: Config) -> str:
    """The MLflow experiment that holds the champion history: one run per move or refusal."""
    return f"{cfg.mlflow.experiment}-champion-history"
RUN_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class ModelRef:
    """A resolved model: where it is and what it is called in the scores."""

    uri: str
    name: str
    version: str  # a registry version, or run:<id> for a model given by its run
    run_id: str
    source: str = ""  # where the registry says its files are

    def describe(self) -> str:
        where = f", stored at {self.source}" if self.source else ""
        return f"model {self.name} version {self.version} ({self.uri}{where})"


def version(cfg: Config, ref: str) -> Any:
    """The registry's ModelVersion for an alias or a version number of
    ``mlflow.registered_model`` (MlflowException when there is none)."""
    client, name = MlflowClient(), cfg.mlflow.registered_model
    return client.get_model_version(name, ref) if ref.isdigit() else client.get_model_version_by_alias(name, ref)


def champion(cfg: Config) -> Any | None:
    """The champion's ModelVersion, or None."""
    try:
        return version(cfg, "champion")
    except mlflow.exceptions.MlflowException:
        return None


def resolve(cfg: Config, ref: str) -> ModelRef:
    """``champion`` (an alias), ``3`` (a version), a run id or ``runs:/<id>/model``
    (MlflowException when there is no such model)."""
    name = cfg.mlflow.registered_model
    if ref.startswith("runs:/") or RUN_ID.match(ref):
        uri = ref if ref.startswith("runs:/") else f"runs:/{ref}/model"
        run_id = uri.split("/")[1]
        MlflowClient().get_run(run_id)
        return ModelRef(uri, name, f"run:{run_id}", run_id)
    mv = version(cfg, ref)
    return ModelRef(f"models:/{name}/{mv.version}", name, str(mv.version), mv.run_id, str(mv.source or ""))


def history(cfg: Config) -> list[dict]:
    """The champion moves and refusals of the registered model, oldest first: the runs of
    :func:`history_experiment` whose move completed (``hinet.state`` done), after the entries an
    older version of this project kept in the registered model's ``champion_history`` tag."""
    client, name = MlflowClient(), cfg.mlflow.registered_model
    legacy = json.loads(client.get_registered_model(name).tags.get(HISTORY_TAG, "[]"))
    exp = client.get_experiment_by_name(history_experiment(cfg))
    if exp is None:
        return legacy
    runs = client.search_runs([exp.experiment_id], f"tags.`hinet.registered_model` = '{name}' and "
                              "tags.`hinet.state` = 'done'", order_by=["attributes.start_time DESC"],
                              max_results=1000)
    entries = []
    for run in reversed(runs):
        tags = run.data.tags
        entry = {k: tags.get(f"hinet.{k}") for k in HISTORY_FIELDS}
        entry["moved"] = entry["moved"] == "true"
        entry["previous"] = entry["previous"] or None
        entries.append(entry)
    return legacy + entries


def existing_versions(cfg: Config) -> set[str]:
    """The versions of the registered model that still exist (deleted ones are gone)."""
    found = MlflowClient().search_model_versions(f"name='{cfg.mlflow.registered_model}'")
    return {str(v.version) for v in found}


def missing_champion(cfg: Config) -> str:
    """Why there is no champion, from the history: never set, or its version was deleted."""
    entries = history(cfg)
    moves = [e for e in entries if e.get("moved", True)]
    if not moves:
        refused = [e["version"] for e in entries if not e.get("moved", True)]
        why = f"; versions {refused} were registered but not promoted (manage_model history says why)" if refused else ""
        return f"{cfg.mlflow.registered_model} has no champion yet (no model was promoted{why})"
    last = moves[-1]["version"]
    gone = last not in existing_versions(cfg)
    return (f"{cfg.mlflow.registered_model} has no champion: its last champion, version {last}, "
            f"{'was deleted from the registry' if gone else 'lost the alias'}; promote a version "
            "(manage_model promote --version N) or roll back (manage_model rollback)")
