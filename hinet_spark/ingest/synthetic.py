"""Synthetic raw logs shaped like the paper's Table I, generated in Spark.

Every random draw is a hash of (seed, a salt, the row's ids) turned into a uniform number,
so the output depends on the seed and the config only, not on partitioning or the number of
cores, and nothing is collected to the driver except a small calibration sample.

The generative model (docs/synthetic_data.md has the full description):

* requests of ``exposures_per_request`` items; a request has one scenario (drawn from the
  traffic shares) and one user (heavy-headed over ``n_users``, so users overlap across
  scenarios); every exposure draws an item (heavy-headed over ``n_items``);
* users and items carry latent vectors and observable features (price, distance, hour,
  activity, rating, city, age group, gender, device, category, brand);
* the click logit is ``b_s + shared(x) + group_g(s)(x) + specific_s(x)``: one part shared
  by all scenarios, one part shared within a group of correlated scenarios
  (``scenario_groups``), one part of the scenario alone; the conversion logit (order given
  click) uses other features and other weights (price and quality matter more);
* with ``behaviour_weight`` > 0, per-user and per-item propensities per scenario that drift
  over days (:func:`drifting`) join the click logit, and a drifting per-user one the
  conversion logit: what recent behaviour counters estimate better than an id embedding;
* the intercepts ``b_s`` and ``c_s`` are calibrated on a separate population so that
  E[p_ctr] and E[p_ctr * p_cvr] per scenario equal the configured CTR and CTCVR;
* clicks and orders are drawn from those probabilities; a small share of them is logged
  twice (as real logs are); the true probabilities go to the oracle table.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
from dataclasses import dataclass

import numpy as np
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config, SyntheticSection
from hinet_spark.ops.schemas import load_schema

logger = logging.getLogger(__name__)

LATENT_DIM = 4
N_CITIES = 300
N_CATEGORIES = 60
N_BRANDS = 5_000
AGE_GROUPS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
DEVICES = ("android", "ios", "web")
# Peak request hour per scenario index (a home feed at lunch, a banner in the evening...);
# scenarios beyond the sixth cycle through it.
PEAK_HOUR = (12, 19, 12, 8, 21, 18)
_ROW_STRIDE = 10_000_000_000  # global row id = day index * stride + row within day
CALIBRATION_DAY = 99_999


# --------------------------------------------------------------------------------------
# Hash-based random numbers (deterministic per row, independent of partitioning)
# --------------------------------------------------------------------------------------


def uniform(seed: int, salt: str, *cols: Column) -> Column:
    """U[0, 1) from 53 bits of xxhash64(seed, salt, cols)."""
    h = F.xxhash64(F.lit(seed), F.lit(salt), *cols)
    return F.shiftrightunsigned(h, 11).cast("double") / float(2**53)


def normal(seed: int, salt: str, *cols: Column) -> Column:
    """N(0, 1) by Box-Muller from two hash uniforms."""
    u1 = 1.0 - uniform(seed, salt + ":1", *cols)  # (0, 1]
    u2 = uniform(seed, salt + ":2", *cols)
    return F.sqrt(-2.0 * F.log(u1)) * F.cos(2.0 * math.pi * u2)


def drifting(seed: int, salt: str, period_days: int, day: Column, *cols: Column) -> Column:
    """A N(0, 1) value per ``cols`` that drifts over days: normals drawn at every ``period_days``-th
    day, linearly interpolated in between and rescaled to unit variance (so every day has the
    same distribution, and the calibration population's intercepts hold on every day)."""
    k = F.floor(day / period_days)
    t = (day - k * period_days) / float(period_days)
    a, b = normal(seed, salt, k, *cols), normal(seed, salt, k + 1, *cols)
    return ((1.0 - t) * a + t * b) / F.sqrt((1.0 - t) * (1.0 - t) + t * t)


def _pick(values: list[float] | tuple[float, ...], index: Column) -> Column:
    """``values[index]`` for a 0-based integer column."""
    return F.element_at(F.array(*[F.lit(float(v)) for v in values]), index.cast("int") + 1)


def _categorical(cum_probs: list[float], labels: list[str], u: Column) -> Column:
    out = F.lit(labels[-1])
    for p, label in reversed(list(zip(cum_probs[:-1], labels[:-1]))):
        out = F.when(u < p, F.lit(label)).otherwise(out)
    return out


# --------------------------------------------------------------------------------------
# The generative model
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Weights:
    """Fixed weights of the known click/conversion model, drawn once from the seed."""

    specific_ctr: tuple[tuple[float, ...], ...]  # per scenario, LATENT_DIM
    specific_cvr: tuple[float, ...]  # per scenario: weight of the brand-level effect
    cvr_user: tuple[float, ...]  # LATENT_DIM: user purchase propensity direction

    @staticmethod
    def draw(seed: int, n_scenarios: int) -> "Weights":
        rng = random.Random(seed * 7919 + 17)
        return Weights(
            specific_ctr=tuple(
                tuple(round(rng.gauss(0.0, 0.45), 4) for _ in range(LATENT_DIM))
                for _ in range(n_scenarios)
            ),
            specific_cvr=tuple(round(0.25 + 0.25 * rng.random(), 4) for _ in range(n_scenarios)),
            cvr_user=tuple(round(rng.gauss(0.0, 0.35), 4) for _ in range(LATENT_DIM)),
        )


def _scenario_index(syn: SyntheticSection, names: tuple[str, ...], u: Column) -> Column:
    shares = np.array([syn.traffic_share[n] for n in names], dtype=float)
    cum = np.cumsum(shares / shares.sum()).tolist()  # relative weights (Table I sums to 96.6%)
    out = F.lit(len(names) - 1)
    for i in reversed(range(len(names) - 1)):
        out = F.when(u < cum[i], F.lit(i)).otherwise(out)
    return out


def _group_index(syn: SyntheticSection, names: tuple[str, ...]) -> list[int]:
    lookup = {s: g for g, group in enumerate(syn.scenario_groups) for s in group}
    return [lookup[n] for n in names]


def users_frame(spark: SparkSession, syn: SyntheticSection) -> DataFrame:
    """One row per user: latent vector and user features (a pure function of seed and id)."""
    seed, uidx = syn.seed, F.col("id")
    u_age = uniform(seed, "age", uidx)
    u_gender = uniform(seed, "gender", uidx)
    return spark.range(syn.n_users).select(
        uidx.alias("_uidx"),
        *[normal(seed, f"zu{k}", uidx).alias(f"_zu{k}") for k in range(LATENT_DIM)],
        F.round(F.exp(1.6 + 0.9 * normal(seed, "activity", uidx))).alias("user_activity_30d"),
        F.concat(F.lit("city_"), F.floor(F.pow(uniform(seed, "city", uidx), 3.0) * N_CITIES).cast("int"))
        .alias("user_city"),
        F.when(u_age < 0.05, F.lit(None).cast("string"))
        .otherwise(_categorical([0.2, 0.45, 0.68, 0.84, 0.95, 1.0], list(AGE_GROUPS),
                                (u_age - 0.05) / 0.95)).alias("user_age_group"),
        F.when(u_gender < 0.08, F.lit(None).cast("string"))
        .otherwise(F.when(u_gender < 0.54, F.lit("f")).otherwise(F.lit("m"))).alias("user_gender"),
        _categorical([0.55, 0.95, 1.0], list(DEVICES), uniform(seed, "device", uidx)).alias("device_type"),
    )


def items_frame(spark: SparkSession, syn: SyntheticSection) -> DataFrame:
    """One row per item: latent vector, quality and item features."""
    seed, iidx = syn.seed, F.col("id")
    cat_idx = F.floor(F.pow(uniform(seed, "cat", iidx), 2.0) * N_CATEGORIES).cast("int")
    brand_idx = F.floor(F.pow(uniform(seed, "brand", iidx), 3.0) * N_BRANDS).cast("int")
    quality = normal(seed, "quality", iidx)
    return spark.range(syn.n_items).select(
        iidx.alias("_iidx"),
        *[normal(seed, f"zi{k}", iidx).alias(f"_zi{k}") for k in range(LATENT_DIM)],
        quality.alias("_quality"),
        cat_idx.alias("_cat"),
        brand_idx.alias("_brand"),
        F.round(F.exp(2.6 + 0.35 * normal(seed, "catprice", cat_idx) + 0.6 * normal(seed, "price", iidx)), 2)
        .alias("price"),
        F.round(F.least(F.lit(5.0), F.greatest(F.lit(1.0), 3.9 + 0.45 * quality
                                              + 0.2 * normal(seed, "rating", iidx))), 1)
        .alias("item_rating"),
        F.concat(F.lit("cat_"), cat_idx).alias("item_category"),
        F.concat(F.lit("brand_"), brand_idx).alias("item_brand"),
    )


def _join_dim(facts: DataFrame, dim: DataFrame, key: str, rows: int) -> DataFrame:
    small = rows <= 2_000_000  # broadcast the dimension when it fits comfortably
    return facts.join(F.broadcast(dim) if small else dim, key, "inner")


def exposures_with_logits(spark: SparkSession, cfg: Config, *, first_day: int, n_days: int,
                          rows_per_day: int, forced_scenarios: bool = False) -> DataFrame:
    """Exposures of ``n_days`` days starting at day index ``first_day`` (0 = start_date).

    Returns the raw-exposure columns plus the hidden ``_sidx`` (scenario index), ``_gid``
    (global row id) and the intercept-free logits ``_z_ctr`` and ``_z_cvr``. With
    ``forced_scenarios`` the scenario is ``row % M`` (the calibration population).
    """
    syn = cfg.synthetic
    names = cfg.scenarios.names
    m = len(names)
    seed = syn.seed
    w = Weights.draw(seed, m)
    total = n_days * rows_per_day
    parts = max(2, min(400, total // 200_000))
    start = dt.date.fromisoformat(syn.start_date)

    df = spark.range(0, total, numPartitions=parts)
    day = (F.col("id") / rows_per_day).cast("long") + first_day
    row = F.col("id") % rows_per_day
    df = df.select(
        day.alias("_day"),
        row.alias("_row"),
        (day * _ROW_STRIDE + row).alias("_gid"),
        (day * _ROW_STRIDE + (row / syn.exposures_per_request).cast("long")).alias("_greq"),
    )
    if forced_scenarios:
        sidx = (F.col("_row") % m).cast("int")
    else:
        sidx = _scenario_index(syn, names, uniform(seed, "scenario", F.col("_greq")))
    u_user = uniform(seed, "user", F.col("_greq"))
    u_item = uniform(seed, "item", F.col("_gid"))
    df = df.select(
        "*",
        sidx.alias("_sidx"),
        F.floor(F.pow(u_user, 2.0) * syn.n_users).cast("long").alias("_uidx"),
        F.floor(F.pow(u_item, 2.5) * syn.n_items).cast("long").alias("_iidx"),
    )
    s = F.col("_sidx")
    peak = _pick([PEAK_HOUR[i % len(PEAK_HOUR)] for i in range(m)], s)
    hour = F.pmod(F.round(peak + 3.5 * normal(seed, "hour", F.col("_gid"))).cast("int"), F.lit(24))
    day_start = F.to_timestamp(F.date_add(F.lit(start), F.col("_day").cast("int")))
    seconds = hour * 3600 + F.floor(uniform(seed, "second", F.col("_gid")) * 3600)
    event_time = F.timestamp_seconds(F.unix_timestamp(day_start) + seconds)
    df = df.select(
        "*",
        hour.alias("hour_of_day"),
        event_time.alias("event_time"),
        F.date_add(F.lit(start), F.col("_day").cast("int")).alias("dt"),
        F.round(F.exp(0.4 + 0.9 * normal(seed, "distance", F.col("_gid"))), 3).alias("distance_km"),
    )
    df = _join_dim(df, users_frame(spark, syn), "_uidx", syn.n_users)
    df = _join_dim(df, items_frame(spark, syn), "_iidx", syn.n_items)

    groups = _group_index(syn, names)
    g = _pick(groups, s)
    log_price = F.log(F.col("price") + 1.0) - 2.6
    log_act = F.log1p(F.col("user_activity_30d")) - 1.9
    log_dist = F.log1p(F.col("distance_km"))
    hour_angle = 2.0 * math.pi * F.col("hour_of_day") / 24.0
    affinity = sum(F.col(f"_zu{k}") * F.col(f"_zi{k}") for k in range(LATENT_DIM))

    # Click: shared by all scenarios + shared within the scenario's group + scenario-specific.
    ctr_shared = (0.35 * affinity + 0.35 * F.col("_quality") + 0.3 * F.tanh(log_act)
                  - 0.25 * log_price)
    ctr_group0 = (0.55 * F.col("_zu0") * F.col("_zi1") - 0.6 * F.when(F.col("distance_km") > 3.0, 1.0).otherwise(0.0)
                  + 0.35 * F.cos(hour_angle - math.pi))
    ctr_group1 = (0.55 * F.col("_zu2") * F.col("_zi3") + 0.35 * F.sin(hour_angle)
                  + 0.3 * normal(seed, "grp1cat", F.col("_cat")))
    ctr_group = F.when(g == 0, ctr_group0).otherwise(ctr_group1)
    ctr_specific = sum(
        _pick([w.specific_ctr[i][k] for i in range(m)], s) * F.col(f"_zu{k}") * F.col(f"_zi{k}")
        for k in range(LATENT_DIM)
    ) + 0.3 * normal(seed, "scen_cat", s, F.col("_cat"))
    z_ctr = ctr_shared + ctr_group + ctr_specific

    # Conversion given click: other features, other weights.
    propensity = sum(w.cvr_user[k] * F.col(f"_zu{k}") for k in range(LATENT_DIM))
    age_effect = F.coalesce(
        F.when(F.col("user_age_group").isin("25-34", "35-44"), 0.3).otherwise(0.0), F.lit(0.0))
    cvr_shared = -0.6 * log_price + 0.5 * F.col("_quality") + 0.35 * F.tanh(log_act) + propensity + age_effect
    cvr_group0 = 0.4 * F.col("_zu1") * F.col("_zi0")
    cvr_group1 = -0.45 * log_dist
    cvr_group = F.when(g == 0, cvr_group0).otherwise(cvr_group1)
    cvr_specific = _pick(list(w.specific_cvr), s) * normal(seed, "scen_brand", s, F.col("_brand") % 200)
    z_cvr = cvr_shared + cvr_group + cvr_specific
    if syn.behaviour_weight > 0:  # slowly drifting propensities: what recent behaviour counters estimate
        bw, day_col = syn.behaviour_weight, F.col("_day")
        z_ctr = z_ctr + bw * (drifting(seed, "bh_user", syn.behaviour_drift_days, day_col, F.col("_uidx"), s)
                              + drifting(seed, "bh_item", syn.behaviour_drift_days, day_col, F.col("_iidx"), s)
                              ) / math.sqrt(2.0)
        z_cvr = z_cvr + bw * drifting(seed, "bh_user_cvr", syn.behaviour_drift_days, day_col, F.col("_uidx"))

    return df.select(
        "*",
        z_ctr.alias("_z_ctr"),
        z_cvr.alias("_z_cvr"),
        _scenario_name(names, s).alias("scenario"),
        F.concat(F.lit("e"), F.date_format(F.col("dt"), "yyyyMMdd"), F.lit("-"), F.col("_row")).alias("exposure_id"),
        F.concat(F.lit("r"), F.date_format(F.col("dt"), "yyyyMMdd"), F.lit("-"),
                 (F.col("_row") / syn.exposures_per_request).cast("long")).alias("request_id"),
        F.concat(F.lit("u"), F.col("_uidx")).alias("user_id"),
        F.concat(F.lit("i"), F.col("_iidx")).alias("item_id"),
    )


def _scenario_name(names: tuple[str, ...], sidx: Column) -> Column:
    return F.element_at(F.array(*[F.lit(n) for n in names]), sidx + 1)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _solve_intercept(target: float, mean_prob) -> float:
    """Bisection for b such that mean_prob(b) == target (mean_prob increasing in b)."""
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if mean_prob(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def calibrate(spark: SparkSession, cfg: Config) -> tuple[list[float], list[float]]:
    """Intercepts (click b_s, conversion c_s) per scenario that hit Table I's rates.

    Computed on a separate population (day index ``CALIBRATION_DAY``, scenarios assigned
    round robin) of ``calibration_rows_per_scenario`` rows per scenario; only the two logits
    per row come to the driver.
    """
    syn = cfg.synthetic
    names = cfg.scenarios.names
    m = len(names)
    pop = exposures_with_logits(spark, cfg, first_day=CALIBRATION_DAY, n_days=1,
                                rows_per_day=syn.calibration_rows_per_scenario * m, forced_scenarios=True)
    pdf = pop.select("_sidx", "_z_ctr", "_z_cvr").toPandas()
    b, c = [], []
    for i, name in enumerate(names):
        part = pdf[pdf["_sidx"] == i]
        zc, zv = part["_z_ctr"].to_numpy(), part["_z_cvr"].to_numpy()
        bi = _solve_intercept(syn.ctr[name], lambda x, zc=zc: float(_sigmoid(x + zc).mean()))
        p_ctr = _sigmoid(bi + zc)
        ci = _solve_intercept(syn.ctcvr[name],
                              lambda x, p=p_ctr, zv=zv: float((p * _sigmoid(x + zv)).mean()))
        b.append(bi)
        c.append(ci)
    logger.info("calibrated intercepts: ctr %s, cvr %s",
                [round(x, 3) for x in b], [round(x, 3) for x in c])
    return b, c


def labeled_exposures(spark: SparkSession, cfg: Config, intercepts: tuple[list[float], list[float]],
                      *, first_day: int, n_days: int, rows_per_day: int) -> DataFrame:
    """Exposures with their true probabilities and drawn outcomes, one row per exposure.

    Outcomes are columns, not filters: the caller materialises this frame once (the job
    stages it as a Delta table) and splits it with :func:`split`, so that Spark does not
    inline the whole generative expression into every downstream filter. ``intercepts``
    come from :func:`calibrate`.
    """
    syn = cfg.synthetic
    seed = syn.seed
    b, c = intercepts
    df = exposures_with_logits(spark, cfg, first_day=first_day, n_days=n_days, rows_per_day=rows_per_day)
    s, gid = F.col("_sidx"), F.col("_gid")
    p_ctr = 1.0 / (1.0 + F.exp(-(_pick(b, s) + F.col("_z_ctr"))))
    p_cvr = 1.0 / (1.0 + F.exp(-(_pick(c, s) + F.col("_z_cvr"))))
    click_delay = 3 + F.floor(-F.log(1.0 - uniform(seed, "click_delay", gid)) * 90)
    order_delay = F.least(F.lit(6 * 3600), 30 + F.floor(-F.log(1.0 - uniform(seed, "order_delay", gid)) * 1500))
    clicked = uniform(seed, "click", gid) < p_ctr
    ordered = clicked & (uniform(seed, "order", gid) < p_cvr)
    click_ts = F.unix_timestamp("event_time") + click_delay
    return df.select(
        *load_schema("synthetic_exposures").names,
        p_ctr.alias("p_ctr"),
        (p_ctr * p_cvr).alias("p_ctcvr"),
        clicked.alias("clicked"),
        ordered.alias("ordered"),
        F.timestamp_seconds(click_ts).alias("click_time"),
        F.timestamp_seconds(click_ts + order_delay).alias("order_time"),
        F.round(F.col("price") * (1 + F.floor(uniform(seed, "quantity", gid) * 3)), 2).alias("amount"),
        # a share duplicate_event_rate of clicks/orders is logged twice, 1-30 s apart
        F.when(uniform(seed, "dup_click", gid) < syn.duplicate_event_rate,
               1 + F.floor(uniform(seed, "dup_click_shift", gid) * 30)).cast("int").alias("click_dup_s"),
        F.when(uniform(seed, "dup_order", gid) < syn.duplicate_event_rate,
               1 + F.floor(uniform(seed, "dup_order_shift", gid) * 30)).cast("int").alias("order_dup_s"),
    )


@dataclass(frozen=True)
class SyntheticTables:
    exposures: DataFrame
    clicks: DataFrame
    orders: DataFrame
    oracle: DataFrame


def _with_duplicates(df: DataFrame, time_col: str, dup_col: str) -> DataFrame:
    """One row per event, plus a second row ``dup_col`` seconds later where it is set."""
    shifts = F.when(F.col(dup_col).isNull(), F.array(F.lit(0))).otherwise(F.array(F.lit(0), F.col(dup_col)))
    return df.select("*", F.explode(shifts).alias("_shift")).withColumn(
        time_col, F.timestamp_seconds(F.unix_timestamp(time_col) + F.col("_shift")))


def split(labeled: DataFrame) -> SyntheticTables:
    """The raw tables of ``schemas/`` from a (materialised) :func:`labeled_exposures` frame."""
    clicks = _with_duplicates(labeled.where("clicked"), "click_time", "click_dup_s")
    orders = _with_duplicates(labeled.where("ordered"), "order_time", "order_dup_s")
    return SyntheticTables(
        exposures=labeled.select(*load_schema("synthetic_exposures").names),
        clicks=clicks.select("exposure_id", "click_time", F.to_date("click_time").alias("dt")),
        orders=orders.select("exposure_id", "order_time", "amount", F.to_date("order_time").alias("dt")),
        oracle=labeled.select(*load_schema("oracle").names),
    )


def generate(spark: SparkSession, cfg: Config) -> DataFrame:
    """Every logged day plus the candidates day, labeled (lazy; stage it before splitting)."""
    syn = cfg.synthetic
    intercepts = calibrate(spark, cfg)
    logged = labeled_exposures(spark, cfg, intercepts, first_day=0, n_days=syn.days,
                               rows_per_day=syn.exposures_per_day)
    if syn.candidates_per_day == 0:
        return logged
    future = labeled_exposures(spark, cfg, intercepts, first_day=syn.days, n_days=1,
                               rows_per_day=syn.candidates_per_day)
    return logged.unionByName(future)
