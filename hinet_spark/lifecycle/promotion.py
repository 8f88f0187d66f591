"""Champion vs challenger on the same rows, and the alias moves that follow.

The new model (challenger) and the registered ``champion`` are both evaluated on exactly
the challenger's validation rows (and its test rows, reported): the challenger with the
samples' ids, the champion with its *own* feature spec applied to the same raw exposures
(``features.apply_spec``, the transform scoring uses), so a champion fitted on another spec
is judged fairly. The decision:

* promote when the challenger's mean AUC beats the champion's by more than
  ``mlflow.promote_margin`` and no scenario x task with at least ``mlflow.min_positives``
  positives drops by more than ``mlflow.max_auc_drop``;
* scenario x tasks with fewer positives are not judged, and are named;
* before any of that, the floor (:func:`floor`): a model whose judged validation cells do not
  beat a trivial predictor (the cell's base rate: AUC 0.5, the base-rate logloss) by
  ``mlflow.floor_auc_margin`` / ``mlflow.floor_logloss_margin`` is registered but never
  promoted, not even as the first model; cells below chance are named.

Every alias move (by training, ``promote`` or ``rollback``) and every refusal at the floor is
an MLflow run in ``<experiment>-champion-history`` (:func:`begin_record`), written before the
alias moves, so a rollback knows the previous champion.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import torch
from mlflow.tracking import MlflowClient
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config
from hinet_spark.errors import OperatorError
from hinet_spark.evaluation import Evaluation, evaluate
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.features.transforms import apply_spec
from hinet_spark.model_refs import HISTORY_FIELDS, existing_versions, history, history_experiment
from hinet_spark.model_refs import champion as current_champion
from hinet_spark.ops.io import read_table, table_location
from hinet_spark.ops.mlflow_store import ensure_experiment
from hinet_spark.tasks import LABELS, SCORES, TASKS

logger = logging.getLogger(__name__)

class PromotionError(OperatorError, RuntimeError):
    """A manual promote / rollback cannot be done (no such version, no previous champion)."""


@dataclass
class Comparison:
    """Both models on the same rows of one split."""

    split: str
    rows: int
    challenger: Evaluation
    champion: Evaluation
    champion_version: str
    champion_spec: str
    skipped: list[str] = field(default_factory=list)  # scenarios the champion does not know

    def pairs(self) -> list[tuple[str, str, float, float, int]]:
        """(task, scenario, challenger AUC, champion AUC, positives) where both are defined."""
        out = []
        for task in TASKS:
            for s, a in self.challenger.auc.get(task, {}).items():
                b = self.champion.auc.get(task, {}).get(s)
                if a is not None and b is not None:
                    out.append((task, s, a, b, self.challenger.positives[task][s]))
        return out


@dataclass
class Decision:
    promote: bool
    reason: str
    not_judged: list[str]


@dataclass
class Floor:
    passed: bool
    reason: str
    below_chance: list[str]  # judged cells with AUC < 0.5, by name


def base_rate_logloss(positives: int, rows: int) -> float:
    """The logloss of predicting the cell's own positive rate for every row."""
    p = positives / rows
    return 0.0 if p in (0.0, 1.0) else float(-(p * np.log(p) + (1 - p) * np.log(1 - p)))


