"""YAML from files a user wrote (configs, import mappings): bounded, and echoed back clipped.

A leaf of the layer rule: imports only :mod:`hinet_spark.errors`.
"""

from __future__ import annotations

from typing import Any

import yaml

from hinet_spark.errors import ConfigError

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
