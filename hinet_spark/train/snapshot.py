"""Spark -> torch: a consistent Delta snapshot of the samples table, split by date, handed
to the workers as Parquet files.

Nothing reads the Delta folder's files directly (a reader would see files the log has
removed, and the partition columns are not inside the files): the snapshot is read by Spark
at a pinned version and materialised as Parquet in a cache directory, by Petastorm's
``make_spark_converter`` where Petastorm installs (:mod:`hinet_spark.train.reader`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config, layout_dates
from hinet_spark.errors import OperatorError
from hinet_spark.features.spec import FeatureSpec, require_same
from hinet_spark.ops.io import TableNotFoundError, table_exists, table_location, table_version
from hinet_spark.tasks import LABELS
from hinet_spark.train.reader import Materialised, materialise

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


class DataError(OperatorError, ValueError):
    """The samples table cannot give the splits a run needs."""


@dataclass(frozen=True)
class Snapshot:
    """The samples table at one Delta version, split by date."""

    version: int
    splits: dict[str, DataFrame]  # split -> columns scenario_idx, labels, f_*
    counts: dict[str, dict[str, int]]  # split -> scenario -> rows
    dates: dict[str, tuple[str, str]]


def split_dates(cfg: Config) -> dict[str, tuple[str, str]]:
    """Date ranges of the splits: from ``train.*``; any left unset comes from the synthetic
    layout (all logged days but the last two for training, then one validation and one test
    day), and only for data ``generate_synthetic`` made. For real logs the error names the
    keys and ``--end-date``."""
    t = cfg.train
    keys = [f"{split}_{end}" for split in SPLITS for end in ("start", "end")]
    unset = [k for k in keys if not getattr(t, k)]
    derived: dict[str, tuple[dt.date, dt.date]] = {}
    if unset:
        first, _, _ = layout_dates(cfg, "set train." + ", train.".join(unset) + " (or pass --end-date "
                                    "YYYY-MM-DD to train_hinet: test on that day, validate on the day before, "
                                    "train on the train.window_days before that)")
        start, days = dt.date.fromisoformat(first), cfg.synthetic.days
        derived = {
            "train": (start, start + dt.timedelta(days=max(0, days - 3))),
            "val": (start + dt.timedelta(days=days - 2),) * 2,
            "test": (start + dt.timedelta(days=days - 1),) * 2,
        }
    out = {}
    for split in SPLITS:
        a = getattr(t, f"{split}_start") or derived[split][0].isoformat()
        b = getattr(t, f"{split}_end") or derived[split][1].isoformat()
        if a > b:
            raise DataError(f"train.{split}_start {a} is after train.{split}_end {b}")
        out[split] = (str(a), str(b))
    return out


def _where_the_data_is(samples: DataFrame, cfg: Config, split: str) -> str:
    """What an empty split's error says besides its dates: the dates the table holds and where
    the split's dates came from, with what to pass instead."""
    first, last = samples.agg(F.min("dt"), F.max("dt")).first()
    held = f"the table holds {first}..{last}" if first is not None else "the table has no rows"
    t = cfg.train
    if getattr(t, f"{split}_start") and getattr(t, f"{split}_end"):
        return f"{held}; set train.{split}_start/{split}_end (or pass --end-date YYYY-MM-DD) to dates it holds"
    return (f"{held}, but the split dates came from the synthetic layout (synthetic.start_date "
            f"{cfg.synthetic.start_date}, synthetic.days {cfg.synthetic.days}): pass the --set synthetic.* the "
            "data was generated with, or --end-date YYYY-MM-DD (test on that day, validate on the day before)")


def rolling_split(cfg: Config, end_date: str) -> Config:
    """``cfg`` with the splits of a nightly run ending at ``end_date``: test on that day,
    validation on the day before, training on the ``train.window_days`` days before that."""
    end = dt.date.fromisoformat(end_date)
    day = dt.timedelta(days=1)
    dates = {"test_start": end, "test_end": end, "val_start": end - day, "val_end": end - day,
             "train_start": end - day * (cfg.train.window_days + 1), "train_end": end - 2 * day}
    train = dataclasses.replace(cfg.train, **{k: v.isoformat() for k, v in dates.items()})
    return dataclasses.replace(cfg, train=train)