def floor(cfg: Config, val: Evaluation) -> Floor:
    """Does the model beat a base-rate predictor on its judged validation cells (those with at
    least ``mlflow.min_positives`` positives)?"""
    m = cfg.mlflow
    cells = []
    for task in TASKS:
        for s, a in val.auc.get(task, {}).items():
            n, rows = val.positives.get(task, {}).get(s, 0), val.rows.get(s, 0)
            if a is not None and n >= m.min_positives and rows:
                cells.append((task, s, a, val.logloss[task][s], base_rate_logloss(n, rows)))
    if not cells:
        return Floor(False, f"no validation scenario x task has mlflow.min_positives {m.min_positives} positives, "
                            "so nothing shows that the model beats a base-rate predictor", [])
    below = [f"{s} {t} AUC {a:.4f}" for t, s, a, _, _ in cells if a < 0.5]
    auc, loss, base = (float(np.mean([c[i] for c in cells])) for i in (2, 3, 4))
    problems = []
    if auc <= 0.5 + m.floor_auc_margin:
        problems.append(f"mean validation AUC {auc:.4f} over {len(cells)} judged scenario x tasks is not above chance "
                        f"(0.5 + mlflow.floor_auc_margin {m.floor_auc_margin})")
    if loss >= base - m.floor_logloss_margin:
        problems.append(f"mean validation logloss {loss:.4f} does not beat the base-rate predictor's {base:.4f} "
                        f"by more than mlflow.floor_logloss_margin {m.floor_logloss_margin}")
    tail = f"; below chance: {', '.join(below)}" if below else ""
    if problems:
        return Floor(False, "; ".join(problems) + tail, below)
    return Floor(True, f"above the floor (mean validation AUC {auc:.4f}, logloss {loss:.4f} vs base rate "
                       f"{base:.4f}){tail}", below)


def _split_rows(spark: SparkSession, cfg: Config, samples_version: int, dates: tuple[str, str], max_rows: int,
                seed: int, columns: list[str]) -> DataFrame:
    loc = table_location(cfg, "samples")
    reader = spark.read.option("versionAsOf", samples_version)
    samples = reader.table(loc) if cfg.storage.catalog_schema else reader.format("delta").load(loc)
    rows = samples.where((F.col("dt") >= F.lit(dates[0]).cast("date")) & (F.col("dt") <= F.lit(dates[1]).cast("date")))
    n = rows.count()
    if n > max_rows:  # the same seeded sample for both models
        rows = rows.sample(fraction=min(1.0, 1.05 * max_rows / n), seed=seed).limit(max_rows)
    return rows.select("exposure_id", "dt", "scenario", "scenario_idx", *LABELS, *columns)


def compare(spark: SparkSession, cfg: Config, result: Any, champion_uri: str, champion_version: str,
            split: str) -> Comparison:
    """Evaluate ``result.model`` and the champion on the same rows of ``split``."""
    from hinet_spark.train.loop import predict_arrays

    names = tuple(cfg.scenarios.names)
    mine = _split_rows(spark, cfg, result.samples_version, result.split_dates[split], cfg.train.max_val_rows,
                       cfg.train.seed, result.feature_spec.columns)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=champion_uri, dst_path=tmp))
        champ_spec = FeatureSpec.load(local / "artifacts" / "feature_spec.json")
        model = mlflow.pyfunc.load_model(str(local))
        # the champion sees the same exposures through its own spec (the scoring transform)
        raw = read_table(spark, cfg, "raw_exposures").join(mine.select("exposure_id", "dt"), ["exposure_id", "dt"])
        theirs = apply_spec(raw, champ_spec).select("exposure_id", F.col("scenario_idx").alias("_champ_idx"),
                                                    *champ_spec.columns).toPandas()
        frame = mine.toPandas().merge(theirs, on="exposure_id", suffixes=("", "_champ"))
        known = frame["_champ_idx"].notna()
        skipped = sorted(set(frame.loc[~known, "scenario"]))
        frame = frame[known].reset_index(drop=True)
        champ_cols = [c + "_champ" if c in result.feature_spec.columns else c for c in champ_spec.columns]
        champ_in = frame[champ_cols].set_axis(champ_spec.columns, axis=1).astype("int32")
        champ_in["scenario_idx"] = frame["_champ_idx"].astype("int32")
        champ_probs = model.predict(champ_in)[list(SCORES)].to_numpy()
    data = {c: frame[c].to_numpy() for c in ("scenario_idx", *LABELS, *result.feature_spec.columns)}
    scen, labels, mine_probs = predict_arrays(result.model, data, list(result.feature_spec.columns),
                                              torch.device("cpu"))
    return Comparison(split, len(frame), evaluate(scen, labels, mine_probs, names),
                      evaluate(scen, labels, champ_probs, names), champion_version, champ_spec.hash, skipped)


