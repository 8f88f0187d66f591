"""Training at scale on this machine: the worker's data path (memory, speed) and the
distributed overhead, each against a baseline measured in the same run.

    .venv/bin/python -m benchmarks.bench_training [--quick] [--rows 1000000 4000000]

1. Data path, one worker (rank 0 of 2, one torch thread, the default HiNet and batch):
   Parquet files of N and 4N rows like a materialised training split; in a fresh process
   per measurement, ``stream`` (hinet_spark.train.reader.ShardStream, what training runs) and
   ``memory`` (the previous path: the whole shard read into memory, sorted, random batches)
   train ``--steps`` steps. Prints peak RSS and samples/s of each; then
   ``rss_growth`` = the streaming worker's peak RSS at 4N / at N (goal <= 1.10) and the
   streaming / in-memory throughput (goal >= 0.90).
2. Distributed overhead: ``fit`` with Horovod, 2 Gloo workers x 1 thread, on a synthetic
   samples table, samples/s of its training segments; against the same model and global
   batch trained in one process on 2 threads from tensors in memory; and ``fit`` with the local
   launcher (one process, 2 threads: the same reader, no exchange) to split the gap into the
   reader's and the distribution's part; Horovod again with ``train.gradient_compression``
   fp16 (``ratio_fp16=``); and TorchDistributor's 2 processes (``ratio_torch_distributor=``).
   Last line: ``ratio`` = end-to-end / model-only with the defaults (goal >= 0.9).

``--quick`` (N = 250k rows, a 100k-row shuffle buffer, fewer steps, a smaller table) finishes
in about 8 minutes on 2 cores (part 2 alone, ``--part overhead``: about 6); the comparison is
the same. The end-to-end figure leaves out
the first validation segment (warm-up).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_model import VOCAB

COLS = ["scenario_idx", "label_ctr", "label_ctcvr", *[f"f_{i}" for i in range(len(VOCAB))]]


def write_files(folder: Path, rows: int, files: int = 16, row_group_rows: int = 140_000) -> list[str]:
    """``rows`` random rows in ``files`` Parquet files (row groups like train.row_group_mb=8)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    per = rows // files
    for f in range(files):
        data = {"scenario_idx": rng.integers(0, 6, per), "label_ctr": rng.integers(0, 2, per),
                "label_ctcvr": rng.integers(0, 2, per) * 0}
        data.update({f"f_{i}": rng.integers(0, v, per) for i, v in enumerate(VOCAB)})
        table = pa.table({k: pa.array(v.astype(np.int32)) for k, v in data.items()})
        path = folder / f"part-{f:03d}.parquet"
        pq.write_table(table, path, row_group_size=row_group_rows)
        paths.append(str(path))
    return paths


