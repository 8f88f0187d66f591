"""What the config keys are: typed, frozen sections, their single-field rules and the cross-field rules.

Every key is checked once, at load time, against the dataclasses below: an unknown key, a
value of the wrong type or a missing file raises :class:`ConfigError` naming the key, the
value and where it came from. Single-field rules are declared on the field (:func:`positive`,
:func:`at_least`, :func:`one_of`, :func:`a_date`, :func:`widths`) and checked by one loop;
cross-field rules are in :func:`_validate`. The dataclass defaults equal ``conf/base.yaml``'s
(``tests/test_config.py`` holds them to it); the comments live in ``base.yaml``.

Why not pydantic: the environment pinned like 15.4 LTS ML (MLflow 2.13.1, the Horovod runtime)
has no pydantic 2 (15.4 LTS ML itself ships pydantic 1, as recalled from its release notes), and
the project must not replace a runtime's package (docs/architecture.md, "Configuration").
A leaf-level module: imports only :mod:`hinet_spark.errors`, :mod:`hinet_spark.dates`,
:mod:`hinet_spark.tasks` and :mod:`hinet_spark.safe_yaml` (the layer rule).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from hinet_spark.dates import DateError, parse_date
from hinet_spark.errors import ConfigError
from hinet_spark.safe_yaml import clip

SCENARIO_NAMES_DEFAULT = ("a", "b", "c", "d", "e", "f")
# model.name: the keys of hinet_spark.models.registry.MODELS (the registry checks it holds exactly these)
MODEL_NAMES = ("hinet", "hinet_no_hierarchy", "hinet_no_san", "hinet_no_task_gating", "hinet_no_scenario_gating",
               "hinet_no_gating", "shared_bottom", "mmoe", "ple", "hmoe", "star")

# A table name is a plain identifier: it becomes one folder under storage.root (or one
# name in the catalog schema), so no separators, no "..", no spaces.
TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# What else lives directly under storage.root; a table may not take these names.
RESERVED_NAMES = frozenset({"_delta_log", "checkpoints", "petastorm_cache", "derby", "feature_specs",
                            "mlruns", "mlflow_artifacts", "spark_warehouse"})
TABLE_KEYS = ("raw_exposures", "raw_clicks", "raw_orders", "oracle", "candidates", "synthetic_staging",
              "samples", "quarantine", "scores", "scores_quarantine", "score_quality", "import_quarantine",
              "import_log", "feature_spec_log", "behaviour_daily")


# --------------------------------------------------------------------------------------
# Single-field rules, declared on the field
# --------------------------------------------------------------------------------------


def _rule(default: Any, **rule: Any) -> Any:
    return field(default=default, metadata=rule)


def positive(default: Any) -> Any:
    """> 0 (None, where the type allows it, stays allowed)."""
    return _rule(default, above=0)


def at_least(default: Any, low: float) -> Any:
    return _rule(default, low=low)


def within(default: float, low: float, high: float, high_open: bool = False) -> Any:
    return _rule(default, low=low, high=high, high_open=high_open)


def one_of(default: str, *choices: str, noun: str = "") -> Any:
    """One of ``choices``; with ``noun`` a long list is said as "unknown <noun> ...; known: [...]"."""
    return _rule(default, choices=choices, noun=noun)


def a_date(default: str | None) -> Any:
    return _rule(default, date=True)


def widths(default: tuple[int, ...]) -> Any:
    """A non-empty list of positive layer widths."""
    return _rule(default, widths=True)


def _check_rules(section: Any, prefix: str) -> None:
    for f in dataclasses.fields(section):
        value, rule, key = getattr(section, f.name), f.metadata, f"{prefix}.{f.name}"
        if value is None or not rule:
            continue
        if "choices" in rule and value not in rule["choices"]:
            *head, last = rule["choices"]
            if rule["noun"]:
                raise ConfigError(f"{key}: unknown {rule['noun']} {clip(repr(value))}; known: {sorted(rule['choices'])}")
            raise ConfigError(f"{key}: expected {', '.join(head)} or {last}, got {clip(repr(value))}")
        if "above" in rule and not value > rule["above"]:
            raise ConfigError(f"{key}: must be > {rule['above']}, got {value}")
        if "high" in rule:
            closing = ")" if rule["high_open"] else "]"
            if not (rule["low"] <= value and (value < rule["high"] if rule["high_open"] else value <= rule["high"])):
                raise ConfigError(f"{key}: must be in [{rule['low']}, {rule['high']}{closing}, got {value}")
        elif "low" in rule and not value >= rule["low"]:
            raise ConfigError(f"{key}: must be >= {rule['low']}, got {value}")
        if rule.get("date"):
            _parse_date(key, value)
        if rule.get("widths") and (not value or any(w <= 0 for w in value)):
            raise ConfigError(f"{key}: must be a non-empty list of positive widths, got {list(value)}")


# --------------------------------------------------------------------------------------
# Sections (what each key means: conf/base.yaml and docs/config.md)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SparkSection:
    """How the embedded (local) SparkSession is built; ignored on a cluster."""

    master: str = "local[2]"
    app_name: str = "hinet-spark"
    shuffle_partitions: int = 8
    driver_memory: str = "4g"
    extra_conf: dict[str, str] = field(default_factory=dict)
    progress_seconds: int = positive(30)
    rows_per_file: int = positive(2_000_000)
    rows_per_task: int = positive(200_000)


def _default_tables() -> dict[str, str]:
    return {k: ("_synthetic_staging" if k == "synthetic_staging" else k) for k in TABLE_KEYS}


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
    tables: dict[str, str] = field(default_factory=_default_tables)


@dataclass(frozen=True)
class ScenarioSection:
    """The scenarios the platform serves, in index order (index = position)."""

    names: tuple[str, ...] = SCENARIO_NAMES_DEFAULT


def _per_scenario(*values: float) -> Any:
    return field(default_factory=lambda: dict(zip(SCENARIO_NAMES_DEFAULT, values)))


@dataclass(frozen=True)
class SyntheticSection:
    """The generator of the embedded default's raw logs (see docs/synthetic_data.md)."""

    enabled: bool = False
    seed: int = 7
    start_date: str = "2026-01-01"
    days: int = 7
    exposures_per_day: int = 100_000
    n_users: int = 20_000
    n_items: int = 5_000
    exposures_per_request: int = 5
    candidates_per_day: int = 50_000
    traffic_share: dict[str, float] = _per_scenario(0.487, 0.267, 0.064, 0.072, 0.004, 0.072)
    ctr: dict[str, float] = _per_scenario(0.1256, 0.2250, 0.1400, 0.1384, 0.0412, 0.1117)
    ctcvr: dict[str, float] = _per_scenario(0.0264, 0.0591, 0.0064, 0.0054, 0.0031, 0.0113)
    scenario_groups: tuple[tuple[str, ...], ...] = (("a", "c", "e"), ("b", "d", "f"))
    duplicate_event_rate: float = 0.01
    log_candidates_day: bool = False
    calibration_rows_per_scenario: int = 20_000
    behaviour_weight: float = at_least(0.0, 0)
    behaviour_drift_days: int = positive(7)


