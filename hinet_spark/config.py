"""Typed, frozen configuration loaded from ``conf/base.yaml`` + an environment file + overrides.

Resolution order (later wins):

1. ``conf/base.yaml`` (every key has a default there),
2. the environment file given with ``--conf`` (``conf/local.yaml``, ``conf/databricks.yaml``),
3. command-line overrides ``--set section.key=value`` (the value is parsed as YAML).

Every key is checked once, at load time, against the dataclasses below: an unknown key, a
value of the wrong type or a missing file raises :class:`ConfigError` naming the key, the
value and the file it came from.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIO_NAMES_DEFAULT = ("a", "b", "c", "d", "e", "f")
TASKS = ("ctr", "ctcvr")


class ConfigError(ValueError):
    """A configuration file or override is missing, malformed or holds a bad value."""


# A table name is a plain identifier: it becomes one folder under storage.root (or one
# name in the catalog schema), so no separators, no "..", no spaces.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# What else lives directly under storage.root; a table may not take these names.
RESERVED_NAMES = frozenset({"_delta_log", "checkpoints", "petastorm_cache", "derby", "feature_specs",
                            "mlruns", "mlflow_artifacts", "spark_warehouse"})
TABLE_KEYS = ("raw_exposures", "raw_clicks", "raw_orders", "oracle", "candidates", "synthetic_staging",
              "samples", "quarantine", "scores", "scores_quarantine", "score_quality", "import_quarantine",
              "import_log", "feature_spec_log")


# --------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkSection:
    """How the embedded (local) SparkSession is built; ignored on a cluster."""

    master: str = "local[2]"
    app_name: str = "hinet-spark"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    extra_conf: dict[str, str] = field(default_factory=dict)
    progress_seconds: int = 30  # a stage-progress line this often while long Spark stages run (all sessions)
    rows_per_file: int = 2_000_000  # Delta writes: about this many rows per file (any session)
    rows_per_task: int = 200_000  # scoring: rows per model-UDF task (any session)


@dataclass(frozen=True)
class StorageSection:
    """Where tables live.

    ``root`` is a directory holding every table of the embedded default (one folder per
    table). When ``catalog_schema`` is set (``main.hinet`` on Databricks), tables are
    addressed by name in that catalog schema instead, and ``root`` is only used for
    scratch files (Petastorm cache, checkpoints).
    """

    root: str = "data"
    catalog_schema: str | None = None
    tables: dict[str, str] = field(
        default_factory=lambda: {
            "raw_exposures": "raw_exposures",
            "raw_clicks": "raw_clicks",
            "raw_orders": "raw_orders",
            "oracle": "oracle",
            "candidates": "candidates",
            "synthetic_staging": "_synthetic_staging",
            "samples": "samples",
            "quarantine": "quarantine",
            "scores": "scores",
            "scores_quarantine": "scores_quarantine",
            "score_quality": "score_quality",
            "import_quarantine": "import_quarantine",
            "import_log": "import_log",
            "feature_spec_log": "feature_spec_log",
        }
    )


@dataclass(frozen=True)
class ScenarioSection:
    """The scenarios the platform serves, in index order (index = position)."""

    names: tuple[str, ...] = SCENARIO_NAMES_DEFAULT


@dataclass(frozen=True)
class SyntheticSection:
    """The generator of the embedded default's raw logs (see docs/synthetic_data.md)."""

    seed: int = 7
    start_date: str = "2026-01-01"
    days: int = 7
    exposures_per_day: int = 100_000
    n_users: int = 20_000
    n_items: int = 5_000
    exposures_per_request: int = 5
    candidates_per_day: int = 50_000
    traffic_share: dict[str, float] = field(
        default_factory=lambda: {
            "a": 0.487, "b": 0.267, "c": 0.064, "d": 0.072, "e": 0.004, "f": 0.072
        }
    )
    ctr: dict[str, float] = field(
        default_factory=lambda: {
            "a": 0.1256, "b": 0.2250, "c": 0.1400, "d": 0.1384, "e": 0.0412, "f": 0.1117
        }
    )
    ctcvr: dict[str, float] = field(
        default_factory=lambda: {
            "a": 0.0264, "b": 0.0591, "c": 0.0064, "d": 0.0054, "e": 0.0031, "f": 0.0113
        }
    )
    scenario_groups: tuple[tuple[str, ...], ...] = (("a", "c", "e"), ("b", "d", "f"))
    duplicate_event_rate: float = 0.01
    log_candidates_day: bool = False  # also write the candidates day's exposures, clicks and orders to the raw logs
    calibration_rows_per_scenario: int = 20_000


