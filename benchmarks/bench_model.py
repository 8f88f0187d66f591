"""Model speed and size on CPU: vectorized HiNet vs the loop-per-expert reference.

    .venv/bin/python -m benchmarks.bench_model [--batch 4096] [--steps 10] [--threads 2]

Prints forward+backward samples/s of both at the default config (same weights, same
batches, measured in this run) and their ratio, then the parameter count of every model
(with and without the embedding table) beside the paper's Table V.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from hinet_spark.config import load_config
from hinet_spark.models import MODELS, ModelSpec, build_model
from hinet_spark.models.hinet import HiNet
from hinet_spark.models.registry import count_parameters
from tests.reference_hinet import LoopHiNet

# Vocabulary sizes like the embedded default's feature spec: 5 bucketized numerics, 6
# categoricals, hashed user and item ids.
VOCAB = (22, 22, 22, 22, 22, 302, 8, 4, 5, 62, 2002, 20002, 5002)
# Table V of the paper: parameters (x 10^4)
PAPER_PARAMS = {"mmoe": 1.94, "ple": 2.05, "hmoe": 2.03, "star": 2.11, "hinet": 2.07}


def fwd_bwd_rate(model: torch.nn.Module, batches, warmup: int = 2) -> float:
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    for i, (ids, s, y) in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, s), y)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    return (len(batches) - warmup) * batches[0][0].shape[0] / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[4096, 512])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config().model
    m = len(load_config().scenarios.names)
    spec = ModelSpec(cfg, VOCAB, m)
    torch.manual_seed(0)
    vec = HiNet(spec)
    ref = LoopHiNet(spec).load_from(vec)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} timed steps "
          f"(fwd+bwd+Adam) x {args.rounds} alternating rounds, median")
    for size in args.batch:
        g = torch.Generator().manual_seed(0)
        batches = [(torch.stack([torch.randint(0, v, (size,), generator=g) for v in VOCAB], 1),
                    torch.randint(0, m, (size,), generator=g),
                    torch.randint(0, 2, (size, 2), generator=g).float())
                   for _ in range(args.steps + 2)]
        # alternate the two so that machine noise hits both alike; report the median round
        rounds = [(fwd_bwd_rate(ref, batches), fwd_bwd_rate(vec, batches)) for _ in range(args.rounds)]
        r_ref = sorted(r for r, _ in rounds)[len(rounds) // 2]
        r_vec = sorted(v for _, v in rounds)[len(rounds) // 2]
        print(f"batch {size:5d}: loop reference {r_ref:9.0f} samples/s | vectorized HiNet "
              f"{r_vec:9.0f} samples/s | ratio {r_vec / r_ref:.2f}x")
    print()
    print(f"{'model':28s} {'params':>12s} {'w/o embedding':>14s} {'paper Table V (x1e4)':>22s}")
    for name in MODELS:
        model = build_model(ModelSpec(dataclasses.replace(cfg, name=name), VOCAB, m))
        paper = PAPER_PARAMS.get(name)
        print(f"{name:28s} {count_parameters(model):12,d} {count_parameters(model, False):14,d} "
              f"{paper if paper is not None else '':>22}")


if __name__ == "__main__":
    main()
