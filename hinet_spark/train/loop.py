"""Training: one training function, run by any launcher of :mod:`hinet_spark.train.distributed`.

:func:`train_worker` is the training core. It is top level and picklable, and it runs the
same under Horovod, TorchDistributor or in one local process. Each worker streams its own
shard of the materialised training split (:mod:`hinet_spark.train.reader`, memory bounded by
``train.shuffle_buffer_rows``); rank 0 evaluates the validation split at the validation
points, shares the mean AUC (early stopping decides the same on every rank) and writes a
checkpoint after each epoch. :func:`fit` drives it from the Spark driver.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pyspark.sql import SparkSession

from hinet_spark.config import Config, ModelSection, TrainSection
from hinet_spark.errors import ConfigError, OperatorError
from hinet_spark.evaluation import Evaluation, evaluate
from hinet_spark.features.build import spec_path
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.models import ModelSpec, build_model, compile_model
from hinet_spark.models.loss import hinet_loss, scenario_weights
from hinet_spark.ops.logs import configure, quiet_library_warnings
from hinet_spark.train.checkpoints import (
    CheckpointError,
    check_resumable,
    fingerprint,
    foreign_checkpoint,
    run_dir,
    run_lock,
)
from hinet_spark.train.distributed import distribution, launch
from hinet_spark.train.optim import SplitOptimizer, use_sparse
from hinet_spark.train.reader import ShardStream, read_all, row_groups, shard
from hinet_spark.train.snapshot import (
    LABELS,
    Snapshot,
    batch_tensors,
    materialised_splits,
    read_snapshot,
    split_dates,
)

logger = logging.getLogger(__name__)
# Workers unpickle their payload with this module: library warnings are filtered there too.
quiet_library_warnings()


class TrainingError(OperatorError, RuntimeError):
    """Training cannot go on (a NaN loss, a failed worker)."""


# --------------------------------------------------------------------------------------
# The training core
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payload:
    """Everything a worker needs, pickled to it."""

    model: ModelSection
    train: TrainSection
    vocab_sizes: tuple[int, ...]
    scenario_names: tuple[str, ...]
    feature_columns: tuple[str, ...]
    loss_weights: tuple[float, ...]
    train_rows: int
    train_files: tuple[str, ...]  # the materialised training split (Parquet), read by every rank
    val_data: dict[str, np.ndarray]  # the validation rows (columns as numpy), for rank 0
    checkpoint_dir: str
    resume: bool
    fingerprint: dict  # what the checkpoints belong to (hinet_spark.train.checkpoints)
    init_state: dict | None = None  # warm start: the weights to begin from


def best_record(history: list[dict]) -> dict:
    """The validation whose weights the run kept: the last that beat the best before it by more
    than ``train.early_stopping_min_delta`` (histories without ``kept``: the highest)."""
    kept = [r for r in history if r.get("kept")]
    if kept:
        return kept[-1]
    return max(history, key=lambda r: r["val_auc_mean"]) if history else {"epoch": -1, "step": -1}


def best_at_last_validation(history: list[dict]) -> bool:
    """The run kept its last validation's weights: the curve was still rising when the budget ended."""
    return bool(history) and best_record(history) is history[-1]


def _device(use_gpu: bool, rank: int) -> torch.device:
    if use_gpu and torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", os.environ.get("HOROVOD_LOCAL_RANK", rank)))
        torch.cuda.set_device(local % torch.cuda.device_count())
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@torch.no_grad()
def predict_arrays(model: torch.nn.Module, data: dict[str, np.ndarray], feature_columns: list[str],
                   device: torch.device, batch_size: int = 8192) -> tuple[np.ndarray, ...]:
    """(scenario [N], labels [N, T], probs [N, T]) for rows held as numpy columns."""
    model.eval()
    ids, s, y = batch_tensors(data, feature_columns)
    probs = [torch.sigmoid(model(ids[i:i + batch_size].to(device), s[i:i + batch_size].to(device))).cpu()
             for i in range(0, len(s), batch_size)]
    model.train()
    return s.numpy(), y.numpy(), torch.cat(probs).numpy()