# Behaviour counters (docs/features.md, "Behaviour counters"): the entity parts that are not
# configured categorical features, and what can be counted and rated.
BEHAVIOUR_KEYS = {"user": "user_id", "item": "item_id", "scenario": "scenario"}
BEHAVIOUR_COUNTS = ("exposures", "clicks", "orders")
BEHAVIOUR_RATES = ("ctr", "cvr", "ctcvr")


@dataclass(frozen=True)
class BehaviourSection:
    """Point-in-time counters of the logs per entity and window (``features.behaviour``)."""

    entities: tuple[str, ...] = ()
    windows: tuple[int, ...] = (1, 7, 30)
    counts: tuple[str, ...] = BEHAVIOUR_COUNTS
    rates: tuple[str, ...] = BEHAVIOUR_RATES
    prior: float = positive(20.0)
    buckets: int = positive(10)


@dataclass(frozen=True)
class FeaturesSection:
    """The feature pipeline (docs/features.md): labels, bucketizing, vocabularies."""

    numeric: tuple[str, ...] = ("price", "distance_km", "hour_of_day", "user_activity_30d", "item_rating")
    categorical: tuple[str, ...] = ("user_city", "user_age_group", "user_gender", "device_type",
                                    "item_category", "item_brand")
    hashed: dict[str, int] = field(default_factory=lambda: {"user_id": 50_000, "item_id": 20_000})
    numeric_ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    numeric_buckets: int = positive(20)
    quantile_relative_error: float = within(0.001, 0.0, 0.5, high_open=True)
    min_count: int = positive(5)
    fit_start: str | None = a_date(None)
    fit_end: str | None = a_date(None)
    click_window_hours: int = positive(24)
    order_window_hours: int = positive(72)
    dedup_lookback_days: int = at_least(7, 0)
    quarantine_warn_rate: float = within(0.02, 0.0, 1.0)
    spec_path: str | None = None
    behaviour: BehaviourSection = field(default_factory=BehaviourSection)


