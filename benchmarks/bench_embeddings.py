"""Id tables at production size: training rate with the hashed user-id table at 50k and at
10M buckets, 2 Horovod workers (Gloo), sparse vs dense gradients, bytes exchanged per step,
and the memory of one worker holding a 50M-row table.

    .venv/bin/python -m benchmarks.bench_embeddings [--quick]

Each configuration starts 2 Horovod processes (``horovod.run``, 1 torch thread each) that
train the default HiNet (the embedded default's vocabulary but the user-id table) on seeded
batches of 1024 with user ids spread over the whole table, through the project's own
``SplitOptimizer`` and Horovod wrapping (hinet_spark.train.optim, hinet_spark.train.distributed).
Last line: ``ratio`` = sparse samples/s at 10M buckets / sparse samples/s at 50k (goal >= 0.8).
``--quick`` takes fewer steps and skips the 50M-row memory measurement (about 3 minutes).
"""

from __future__ import annotations

import argparse
import resource
import time

from benchmarks.bench_model import VOCAB

USER_SLOT = len(VOCAB) - 2  # (..., user_id, item_id): hashed user ids are the second to last


def vocab(buckets: int) -> tuple[int, ...]:
    v = list(VOCAB)
    v[USER_SLOT] = buckets + 2
    return tuple(v)


def run_worker(buckets: int, sparse: bool, steps: int, batch: int) -> dict:
    """One Horovod rank: ``steps`` timed steps (after 3 warm-up steps)."""
    import torch

    from hinet_spark.config import load_config
    from hinet_spark.models import ModelSpec, build_model
    from hinet_spark.models.loss import hinet_loss
    from hinet_spark.train.distributed import Horovod
    from hinet_spark.train.optim import SplitOptimizer, bytes_per_step

    torch.set_num_threads(1)
    dist = Horovod()
    torch.manual_seed(0)
    sizes = vocab(buckets)
    model = build_model(ModelSpec(load_config().model, sizes, 6))
    opt = SplitOptimizer(model, 1e-3, sparse)
    dist.broadcast_state(model, opt.dense)
    dist.wrap_optimizer(opt, model)
    g = torch.Generator().manual_seed(1 + dist.rank)
    batches = [(torch.stack([torch.randint(0, v, (batch,), generator=g) for v in sizes], 1),
                torch.randint(0, 6, (batch,), generator=g), torch.randint(0, 2, (batch, 2), generator=g).float())
               for _ in range(8)]
    weights = torch.ones(6)
    sent = 0
    for i in range(steps + 3):
        if i == 3:
            start = time.perf_counter()
        ids, s, y = batches[i % len(batches)]
        opt.zero_grad()
        hinet_loss(model(ids, s), y, s, weights).backward()
        if i == 3:
            sent = bytes_per_step(model)
        opt.step()
    rate = steps * batch * dist.size / (time.perf_counter() - start)
    return {"samples_per_s": rate, "bytes_per_step": sent,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def two_workers(buckets: int, sparse: bool, steps: int, batch: int) -> dict:
    import horovod

    results = horovod.run(run_worker, args=(buckets, sparse, steps, batch), np=2, use_gloo=True,
                          hosts="localhost:2", verbose=0)
    return {"samples_per_s": min(r["samples_per_s"] for r in results),
            "bytes_per_step": max(r["bytes_per_step"] for r in results),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in results)}


def one_worker_memory(rows: int, dim: int) -> dict:
    """RSS of one process holding a ``rows``-row table with SparseAdam after 3 steps."""
    import torch

    from hinet_spark.config import load_config
    from hinet_spark.models import ModelSpec, build_model
    from hinet_spark.models.loss import hinet_loss
    from hinet_spark.train.optim import SplitOptimizer

    torch.set_num_threads(1)
    sizes = vocab(rows)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    model = build_model(ModelSpec(load_config().model, sizes, 6))
    opt = SplitOptimizer(model, 1e-3, True)
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        ids = torch.stack([torch.randint(0, v, (1024,), generator=g) for v in sizes], 1)
        s = torch.randint(0, 6, (1024,), generator=g)
        opt.zero_grad()
        hinet_loss(model(ids, s), torch.zeros(1024, 2), s, torch.ones(6)).backward()
        opt.step()
    table = sum(sizes) * dim * 4 / 2**20
    return {"table_mb": table, "expected_mb": 3 * table,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - rss0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--memory-rows", type=int, default=50_000_000)
    args = ap.parse_args()
    steps = 20 if args.quick else 60
    dense_steps = 3 if args.quick else 6
    rows = []
    for buckets in (50_000, 10_000_000):
        for sparse in (True, False):
            r = two_workers(buckets, sparse, steps if sparse or buckets == 50_000 else dense_steps, args.batch)
            rows.append((buckets, sparse, r))
            print(f"user-id buckets {buckets:>10,d}, {'sparse' if sparse else 'dense '}: "
                  f"{r['samples_per_s']:7.0f} samples/s, {r['bytes_per_step'] / 2**20:8.1f} MiB sent per rank "
                  f"per step, peak RSS per worker {r['peak_rss_mb']:6.0f} MB", flush=True)
    rate = {(b, sp): r["samples_per_s"] for b, sp, r in rows}
    print(f"dense 10M / dense 50k: {rate[(10_000_000, False)] / rate[(50_000, False)]:.2f}; "
          f"sparse 10M / dense 10M: {rate[(10_000_000, True)] / rate[(10_000_000, False)]:.1f}x")
    if not args.quick:
        from hinet_spark.config import load_config

        m = one_worker_memory(args.memory_rows, load_config().model.embedding_dim)
        print(f"one worker, {args.memory_rows:,d}-row user table, dim 16, SparseAdam: table {m['table_mb']:,.0f} MB, "
              f"weights + 2 moments {m['expected_mb']:,.0f} MB expected, RSS grew {m['rss_mb']:,.0f} MB")
    print(f"ratio={rate[(10_000_000, True)] / rate[(50_000, True)]:.2f}")


if __name__ == "__main__":
    main()