@torch.no_grad()
def predict_files(model: torch.nn.Module, files: tuple[str, ...], feature_columns: list[str],
                  device: torch.device, batch_size: int = 8192) -> tuple[np.ndarray, ...]:
    """(scenario [N], labels [N, T], probs [N, T]) over materialised Parquet files, one pass."""
    model.eval()
    scen, labels, probs = [], [], []
    for batch in read_all(files, ["scenario_idx", *LABELS, *feature_columns], batch_size):
        ids, s, y = batch_tensors(batch, feature_columns)
        probs.append(torch.sigmoid(model(ids.to(device), s.to(device))).cpu().numpy())
        scen.append(s.numpy())
        labels.append(y.numpy())
    model.train()
    return np.concatenate(scen), np.concatenate(labels), np.concatenate(probs)


def validation_steps(steps: int, t: TrainSection, epoch: int = 0) -> set[int]:
    """Step indices (0-based, within an epoch) after which the model is validated:
    every ``train.val_every_steps`` steps, or ``train.validations_per_epoch`` evenly spaced
    points; always after the epoch's last step; in every epoch after the first, also
    ``train.early_validation_fraction`` into it, where a second pass over the same ids
    over-fits first (the "one-epoch phenomenon" of CTR models)."""
    if t.val_every_steps:
        points = set(range(t.val_every_steps - 1, steps, t.val_every_steps))
    else:
        n = min(t.validations_per_epoch, steps)
        points = {round((k + 1) * steps / n) - 1 for k in range(n)}
    if epoch > 0 and t.early_validation_fraction > 0:
        points.add(max(0, round(t.early_validation_fraction * steps) - 1))
    return points | {steps - 1}


def fell(t: TrainSection, epoch: int, val_auc: float, best: float) -> bool:
    """After the first epoch, a validation more than ``train.early_stopping_drop`` below the
    best ends training at once, whatever the patience (0: off)."""
    return epoch > 0 and t.early_stopping_drop > 0 and best - val_auc > t.early_stopping_drop


class _Progress:
    """Rank 0's progress lines: at most one every ``train.progress_seconds``, with the time
    left in the epoch and in the whole training as a range: the least if validation stops
    improving (early stopping), the most if it keeps improving to the last epoch."""

    def __init__(self, t: TrainSection, steps: int, global_batch: int) -> None:
        self.t, self.steps, self.global_batch = t, steps, global_batch
        self.checks = {e: sorted(validation_steps(steps, t, e)) for e in (0, 1)}  # the same for every epoch >= 1
        self.last = time.perf_counter()
        self.per_step = 0.0
        self.val_s = 0.0
        self.val_in_epoch = 0.0

    def step(self, epoch: int, step: int, began: float, loss: tuple[float, tuple[int, int]], bad: int) -> None:
        now = time.perf_counter()
        if step == 0:
            self.val_in_epoch = 0.0
        self.per_step = (now - began - self.val_in_epoch) / (step + 1)
        if now - self.last < self.t.progress_seconds or step in self.checks[min(epoch, 1)]:
            return
        self.last = now
        done = step + 1
        # the latest exchanged mean and the step it runs to; before the first exchange there is
        # none yet (a non-finite loss stops the job at the exchange, it is never shown)
        loss, (at_epoch, at_step) = loss
        at = f"step {at_step}" if at_epoch == epoch else f"epoch {at_epoch} step {at_step}"
        shown = (f"{loss:.4f} (mean of all ranks up to {at})" if math.isfinite(loss)
                 else f"not yet (first mean at step {LOSS_SYNC_STEPS})")
        logger.info("epoch %d: step %d/%d (%.0f%%), %.0f samples/s, loss %s; epoch done in %s; %s", epoch,
                    done, self.steps, 100 * done / self.steps, self.global_batch / self.per_step, shown,
                    _duration((self.steps - done) * self.per_step), self._rest(epoch, step, bad))

    def validated(self, val_seconds: float) -> None:
        self.val_s = val_seconds
        self.val_in_epoch += val_seconds

    def _rest(self, epoch: int, step: int, bad: int) -> str:
        """Time to the end of training: (least, most) steps and validations still ahead."""
        ahead = [(e, c) for e in range(epoch, self.t.epochs) for c in self.checks[min(e, 1)] if (e, c) > (epoch, step)]
        if not ahead:
            return "training done; test evaluation and MLflow logging next"
        least_n = max(1, self.t.early_stopping_patience - bad)  # validations until a stop if none improves
        lo_at, hi_at = ahead[min(least_n, len(ahead)) - 1], ahead[-1]

        def secs(at: tuple[int, int], n_val: int) -> float:
            return ((at[0] - epoch) * self.steps + at[1] - step) * self.per_step + n_val * self.val_s

        lo, hi = secs(lo_at, min(least_n, len(ahead))), secs(hi_at, len(ahead))
        span = _duration(hi) if lo_at == hi_at else f"{_duration(lo)}-{_duration(hi)}"
        return f"training done in {span} (the lower if early stopping ends it), then test evaluation and MLflow"

    def eta_after_validation(self, epoch: int, step: int, bad: int, stopping: bool) -> str:
        if stopping:
            return "early stop; test evaluation and MLflow logging next"
        return self._rest(epoch, step, bad)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def _save_latest(state: dict, latest: Path) -> None:
    tmp = latest.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, latest)  # atomic: a kill never leaves half a checkpoint


