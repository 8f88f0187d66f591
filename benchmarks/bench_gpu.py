"""The GPU figures, in one run of at most ~8 minutes on a CUDA machine.

    .venv/bin/python -m benchmarks.bench_gpu [--skip-pipeline]

1. Training samples/s (forward + backward + optimizer step, the project's SplitOptimizer)
   of HiNet, Shared Bottom and MMoE at the default config and the embedded default's
   vocabulary, batch 4096 and 16384, fp32 and bf16 autocast, with peak GPU memory.
2. Inference at batch 4096: ms per sample and samples/s (the paper's Table V reports
   0.1731 ms/sample for HiNet on its GPU), fp32.
3. The real training path on the GPU: a small synthetic Delta snapshot, ``fit`` with
   TorchDistributor, 1 process, NCCL (``train.use_gpu``), test AUC. Needs Spark + Delta
   (``make setup``); ``--skip-pipeline`` leaves it out.

Without CUDA it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from benchmarks.bench_model import VOCAB

MODELS = ("hinet", "shared_bottom", "mmoe")


def _batches(torch, n: int, count: int, device):
    g = torch.Generator().manual_seed(0)
    return [(torch.stack([torch.randint(0, v, (n,), generator=g) for v in VOCAB], 1).to(device),
             torch.randint(0, 6, (n,), generator=g).to(device),
             torch.randint(0, 2, (n, 2), generator=g).float().to(device)) for _ in range(count)]


def train_rate(torch, name: str, batch: int, bf16: bool, seconds: float = 8.0) -> tuple[float, float]:
    from hinet_spark.config import load_config
    from hinet_spark.models import ModelSpec, build_model
    from hinet_spark.models.loss import hinet_loss
    from hinet_spark.train.optim import SplitOptimizer

    dev = torch.device("cuda")
    torch.cuda.reset_peak_memory_stats()
    model = build_model(ModelSpec(dataclasses.replace(load_config().model, name=name), VOCAB, 6)).to(dev)
    opt = SplitOptimizer(model, 1e-3, sparse=True)
    data = _batches(torch, batch, 4, dev)
    w = torch.ones(6, device=dev)

    def step(i):
        ids, s, y = data[i % len(data)]
        opt.zero_grad()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            logits = model(ids, s)
        hinet_loss(logits.float(), y, s, w).backward()
        opt.step()

    for i in range(5):
        step(i)
    torch.cuda.synchronize()
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            step(n)
            n += 1
        torch.cuda.synchronize()
    rate = n * batch / (time.perf_counter() - start)
    return rate, torch.cuda.max_memory_allocated() / 2**20


def infer_rate(torch, name: str, batch: int = 4096, seconds: float = 5.0) -> tuple[float, float]:
    from hinet_spark.config import load_config
    from hinet_spark.models import ModelSpec, build_model

    dev = torch.device("cuda")
    model = build_model(ModelSpec(dataclasses.replace(load_config().model, name=name), VOCAB, 6)).to(dev).eval()
    ids, s, _ = _batches(torch, batch, 1, dev)[0]
    with torch.no_grad():
        for _ in range(10):
            model(ids, s)
        torch.cuda.synchronize()
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(20):
                torch.sigmoid(model(ids, s))
                n += 1
            torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return elapsed / (n * batch) * 1000, n * batch / elapsed


def pipeline() -> str:
    import tempfile

    from hinet_spark.config import load_config
    from hinet_spark.features.build import build_samples
    from hinet_spark.ops.spark import get_spark
    from hinet_spark.train.loop import fit
    from jobs import generate_synthetic

    with tempfile.TemporaryDirectory() as root:
        common = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=4", "synthetic.exposures_per_day=20000",
                  "synthetic.candidates_per_day=1000", "synthetic.calibration_rows_per_scenario=5000",
                  "train.launcher=torch_distributor", "train.num_proc=1", "train.use_gpu=true",
                  "train.batch_size=4096", "train.epochs=2", "train.learning_rate=0.003"]
        assert generate_synthetic.main([x for o in common for x in ("--set", o)]) == 0
        cfg = load_config(None, common)
        spark = get_spark(cfg)
        build_samples(spark, cfg, "2026-01-01", "2026-01-04")
        began = time.perf_counter()
        result = fit(spark, cfg)
        return (f"fit on the GPU (TorchDistributor, 1 process, NCCL): {time.perf_counter() - began:.0f} s, "
                f"{result.history[-1]['samples_per_s']:.0f} samples/s in its last segment, "
                f"test mean AUC {result.test.mean_auc:.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--skip-pipeline", action="store_true")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine",
              file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    print(f"{'model':14s} {'batch':>6s} {'dtype':>5s} {'train samples/s':>16s} {'peak MB':>8s}")
    for name in MODELS:
        for batch in (4096, 16384):
            for bf16 in (False, True):
                rate, peak = train_rate(torch, name, batch, bf16)
                print(f"{name:14s} {batch:6d} {'bf16' if bf16 else 'fp32':>5s} {rate:16,.0f} {peak:8.0f}", flush=True)
    print(f"{'model':14s} inference at batch 4096: ms/sample, samples/s (paper Table V: HiNet 0.1731 ms/sample)")
    for name in MODELS:
        ms, rate = infer_rate(torch, name)
        print(f"{name:14s} {ms:.5f} ms/sample, {rate:,.0f} samples/s", flush=True)
    if not args.skip_pipeline:
        print(pipeline())
    return 0


if __name__ == "__main__":
    sys.exit(main())
