"""Warm start: initialise training from a registered model (``train_hinet --warm-start``).

The nightly model keeps up with new data by continuing from yesterday's weights on the most
recent ``train.warm_start_window_days`` days instead of retraining on the whole window. Only
an exact match is loaded: the same architecture (every ``model.*`` setting and the embedding
table sizes) and the same feature spec; anything else is a :class:`WarmStartError` that
names what differs, never a partial load.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

import mlflow
import torch

from hinet_spark import model_refs
from hinet_spark.config import Config
from hinet_spark.errors import OperatorError
from hinet_spark.features.spec import FeatureSpec

logger = logging.getLogger(__name__)


class WarmStartError(OperatorError, ValueError):
    """The model to start from does not match this run's architecture or feature spec."""


def resolve(cfg: Config, ref: str) -> str:
    """``champion`` / ``challenger`` (aliases) or a version number -> the version."""
    try:
        return str(model_refs.version(cfg, ref).version)
    except mlflow.exceptions.MlflowException as exc:
        raise WarmStartError(f"--warm-start {ref}: no such version or alias of {cfg.mlflow.registered_model!r}") from exc


def load_state(cfg: Config, ref: str, spec: FeatureSpec, vocab_sizes: tuple[int, ...]) -> tuple[dict, str]:
    """The registered model's weights, after checking it matches this run exactly."""
    version = resolve(cfg, ref)
    uri = f"models:/{cfg.mlflow.registered_model}/{version}"
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp)) / "artifacts"
        meta = json.loads((local / "model_meta.json").read_text())
        theirs = FeatureSpec.load(local / "feature_spec.json")
        state = torch.load(local / "weights.pt", map_location="cpu", weights_only=True)
    mine = dataclasses.asdict(cfg.model)
    diffs = [f"model.{k}: {meta['model'].get(k)!r} in version {version}, {_plain(v)!r} now"
             for k, v in mine.items() if _plain(v) != meta["model"].get(k)]
    if tuple(meta["vocab_sizes"]) != tuple(vocab_sizes):
        diffs.append(f"embedding table sizes: {meta['vocab_sizes']} in version {version}, {list(vocab_sizes)} now")
    if theirs.hash != spec.hash:
        diffs.append(f"feature spec: {theirs.short_hash} in version {version}, {spec.short_hash} now")
    if diffs:
        raise WarmStartError(f"--warm-start {ref}: version {version} does not match this run ({'; '.join(diffs)}); "
                             "train from scratch (without --warm-start) after an architecture or spec change")
    logger.info("warm start from %s version %s", cfg.mlflow.registered_model, version)
    return state, version


def _plain(v):
    return list(v) if isinstance(v, tuple) else v


def recent_window(cfg: Config, dates: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """The training split cut to its last ``train.warm_start_window_days`` days."""
    a, b = (dt.date.fromisoformat(d) for d in dates["train"])
    start = max(a, b - dt.timedelta(days=cfg.train.warm_start_window_days - 1))
    return {**dates, "train": (start.isoformat(), b.isoformat())}