LOSS_SYNC_STEPS = 50  # steps between the ranks' loss exchanges (and non-finite checks)


def train_worker(p: Payload) -> dict | None:
    """Train on this worker's shard; rank 0 returns the best state and the history.

    A failure is also written to ``<checkpoint_dir>/failed-rank-<r>.txt``: the launchers
    report only that a worker exited, and the driver raises with the worker's reason."""
    configure("INFO")  # a fresh worker process: the driver's logging policy
    try:
        return _train(p)
    except Exception as exc:
        rank = int(os.environ.get("HOROVOD_RANK", os.environ.get("RANK", "0")))
        logger.error("rank %d: %s", rank, exc)
        with contextlib.suppress(OSError):
            Path(p.checkpoint_dir).mkdir(parents=True, exist_ok=True)
            (Path(p.checkpoint_dir) / f"failed-rank-{rank}.txt").write_text(f"{type(exc).__name__}: {exc}\n")
        raise


@dataclass
class RunState:
    """What a worker carries from one validation to the next, and what a checkpoint holds
    besides the model and optimizer (the one place its keys are spelled)."""

    epoch: int = 0  # the epoch being trained (after a resume: the one after the checkpoint's)
    best: float = -math.inf  # best validation mean AUC so far
    bad: int = 0  # validations since the best one
    history: list[dict] = field(default_factory=list)
    best_state: dict | None = None  # rank 0: the model's weights at the best validation

    def improve(self, val_auc: float, model: torch.nn.Module, rank: int, min_delta: float = 0.0) -> bool:
        """Record a validation; True when it beats the best so far by more than ``min_delta``
        (rank 0 keeps the weights)."""
        if val_auc > self.best + min_delta:
            self.best, self.bad = val_auc, 0
            if rank == 0:
                self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            return True
        self.bad += 1
        return False

    def save(self, path: Path, model: torch.nn.Module, opt: SplitOptimizer, fingerprint: str,
             completed: bool = False) -> None:
        """This epoch's checkpoint, written atomically (a kill never leaves half a file)."""
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": self.epoch, "best": self.best,
                 "bad_validations": self.bad, "history": self.history, "best_state": self.best_state,
                 "fingerprint": fingerprint, "completed": completed}
        _save_latest(state, path)

    @classmethod
    def restore(cls, path: Path, model: torch.nn.Module, opt: SplitOptimizer, device: torch.device) -> RunState:
        """Load a checkpoint into ``model`` and ``opt``; the state resumes after its epoch."""
        ckpt = torch.load(path, map_location=device, weights_only=False)
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        return cls(ckpt["epoch"] + 1, ckpt["best"], ckpt["bad_validations"], ckpt["history"], ckpt["best_state"])