@dataclass(frozen=True)
class FeaturesSection:
    """The feature pipeline (docs/features.md): labels, bucketizing, vocabularies."""

    numeric: tuple[str, ...] = ("price", "distance_km", "hour_of_day", "user_activity_30d", "item_rating")
    categorical: tuple[str, ...] = ("user_city", "user_age_group", "user_gender", "device_type",
                                    "item_category", "item_brand")
    hashed: dict[str, int] = field(default_factory=lambda: {"user_id": 50_000, "item_id": 20_000})
    # numeric feature -> [min, max] (either may be null): values outside are quarantined out_of_range.
    # Data generate_synthetic made is also checked against schemas/synthetic_exposures.json's ranges.
    numeric_ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    numeric_buckets: int = 20
    quantile_relative_error: float = 0.001
    min_count: int = 5
    fit_start: str | None = None  # None: the first date of the build range
    fit_end: str | None = None  # None: the last date of the build range
    click_window_hours: int = 24
    order_window_hours: int = 72
    dedup_lookback_days: int = 7  # an exposure id already in samples this many days back is a duplicate
    quarantine_warn_rate: float = 0.02  # WARNING when a source's quarantined share exceeds this; INFO below
    spec_path: str | None = None  # None: <storage.root>/feature_spec.json


@dataclass(frozen=True)
class ModelSection:
    """Model choice and sizes (docs/model.md). ``name`` is a key of the model registry."""

    name: str = "hinet"
    embedding_dim: int = 16
    # HiNet (paper / official defaults)
    sei_experts: int = 5  # K_s = K_i sub-experts per SEI
    sei_hidden: tuple[int, ...] = (128, 64)
    scenario_emb_dim: int = 16  # d of Emb(s_i) in SAN
    task_shared_experts: int = 2  # m_i
    task_specific_experts: int = 2  # n_i^j
    cgc_hidden: tuple[int, ...] = (128, 64)
    tower_hidden: tuple[int, ...] = (128, 64)
    use_san: bool = True
    scenario_gating: bool = True
    task_gating: bool = True
    # baselines
    bottom_hidden: tuple[int, ...] = (256, 128, 64)  # Shared Bottom, STAR's FCN
    n_experts: int = 6  # MMoE / HMoE experts; PLE shared experts = task_shared_experts
    expert_hidden: tuple[int, ...] = (128, 64)
    ple_levels: int = 2


@dataclass(frozen=True)
class TrainSection:
    """Distributed training (docs/training.md)."""

    launcher: str = "horovod"  # horovod | torch_distributor | local
    num_proc: int = 2
    use_gpu: bool = False
    local_mode: bool = True  # torch_distributor: processes on the driver (True) or on the executors (False)
    threads_per_worker: int = 1
    batch_size: int = 1024
    learning_rate: float = 0.001
    weight_decay: float = 0.0  # Adam's L2 on the dense parameters (the id tables' SparseAdam has none)
    epochs: int = 1  # measured: validation AUC peaks within the first epoch (docs/benchmarks.md)
    validations_per_epoch: int = 4  # evenly spaced validations per epoch (the last after its last step)
    val_every_steps: int | None = None  # validate every N steps instead (None: validations_per_epoch)
    early_stopping_patience: int = 2  # validations without a better validation mean AUC
    seed: int = 0
    train_start: str | None = None  # None: derived from the synthetic layout
    train_end: str | None = None
    val_start: str | None = None
    val_end: str | None = None
    test_start: str | None = None
    test_end: str | None = None
    warm_start_window_days: int = 1  # with --warm-start: train on only the last N days of the training split
    window_days: int = 14  # train_hinet --end-date D: train on the window_days before D-1, validate on D-1, test on D
    missing_scenario: str = "error"  # error | warn
    scenario_weights: dict[str, float] = field(default_factory=dict)  # lambda_i overrides
    max_steps_per_epoch: int | None = None
    max_val_rows: int = 200_000
    progress_seconds: int = 30  # a progress line (steps, samples/s, loss, time left) at most this often
    checkpoint_dir: str | None = None  # None: <storage.root>/checkpoints
    petastorm_cache_dir: str | None = None  # None: <storage.root>/petastorm_cache
    sparse_embeddings: bool = True  # id tables: sparse gradients, SparseAdam, sparse exchange (hinet_spark.train.optim)
    shuffle_buffer_rows: int = 500_000  # rows a worker holds and shuffles together (its memory bound)
    row_group_mb: int = 8  # Parquet row-group size of the materialised snapshot (a worker reads one at a time)