def worker(path: str, files: list[str], steps: int, batch: int, buffer_rows: int) -> dict:
    """Run in a fresh process: train ``steps`` steps of rank 0 of 2 on ``files``."""
    import torch

    from hinet_spark.config import load_config
    from hinet_spark.models import ModelSpec, build_model
    from hinet_spark.models.loss import hinet_loss
    from hinet_spark.train.reader import ShardStream, read_all, row_groups, shard
    from hinet_spark.train.snapshot import batch_tensors

    torch.set_num_threads(1)
    torch.manual_seed(0)
    cols = COLS[3:]
    model = build_model(ModelSpec(load_config().model, VOCAB, 6))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    weights = torch.ones(6)
    mine = shard(row_groups(files), 0, 2)
    began = time.perf_counter()
    if path == "stream":
        batches = iter(ShardStream(mine, COLS, batch, buffer_rows, seed=0, rank=0))
    else:  # the previous path: the whole shard in memory, sorted, then random batches
        parts: dict[str, list] = {}
        for group in mine:
            for b in read_all([group.path], COLS):
                for k, v in b.items():
                    parts.setdefault(k, []).append(torch.as_tensor(v))
        held = {k: torch.cat(v) for k, v in parts.items()}
        order = torch.as_tensor(np.lexsort([held[k].numpy() for k in sorted(held)]))
        held = {k: v[order] for k, v in held.items()}
        n = len(held["scenario_idx"])
        g = torch.Generator().manual_seed(0)

        def endless():
            while True:
                perm = torch.randperm(n, generator=g)
                for a in range(0, n - batch + 1, batch):
                    idx = perm[a:a + batch]
                    yield {k: v[idx] for k, v in held.items()}

        batches = endless()
    ready = time.perf_counter() - began
    warm = 5
    for step in range(steps + warm):
        if step == warm:
            start = time.perf_counter()
        ids, s, y = batch_tensors(next(batches), cols)
        opt.zero_grad(set_to_none=True)
        hinet_loss(model(ids, s), y, s, weights).backward()
        opt.step()
    rate = steps * batch / (time.perf_counter() - start)
    return {"path": path, "rows": sum(g.rows for g in mine), "samples_per_s": rate, "ready_s": ready,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def data_path(rows: list[int], steps: int, batch: int, buffer_rows: int) -> tuple[float, float]:
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in rows:
            files = write_files(Path(tmp) / str(n), n)
            for path in ("stream", "memory"):
                arg = json.dumps({"path": path, "files": files, "steps": steps, "batch": batch,
                                  "buffer_rows": buffer_rows})
                out = subprocess.run([sys.executable, "-m", "benchmarks.bench_training", "--worker", arg],
                                     capture_output=True, text=True, check=True)
                r = json.loads(out.stdout.strip().splitlines()[-1])
                results[(path, n)] = r
                print(f"  {path:6s} {n:>9,d} rows (shard {r['rows']:>9,d}): peak RSS {r['peak_rss_mb']:7.0f} MB, "
                      f"{r['samples_per_s']:7.0f} samples/s, first batch after {r['ready_s']:5.1f} s", flush=True)
    small, large = rows
    growth = results[("stream", large)]["peak_rss_mb"] / results[("stream", small)]["peak_rss_mb"]
    mem_growth = results[("memory", large)]["peak_rss_mb"] / results[("memory", small)]["peak_rss_mb"]
    speed = min(results[("stream", n)]["samples_per_s"] / results[("memory", n)]["samples_per_s"] for n in rows)
    print(f"streaming worker peak RSS {large:,d} / {small:,d} rows: {growth:.3f} (in-memory path: {mem_growth:.2f})")
    print(f"streaming / in-memory samples/s (the lower of the two sizes): {speed:.2f}")
    return growth, speed


def end_to_end(quick: bool, batch: int) -> float:
    import torch

    from benchmarks.bench_model import fwd_bwd_rate
    from hinet_spark.config import load_config
    from hinet_spark.features.build import build_samples
    from hinet_spark.models import ModelSpec, build_model
    from hinet_spark.ops.spark import get_spark
    from hinet_spark.train.distributed import before_spark
    from hinet_spark.train.loop import fit
    from jobs import generate_synthetic

    per_day = 40_000 if quick else 150_000
    with tempfile.TemporaryDirectory() as root:
        common = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=5", "synthetic.n_users=5000", f"synthetic.exposures_per_day={per_day}",
                  "synthetic.candidates_per_day=1000", "synthetic.calibration_rows_per_scenario=5000",
                  f"train.batch_size={batch}", "train.epochs=1", "train.validations_per_epoch=4",
                  "train.early_stopping_patience=5", "train.launcher=horovod", "train.num_proc=2"]
        cfg = load_config(None, common)
        before_spark(cfg)
        began = time.perf_counter()
        assert generate_synthetic.main([x for o in common for x in ("--set", o)]) == 0
        spark = get_spark(cfg)
        build_samples(spark, cfg, "2026-01-01", "2026-01-05")
        print(f"  synthetic samples table ready in {time.perf_counter() - began:.0f} s", flush=True)
        result = fit(spark, cfg)
        e2e = segment_rate(result)
        # train.gradient_compression fp16: the same run with the dense gradients exchanged as float16
        half = fit(spark, load_config(None, [*common, "train.gradient_compression=fp16"]))
        e2e_half = segment_rate(half)
        # the other launcher: TorchDistributor, 2 processes (DDP over Gloo), the same workers' code
        ddp = segment_rate(fit(spark, load_config(None, [*common, "train.launcher=torch_distributor"])))
        # the same data path in one process (2 threads, no exchange): splits the gap into what
        # the reader costs and what the distribution costs
        local = segment_rate(fit(spark, load_config(None, [*common, "train.launcher=local",
                                                           "train.threads_per_worker=2"])))
        torch.set_num_threads(2)
        spec = ModelSpec(cfg.model, result.feature_spec.vocab_sizes, len(cfg.scenarios.names))
        model = build_model(spec)
        g = torch.Generator().manual_seed(0)
        b = batch * 2
        batches = [(torch.stack([torch.randint(0, v, (b,), generator=g) for v in spec.vocab_sizes], 1),
                    torch.randint(0, spec.n_scenarios, (b,), generator=g),
                    torch.randint(0, 2, (b, 2), generator=g).float()) for _ in range(14)]
        alone = fwd_bwd_rate(model, batches)
    print(f"  end-to-end, Horovod 2 workers x 1 thread, batch {batch} each: {e2e:7.0f} samples/s "
          f"({sum(result.split_counts['train'].values()):,d} training rows), test mean AUC {result.test.mean_auc:.4f}")
    print(f"  the same, train.gradient_compression=fp16:              {e2e_half:7.0f} samples/s, "
          f"test mean AUC {half.test.mean_auc:.4f}")
    print(f"  end-to-end, TorchDistributor 2 processes x 1 thread (DDP, Gloo):       {ddp:7.0f} samples/s")
    print(f"  end-to-end, local launcher, 1 process x 2 threads, batch {batch * 2}: {local:7.0f} samples/s "
          f"(the same reader, no exchange)")
    print(f"  model only, one process, 2 threads, batch {batch * 2}:       {alone:7.0f} samples/s")
    print(f"  breakdown: reader and loop {local / alone:.2f} x distribution {e2e / local:.2f} = {e2e / alone:.2f}")
    print(f"ratio_fp16={e2e_half / alone:.2f} (train.gradient_compression=fp16)")
    print(f"ratio_torch_distributor={ddp / alone:.2f} (train.launcher=torch_distributor)")
    return e2e / alone


