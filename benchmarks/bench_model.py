"""Model speed and size on CPU: vectorized HiNet vs the loop-per-expert reference.

    .venv/bin/python -m benchmarks.bench_model [--batch 4096] [--steps 10] [--threads 2]
    .venv/bin/python -m benchmarks.bench_model --efficiency-only     # the GFLOP/s figures only
    .venv/bin/python -m benchmarks.bench_model --inference           # scoring: eager vs scoring.compile

Prints forward+backward samples/s of both at the default config (same weights, same
batches, measured in this run) and their ratio; then the achieved GFLOP/s of a HiNet training
step (FLOPs from torch's FlopCounterMode x samples/s) against the sgemm peak measured in the
same run, with plain Adam, with the training path's SparseAdam for the id table, and with that
path compiled (``train.compile``; last line ``efficiency=``, the compiled path's, eager beside
it); then the parameter count of every model (with and without the embedding table) beside the
paper's Table V.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from hinet_spark.config import load_config
from hinet_spark.models import MODELS, ModelSpec, build_model, compile_model
from hinet_spark.models.hinet import HiNet
from hinet_spark.models.registry import count_parameters
from hinet_spark.train.optim import SplitOptimizer
from tests.reference_hinet import LoopHiNet

# Vocabulary sizes like the embedded default's feature spec: 5 bucketized numerics, 6
# categoricals, hashed user and item ids.
VOCAB = (22, 22, 22, 22, 22, 302, 8, 4, 5, 62, 2002, 20002, 5002)
# Table V of the paper: parameters (x 10^4)
PAPER_PARAMS = {"mmoe": 1.94, "ple": 2.05, "hmoe": 2.03, "star": 2.11, "hinet": 2.07}


def fwd_bwd_rate(model: torch.nn.Module, batches, warmup: int = 2, sparse: bool = False,
                 compiled: bool = False) -> float:
    """samples/s of forward + backward + optimizer step: plain Adam over every parameter, or
    (``sparse``) the training path's SplitOptimizer (SparseAdam on the id table); ``compiled``:
    the step of ``train.compile`` (the warm-up steps hold the compilation, not timed)."""
    opt = SplitOptimizer(model, 1e-4, sparse) if sparse else torch.optim.Adam(model.parameters(), lr=1e-4)
    net = compile_model(model) if compiled else model
    for i, (ids, s, y) in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        opt.zero_grad(**({} if sparse else {"set_to_none": True}))
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(ids, s), y)
        loss.backward()
        opt.step()
    elapsed = time.perf_counter() - start
    return (len(batches) - warmup) * batches[0][0].shape[0] / elapsed


def gemm_rate(m: int, k: int, n: int, seconds: float = 2.0) -> float:
    """GFLOP/s of an fp32 [m, k] x [k, n] matmul on this machine's torch threads."""
    a, b = torch.randn(m, k), torch.randn(k, n)
    out = torch.empty(m, n)
    for _ in range(3):
        torch.mm(a, b, out=out)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        torch.mm(a, b, out=out)
        count += 1
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


def flops_per_sample(model: torch.nn.Module, batch) -> float:
    """Forward + backward FLOPs per sample (torch's FlopCounterMode: matmuls and convolutions)."""
    from torch.utils.flop_counter import FlopCounterMode

    ids, s, y = batch
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.binary_cross_entropy_with_logits(model(ids, s), y).backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / ids.shape[0]


