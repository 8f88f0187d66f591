"""The minimal Spark SQL that computes build_features' samples of one day (bench_features --vs-sql).

What a hand-written nightly job would run: the day's valid exposures deduplicated (the earliest
of each id, ties by the row's content; ids already in the samples of the dedup lookback are
dropped), the first click within the click window of the exposure, an order within the order
window of that click, and the spec's ids (bucket = 1 + boundaries <= x, vocabulary position,
xxhash64), written once. None of the project's safety checks: no quarantine table, no
counts, no reconciliation, no spec claim. Used to price those checks, and to prove the project
computes the same samples (the benchmark compares them row for row).
"""

from __future__ import annotations

import datetime as dt

from hinet_spark.config import Config
from hinet_spark.features.behaviour import attribution_days
from hinet_spark.features.build import numeric_ranges
from hinet_spark.features.spec import FIRST_ID, NULL_ID, OOV_ID, FeatureSpec
from hinet_spark.features.transforms import EXPOSURE_KEYS


def _lit(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _num(x: float) -> str:
    return repr(float(x))


def samples_sql(cfg: Config, spec: FeatureSpec, day: dt.date, tables: dict[str, str], columns: list[str]) -> str:
    """The query; ``tables``: raw_exposures, raw_clicks, raw_orders, samples as SQL names;
    ``columns``: raw_exposures' columns (the dedup tiebreak is the row's content)."""
    fc = cfg.features
    late = attribution_days(fc)
    d = f"DATE'{day.isoformat()}'"
    valid = [f"{k} IS NOT NULL" for k in EXPOSURE_KEYS]
    valid += ["dt IS NOT NULL", "dt = to_date(event_time)",
              f"scenario IN ({', '.join(_lit(s) for s in cfg.scenarios.names)})"]
    for c, (lo, hi) in numeric_ranges(cfg).items():
        x = f"CAST({c} AS DOUBLE)"
        valid.append(f"({c} IS NULL OR (NOT isnan({x}) AND abs({x}) != double('inf') AND {x} >= 0"
                     + (f" AND {x} >= {_num(lo)}" if lo is not None else "")
                     + (f" AND {x} <= {_num(hi)}" if hi is not None else "") + "))")
    seen = (f"AND exposure_id NOT IN (SELECT exposure_id FROM {tables['samples']} "
            f"WHERE dt BETWEEN {d} - {fc.dedup_lookback_days} AND {d} - 1)"
            if fc.dedup_lookback_days and tables.get("samples") else "")
    ids = {}  # f_<feature> -> its SQL expression
    for n, bs in spec.bucketed.items():
        below = f"size(filter(array({', '.join(_num(b) for b in bs)}), b -> b <= CAST({n} AS DOUBLE)))" if bs else "0"
        ids[n] = f"CASE WHEN {n} IS NULL THEN {NULL_ID} ELSE 1 + {below} END"
    for n, vocab in spec.categorical.items():
        arr = f"array({', '.join(_lit(v) for v in vocab)})" if vocab else "CAST(array() AS ARRAY<STRING>)"
        pos = f"array_position({arr}, CAST({n} AS STRING))"
        ids[n] = f"CASE WHEN {n} IS NULL THEN {NULL_ID} WHEN {pos} = 0 THEN {OOV_ID} ELSE {FIRST_ID - 1} + {pos} END"
    for n, buckets in spec.hashed.items():
        ids[n] = f"CASE WHEN {n} IS NULL THEN {NULL_ID} ELSE pmod(xxhash64(CAST({n} AS STRING)), {buckets}) + {FIRST_ID} END"
    scenario_idx = f"array_position(array({', '.join(_lit(s) for s in spec.scenarios)}), scenario) - 1"
    tiebreak = f"to_json(struct({', '.join(f'`{c}`' for c in columns)}))"
    cw, ow = fc.click_window_hours * 3600, fc.order_window_hours * 3600
    return f"""
WITH ranked AS (
  SELECT *, row_number() OVER (PARTITION BY exposure_id ORDER BY event_time, {tiebreak}) AS _rn
  FROM {tables['raw_exposures']} WHERE dt = {d} AND {' AND '.join(valid)} {seen}
), good AS (SELECT * FROM ranked WHERE _rn = 1),
first_seen AS (  -- the exposure's time: its earliest row (any), as the project's attribution uses
  SELECT exposure_id, min(event_time) AS _t FROM {tables['raw_exposures']}
  WHERE dt BETWEEN {d} - {late} AND {d} + {late} GROUP BY exposure_id
), clicked AS (
  SELECT c.exposure_id, min(c.click_time) AS _click FROM {tables['raw_clicks']} c
  JOIN good g ON c.exposure_id = g.exposure_id JOIN first_seen f ON c.exposure_id = f.exposure_id
  WHERE c.dt BETWEEN {d} - {late} AND {d} + {late} AND c.dt = to_date(c.click_time)
    AND c.click_time >= f._t AND c.click_time <= f._t + INTERVAL {cw} SECONDS
  GROUP BY c.exposure_id
), ordered AS (
  SELECT DISTINCT o.exposure_id FROM {tables['raw_orders']} o JOIN clicked k ON o.exposure_id = k.exposure_id
  WHERE o.dt BETWEEN {d} - {late} AND {d} + {late} AND o.dt = to_date(o.order_time)
    AND (o.amount IS NULL OR (NOT isnan(CAST(o.amount AS DOUBLE)) AND abs(CAST(o.amount AS DOUBLE)) != double('inf')
         AND CAST(o.amount AS DOUBLE) >= 0))
    AND o.order_time >= k._click AND o.order_time <= k._click + INTERVAL {ow} SECONDS
)
SELECT g.exposure_id, request_id, user_id, item_id, scenario, CAST({scenario_idx} AS INT) AS scenario_idx,
       event_time, dt,
       CAST(k.exposure_id IS NOT NULL AS INT) AS label_ctr, CAST(o.exposure_id IS NOT NULL AS INT) AS label_ctcvr,
       {', '.join(f'CAST({ids[n]} AS INT) AS f_{n}' for n in spec.feature_order)},
       {_lit(spec.hash)} AS spec_hash
FROM good g LEFT JOIN clicked k ON g.exposure_id = k.exposure_id LEFT JOIN ordered o ON g.exposure_id = o.exposure_id
"""