def _resume(p: Payload, model: torch.nn.Module, opt: SplitOptimizer, device: torch.device, rank: int) -> RunState:
    latest = Path(p.checkpoint_dir) / "latest.pt"
    if not p.resume:
        return RunState()
    if not latest.is_file():
        raise TrainingError(f"--resume: no checkpoint at {latest}")
    state = RunState.restore(latest, model, opt, device)
    if rank == 0:
        logger.info("resuming after epoch %d (best validation mean AUC %.4f)", state.epoch - 1, state.best)
    return state


class _LossExchange:
    """The training loss, summed where it is (no per-step host sync, no per-step allreduce)
    and exchanged every LOSS_SYNC_STEPS steps and at validation points: there every rank
    learns of a non-finite loss on any rank and all stop together (no rank is left waiting in
    a collective). ``last`` is the latest exchanged mean, what the progress line shows."""

    def __init__(self, dist: Any, device: torch.device, learning_rate: float) -> None:
        self.dist, self.learning_rate = dist, learning_rate
        self.local = torch.zeros((), dtype=torch.float64, device=device)
        self.nonfinite = torch.zeros((), device=device)
        self.unsynced, self.total, self.steps, self.last, self.last_at = 0, 0.0, 0, math.nan, (0, 0)

    def add(self, loss: torch.Tensor) -> None:
        lost = loss.detach()
        finite = torch.isfinite(lost)
        self.local += torch.where(finite, lost, torch.zeros_like(lost))
        self.nonfinite += (~finite).float()
        self.unsynced += 1

    def exchange(self, epoch: int, step: int) -> None:
        total, nonfinite = self.dist.means([float(self.local), float(self.nonfinite)])
        if nonfinite > 0 or not math.isfinite(total):
            raise TrainingError(
                f"the loss was not finite in {round(nonfinite * self.dist.size)} of the last "
                f"{self.unsynced * self.dist.size} steps of all ranks (epoch {epoch}, up to step {step + 1}): stopping "
                f"(a learning rate too high? train.learning_rate is {self.learning_rate})")
        self.total, self.steps = self.total + total, self.steps + self.unsynced
        self.last, self.last_at = self.total / self.steps, (epoch, step + 1)
        self.local.zero_()
        self.nonfinite.zero_()
        self.unsynced = 0

    def segment(self) -> float:
        """The mean loss since the last validation; starts the next segment."""
        mean = self.total / self.steps if self.steps else math.nan
        self.total, self.steps = 0.0, 0
        return mean


def _validate(p: Payload, model: torch.nn.Module, dist: Any, device: torch.device, progress: _Progress | None,
              epoch: int, step: int) -> float:
    """Validation mean AUC, computed on rank 0 and shared. The other ranks wait in
    ``dist.share``, which every rank reaches at the same step (the steps and their validation
    points are computed identically everywhere), so it cannot deadlock."""
    val_auc = None
    if dist.rank == 0:
        began = time.perf_counter()
        val_auc = evaluate(*predict_arrays(model, p.val_data, list(p.feature_columns), device), p.scenario_names).mean_auc
        progress.validated(time.perf_counter() - began)
    val_auc = dist.share(val_auc)
    if val_auc is None:
        raise TrainingError(f"epoch {epoch}, step {step}: validation mean AUC undefined (constant labels)")
    return val_auc


def rank_batch(global_batch: int, workers: int) -> int:
    """Each worker's share of the global batch ``train.batch_size``: the same config means the
    same global batch, learning rate and optimizer steps per epoch with any launcher and
    number of workers (the workers' mean gradient is the global batch's)."""
    if global_batch % workers:
        raise ConfigError(f"train.batch_size {global_batch} is the global batch of all workers and must divide "
                          f"evenly among the {workers} workers (e.g. --set train.batch_size="
                          f"{max(workers, global_batch - global_batch % workers)})")
    return global_batch // workers


