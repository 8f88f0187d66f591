"""The configuration: what the keys are (:mod:`.sections`) and how files and ``--set``
overrides become a validated, frozen :class:`Config` (:mod:`.loading`).

A low layer of the layer rule (``tests/test_layers.py``): imports only the leaves
:mod:`hinet_spark.errors`, :mod:`hinet_spark.dates`, :mod:`hinet_spark.safe_yaml` and
:mod:`hinet_spark.tasks`.
"""

from hinet_spark.config.loading import default_conf_dir, load_config, parse_override
from hinet_spark.config.sections import (
    MODEL_NAMES,
    TABLE_KEYS,
    Config,
    EvaluationSection,
    FeaturesSection,
    MlflowSection,
    ModelSection,
    ScenarioSection,
    ScoringSection,
    SparkSection,
    StorageSection,
    SyntheticSection,
    TrainSection,
    layout_dates,
    synthetic_dates,
    validate_synthetic,
)
from hinet_spark.errors import ConfigError
from hinet_spark.safe_yaml import MAX_YAML_VALUES, clip, safe_yaml
from hinet_spark.tasks import TASKS

__all__ = ["MAX_YAML_VALUES", "MODEL_NAMES", "TABLE_KEYS", "TASKS", "Config", "ConfigError", "EvaluationSection",
           "FeaturesSection", "MlflowSection", "ModelSection", "ScenarioSection", "ScoringSection", "SparkSection",
           "StorageSection", "SyntheticSection", "TrainSection", "clip", "default_conf_dir", "layout_dates",
           "load_config", "parse_override", "safe_yaml", "synthetic_dates", "validate_synthetic"]