@dataclass(frozen=True)
class MlflowSection:
    tracking_uri: str | None = None  # None: sqlite:///<storage.root>/mlflow.db
    registry_uri: str | None = None  # None: the tracking URI; databricks-uc for Unity Catalog models
    experiment: str = "hinet-spark"
    artifact_root: str | None = None  # None: <storage.root>/mlflow_artifacts with the local store
    registered_model: str = "hinet"
    register: bool = True  # False: a comparison run, logged to <experiment>-comparisons, never registered
    promote: bool = True  # champion <- new version when it beats the champion on the same rows
    promote_margin: float = 0.0  # the challenger's mean AUC must beat the champion's by more than this
    max_auc_drop: float = 0.01  # ... and no judged scenario x task may fall by more than this
    min_positives: int = 50  # scenario x tasks with fewer positives in the compared rows are not judged


@dataclass(frozen=True)
class ScoringSection:
    """The nightly scoring job (``jobs/score_candidates.py``)."""

    model: str = "champion"  # alias, version number, or runs:/<run_id>/model
    feature_spec: str = "pipeline"  # pipeline: check the model's spec against features.spec_path | model
    batch_size: int = 10_000  # rows per Arrow batch handed to the model (spark.sql.execution.arrow.maxRecordsPerBatch)
    histogram_bins: int = 50  # score histogram bins logged to MLflow


@dataclass(frozen=True)
class EvaluationSection:
    """How yesterday's scores did (``jobs/evaluate_scores.py``)."""

    calibration_low: float = 0.8  # warn when mean predicted / observed rate leaves [low, high]
    calibration_high: float = 1.25
    max_auc_drop: float = 0.02  # warn when AUC falls more than this below the trailing mean
    trailing_days: int = 7
    reliability_bins: int = 10
    min_positives: int = 50  # no calibration / AUC warning for a scenario x task with fewer positives


@dataclass(frozen=True)
class Config:
    spark: SparkSection = field(default_factory=SparkSection)
    storage: StorageSection = field(default_factory=StorageSection)
    scenarios: ScenarioSection = field(default_factory=ScenarioSection)
    synthetic: SyntheticSection = field(default_factory=SyntheticSection)
    features: FeaturesSection = field(default_factory=FeaturesSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    mlflow: MlflowSection = field(default_factory=MlflowSection)
    scoring: ScoringSection = field(default_factory=ScoringSection)
    evaluation: EvaluationSection = field(default_factory=EvaluationSection)

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, str]:
        """``section.key -> str(value)``: the resolved config as MLflow params."""
        out: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                out[prefix] = str(value)

        walk("", self.to_dict())
        return out


# --------------------------------------------------------------------------------------
# Cross-field validation (types are checked while building)
# --------------------------------------------------------------------------------------


