"""A snapshot split as Parquet files, and the worker's streaming read of its shard.

Two halves:

* the driver **materialises** a split of the Delta snapshot as Parquet files in a cache
  folder every worker can read (:func:`materialise`). Where Petastorm installs, its
  ``make_spark_converter`` does it (and owns the cache); where it does not (Databricks 17.3
  LTS ML, Spark >= 4.1 with pyarrow >= 15), Spark writes the files itself. Either way the
  result is a list of Parquet files;
* each worker **streams** its shard (:class:`ShardStream`): the row groups ``rank, rank +
  size, ...`` of the sorted row-group list, read one at a time with plain
  ``pyarrow.parquet`` (no Petastorm reader, no legacy pyarrow API), in a seeded order per
  pass, through a shuffle buffer of ``train.shuffle_buffer_rows`` rows. Memory is the buffer
  plus one row group, whatever the size of the data; the batches are a function of the seed,
  the rank and the files only.

Petastorm's own torch loader is not used to read: with ``num_epochs=None`` it stalled at the
end of a pass inside 2-worker Horovod runs here, and a second reader crashed the worker
(docs/training.md has what was found). Reading row groups directly needs no reader pool.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from hinet_spark.errors import OperatorError

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]


class ShardError(OperatorError, RuntimeError):
    """A worker's shard cannot be read (no row groups for it, a missing file)."""


@dataclass(frozen=True)
class RowGroup:
    path: str
    index: int
    rows: int


@dataclass
class Materialised:
    """One split as Parquet files: what workers are handed (paths pickle; converters need not)."""

    files: tuple[str, ...]
    rows: int
    converter: Any = None  # Petastorm's SparkDatasetConverter, when it made the files
    folder: str | None = None  # the folder Spark wrote, when Petastorm did not

    def delete(self) -> None:
        if self.converter is not None:
            with contextlib.suppress(Exception):
                self.converter.delete()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _local_path(url: str) -> str:
    parsed = urlparse(url)
    return parsed.path if parsed.scheme in ("file", "") else url


def petastorm_available() -> bool:
    try:
        import petastorm.spark  # noqa: F401
    except ImportError:
        return False
    return True


def materialise(df: Any, cache: Path, name: str, parts: int, row_group_bytes: int) -> Materialised:
    """Write ``df`` (a Spark DataFrame) as ``parts`` Parquet files under ``cache``."""
    df = df.repartition(parts)
    if petastorm_available():
        from petastorm.spark import SparkDatasetConverter, make_spark_converter

        df.sparkSession.conf.set(SparkDatasetConverter.PARENT_CACHE_DIR_URL_CONF, cache.as_uri())
        conv = make_spark_converter(df, parquet_row_group_size_bytes=row_group_bytes, dtype=None)
        files = tuple(sorted(_local_path(u) for u in conv.file_urls))
        return Materialised(files, len(conv), converter=conv)
    folder = cache / f"{name}-{uuid.uuid4().hex[:12]}"
    df.write.option("parquet.block.size", str(row_group_bytes)).parquet(str(folder))
    files = tuple(sorted(str(p) for p in folder.glob("*.parquet")))
    return Materialised(files, sum(g.rows for g in row_groups(files)), folder=str(folder))


def row_groups(files: Sequence[str]) -> list[RowGroup]:
    """Every non-empty row group of ``files``, in file then index order."""
    import pyarrow.parquet as pq

    out = []
    for path in sorted(files):
        try:
            meta = pq.ParquetFile(path).metadata
        except (FileNotFoundError, OSError) as exc:
            raise ShardError(f"snapshot file {path} cannot be read ({exc}); was the cache folder removed?") from exc
        out.extend(RowGroup(path, i, meta.row_group(i).num_rows) for i in range(meta.num_row_groups)
                   if meta.row_group(i).num_rows > 0)
    return out


def shard(groups: Sequence[RowGroup], rank: int, size: int) -> list[RowGroup]:
    """This rank's row groups: every ``size``-th from ``rank`` (disjoint, and together all)."""
    mine = list(groups[rank::size])
    if not mine:
        raise ShardError(f"rank {rank}: no row group of the {len(groups)} in the snapshot is left for it "
                         f"({size} workers); fewer workers, or a larger training split")
    return mine


def _read(group: RowGroup, columns: Sequence[str]) -> Batch:
    import pyarrow.parquet as pq

    table = pq.ParquetFile(group.path).read_row_group(group.index, columns=list(columns))
    return {c: table.column(c).to_numpy() for c in columns}


def _concat(parts: list[Batch]) -> Batch:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class ShardStream:
    """An endless stream of shuffled batches from this rank's row groups.

    Pass ``k`` reads the row groups in the order ``permutation(seed, rank, k)``; rows
    collect until ``buffer_rows`` are held (or the pass ends), are then shuffled together and
    handed out as batches (the last part-batch stays for the next fill). Passes follow each
    other without a break or a new reader, so an epoch of ``steps`` batches may end inside a
    pass. The next row group is read in a background thread while the current batches train.
    """

    def __init__(self, groups: Sequence[RowGroup], columns: Sequence[str], batch_size: int, buffer_rows: int,
                 seed: int, rank: int) -> None:
        self.groups = list(groups)
        self.columns = list(columns)
        self.batch_size = batch_size
        self.buffer_rows = max(buffer_rows, batch_size)
        self.seed, self.rank = seed, rank

    @property
    def rows(self) -> int:
        """Rows in this shard (one pass)."""
        return sum(g.rows for g in self.groups)

    def _reads_forever(self) -> Iterator[tuple[RowGroup, bool]]:
        """(row group, last of its pass), pass after pass, each pass in its own seeded order."""
        k = 0
        while True:
            order = np.random.default_rng([self.seed, self.rank, k]).permutation(len(self.groups))
            for n, i in enumerate(order):
                yield self.groups[i], n == len(order) - 1
            k += 1

    def __iter__(self) -> Iterator[Batch]:
        shuffler = np.random.default_rng([self.seed, self.rank, 1 << 20])
        pending: list[Batch] = []
        held = 0
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-read") as pool:
            reads = self._reads_forever()
            group, last = next(reads)
            ahead = pool.submit(_read, group, self.columns)
            while True:
                chunk, pass_ends = ahead.result(), last
                group, last = next(reads)
                ahead = pool.submit(_read, group, self.columns)  # the next read overlaps this training
                pending.append(chunk)
                held += len(chunk[self.columns[0]])
                if held < self.buffer_rows and not pass_ends:
                    continue
                # shuffle what is held and hand it out; a pass end flushes too, so every row
                # of a pass is served in that pass (but for a part-batch carried to the next)
                buf = _concat(pending)
                order = shuffler.permutation(held)
                full = held - held % self.batch_size
                for a in range(0, full, self.batch_size):
                    idx = order[a:a + self.batch_size]
                    yield {k: v[idx] for k, v in buf.items()}
                rest = order[full:]
                pending = [{k: v[rest] for k, v in buf.items()}] if len(rest) else []
                held = len(rest)


def read_all(files: Sequence[str], columns: Sequence[str], batch_rows: int = 65536) -> Iterator[Batch]:
    """Every row of ``files`` once, in file order, a row group (or ``batch_rows``) at a time."""
    import pyarrow.parquet as pq

    for path in sorted(files):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=list(columns)):
            yield {c: batch.column(c).to_numpy(zero_copy_only=False, writable=True) for c in columns}