def segment_rate(result) -> float:
    """samples/s of a fit's training segments, the first left out (warm-up: allocation, first exchanges)."""
    segs = result.history[1:]
    return sum(h["samples_per_s"] * h["seconds"] for h in segs) / sum(h["seconds"] for h in segs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, nargs=2, default=None, help="the two data sizes (default 1M 4M)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--buffer-rows", type=int, default=None, help="default 500,000 (--quick: 100,000)")
    ap.add_argument("--part", choices=("all", "data", "overhead"), default="all",
                    help="data: only 1 (rss_growth=); overhead: only 2 (ratio=)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        w = json.loads(args.worker)
        print(json.dumps(worker(w["path"], w["files"], w["steps"], w["batch"], w["buffer_rows"])))
        return
    logging.basicConfig(level=logging.WARNING)
    rows = args.rows or ([250_000, 1_000_000] if args.quick else [1_000_000, 4_000_000])
    steps = args.steps or (60 if args.quick else 150)
    args.buffer_rows = args.buffer_rows or (100_000 if args.quick else 500_000)
    if args.part in ("all", "data"):
        print(f"1. data path, one worker (rank 0 of 2), {steps} steps of batch {args.batch}, "
              f"shuffle buffer {args.buffer_rows:,d} rows")
        growth, speed = data_path(rows, steps, args.batch, args.buffer_rows)
        print(f"rss_growth={growth:.3f}")
    if args.part in ("all", "overhead"):
        print("2. distributed overhead")
        ratio = end_to_end(args.quick, args.batch)
        print(f"ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