def decide(cfg: Config, comp: Comparison) -> Decision:
    m = cfg.mlflow
    pairs = comp.pairs()
    judged = [p for p in pairs if p[4] >= m.min_positives]
    not_judged = [f"{s} {t} ({n} positives < mlflow.min_positives {m.min_positives})"
                  for t, s, _, _, n in pairs if n < m.min_positives]
    not_judged += [f"scenario {s} (unknown to the champion)" for s in comp.skipped]
    if not judged:
        return Decision(False, f"no scenario x task has {m.min_positives} positives in the {comp.split} rows; "
                               "keeping the champion", not_judged)
    new, old = float(np.mean([p[2] for p in judged])), float(np.mean([p[3] for p in judged]))
    drops = [f"{s} {t} {b:.4f} -> {a:.4f}" for t, s, a, b, _ in judged if a < b - m.max_auc_drop]
    head = (f"on the same {comp.rows:,} {comp.split} rows, mean AUC challenger {new:.4f} vs champion "
            f"(version {comp.champion_version}) {old:.4f} over {len(judged)} scenario x tasks")
    if drops:
        return Decision(False, f"{head}; not promoted: drops beyond mlflow.max_auc_drop {m.max_auc_drop}: "
                               f"{', '.join(drops)}", not_judged)
    if new - old <= m.promote_margin:
        return Decision(False, f"{head}; not promoted: the gain {new - old:+.4f} is not above mlflow.promote_margin "
                               f"{m.promote_margin}", not_judged)
    return Decision(True, f"{head}; promoted (gain {new - old:+.4f})", not_judged)


def compare_and_decide(spark: SparkSession, cfg: Config, result: Any) -> tuple[Decision, list[Comparison]]:
    """Against the current champion (or none: the first model is promoted)."""
    champion = current_champion(cfg)
    if champion is None:
        return Decision(True, "promoted: there is no champion yet", []), []
    uri = f"models:/{cfg.mlflow.registered_model}/{champion.version}"
    comps = [compare(spark, cfg, result, uri, str(champion.version), split) for split in ("val", "test")]
    return decide(cfg, comps[0]), comps


def comparison_metrics(comps: list[Comparison]) -> dict[str, float]:
    out = {}
    for c in comps:
        for who, ev in (("challenger", c.challenger), ("champion", c.champion)):
            for task, per in ev.auc.items():
                for s, v in per.items():
                    if v is not None:
                        out[f"compare.{c.split}.{who}.auc.{task}.scenario_{s}"] = v
            if ev.mean_auc is not None:
                out[f"compare.{c.split}.{who}.auc.mean"] = ev.mean_auc
        out[f"compare.{c.split}.rows"] = float(c.rows)
    return out


def comparison_table(comps: list[Comparison]) -> list[tuple]:
    """Rows: scenario task, then per split challenger AUC, champion AUC, positives."""
    rows = []
    for task in TASKS:
        for s in comps[0].challenger.rows:
            row: list[Any] = [f"{s} {task}"]
            for c in comps:
                a, b = c.challenger.auc.get(task, {}).get(s), c.champion.auc.get(task, {}).get(s)
                row += ["n/a" if a is None else f"{a:.4f}", "n/a" if b is None else f"{b:.4f}",
                        c.challenger.positives.get(task, {}).get(s, 0)]
            rows.append(row)
    return rows


# --------------------------------------------------------------------------------------
# Alias moves, with a history
# --------------------------------------------------------------------------------------


def history_lines(cfg: Config) -> list[str]:
    """The champion moves (and the versions refused at the floor), oldest first, each saying
    whether its version still exists."""
    alive = existing_versions(cfg)

    def gone(v: str | None) -> str:
        return "" if not v or v in alive else " (deleted since)"

    return [f"{e['at']} {e['action']}: version {e['version']}{gone(e['version'])} "
            + (f"replaced {e.get('previous') or 'none'}{gone(e.get('previous'))}" if e.get("moved", True)
               else f"not promoted, champion stays {e.get('previous') or 'none'}")
            + f": {e['reason']}" for e in history(cfg)]