def read_snapshot(spark: SparkSession, cfg: Config, spec: FeatureSpec, columns: list[str] | None = None) -> Snapshot:
    """Pin the samples table's current version and check every split against ``spec``; the
    splits hold ``columns`` (default: every id column of ``spec``)."""
    if not table_exists(spark, cfg, "samples"):
        raise TableNotFoundError(f"Delta table 'samples' not found at {table_location(cfg, 'samples')}; "
                                 "run jobs/build_features.py first")
    version = table_version(spark, cfg, "samples")
    loc = table_location(cfg, "samples")
    if cfg.storage.catalog_schema:
        samples = spark.read.option("versionAsOf", version).table(loc)
    else:
        samples = spark.read.format("delta").option("versionAsOf", version).load(loc)
    dates = split_dates(cfg)
    names = cfg.scenarios.names
    splits, counts = {}, {}
    for split, (a, b) in dates.items():
        df = samples.where((F.col("dt") >= F.lit(a).cast("date")) & (F.col("dt") <= F.lit(b).cast("date")))
        stats = df.groupBy("scenario", "spec_hash").count().collect()
        if not stats:
            raise DataError(f"the {split} split ({a}..{b}) of samples (version {version}) is empty: "
                            + _where_the_data_is(samples, cfg, split))
        for h in {r["spec_hash"] for r in stats}:
            require_same(spec, h, f"the {split} split of samples (version {version})")
        per = {s: 0 for s in names}
        for r in stats:
            per[r["scenario"]] = per.get(r["scenario"], 0) + int(r["count"])
        absent = [s for s, n in per.items() if n == 0]
        if absent:
            msg = f"the {split} split ({a}..{b}) has no rows for scenarios {absent}"
            if cfg.train.missing_scenario == "error":
                raise DataError(msg + " (set train.missing_scenario: warn to go on)")
            logger.warning(msg)
        counts[split] = per
        splits[split] = df.select(
            F.col("scenario_idx").cast("int"), *[F.col(c).cast("int") for c in LABELS],
            *[F.col(c).cast("int") for c in (spec.columns if columns is None else columns)])
    logger.info("samples version %d, rows per split: %s", version,
                {k: sum(v.values()) for k, v in counts.items()})
    return Snapshot(version, splits, counts, dates)


def batch_tensors(batch: dict, feature_columns: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A Petastorm (or pandas) batch -> (ids [B, F] long, scenario [B] long, labels [B, T] float)."""
    def col(name: str) -> torch.Tensor:
        v = batch[name]
        return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))

    ids = torch.stack([col(c).long() for c in feature_columns], dim=1)
    labels = torch.stack([col(c).float() for c in LABELS], dim=1)
    return ids, col("scenario_idx").long(), labels


@contextlib.contextmanager
def materialised_splits(cfg: Config, snapshot: Snapshot, num_shards: int) -> Iterator[dict[str, Materialised]]:
    """The training and test splits as Parquet files (:func:`hinet_spark.train.reader.materialise`);
    deleted on exit, also on failure.

    Each split gets at least ``4 x num_shards`` files (each worker streams its own row groups,
    so a few per worker keep the shards close in size); row groups of
    ``train.row_group_mb`` MB bound what a worker reads at once.
    """
    cache = Path(cfg.train.petastorm_cache_dir or Path(cfg.storage.root) / "petastorm_cache").resolve()
    cache.mkdir(parents=True, exist_ok=True)
    made: dict[str, Materialised] = {}
    try:
        for split, df in snapshot.splits.items():
            if split == "val":
                continue  # validation rows travel to rank 0 in memory (training.validation_arrays)
            made[split] = materialise(df, cache, split, max(num_shards, 2) * 4, cfg.train.row_group_mb << 20)
            logger.debug("%s split: %d rows in %d files (%s)", split, made[split].rows, len(made[split].files),
                         "Petastorm converter" if made[split].converter is not None else "Spark Parquet")
        yield made
    finally:
        for m in made.values():
            m.delete()
