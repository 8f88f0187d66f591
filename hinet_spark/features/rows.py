"""The feature spec applied to raw rows in pandas: what the served model does with a caller's rows.

:func:`ids_of_rows` gives, for a pandas frame of raw candidate rows (``scenario``, the spec's
numeric, categorical and hashed feature columns, and its behaviour counter columns ``bh_*``), the
same ``scenario_idx`` and ``f_*`` ids that :func:`hinet_spark.features.transforms.apply_spec`
gives in Spark: numeric and counters by the same boundaries (``1 + #{boundaries <= x}``, 0 for
null), categoricals by the vocabulary (0 null, 1 out of vocabulary), hashed features by Spark's
``pmod(xxhash64(value as string), buckets) + 2`` (:func:`spark_xxhash64`, seed 42). Rows that the
batch job would quarantine (unknown scenario, a NaN / infinite / negative or out-of-range
numeric) are refused with their positions and reasons: a caller gets an error, never a score of
a row the pipeline would not score. Imports only numpy and pandas (no Spark), so that the model
can apply it wherever it is served.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from hinet_spark.features.spec import FIRST_ID, NULL_ID, OOV_ID, FeatureSpec

_MASK = (1 << 64) - 1
_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5
SPARK_HASH_SEED = 42  # what Spark's xxhash64() uses


class RowsError(ValueError):
    """Raw rows that the served model cannot score (missing columns, rows the pipeline would quarantine)."""


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    return (_rotl((acc + lane * _P2) & _MASK, 31) * _P1) & _MASK


def spark_xxhash64(data: bytes, seed: int = SPARK_HASH_SEED) -> int:
    """XXH64 of ``data`` as a signed 64-bit int: Spark's ``xxhash64`` of a string column (its
    UTF-8 bytes, seed 42). Checked against Spark in tests/test_serving_rows.py."""
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed & _MASK, (seed - _P1) & _MASK]
        while i + 32 <= n:
            for j in range(4):
                v[j] = _round(v[j], int.from_bytes(data[i + 8 * j:i + 8 * j + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & _MASK
        for lane in v:
            h = (((h ^ _round(0, lane)) * _P1) + _P4) & _MASK
    else:
        h = (seed + _P5) & _MASK
    h = (h + n) & _MASK
    while i + 8 <= n:
        h = ((_rotl(h ^ _round(0, int.from_bytes(data[i:i + 8], "little")), 27) * _P1) + _P4) & _MASK
        i += 8
    if i + 4 <= n:
        h = ((_rotl(h ^ ((int.from_bytes(data[i:i + 4], "little") * _P1) & _MASK), 23) * _P2) + _P3) & _MASK
        i += 4
    while i < n:
        h = (_rotl(h ^ ((data[i] * _P5) & _MASK), 11) * _P1) & _MASK
        i += 1
    h = ((h ^ (h >> 33)) * _P2) & _MASK
    h = ((h ^ (h >> 29)) * _P3) & _MASK
    h ^= h >> 32
    return h - (1 << 64) if h >= 1 << 63 else h


def _as_text(value: Any) -> str:
    """A value as Spark's ``cast(... as string)`` writes it, for the types a feature column holds."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return str(value)


def raw_columns(spec: FeatureSpec) -> list[str]:
    """The columns a raw row must carry: ``scenario``, then every feature (counters as ``bh_*`` values)."""
    return ["scenario", *spec.numeric, *spec.counters, *spec.categorical, *spec.hashed]


def _null(col: pd.Series) -> np.ndarray:
    return col.isna().to_numpy()


def _bucketized(col: pd.Series, bounds: tuple[float, ...]) -> np.ndarray:
    x = pd.to_numeric(col, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    ids = 1 + np.searchsorted(np.asarray(bounds, dtype=np.float64), x, side="right")
    return np.where(np.isnan(x), NULL_ID, ids)


def _refusals(frame: pd.DataFrame, spec: FeatureSpec,
              ranges: Mapping[str, tuple[float | None, float | None]]) -> dict[str, list[int]]:
    """Reason -> row positions, with the batch job's reasons (``unknown_scenario``, ``bad_numeric:<col>``,
    ``out_of_range:<col>``); a row is listed under its first reason, as in the quarantine."""
    reasons: list[tuple[np.ndarray, str]] = [(~frame["scenario"].isin(spec.scenarios).to_numpy(), "unknown_scenario")]
    for name in spec.numeric:
        x = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        given = ~_null(frame[name])
        reasons.append((given & (np.isnan(x) | np.isinf(x) | (x < 0)), f"bad_numeric:{name}"))
        lo, hi = ranges.get(name, (None, None))
        outside = np.zeros(len(x), dtype=bool)
        with np.errstate(invalid="ignore"):
            if lo is not None:
                outside |= x < lo
            if hi is not None:
                outside |= x > hi
        reasons.append((given & outside, f"out_of_range:{name}"))
    taken = np.zeros(len(frame), dtype=bool)
    out: dict[str, list[int]] = {}
    for hit, why in reasons:
        first = hit & ~taken
        if first.any():
            out[why] = np.flatnonzero(first).tolist()
        taken |= hit
    return out


def ids_of_rows(frame: pd.DataFrame, spec: FeatureSpec,
                ranges: Mapping[str, tuple[float | None, float | None]] | None = None) -> pd.DataFrame:
    """``scenario_idx`` and the ``f_*`` id columns (int64, in :attr:`FeatureSpec.columns` order) of raw rows.

    Raises :class:`RowsError` naming the missing columns, or the rows the batch job would
    quarantine (by reason, with their positions in ``frame``)."""
    missing = [c for c in raw_columns(spec) if c not in frame.columns]
    if missing:
        raise RowsError(f"raw rows lack columns {missing} (a raw row carries {raw_columns(spec)}; or send the "
                        f"ids {[*spec.columns, 'scenario_idx']})")
    refused = _refusals(frame, spec, ranges or {})
    if refused:
        shown = "; ".join(f"{why}: rows {rows[:10]}{' ...' if len(rows) > 10 else ''} ({len(rows)})"
                          for why, rows in refused.items())
        raise RowsError(f"{sum(map(len, refused.values()))} of {len(frame)} rows cannot be scored, as the batch job "
                        f"would quarantine them: {shown}")
    out = {"scenario_idx": frame["scenario"].map({s: i for i, s in enumerate(spec.scenarios)}).to_numpy(np.int64)}
    for name, bounds in spec.bucketed.items():
        out[f"f_{name}"] = _bucketized(frame[name], bounds)
    for name, vocab in spec.categorical.items():
        index = {v: FIRST_ID + i for i, v in enumerate(vocab)}
        out[f"f_{name}"] = [NULL_ID if pd.isna(v) else index.get(_as_text(v), OOV_ID) for v in frame[name]]
    for name, buckets in spec.hashed.items():
        out[f"f_{name}"] = [NULL_ID if pd.isna(v) else FIRST_ID + spark_xxhash64(_as_text(v).encode()) % buckets
                            for v in frame[name]]
    return pd.DataFrame({c: np.asarray(out[c], dtype=np.int64) for c in ("scenario_idx", *spec.columns)},
                        index=frame.index)