def moves(cfg: Config) -> list[dict]:
    """The history's alias moves only (not the refusals)."""
    return [e for e in history(cfg) if e.get("moved", True)]


def begin_record(cfg: Config, entry: dict) -> str:
    """Open the history run of one move or refusal (state ``pending``): one MLflow run in
    :func:`~hinet_spark.model_refs.history_experiment`, its fields as tags, its reason also as
    the run's description; no entry can outgrow a tag and the history has no size limit."""
    client = MlflowClient()
    fields = {**entry, "moved": str(entry.get("moved", True)).lower(), "previous": entry.get("previous") or ""}
    tags = {f"hinet.{k}": str(fields[k])[:5000] for k in HISTORY_FIELDS}
    tags.update({"hinet.registered_model": cfg.mlflow.registered_model, "hinet.state": "pending",
                 "mlflow.note.content": entry["reason"][:5000]})
    run = client.create_run(ensure_experiment(cfg, history_experiment(cfg)), tags=tags,
                            run_name=f"{entry['action']}-v{entry['version']}")
    return run.info.run_id


def end_record(run_id: str, state: str) -> None:
    client = MlflowClient()
    client.set_tag(run_id, "hinet.state", state)
    client.set_terminated(run_id, "FINISHED" if state == "done" else "FAILED")


def record_refusal(cfg: Config, version: str, reason: str) -> None:
    """Append a version that was not promoted at the floor to the history (no alias moves)."""
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    before = current_champion(cfg)
    entry = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "action": "train", "moved": False,
             "version": str(version), "previous": str(before.version) if before is not None else None,
             "reason": reason}
    record = begin_record(cfg, entry)
    client.set_model_version_tag(name, version, "champion_reason", reason[:5000])
    end_record(record, "done")
    logger.warning("%s version %s not promoted: %s", name, version, reason)


def set_champion(cfg: Config, version: str, reason: str, action: str) -> dict:
    """Move ``champion`` to ``version``, append the move to the history, return the entry."""
    client = MlflowClient()
    name = cfg.mlflow.registered_model
    try:
        client.get_model_version(name, version)
    except mlflow.exceptions.MlflowException as exc:
        raise PromotionError(f"{name} has no version {version!r}") from exc
    before = current_champion(cfg)
    entry: dict = {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "action": action,
                   "version": str(version), "previous": str(before.version) if before is not None else None,
                   "reason": reason}
    record = begin_record(cfg, entry)  # written before the alias moves; counted once the move is done
    try:
        client.set_registered_model_alias(name, "champion", version)
    except Exception:
        end_record(record, "failed")
        raise
    end_record(record, "done")
    client.set_model_version_tag(name, version, "champion_reason", reason[:5000])
    logger.info("champion of %s: version %s -> %s (%s: %s)", name, entry["previous"], version, action, reason)
    return entry


def rollback(cfg: Config, reason: str) -> dict:
    """Champion back to the version that was champion before the current one; when the
    current champion's version was deleted (the alias went with it), to the most recent
    earlier champion that still exists."""
    current = current_champion(cfg)
    moved = moves(cfg)
    if current is not None:
        for entry in reversed(moved):
            if entry["version"] == str(current.version) and entry.get("previous"):
                return set_champion(cfg, entry["previous"], reason, "rollback")
        raise PromotionError(f"no earlier champion recorded for version {current.version} of "
                             f"{cfg.mlflow.registered_model}; use promote --version N")
    if not moved:
        raise PromotionError(f"{cfg.mlflow.registered_model} has no champion to roll back (none was ever promoted)")
    alive = existing_versions(cfg)
    gone = moved[-1]["version"]
    for entry in reversed(moved):
        for candidate in (entry["version"], entry.get("previous")):
            if candidate and candidate != gone and candidate in alive:
                return set_champion(cfg, candidate, f"{reason} (champion version {gone} no longer exists)",
                                    "rollback")
    raise PromotionError(f"{cfg.mlflow.registered_model}: no champion recorded in its history still exists "
                         f"(last: version {gone}); use promote --version N")
