"""Where MLflow keeps this project's runs and models: the tracking and registry URIs, and the
experiment with its artifact location under ``storage.root`` (the embedded default) or wherever
the tracking server says (Databricks). Used by training, scoring, evaluation and the tools.
"""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from hinet_spark.config import Config, ConfigError
from hinet_spark.ops.io import StorageError


def tracking_uri(cfg: Config) -> str:
    if cfg.mlflow.tracking_uri:
        return cfg.mlflow.tracking_uri
    return f"sqlite:///{(Path(cfg.storage.root) / 'mlflow.db').resolve()}"


def require_workspace(cfg: Config) -> None:
    """A ``databricks`` tracking or registry URI outside Databricks needs a workspace to talk to
    (``DATABRICKS_HOST`` and a token, or a ``~/.databrickscfg`` profile); without one, MLflow's
    failure is a credentials traceback deep in its client. Name the cause instead."""
    uris = [u for u in (cfg.mlflow.tracking_uri, cfg.mlflow.registry_uri) if u and u.startswith("databricks")]
    if not uris or os.environ.get("DATABRICKS_RUNTIME_VERSION"):
        return
    if os.environ.get("DATABRICKS_HOST") or (Path.home() / ".databrickscfg").is_file():
        return
    raise ConfigError(
        f"mlflow.tracking_uri/registry_uri {' / '.join(uris)} name a Databricks workspace, and this machine has none "
        "configured (no DATABRICKS_RUNTIME_VERSION, DATABRICKS_HOST or ~/.databrickscfg): run the job on Databricks "
        "(databricks.yml), set DATABRICKS_HOST and DATABRICKS_TOKEN, or use conf/local.yaml here")


def setup(cfg: Config) -> None:
    require_workspace(cfg)
    mlflow.set_tracking_uri(tracking_uri(cfg))
    mlflow.set_registry_uri(cfg.mlflow.registry_uri or tracking_uri(cfg))
    # MLflow 2.x (15.4 LTS ML's 2.13.1) creates its sqlite store's default artifact root,
    # ./mlruns of the working directory, when the store is first built in a process, although
    # every experiment here has its own artifact location under storage.root (artifact_root):
    # the store is built here, once per process, and the empty folder it made is removed.
    made = not Path("mlruns").exists()
    use_experiment(cfg, cfg.mlflow.experiment)
    if made and Path("mlruns").is_dir() and not any(Path("mlruns").iterdir()):
        Path("mlruns").rmdir()


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
    ensure_experiment(cfg, name)
    mlflow.set_experiment(name)


def ensure_experiment(cfg: Config, name: str) -> str:
    """The id of experiment ``name``, created with :func:`artifact_root` when new (see
    :func:`use_experiment`); the active experiment stays what it was."""
    root = artifact_root(cfg)
    exp = mlflow.get_experiment_by_name(name)
    if exp is None:
        return MlflowClient().create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
    if root is not None and not cfg.mlflow.artifact_root and not cfg.mlflow.tracking_uri:  # the root's own store
        location = str(exp.artifact_location)
        if not (location == root or location.startswith(root.rstrip("/") + "/")):
            raise StorageError(
                f"MLflow experiment {name!r} ({tracking_uri(cfg)}) keeps its artifacts at {location}, outside this "
                f"storage.root's {root}: the root was copied from elsewhere (its mlflow.db keeps the original's "
                "absolute paths), so this run would write into the original. Give the copy its own MLflow store "
                "(set mlflow.tracking_uri to a new sqlite file, or remove the copy's mlflow.db and mlflow_artifacts), "
                "or set mlflow.artifact_root to write to that location on purpose")
    return exp.experiment_id