def _train(p: Payload) -> dict | None:
    t = p.train
    dist = distribution(t.launcher, t.use_gpu, t.gradient_compression)
    rank, size = dist.rank, dist.size
    torch.set_num_threads(t.threads_per_worker)
    torch.manual_seed(t.seed)
    device = _device(t.use_gpu, rank)
    model = build_model(ModelSpec(p.model, p.vocab_sizes, len(p.scenario_names))).to(device)
    if p.init_state is not None:
        model.load_state_dict(p.init_state)  # checked on the driver: same architecture and spec
    opt = SplitOptimizer(model, t.learning_rate, use_sparse(t.sparse_embeddings, t.launcher, t.use_gpu),
                         t.weight_decay)
    run = _resume(p, model, opt, device, rank)
    dist.broadcast_state(model, opt.dense)  # (every rank loaded the same checkpoint, if any)
    # compiled inside the distribution wrapper: DDP and Horovod's hooks see the same parameters
    net = dist.wrap_model(compile_model(model) if t.compile else model)
    dist.wrap_optimizer(opt, model)
    compile_seconds = None  # train.compile: the first step's time, which holds the compilation
    weights = torch.tensor(p.loss_weights, device=device)
    per_rank = rank_batch(t.batch_size, size)  # train.batch_size is the global batch (docs/training.md)
    steps = max(1, p.train_rows // t.batch_size)
    if t.max_steps_per_epoch:
        steps = min(steps, t.max_steps_per_epoch)
    cols = list(p.feature_columns)
    stream = ShardStream(shard(row_groups(p.train_files), rank, size), ["scenario_idx", *LABELS, *cols],
                         per_rank, t.shuffle_buffer_rows, t.seed, rank)
    shard_rows = dist.gather(stream.rows)
    if rank == 0:
        logger.info("training rows per rank: %s (of %d); %d steps per epoch of a global batch of %d (%d x %d "
                    "workers), shuffle buffer %d rows", shard_rows, p.train_rows, steps, t.batch_size, per_rank, size,
                    t.shuffle_buffer_rows)
    batches = iter(stream)
    progress = _Progress(t, steps, t.batch_size) if rank == 0 else None
    latest = Path(p.checkpoint_dir) / "latest.pt"
    loss_exchange = _LossExchange(dist, device, t.learning_rate)
    stop = False
    for epoch in range(run.epoch, t.epochs):
        run.epoch = epoch
        checks = validation_steps(steps, t, epoch)
        began = seg_began = time.perf_counter()
        loss_exchange.segment()  # each epoch's first record starts at its first step
        for step in range(steps):
            ids, s, y = (x.to(device) for x in batch_tensors(next(batches), cols))
            step_began = time.perf_counter()
            opt.zero_grad()
            loss = hinet_loss(net(ids, s), y, s, weights)
            loss.backward()
            opt.step()
            if t.compile and compile_seconds is None:
                compile_seconds = time.perf_counter() - step_began
                if rank == 0:
                    logger.info("train.compile: the first step compiled the model in %.1f s", compile_seconds)
            loss_exchange.add(loss)
            if loss_exchange.unsynced == LOSS_SYNC_STEPS or step in checks or step == steps - 1:
                loss_exchange.exchange(epoch, step)
            if progress is not None:
                progress.step(epoch, step, began, (loss_exchange.last, loss_exchange.last_at), run.bad)
            if step not in checks:
                continue
            seconds, seg_steps = time.perf_counter() - seg_began, loss_exchange.steps
            val_auc = _validate(p, model, dist, device, progress, epoch, step)
            record = {"epoch": epoch, "step": epoch * steps + step + 1, "train_loss": loss_exchange.segment(),
                      "val_auc_mean": val_auc, "samples_per_s": seg_steps * t.batch_size / seconds,
                      "seconds": seconds}
            dropped = fell(t, epoch, val_auc, run.best)
            improved = run.improve(val_auc, model, rank, t.early_stopping_min_delta)
            run.history.append({**record, "kept": improved})
            stop = run.bad >= t.early_stopping_patience or dropped
            if rank == 0:
                logger.info("epoch %d step %d/%d: loss %.4f, val mean AUC %.4f%s, %.0f samples/s; %s", epoch,
                            step + 1, steps, record["train_loss"], val_auc, " (best)" if improved else "",
                            record["samples_per_s"], progress.eta_after_validation(epoch, step, run.bad, stop))
            seg_began = time.perf_counter()
            if stop:
                break
        if rank == 0:
            latest.parent.mkdir(parents=True, exist_ok=True)
            run.save(latest.with_name(f"epoch-{epoch}.pt"), model, opt, p.fingerprint)
            run.save(latest, model, opt, p.fingerprint)
        if stop:
            if rank == 0:
                best_at = best_record(run.history)
                why = (f"validation AUC fell {run.best - run.history[-1]['val_auc_mean']:.4f} below the best "
                       f"(more than train.early_stopping_drop {t.early_stopping_drop})" if dropped else
                       f"no better validation AUC in {run.bad} validations")
                logger.info("early stop in epoch %d: %s (best %.4f at step %d, epoch %d)", epoch, why, run.best,
                            best_at["step"], best_at["epoch"])
            break
    if rank != 0:
        return None
    if latest.is_file():  # a finished run's checkpoint is not resumable
        state = torch.load(latest, map_location="cpu", weights_only=False)
        _save_latest({**state, "completed": True}, latest)
    return {"best_state": run.best_state, "history": run.history, "best_val_auc": run.best, "world_size": size,
            "shard_rows": shard_rows, "compile_seconds": compile_seconds}


# --------------------------------------------------------------------------------------
# The driver side
# --------------------------------------------------------------------------------------


@dataclass
class TrainResult:
    model: torch.nn.Module
    model_spec: ModelSpec
    feature_spec: FeatureSpec
    samples_version: int
    split_dates: dict[str, tuple[str, str]]
    split_counts: dict[str, dict[str, int]]
    history: list[dict]
    best_val_auc: float
    val: Evaluation
    test: Evaluation
    train_seconds: float
    loss_weights: tuple[float, ...]
    warm_start_version: str | None = None
    shard_rows: tuple[int, ...] = ()  # training rows each rank read
    compile_seconds: float | None = None  # train.compile: the first step (compilation included)
    started_at: float = 0.0  # epoch seconds when fit began (the MLflow run's start)


def validation_arrays(snap: Snapshot, max_rows: int, seed: int) -> dict[str, np.ndarray]:
    """The validation split as numpy columns (a seeded sample when it exceeds ``max_rows``).

    Rank 0 evaluates it after every epoch from memory: one Petastorm reader per worker is
    enough (a second reader opened inside a Horovod worker stalled in our runs).
    """
    df = snap.splits["val"]
    n = sum(snap.counts["val"].values())
    if n > max_rows:
        logger.info("validating each epoch on a %d-row sample of %d validation rows", max_rows, n)
        df = df.sample(fraction=min(1.0, 1.05 * max_rows / n), seed=seed).limit(max_rows)
    pdf = df.toPandas()
    return {c: pdf[c].to_numpy() for c in pdf.columns}


def fit(spark: SparkSession, cfg: Config, resume: bool = False, warm_start: str | None = None) -> TrainResult:
    """Snapshot -> Petastorm -> launcher -> best model -> validation and test evaluation.

    ``warm_start`` (an alias or version): start from that registered model's weights and
    train on the last ``train.warm_start_window_days`` days of the training split."""
    started = time.time()
    full = FeatureSpec.load(spec_path(cfg))  # what the samples were built with
    # train.use_behaviour: false trains on the same samples without the counters (a comparison's
    # "without behaviour" arm); the model, its logged spec and its checkpoints are then counter-free
    spec = full if cfg.train.use_behaviour or not full.counters else full.without_counters()
    names = tuple(cfg.scenarios.names)
    if spec.scenarios != names:
        raise ValueError(f"feature spec scenarios {list(spec.scenarios)} differ from config {list(names)}")
    init_state, warm_version = None, None
    if warm_start:
        from hinet_spark.train.warm_start import load_state, recent_window

        init_state, warm_version = load_state(cfg, warm_start, spec, spec.vocab_sizes)
        window = recent_window(cfg, split_dates(cfg))["train"]
        cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, train_start=window[0],
                                                                 train_end=window[1]))
    snap: Snapshot = read_snapshot(spark, cfg, full, spec.columns)
    train_counts = [snap.counts["train"][s] for s in names]
    overrides = {names.index(k): v for k, v in cfg.train.scenario_weights.items()}
    weights = tuple(float(w) for w in scenario_weights(train_counts, overrides))
    logger.info("loss weights lambda_i: %s", dict(zip(names, [round(w, 2) for w in weights])))
    base = cfg.train.checkpoint_dir or str(Path(cfg.storage.root) / "checkpoints" / cfg.model.name)
    run_fingerprint = fingerprint(snap.version, snap.dates, spec.hash, cfg.model, cfg.train)
    ckpt = str(run_dir(base, run_fingerprint))  # this run's own folder: concurrent runs never share one
    if resume:
        latest = Path(ckpt) / "latest.pt"
        if not latest.is_file():
            other = foreign_checkpoint(base, Path(ckpt))
            if other is None:
                raise CheckpointError(f"--resume: no checkpoint at {latest.resolve()}")
            latest = other  # names what differs from the run whose checkpoint it is
        check_resumable(torch.load(latest, map_location="cpu", weights_only=False), run_fingerprint,
                        latest.resolve())
    with run_lock(ckpt):
        result = _fit_locked(spark, cfg, spec, names, snap, weights, train_counts, ckpt, resume, run_fingerprint,
                             init_state, warm_version)
    return dataclasses.replace(result, started_at=started)