def efficiency(spec: ModelSpec, batch_size: int, steps: int) -> None:
    """Achieved GFLOP/s of a training step against the sgemm peak measured now."""
    peak = gemm_rate(4096, 1024, 1024)
    shaped = gemm_rate(batch_size, spec.config.embedding_dim * len(spec.vocab_sizes),
                       spec.config.sei_experts * (spec.n_scenarios + 1) * spec.config.sei_hidden[0])
    g = torch.Generator().manual_seed(0)
    batches = [(torch.stack([torch.randint(0, v, (batch_size,), generator=g) for v in spec.vocab_sizes], 1),
                torch.randint(0, spec.n_scenarios, (batch_size,), generator=g),
                torch.randint(0, 2, (batch_size, 2), generator=g).float()) for _ in range(steps + 2)]
    torch.manual_seed(0)
    flops = flops_per_sample(HiNet(spec), batches[0])
    print(f"sgemm peak [4096x1024]x[1024x1024]: {peak:.0f} GFLOP/s; HiNet-shaped GEMM: {shaped:.0f} GFLOP/s; "
          f"HiNet fwd+bwd {flops / 1e6:.2f} MFLOP/sample")
    shares = {}
    for label, sparse, compiled in (("Adam over every parameter", False, False),
                                    ("training path: SparseAdam ids + Adam", True, False),
                                    ("the same, train.compile=true", True, True)):
        began = time.perf_counter()
        rates = [fwd_bwd_rate(HiNet(spec), batches, sparse=sparse, compiled=compiled) for _ in range(3)]
        rate = sorted(rates)[1]
        achieved = rate * flops / 1e9
        shares[compiled] = achieved / peak
        extra = f" ({time.perf_counter() - began:.0f} s with 3 compilations)" if compiled else ""
        print(f"batch {batch_size}, {label:38s}: {rate:7.0f} samples/s = {achieved:5.1f} GFLOP/s, "
              f"{achieved / peak:.0%} of the sgemm peak{extra}")
    print(f"efficiency={shares[True]:.2f} (the training path with train.compile=true; eager: {shares[False]:.2f})")


def inference(spec: ModelSpec, batch_size: int, rounds: int = 3) -> None:
    """Scoring's model call, eager vs ``scoring.compile``, on one thread (a UDF task's share):
    rows/s (median of ``rounds``) and the compiled model's first batch (its compilation)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = HiNet(spec).eval()
    g = torch.Generator().manual_seed(0)
    ids = torch.stack([torch.randint(0, v, (batch_size,), generator=g) for v in spec.vocab_sizes], 1)
    s = torch.randint(0, spec.n_scenarios, (batch_size,), generator=g)
    compiled = compile_model(model)

    def rate(f, n: int = 10) -> float:
        start = time.perf_counter()
        for _ in range(n):
            f(ids, s)
        return n * batch_size / (time.perf_counter() - start)

    with torch.no_grad():
        start = time.perf_counter()
        compiled(ids, s)
        first = time.perf_counter() - start
        eager = sorted(rate(model) for _ in range(rounds))[rounds // 2]
        fast = sorted(rate(compiled) for _ in range(rounds))[rounds // 2]
    print(f"inference, 1 thread, batch {batch_size}: eager {eager:,.0f} rows/s, scoring.compile {fast:,.0f} rows/s "
          f"({fast / eager:.2f}x); the compiled first batch took {first:.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[4096, 512])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--efficiency-only", action="store_true", help="only the GFLOP/s figures")
    ap.add_argument("--inference", action="store_true",
                    help="only scoring's model call, eager vs scoring.compile (1 thread, batch 10,000)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config().model
    m = len(load_config().scenarios.names)
    spec = ModelSpec(cfg, VOCAB, m)
    if args.inference:
        inference(spec, 10_000)
        return
    if args.efficiency_only:
        efficiency(spec, args.batch[0], args.steps)
        return
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
    efficiency(spec, args.batch[0], args.steps)
    print()
    print(f"{'model':28s} {'params':>12s} {'w/o embedding':>14s} {'paper Table V (x1e4)':>22s}")
    for name in MODELS:
        model = build_model(ModelSpec(dataclasses.replace(cfg, name=name), VOCAB, m))
        paper = PAPER_PARAMS.get(name)
        print(f"{name:28s} {count_parameters(model):12,d} {count_parameters(model, False):14,d} "
              f"{paper if paper is not None else '':>22}")


if __name__ == "__main__":
    main()