@dataclass(frozen=True)
class ModelSection:
    """Model choice and sizes (docs/model.md). ``name`` is a key of the model registry."""

    name: str = one_of("hinet", *MODEL_NAMES, noun="model")
    embedding_dim: int = positive(16)
    sei_experts: int = positive(5)  # K_s = K_i sub-experts per SEI
    sei_hidden: tuple[int, ...] = widths((128, 64))
    scenario_emb_dim: int = positive(16)  # d of Emb(s_i) in SAN
    task_shared_experts: int = positive(2)  # m_i
    task_specific_experts: int = positive(2)  # n_i^j
    cgc_hidden: tuple[int, ...] = widths((128, 64))
    tower_hidden: tuple[int, ...] = widths((128, 64))
    use_san: bool = True
    scenario_gating: bool = True
    task_gating: bool = True
    bottom_hidden: tuple[int, ...] = widths((256, 128, 64))  # Shared Bottom, STAR's FCN
    n_experts: int = positive(6)  # MMoE / HMoE experts; PLE shared experts = task_shared_experts
    expert_hidden: tuple[int, ...] = widths((128, 64))
    ple_levels: int = positive(2)
    # towers: the paper's two sigmoid towers (CTR, CTCVR); esmm: the second tower is CVR and
    # p_ctcvr = p_ctr x p_cvr, trained through the product (Ma et al., SIGIR'18), so p_ctcvr <= p_ctr
    task_output: str = one_of("towers", "towers", "esmm")


@dataclass(frozen=True)
class TrainSection:
    """Distributed training (docs/training.md)."""

    launcher: str = one_of("horovod", "horovod", "torch_distributor", "local")
    num_proc: int = positive(2)
    use_gpu: bool = False
    local_mode: bool = True
    threads_per_worker: int = positive(1)
    batch_size: int = positive(2048)  # the global batch: all workers together
    learning_rate: float = positive(0.001)
    weight_decay: float = at_least(0.0, 0)
    epochs: int = positive(10)
    validations_per_epoch: int = positive(4)
    val_every_steps: int | None = positive(None)
    early_stopping_patience: int = positive(2)
    early_stopping_min_delta: float = at_least(0.001, 0)
    early_stopping_drop: float = at_least(0.005, 0)
    early_validation_fraction: float = at_least(0.0, 0)
    use_behaviour: bool = True
    seed: int = 0
    train_start: str | None = a_date(None)
    train_end: str | None = a_date(None)
    val_start: str | None = a_date(None)
    val_end: str | None = a_date(None)
    test_start: str | None = a_date(None)
    test_end: str | None = a_date(None)
    warm_start_window_days: int = positive(1)
    window_days: int = positive(14)
    missing_scenario: str = one_of("error", "error", "warn")
    scenario_weights: dict[str, float] = field(default_factory=dict)
    max_steps_per_epoch: int | None = None
    max_val_rows: int = 200_000
    progress_seconds: int = positive(30)
    checkpoint_dir: str | None = None
    petastorm_cache_dir: str | None = None
    sparse_embeddings: bool = True
    compile: bool = False
    gradient_compression: str = one_of("none", "none", "fp16")
    shuffle_buffer_rows: int = positive(500_000)
    row_group_mb: int = positive(8)


