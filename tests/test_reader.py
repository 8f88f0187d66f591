"""The streaming shard reader: disjoint shards, every row once per pass, deterministic for a
seed, memory bounded by the shuffle buffer (no Spark needed: Parquet files written here)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from hinet_spark.train.reader import ShardError, ShardStream, read_all, row_groups, shard

pytestmark = pytest.mark.runtime  # the reader is version-sensitive (pyarrow): every test runs in the runtimes

COLS = ["scenario_idx", "label_ctr", "label_ctcvr", "f_x"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """6 files x 3 row groups of 500 rows; f_x is the row's id 0..8999."""
    folder = tmp_path_factory.mktemp("parquet")
    paths = []
    for f in range(6):
        ids = np.arange(f * 1500, (f + 1) * 1500, dtype=np.int32)
        table = pa.table({"scenario_idx": ids % 3, "label_ctr": ids % 2, "label_ctcvr": ids % 5 == 0, "f_x": ids})
        table = table.cast(pa.schema([(c, pa.int32()) for c in COLS]))
        path = folder / f"part-{f}.parquet"
        pq.write_table(table, path, row_group_size=500)
        paths.append(str(path))
    return tuple(paths)


def _take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_shards_are_disjoint_and_cover_every_row(files):
    groups = row_groups(files)
    assert len(groups) == 18 and sum(g.rows for g in groups) == 9000
    seen = []
    for rank in range(2):
        stream = ShardStream(shard(groups, rank, 2), COLS, 100, 1000, seed=0, rank=rank)
        assert stream.rows == 4500
        one_pass = _take(stream, 45)  # 4500 rows = exactly one pass of this shard (batch 100 divides it)
        ids = np.concatenate([b["f_x"] for b in one_pass])
        assert len(set(ids.tolist())) == 4500  # every row of the shard once in a pass
        seen.append(set(ids.tolist()))
    assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 9000


def test_same_seed_same_batches_other_seed_other_order(files):
    groups = shard(row_groups(files), 0, 1)
    a = _take(ShardStream(groups, COLS, 128, 2000, seed=7, rank=0), 30)
    b = _take(ShardStream(groups, COLS, 128, 2000, seed=7, rank=0), 30)
    c = _take(ShardStream(groups, COLS, 128, 2000, seed=8, rank=0), 30)
    assert all(np.array_equal(x["f_x"], y["f_x"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["f_x"], y["f_x"]) for x, y in zip(a, c))
    # shuffled across row groups: a batch mixes rows of more than one row group (500 ids each)
    assert len(set((a[0]["f_x"] // 500).tolist())) > 1


def test_passes_chain_without_a_stall_and_reshuffle(files):
    groups = shard(row_groups(files), 1, 2)
    stream = ShardStream(groups, COLS, 100, 600, seed=1, rank=1)
    batches = _take(stream, 45 * 3)  # three passes back to back, one stream (no reader reopened)
    passes = [np.concatenate([b["f_x"] for b in batches[i * 45:(i + 1) * 45]]) for i in range(3)]
    for ids in passes:  # each pass serves each of the shard's 4500 rows once
        assert len(ids) == 4500 and len(set(ids.tolist())) == 4500
    assert set(passes[0].tolist()) == set(passes[2].tolist())
    assert not np.array_equal(passes[0], passes[1])  # a new order each pass


def test_memory_is_the_buffer_not_the_data(files, monkeypatch):
    """The stream never concatenates more than buffer + one row group + a part batch."""
    import hinet_spark.train.reader as reader

    largest = []
    real = reader._concat

    def watch(parts):
        out = real(parts)
        largest.append(len(out["f_x"]))
        return out

    monkeypatch.setattr(reader, "_concat", watch)
    _take(ShardStream(shard(row_groups(files), 0, 1), COLS, 64, 700, seed=0, rank=0), 300)
    assert max(largest) < 700 + 500 + 64  # buffer + one row group + what is left of a batch


def test_a_rank_without_row_groups_is_named(files):
    with pytest.raises(ShardError, match="rank 18: no row group of the 18"):
        shard(row_groups(files), 18, 19)


def test_read_all_reads_every_row_once(files):
    ids = np.concatenate([b["f_x"] for b in read_all(files, COLS, batch_rows=700)])
    assert np.array_equal(np.sort(ids), np.arange(9000))