def _parse_date(key: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{key}: expected a date YYYY-MM-DD, got {clip(repr(value))}") from None


def _validate_tables(storage: StorageSection) -> None:
    missing = [k for k in TABLE_KEYS if k not in storage.tables]
    if missing:
        raise ConfigError(f"storage.tables: missing entries {missing}")
    seen: dict[str, str] = {}
    for key, name in storage.tables.items():
        if not TABLE_NAME.match(name):
            raise ConfigError(
                f"storage.tables.{key}: {name!r} is not a plain table name (letters, digits and _, "
                "starting with a letter or _; no '/', '..' or spaces)")
        if name.lower() in RESERVED_NAMES:
            raise ConfigError(f"storage.tables.{key}: {name!r} is reserved for another use under storage.root")
        other = seen.get(name.lower())
        if other:
            raise ConfigError(f"storage.tables.{key}: {name!r} is also the name of storage.tables.{other}; "
                              "each table needs its own name")
        seen[name.lower()] = key
    if not storage.root.strip():
        raise ConfigError("storage.root: must not be empty")


def validate_synthetic(cfg: Config) -> None:
    """The ``synthetic`` section against the scenarios.

    Checked by what uses it (``generate_synthetic``, and the synthetic layout's default dates),
    not at load: a config for real logs names its scenarios and features and nothing else,
    and the synthetic defaults (scenarios a-f) do not stand in its way.
    """
    names = cfg.scenarios.names
    syn = cfg.synthetic
    _parse_date("synthetic.start_date", syn.start_date)
    for key in ("days", "exposures_per_day", "n_users", "n_items", "exposures_per_request",
                "calibration_rows_per_scenario"):
        if getattr(syn, key) <= 0:
            raise ConfigError(f"synthetic.{key}: must be > 0, got {getattr(syn, key)}")
    if syn.candidates_per_day < 0:
        raise ConfigError(f"synthetic.candidates_per_day: must be >= 0, got {syn.candidates_per_day}")
    for key in ("traffic_share", "ctr", "ctcvr"):
        table = getattr(syn, key)
        if set(table) != set(names):
            raise ConfigError(
                f"synthetic.{key}: keys {sorted(table)} must be the scenarios {sorted(names)}"
            )
        for name, rate in table.items():
            if key == "traffic_share" and rate <= 0.0:
                raise ConfigError(f"synthetic.traffic_share.{name}: must be > 0, got {rate}")
            if key != "traffic_share" and not 0.0 < rate < 1.0:
                raise ConfigError(f"synthetic.{key}.{name}: must be in (0, 1), got {rate}")
    for name in names:
        if syn.ctcvr[name] >= syn.ctr[name]:
            raise ConfigError(
                f"synthetic.ctcvr.{name}: {syn.ctcvr[name]} must be below synthetic.ctr.{name} "
                f"({syn.ctr[name]}): an order needs a click"
            )
    grouped = [s for group in syn.scenario_groups for s in group]
    if sorted(grouped) != sorted(names):
        raise ConfigError(
            f"synthetic.scenario_groups: {[list(g) for g in syn.scenario_groups]} must place "
            f"every scenario of {list(names)} in exactly one group"
        )
    if not 0.0 <= syn.duplicate_event_rate < 1.0:
        raise ConfigError(
            f"synthetic.duplicate_event_rate: must be in [0, 1), got {syn.duplicate_event_rate}"
        )


def _validate(cfg: Config) -> None:
    _validate_tables(cfg.storage)
    names = cfg.scenarios.names
    if len(names) < 2:
        raise ConfigError(f"scenarios.names: HiNet needs at least 2 scenarios, got {list(names)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"scenarios.names: duplicate names in {list(names)}")
    for key in ("progress_seconds", "rows_per_file", "rows_per_task"):
        if getattr(cfg.spark, key) <= 0:
            raise ConfigError(f"spark.{key}: must be > 0, got {getattr(cfg.spark, key)}")
    fe = cfg.features
    for key in ("numeric_buckets", "min_count", "click_window_hours", "order_window_hours"):
        if getattr(fe, key) <= 0:
            raise ConfigError(f"features.{key}: must be > 0, got {getattr(fe, key)}")
    if not 0.0 <= fe.quantile_relative_error < 0.5:
        raise ConfigError(f"features.quantile_relative_error: must be in [0, 0.5), got {fe.quantile_relative_error}")
    for name, buckets in fe.hashed.items():
        if buckets <= 0:
            raise ConfigError(f"features.hashed.{name}: must be > 0 buckets, got {buckets}")
    names_seen = [*fe.numeric, *fe.categorical, *fe.hashed]
    dupes = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if dupes:
        raise ConfigError(f"features: {dupes} listed more than once across numeric/categorical/hashed")
    for name, (low, high) in fe.numeric_ranges.items():
        if name not in fe.numeric:
            raise ConfigError(f"features.numeric_ranges.{name}: not a numeric feature (features.numeric: "
                              f"{list(fe.numeric)})")
        if low is not None and high is not None and low > high:
            raise ConfigError(f"features.numeric_ranges.{name}: min {low} is above max {high}")
    for key in ("fit_start", "fit_end"):
        if getattr(fe, key) is not None:
            _parse_date(f"features.{key}", getattr(fe, key))
    tr = cfg.train
    if tr.launcher not in ("horovod", "torch_distributor", "local"):
        raise ConfigError(f"train.launcher: expected horovod, torch_distributor or local, got {clip(repr(tr.launcher))}")
    if tr.missing_scenario not in ("error", "warn"):
        raise ConfigError(f"train.missing_scenario: expected error or warn, got {clip(repr(tr.missing_scenario))}")
    sc = cfg.scoring
    if sc.feature_spec not in ("pipeline", "model"):
        raise ConfigError(f"scoring.feature_spec: expected pipeline or model, got {clip(repr(sc.feature_spec))}")
    if tr.warm_start_window_days <= 0:
        raise ConfigError(f"train.warm_start_window_days: must be > 0, got {tr.warm_start_window_days}")
    if tr.window_days <= 0:
        raise ConfigError(f"train.window_days: must be > 0, got {tr.window_days}")
    for key in ("batch_size", "histogram_bins"):
        if getattr(sc, key) <= 0:
            raise ConfigError(f"scoring.{key}: must be > 0, got {getattr(sc, key)}")
    for key in ("num_proc", "threads_per_worker", "batch_size", "epochs", "early_stopping_patience",
                "progress_seconds", "validations_per_epoch", "shuffle_buffer_rows", "row_group_mb"):
        if getattr(tr, key) <= 0:
            raise ConfigError(f"train.{key}: must be > 0, got {getattr(tr, key)}")
    if tr.val_every_steps is not None and tr.val_every_steps <= 0:
        raise ConfigError(f"train.val_every_steps: must be > 0 or null, got {tr.val_every_steps}")
    if tr.learning_rate <= 0:
        raise ConfigError(f"train.learning_rate: must be > 0, got {tr.learning_rate}")
    if tr.weight_decay < 0:
        raise ConfigError(f"train.weight_decay: must be >= 0, got {tr.weight_decay}")
    unknown = sorted(set(tr.scenario_weights) - set(names))
    if unknown:
        raise ConfigError(f"train.scenario_weights: unknown scenarios {unknown}; known: {list(names)}")
    for key in ("train_start", "train_end", "val_start", "val_end", "test_start", "test_end"):
        if getattr(tr, key) is not None:
            _parse_date(f"train.{key}", getattr(tr, key))
    if not 0.0 <= cfg.features.quarantine_warn_rate <= 1.0:
        raise ConfigError(f"features.quarantine_warn_rate: must be in [0, 1], got {cfg.features.quarantine_warn_rate}")
    ev = cfg.evaluation
    if not 0 < ev.calibration_low < 1 < ev.calibration_high:
        raise ConfigError(f"evaluation.calibration_low/high: need 0 < low < 1 < high, got "
                          f"{ev.calibration_low}, {ev.calibration_high}")
    for key in ("trailing_days", "reliability_bins", "min_positives"):
        if getattr(ev, key) <= 0:
            raise ConfigError(f"evaluation.{key}: must be > 0, got {getattr(ev, key)}")
    if cfg.mlflow.min_positives < 1:
        raise ConfigError(f"mlflow.min_positives: must be >= 1, got {cfg.mlflow.min_positives}")
    for key in ("promote_margin", "max_auc_drop"):
        if getattr(cfg.mlflow, key) < 0:
            raise ConfigError(f"mlflow.{key}: must be >= 0, got {getattr(cfg.mlflow, key)}")
    if cfg.features.dedup_lookback_days < 0:
        raise ConfigError(f"features.dedup_lookback_days: must be >= 0, got {cfg.features.dedup_lookback_days}")
    mdl = cfg.model
    from hinet_spark.models.registry import MODELS  # torch; the registry is the one list of names

    if mdl.name not in MODELS:
        raise ConfigError(f"model.name: unknown model {clip(repr(mdl.name))}; known: {sorted(MODELS)}")
    for key in ("embedding_dim", "sei_experts", "scenario_emb_dim", "task_shared_experts",
                "task_specific_experts", "n_experts", "ple_levels"):
        if getattr(mdl, key) <= 0:
            raise ConfigError(f"model.{key}: must be > 0, got {getattr(mdl, key)}")
    for key in ("sei_hidden", "cgc_hidden", "tower_hidden", "bottom_hidden", "expert_hidden"):
        widths = getattr(mdl, key)
        if not widths or any(w <= 0 for w in widths):
            raise ConfigError(f"model.{key}: must be a non-empty list of positive widths, got {list(widths)}")


# --------------------------------------------------------------------------------------
# Building dataclasses from plain data, with type checks that name the key and the file
# --------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, sources: Mapping[str, str]) -> Any:
    def fail(expected: str) -> ConfigError:
        src = _source_of(key, sources)
        return ConfigError(f"{key}: expected {expected}, got {clip(repr(value))} (from {src})")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _coerce(value, inner[0], key, sources)
        raise fail(_type_name(tp))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise fail(f"a mapping of {tp.__name__} keys")
        return _build(tp, value, key, sources)
    if tp is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise fail("an integer")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail("a number")
        return float(value)
    if tp is str:
        if isinstance(value, dt.date):  # YAML reads an unquoted 2026-01-01 as a date
            return value.isoformat()
        if isinstance(value, int) and not isinstance(value, bool):  # e.g. scoring.model=3 (a version)
            return str(value)
        if not isinstance(value, str):
            raise fail("a string")
        return value
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise fail("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]", sources) for i, v in enumerate(value))
        if len(args) != len(value):
            raise fail(f"a list of {len(args)} items")
        return tuple(_coerce(v, a, f"{key}[{i}]", sources) for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise fail("a mapping")
        ktp, vtp = args
        return {
            _coerce(k, ktp, f"{key} key", sources): _coerce(v, vtp, f"{key}.{k}", sources)
            for k, v in value.items()
        }
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # a bug in this module


def _build(cls: type, data: Mapping[str, Any], prefix: str, sources: Mapping[str, str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for k in data:
        if k not in names:
            key = f"{prefix}.{k}" if prefix else str(k)
            raise ConfigError(
                f"unknown config key {clip(repr(key))} (from {_source_of(key, sources)}); "
                f"known keys{' of ' + prefix if prefix else ''}: {sorted(names)}"
            )
    kwargs = {
        k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k, sources) for k, v in data.items()
    }
    return cls(**kwargs)


def _source_of(key: str, sources: Mapping[str, str]) -> str:
    parts = key.replace("[", ".").split(".")
    for n in range(len(parts), 0, -1):
        hit = sources.get(".".join(parts[:n]))
        if hit:
            return hit
    return "defaults"


def _merge(base: dict[str, Any], over: Mapping[str, Any], origin: str, sources: dict[str, str],
           prefix: str = "") -> dict[str, Any]:
    """Deep-merge ``over`` into ``base``; mappings merge key by key, anything else replaces."""
    for k, v in over.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and isinstance(base.get(k), dict) and not _is_leaf_mapping(key):
            _merge(base[k], v, origin, sources, key)
        else:
            base[k] = v
            sources[key] = origin
    return base


_LEAF_MAPPINGS = ("synthetic.traffic_share", "synthetic.ctr", "synthetic.ctcvr", "features.hashed",
                  "features.numeric_ranges", "train.scenario_weights")


def _is_leaf_mapping(key: str) -> bool:
    """Mappings that are values (replaced whole, so a scenario list can shrink)."""
    return key in _LEAF_MAPPINGS


MAX_YAML_VALUES = 100_000  # values a config or mapping file may expand to through YAML aliases
MAX_SHOWN = 120  # characters of a value a message echoes


def clip(text: Any, limit: int = MAX_SHOWN) -> str:
    """``text`` for a message: at most ``limit`` characters, the cut said."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def expanded_size(value: Any) -> int:
    """How many values ``value`` holds once YAML aliases are expanded (each shared node counted
    as often as it is referenced; linear in the number of distinct nodes)."""
    memo: dict[int, int] = {}

    def size(v: Any) -> int:
        if not isinstance(v, (dict, list)):
            return 1
        if id(v) not in memo:
            memo[id(v)] = 0  # a cycle counts once
            children = [*v.keys(), *v.values()] if isinstance(v, dict) else v
            memo[id(v)] = 1 + sum(size(c) for c in children)
        return memo[id(v)]

    return size(value)


def safe_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load``, refusing a document that expands beyond :data:`MAX_YAML_VALUES`
    values through aliases (an alias bomb) before anything walks it."""
    data = yaml.safe_load(text)
    n = expanded_size(data)
    if n > MAX_YAML_VALUES:
        raise ConfigError(f"{clip(where)}: expands to {n:,} values through YAML aliases (&anchor / *alias), more "
                          f"than the {MAX_YAML_VALUES:,} allowed; write the values out or use fewer aliases")
    return data


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = safe_yaml(path.read_text(), str(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """``'train.batch_size=2048'`` -> ``(['train', 'batch_size'], 2048)`` (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {clip(text)!r}: expected section.key=value")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".")]
    if not all(parts):
        raise ConfigError(f"override {clip(text)!r}: bad key {clip(key)!r}")
    try:
        value = safe_yaml(raw, f"--set {text}") if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {clip(text)!r}: value is not valid YAML: {clip(exc, 300)}") from None
    return parts, value


def default_conf_dir() -> Path:
    """``conf/`` of the checkout, or the copy shipped inside the wheel."""
    repo_conf = Path(__file__).resolve().parent.parent / "conf"
    if (repo_conf / "base.yaml").is_file():
        return repo_conf
    return Path(__file__).resolve().parent / "resources"


def load_config(env_file: str | Path | None = None, overrides: Sequence[str] = (),
                base_file: str | Path | None = None) -> Config:
    """Load base + environment file + ``--set`` overrides into a validated :class:`Config`."""
    sources: dict[str, str] = {}
    merged: dict[str, Any] = {}
    base = Path(base_file) if base_file else default_conf_dir() / "base.yaml"
    _merge(merged, _read_yaml(base), str(base), sources)
    if env_file:
        env = Path(env_file)
        _merge(merged, _read_yaml(env), str(env), sources)
    for text in overrides:
        parts, value = parse_override(text)
        nested: Any = value
        for p in reversed(parts):
            nested = {p: nested}
        _merge(merged, nested, f"--set {clip(text)}", sources)
    try:
        return _build(Config, merged, "", sources)
    except TypeError as exc:  # a dataclass refused its arguments: name what we can
        raise ConfigError(f"invalid configuration: {exc}") from None
    except ConfigError as exc:
        raise _with_source(exc, sources) from None


_KEY_PREFIX = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)+): ")


def _with_source(exc: ConfigError, sources: Mapping[str, str]) -> ConfigError:
    """Cross-field checks raise ``"<key>: <problem>"``; add where that key's value came from."""
    text = str(exc)
    match = _KEY_PREFIX.match(text)
    if not match or "(from " in text:
        return exc
    return ConfigError(f"{text} (from {_source_of(match.group(1), sources)})")
