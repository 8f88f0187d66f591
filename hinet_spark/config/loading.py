"""How files become a :class:`~hinet_spark.config.sections.Config`: ``conf/base.yaml``, then the
environment file given with ``--conf``, then each ``--set section.key=value`` (later wins; the
value is parsed as YAML). Types are checked while building the dataclasses, and every message
names the key, the value and where it came from (``(from --set train.batch_size=big)``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hinet_spark.config.sections import Config
from hinet_spark.errors import ConfigError
from hinet_spark.safe_yaml import clip, safe_yaml


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


def shipped_dir(folder: str, marker: str) -> Path:
    """``<folder>/`` of the checkout (where it holds ``marker``), or the copy shipped inside
    the wheel (``hinet_spark/resources``, scripts/build_wheel.sh)."""
    package = Path(__file__).resolve().parents[1]  # hinet_spark/
    repo = package.parent / folder
    return repo if (repo / marker).is_file() else package / "resources"


def default_conf_dir() -> Path:
    """``conf/`` of the checkout, or the copy shipped inside the wheel."""
    return shipped_dir("conf", "base.yaml")


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