def _fit_locked(spark: SparkSession, cfg: Config, spec: FeatureSpec, names: tuple[str, ...], snap: Snapshot,
                weights: tuple[float, ...], train_counts: list[int], ckpt: str, resume: bool,
                run_fingerprint: dict, init_state: Any, warm_version: Any) -> TrainResult:
    model_spec = ModelSpec(cfg.model, spec.vocab_sizes, len(names))
    num_shards = cfg.train.num_proc if cfg.train.launcher != "local" else 1
    rank_batch(cfg.train.batch_size, num_shards)  # refused before any data is written
    began = time.perf_counter()
    val_data = validation_arrays(snap, cfg.train.max_val_rows, cfg.train.seed)
    with materialised_splits(cfg, snap, num_shards) as files:
        payload = Payload(cfg.model, cfg.train, spec.vocab_sizes, names, tuple(spec.columns), weights,
                          sum(train_counts), files["train"].files, val_data, str(Path(ckpt).resolve()), resume,
                          run_fingerprint, init_state)
        for stale in Path(ckpt).glob("failed-rank-*.txt"):
            stale.unlink()
        try:
            result = launch(train_worker, payload, cfg)
        except Exception as exc:
            reasons = sorted(Path(ckpt).glob("failed-rank-*.txt"))
            if not reasons:
                raise
            first = reasons[0].read_text().strip()
            raise TrainingError(f"training failed on {', '.join(r.stem.removeprefix('failed-') for r in reasons)}: "
                                f"{first}") from exc
        if not result or result.get("best_state") is None:
            raise TrainingError("training returned no model (no epoch completed)")
        seconds = time.perf_counter() - began
        model = build_model(model_spec)
        model.load_state_dict(result["best_state"])
        device = torch.device("cpu")
        val = evaluate(*predict_arrays(model, val_data, spec.columns, device), names)
        test = evaluate(*predict_files(model, files["test"].files, spec.columns, device), names)
    for note in test.notes:
        logger.warning("test: %s", note)
    logger.debug("test mean AUC %.4f (validation %.4f)", test.mean_auc or float("nan"), val.mean_auc or float("nan"))
    return TrainResult(model, model_spec, spec, snap.version, snap.dates, snap.counts, result["history"],
                       result["best_val_auc"], val, test, seconds, weights, warm_version,
                       tuple(result.get("shard_rows", ())), compile_seconds=result.get("compile_seconds"))