@dataclass(frozen=True)
class MlflowSection:
    """Tracking, the registry and the champion rule (docs/training.md, "Champion")."""

    tracking_uri: str | None = None
    registry_uri: str | None = None
    experiment: str = "hinet-spark"
    artifact_root: str | None = None
    registered_model: str = "hinet"
    register: bool = True
    promote: bool = True
    promote_margin: float = at_least(0.0, 0)
    max_auc_drop: float = at_least(0.01, 0)
    min_positives: int = at_least(50, 1)
    floor: bool = True
    floor_auc_margin: float = at_least(0.01, 0)
    floor_logloss_margin: float = at_least(0.0, 0)
    serving_torch: str | None = None
    serving_index_url: str | None = None


@dataclass(frozen=True)
class ScoringSection:
    """The nightly scoring job (``jobs/score_candidates.py``)."""

    model: str = "champion"
    feature_spec: str = one_of("pipeline", "pipeline", "model")
    batch_size: int = positive(10_000)
    histogram_bins: int = positive(50)
    compile: bool = False


@dataclass(frozen=True)
class EvaluationSection:
    """How yesterday's scores did (``jobs/evaluate_scores.py``)."""

    calibration_low: float = 0.8
    calibration_high: float = 1.25
    max_auc_drop: float = 0.02
    trailing_days: int = positive(7)
    reliability_bins: int = positive(10)
    min_positives: int = positive(50)


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
# Cross-field rules (types and single-field rules are checked while building)
# --------------------------------------------------------------------------------------


def _parse_date(key: str, value: str) -> dt.date:
    try:
        return parse_date(value, key)
    except DateError as exc:
        raise ConfigError(str(exc)) from None


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
            raise ConfigError(f"synthetic.{key}: keys {sorted(table)} must be the scenarios {sorted(names)}")
        for name, rate in table.items():
            if key == "traffic_share" and rate <= 0.0:
                raise ConfigError(f"synthetic.traffic_share.{name}: must be > 0, got {rate}")
            if key != "traffic_share" and not 0.0 < rate < 1.0:
                raise ConfigError(f"synthetic.{key}.{name}: must be in (0, 1), got {rate}")
    for name in names:
        if syn.ctcvr[name] >= syn.ctr[name]:
            raise ConfigError(f"synthetic.ctcvr.{name}: {syn.ctcvr[name]} must be below synthetic.ctr.{name} "
                              f"({syn.ctr[name]}): an order needs a click")
    grouped = [s for group in syn.scenario_groups for s in group]
    if sorted(grouped) != sorted(names):
        raise ConfigError(f"synthetic.scenario_groups: {[list(g) for g in syn.scenario_groups]} must place "
                          f"every scenario of {list(names)} in exactly one group")
    if not 0.0 <= syn.duplicate_event_rate < 1.0:
        raise ConfigError(f"synthetic.duplicate_event_rate: must be in [0, 1), got {syn.duplicate_event_rate}")


def synthetic_dates(cfg: Config) -> tuple[str, str, str]:
    """The synthetic layout's (first logged date, last logged date, candidates date), ISO."""
    start = _parse_date("synthetic.start_date", cfg.synthetic.start_date)
    last = start + dt.timedelta(days=cfg.synthetic.days - 1)
    return start.isoformat(), last.isoformat(), (last + dt.timedelta(days=1)).isoformat()


def layout_dates(cfg: Config, missing: str) -> tuple[str, str, str]:
    """:func:`synthetic_dates` for a job given no dates, only where the config says the tables
    are the generator's (``synthetic.enabled``); otherwise the error names what to pass."""
    if not cfg.synthetic.enabled:
        raise ConfigError(f"no dates given: {missing}. (Without them a job takes the synthetic layout's dates, "
                          "and only when synthetic.enabled is true, as in conf/local.yaml.)")
    validate_synthetic(cfg)
    return synthetic_dates(cfg)


