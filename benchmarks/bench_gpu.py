"""The GPU figures in one command, inside ~9 minutes on one GPU, written to a table file.

    .venv/bin/python -m benchmarks.bench_gpu                 # on a CUDA machine
    .venv/bin/python -m benchmarks.bench_gpu --dry-run       # list what it would measure (any machine)

1. Training samples/s (forward + backward + the project's SplitOptimizer step) and peak GPU
   memory: HiNet at batch 4096, 16384 and 65536 in every mode (``fp32``; ``tf32`` matmuls;
   ``bf16`` autocast; ``compiled`` = ``train.compile``'s torch.compile with bf16), and Shared
   Bottom and MMoE at 16384 (fp32, bf16) for scale.
2. Inference ms per sample and samples/s at batch 4096 and 65536 (the paper's Table V:
   HiNet 0.1731 ms/sample on its GPU), in ``fp32``, ``bf16``, ``compiled`` and ``graphs``
   (torch.compile ``mode="reduce-overhead"``: CUDA graphs where the graph allows. HiNet's
   routing reads the per-scenario counts on the host, so its graphs split there; the baselines
   capture whole).
3. The data path: the streaming reader (:class:`hinet_spark.train.reader.ShardStream`, what a
   training worker runs) alone, Parquet -> batch tensors on the GPU, against HiNet's fastest
   training mode at the smallest batch: ``keeps_up=`` reader samples/s / training samples/s
   (>= 1: one reader thread feeds the GPU; below: the GPU waits for data).
4. ``--pipeline``: the real training path on the GPU (a small synthetic Delta snapshot,
   ``fit`` with TorchDistributor, 1 process, NCCL): test AUC and samples/s. Needs Spark.

Each case is timed for ``--seconds`` after a warm-up (compilation is timed apart and
printed). A deadline (``--budget``, default 540 s) skips the cases left and says so, so the
run ends inside a 10-minute device slot. ``--device cpu`` runs the same code on the CPU with
CUDA stubbed (the test does; its figures mean nothing). Without CUDA (and without
``--device cpu``) it says so and exits with status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_model import VOCAB

PAPER_MS = 0.1731  # Table V: HiNet inference, ms per sample
TRAIN_MODES = ("fp32", "tf32", "bf16", "compiled")
INFER_MODES = ("fp32", "bf16", "compiled", "graphs")


@dataclasses.dataclass(frozen=True)
class Case:
    kind: str  # train | infer | data
    model: str
    batch: int
    mode: str

    def label(self) -> str:
        return f"{self.kind:5s} {self.model:13s} {self.batch:6d} {self.mode:8s}"


def plan(models: tuple[str, ...], batches: tuple[int, ...], train_modes: tuple[str, ...],
         infer_modes: tuple[str, ...]) -> list[Case]:
    """Every measurement, in the order run: the data path first (no compilation), then training
    and inference of HiNet, then the baselines."""
    cases = [Case("data", "reader", min(batches), "stream")]
    for model in models:
        if model == "hinet":
            cases += [Case("train", model, b, m) for b in batches for m in train_modes]
        else:  # the baselines at one size, for scale
            b = sorted(batches)[len(batches) // 2]
            cases += [Case("train", model, b, m) for m in train_modes if m in ("fp32", "bf16")]
        infer_batches = sorted({min(batches), max(batches)})
        cases += [Case("infer", model, b, m) for b in infer_batches for m in infer_modes]
    return cases


class Device:
    """The GPU (or, with ``cuda=False``, the CPU standing in for it: the test's stub)."""

    def __init__(self, torch, cuda: bool) -> None:
        self.torch, self.cuda = torch, cuda
        self.device = torch.device("cuda" if cuda else "cpu")
        self.autocast_type = "cuda" if cuda else "cpu"

    def name(self) -> str:
        if not self.cuda:
            return "CPU with CUDA stubbed (smoke run: the figures mean nothing)"
        t = self.torch
        return f"{t.cuda.get_device_name(0)}, torch {t.__version__}, CUDA {t.version.cuda}"

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize()

    def reset_peak(self) -> None:
        if self.cuda:
            self.torch.cuda.empty_cache()
            self.torch.cuda.reset_peak_memory_stats()

    def peak_mb(self) -> float:
        return self.torch.cuda.max_memory_allocated() / 2**20 if self.cuda else float("nan")

    def tf32(self, on: bool) -> None:
        self.torch.backends.cuda.matmul.allow_tf32 = on
        self.torch.backends.cudnn.allow_tf32 = on


def _batches(torch, dev: Device, n: int, count: int, vocab=VOCAB, scenarios: int = 6):
    g = torch.Generator().manual_seed(0)
    return [(torch.stack([torch.randint(0, v, (n,), generator=g) for v in vocab], 1).to(dev.device),
             torch.randint(0, scenarios, (n,), generator=g).to(dev.device),
             torch.randint(0, 2, (n, 2), generator=g).float().to(dev.device)) for _ in range(count)]


def _model(torch, dev: Device, name: str):
    from hinet_spark.config import load_config
    from hinet_spark.models import ModelSpec, build_model

    torch.manual_seed(0)
    return build_model(ModelSpec(dataclasses.replace(load_config().model, name=name), VOCAB, 6)).to(dev.device)


def _timed(dev: Device, fn, seconds: float, inner: int) -> tuple[int, float]:
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(inner):
            fn(n)
            n += 1
        dev.sync()
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n, elapsed


def train_case(torch, dev: Device, case: Case, seconds: float) -> dict:
    from hinet_spark.models import compile_model
    from hinet_spark.models.loss import hinet_loss
    from hinet_spark.train.optim import SplitOptimizer

    dev.reset_peak()
    dev.tf32(case.mode == "tf32")
    model = _model(torch, dev, case.model)
    opt = SplitOptimizer(model, 1e-3, sparse=True)
    net = compile_model(model) if case.mode == "compiled" else model
    bf16 = case.mode in ("bf16", "compiled")
    data = _batches(torch, dev, case.batch, 3)
    w = torch.ones(6, device=dev.device)

    def step(i):
        ids, s, y = data[i % len(data)]
        opt.zero_grad()
        with torch.autocast(dev.autocast_type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(ids, s)
        hinet_loss(logits.float(), y, s, w).backward()
        opt.step()

    began = time.perf_counter()
    for i in range(3):  # warm-up: allocation, cuBLAS heuristics, compilation
        step(i)
    dev.sync()
    warm = time.perf_counter() - began
    n, elapsed = _timed(dev, step, seconds, 5)
    dev.tf32(False)
    return {"samples_per_s": n * case.batch / elapsed, "peak_mb": dev.peak_mb(), "warmup_s": warm}


def infer_case(torch, dev: Device, case: Case, seconds: float) -> dict:
    dev.reset_peak()
    model = _model(torch, dev, case.model).eval()
    if case.mode in ("compiled", "graphs"):
        from hinet_spark.models import compile_model

        model = compile_model(model) if case.mode == "compiled" else torch.compile(model, mode="reduce-overhead")
    ids, s, _ = _batches(torch, dev, case.batch, 1)[0]
    bf16 = case.mode == "bf16"

    def run(_):
        with torch.autocast(dev.autocast_type, dtype=torch.bfloat16, enabled=bf16):
            torch.sigmoid(model(ids, s))

    began = time.perf_counter()
    with torch.no_grad():
        for i in range(3):
            run(i)
        dev.sync()
        warm = time.perf_counter() - began
        n, elapsed = _timed(dev, run, seconds, 10)
    return {"ms_per_sample": elapsed / (n * case.batch) * 1000, "samples_per_s": n * case.batch / elapsed,
            "peak_mb": dev.peak_mb(), "warmup_s": warm}


def data_case(torch, dev: Device, case: Case, seconds: float, rows: int = 400_000) -> dict:
    """The streaming reader alone: rows/s from Parquet into batch tensors on the device."""
    from benchmarks.bench_training import COLS, write_files
    from hinet_spark.train.reader import ShardStream, row_groups, shard
    from hinet_spark.train.snapshot import batch_tensors

    cols = [c for c in COLS if c.startswith("f_")]
    with tempfile.TemporaryDirectory() as tmp:
        files = write_files(Path(tmp), rows, files=8, row_group_rows=50_000)
        stream = ShardStream(shard(row_groups(files), 0, 1), COLS, case.batch, 200_000, 0, 0)
        batches = iter(stream)

        def fetch(_):
            ids, s, y = batch_tensors(next(batches), cols)
            for x in (ids, s, y):
                x.to(dev.device, non_blocking=True)

        fetch(0)
        n, elapsed = _timed(dev, fetch, seconds, 5)
    return {"samples_per_s": n * case.batch / elapsed}


def pipeline() -> str:
    from hinet_spark.config import load_config
    from hinet_spark.features.build import build_samples
    from hinet_spark.ops.spark import get_spark
    from hinet_spark.train.loop import fit
    from jobs import generate_synthetic

    with tempfile.TemporaryDirectory() as root:
        common = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=4", "synthetic.exposures_per_day=20000",
                  "synthetic.candidates_per_day=1000", "synthetic.calibration_rows_per_scenario=5000",
                  "train.launcher=torch_distributor", "train.num_proc=1", "train.use_gpu=true",
                  "train.batch_size=4096", "train.epochs=2", "train.learning_rate=0.003", "mlflow.floor=false"]
        assert generate_synthetic.main([x for o in common for x in ("--set", o)]) == 0
        cfg = load_config(None, common)
        spark = get_spark(cfg)
        build_samples(spark, cfg, "2026-01-01", "2026-01-04")
        began = time.perf_counter()
        result = fit(spark, cfg)
        return (f"fit on the GPU (TorchDistributor, 1 process, NCCL): {time.perf_counter() - began:.0f} s, "
                f"{result.history[-1]['samples_per_s']:.0f} samples/s in its last segment, "
                f"test mean AUC {result.test.mean_auc:.4f}")


def row(case: Case, r: dict | None, note: str = "") -> str:
    if r is None:
        return f"| {case.kind} | {case.model} | {case.batch} | {case.mode} | | | | | {note} |"
    ms = f"{r['ms_per_sample']:.6f}" if "ms_per_sample" in r else ""
    vs = f"{PAPER_MS / r['ms_per_sample']:,.0f}x faster" if "ms_per_sample" in r and case.model == "hinet" else ""
    peak = "" if math.isnan(r.get("peak_mb", math.nan)) else f"{r['peak_mb']:,.0f}"  # nan: no GPU memory
    warm = f"{r['warmup_s']:.1f}" if "warmup_s" in r else ""
    return (f"| {case.kind} | {case.model} | {case.batch} | {case.mode} | {r['samples_per_s']:,.0f} | {ms} | "
            f"{peak} | {warm} | {' '.join(x for x in (vs, note) if x)} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dry-run", action="store_true", help="list the cases and exit")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                    help="cpu: the same code with CUDA stubbed (a smoke test; figures mean nothing)")
    ap.add_argument("--models", default="hinet,shared_bottom,mmoe")
    ap.add_argument("--batches", default="4096,16384,65536")
    ap.add_argument("--train-modes", default=",".join(TRAIN_MODES))
    ap.add_argument("--infer-modes", default=",".join(INFER_MODES))
    ap.add_argument("--seconds", type=float, default=4.0, help="timed seconds per case, after its warm-up")
    ap.add_argument("--budget", type=float, default=540.0, help="skip the cases left after this many seconds")
    ap.add_argument("--pipeline", action="store_true", help="also fit on a small Delta snapshot (needs Spark)")
    ap.add_argument("--out", default="benchmarks/out/bench_gpu.md", help="the table, as markdown")
    args = ap.parse_args(argv)
    cases = plan(tuple(args.models.split(",")), tuple(int(b) for b in args.batches.split(",")),
                 tuple(args.train_modes.split(",")), tuple(args.infer_modes.split(",")))
    if args.dry_run:
        print(f"bench_gpu would measure {len(cases)} cases (kind, model, batch, mode), each {args.seconds:.0f} s "
              f"after its warm-up, within a {args.budget:.0f} s budget{', then the pipeline' if args.pipeline else ''}:")
        for case in cases:
            print(f"  {case.label()}")
        return 0
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine, or "
              "--dry-run to list what it measures", file=sys.stderr)
        return 2
    dev = Device(torch, args.device == "cuda")
    began = time.perf_counter()
    lines = [f"`python -m benchmarks.bench_gpu` on {dev.name()} ({time.strftime('%Y-%m-%d')}); "
             f"{args.seconds:.0f} s per case after its warm-up (warm-up s: compilation included).", "",
             "| kind | model | batch | mode | samples/s | ms/sample | peak MB | warm-up s | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    results: dict[Case, dict] = {}
    for case in cases:
        if time.perf_counter() - began > args.budget:
            lines.append(row(case, None, f"skipped: past the {args.budget:.0f} s budget"))
        else:
            run = {"train": train_case, "infer": infer_case, "data": data_case}[case.kind]
            try:
                results[case] = run(torch, dev, case, args.seconds)
                lines.append(row(case, results[case]))
            except Exception as exc:  # one case's failure (e.g. out of memory at 65536) is a row, not the end
                lines.append(row(case, None, f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]}"))
        print(lines[-1], flush=True)
    reader = next((r for c, r in results.items() if c.kind == "data"), None)
    first = cases[0].batch
    trained = [r for c, r in results.items() if c.kind == "train" and c.model == "hinet" and c.batch == first]
    if reader and trained:
        best = max(r["samples_per_s"] for r in trained)
        lines += ["", f"keeps_up={reader['samples_per_s'] / best:.2f} (the reader's {reader['samples_per_s']:,.0f} "
                      f"samples/s against HiNet's fastest training mode at batch {first}, {best:,.0f} samples/s)"]
        print(lines[-1])
    if args.pipeline:
        lines += ["", pipeline()]
        print(lines[-1])
    lines += ["", f"total {time.perf_counter() - began:.0f} s"]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"{lines[-1]}; the table: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