def _validate(cfg: Config) -> None:
    for section in dataclasses.fields(cfg):
        _check_rules(getattr(cfg, section.name), section.name)
    _validate_tables(cfg.storage)
    names = cfg.scenarios.names
    if len(names) < 2:
        raise ConfigError(f"scenarios.names: HiNet needs at least 2 scenarios, got {list(names)}")
    if len(set(names)) != len(names):
        raise ConfigError(f"scenarios.names: duplicate names in {list(names)}")
    fe = cfg.features
    for name, buckets in fe.hashed.items():
        if buckets <= 0:
            raise ConfigError(f"features.hashed.{name}: must be > 0 buckets, got {buckets}")
    names_seen = [*fe.numeric, *fe.categorical, *fe.hashed]
    dupes = sorted({n for n in names_seen if names_seen.count(n) > 1})
    if dupes:
        raise ConfigError(f"features: {dupes} listed more than once across numeric/categorical/hashed")
    _validate_behaviour(fe)
    for name, (low, high) in fe.numeric_ranges.items():
        if name not in fe.numeric:
            raise ConfigError(f"features.numeric_ranges.{name}: not a numeric feature (features.numeric: "
                              f"{list(fe.numeric)})")
        if low is not None and high is not None and low > high:
            raise ConfigError(f"features.numeric_ranges.{name}: min {low} is above max {high}")
    unknown = sorted(set(cfg.train.scenario_weights) - set(names))
    if unknown:
        raise ConfigError(f"train.scenario_weights: unknown scenarios {unknown}; known: {list(names)}")
    if not cfg.train.early_validation_fraction < 1:
        raise ConfigError(f"train.early_validation_fraction: a fraction of an epoch below 1, got "
                          f"{cfg.train.early_validation_fraction}")
    _validate_serving(cfg.mlflow)
    ev = cfg.evaluation
    if not 0 < ev.calibration_low < 1 < ev.calibration_high:
        raise ConfigError(f"evaluation.calibration_low/high: need 0 < low < 1 < high, got "
                          f"{ev.calibration_low}, {ev.calibration_high}")


def _validate_serving(ml: MlflowSection) -> None:
    """``mlflow.serving_torch`` is one torch requirement, ``serving_index_url`` one http(s) URL: each
    becomes a line of the registered model's requirements.txt."""
    torch_req, url = ml.serving_torch, ml.serving_index_url
    if torch_req is not None and not re.fullmatch(r"torch(==|>=|~=)[0-9][0-9A-Za-z.+!*]*", torch_req):
        raise ConfigError(f"mlflow.serving_torch: {torch_req!r} is not one torch requirement such as "
                          "'torch==2.13.0+cpu'")
    if url is not None and not re.fullmatch(r"https?://\S+", url):
        raise ConfigError(f"mlflow.serving_index_url: {url!r} is not an http(s) URL")


def _validate_behaviour(fe: FeaturesSection) -> None:
    """``features.behaviour``: entities made of known parts, positive windows, known names."""
    bc = fe.behaviour
    _check_rules(bc, "features.behaviour")
    known = {**BEHAVIOUR_KEYS, **{c: c for c in fe.categorical}}
    for i, entity in enumerate(bc.entities):
        parts = entity.split("+")
        unknown = [p for p in parts if p not in known]
        if unknown:
            raise ConfigError(
                f"features.behaviour.entities[{i}]: {clip(repr(entity))} names {unknown}, which is neither user, item, "
                f"scenario nor a configured categorical feature (features.categorical: {list(fe.categorical)})")
        if len(set(parts)) != len(parts):
            raise ConfigError(f"features.behaviour.entities[{i}]: {clip(repr(entity))} repeats a part")
    names = ["_".join(e.split("+")) for e in bc.entities]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ConfigError(f"features.behaviour.entities: {dupes} listed more than once")
    bad = [w for w in bc.windows if w <= 0]
    if bad or (bc.entities and not bc.windows):
        raise ConfigError(f"features.behaviour.windows: days must be > 0 (and at least one), got {list(bc.windows)}")
    if len(set(bc.windows)) != len(bc.windows):
        raise ConfigError(f"features.behaviour.windows: {list(bc.windows)} repeats a window")
    for key, allowed in (("counts", BEHAVIOUR_COUNTS), ("rates", BEHAVIOUR_RATES)):
        unknown = [v for v in getattr(bc, key) if v not in allowed]
        if unknown:
            raise ConfigError(f"features.behaviour.{key}: unknown {unknown}; known: {list(allowed)}")
    if bc.entities and not (bc.counts or bc.rates):
        raise ConfigError("features.behaviour: entities are set but counts and rates are both empty")
