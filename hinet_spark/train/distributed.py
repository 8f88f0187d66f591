"""The distribution layer: who runs the training function, and how ranks talk.

* ``horovod``: ``horovod.spark.run`` starts ``num_proc`` workers as Spark tasks, rendezvous
  over Gloo (NCCL for GPU tensors when Horovod is built with it); broadcast of the initial
  state, ``hvd.DistributedOptimizer``, values averaged with ``hvd.allreduce``;
* ``torch_distributor``: ``pyspark.ml.torch.distributor.TorchDistributor`` with a ``gloo``
  (CPU) or ``nccl`` (GPU) process group and DDP, for runtimes that no longer ship Horovod;
  ``train.local_mode`` puts the processes on the driver (the embedded default) or one per
  Spark task on the executors (a cluster's workers and their GPUs);
* ``local``: one process, for debugging.

The training function (:func:`hinet_spark.train.loop.train_worker`) only sees a
:class:`Local`-shaped object: ``rank``, ``size``, ``wrap_model``, ``wrap_optimizer``,
``broadcast_state``, ``mean``, ``share``, ``gather``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import torch

from hinet_spark.config import Config

logger = logging.getLogger(__name__)


class Local:
    rank, size = 0, 1

    def wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def wrap_optimizer(self, opt: Any, model: torch.nn.Module) -> None:
        """Make ``opt`` (a :class:`hinet_spark.train.optim.SplitOptimizer`) exchange gradients."""

    def broadcast_state(self, model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
        pass

    def mean(self, value: float) -> float:
        return value

    def means(self, values: list[float]) -> list[float]:
        """The mean over ranks of each value, in one exchange."""
        return list(values)

    def share(self, value: float | None) -> float | None:
        """Rank 0's value (a float or None) on every rank."""
        return value

    def gather(self, value: int) -> list[int]:
        """Every rank's ``value``, in rank order, on every rank."""
        return [value]


class Horovod(Local):
    def __init__(self, fp16_gradients: bool = False) -> None:
        import horovod.torch as hvd

        hvd.init()
        self.hvd = hvd
        self.rank, self.size = hvd.rank(), hvd.size()
        self.fp16_gradients = fp16_gradients

    def wrap_optimizer(self, opt, model):
        # one Horovod optimizer per part; the sparse tables' gradients travel as sparse tensors
        # (allgather of rows and values: sparse_as_dense=False), the rest is allreduced, in
        # float16 with train.gradient_compression fp16 (half the bytes; averaged in float32)
        compression = self.hvd.Compression.fp16 if self.fp16_gradients else self.hvd.Compression.none
        opt.dense = self.hvd.DistributedOptimizer(opt.dense, named_parameters=opt.dense_params,
                                                  compression=compression)
        if opt.sparse is not None:
            opt.sparse = self.hvd.DistributedOptimizer(opt.sparse, named_parameters=opt.sparse_params,
                                                       sparse_as_dense=False)

    def broadcast_state(self, model, opt):
        self.hvd.broadcast_parameters(model.state_dict(), root_rank=0)
        self.hvd.broadcast_optimizer_state(opt, root_rank=0)

    def mean(self, value: float) -> float:
        return self.means([value])[0]

    def means(self, values: list[float]) -> list[float]:
        return self.hvd.allreduce(torch.tensor(values, dtype=torch.float64), op=self.hvd.Average).tolist()

    def share(self, value: float | None) -> float | None:
        # an allreduce of (has value, value) where only rank 0 contributes: hvd.broadcast_object
        # hung here when the ranks reached it at different times
        mine = [1.0, value] if self.rank == 0 and value is not None else [0.0, 0.0]
        has, v = self.hvd.allreduce(torch.tensor(mine, dtype=torch.float64), op=self.hvd.Sum).tolist()
        return v if has > 0 else None

    def gather(self, value: int) -> list[int]:
        return [int(x) for x in self.hvd.allgather(torch.tensor([value], dtype=torch.int64)).tolist()]


class TorchDDP(Local):
    def __init__(self, use_gpu: bool, fp16_gradients: bool = False) -> None:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_gpu else "gloo")
        self.dist = dist
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.fp16_gradients = fp16_gradients

    def wrap_model(self, model):
        from torch.nn.parallel import DistributedDataParallel

        # a batch may lack a scenario: its CGC slice then has no gradient this step
        ddp = DistributedDataParallel(model, find_unused_parameters=True)
        if self.fp16_gradients:  # train.gradient_compression fp16: the dense buckets travel as float16
            ddp.register_comm_hook(None, _fp16_dense_buckets)
        return ddp

    def broadcast_state(self, model, opt):
        for t in model.state_dict().values():
            self.dist.broadcast(t, src=0)

    def mean(self, value: float) -> float:
        return self.means([value])[0]

    def means(self, values: list[float]) -> list[float]:
        t = torch.tensor(values, dtype=torch.float64)
        self.dist.all_reduce(t)
        return (t / self.size).tolist()

    def share(self, value: float | None) -> float | None:
        box = [value]
        self.dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: int) -> list[int]:
        out = [torch.zeros(1, dtype=torch.int64) for _ in range(self.size)]
        self.dist.all_gather(out, torch.tensor([value], dtype=torch.int64))
        return [int(t[0]) for t in out]


def _fp16_dense_buckets(state, bucket):  # no annotations: DDP checks them against its own types
    """DDP comm hook: dense buckets allreduced as float16 (DDP's own fp16 hook); the id tables'
    sparse gradients (their own buckets) as they are: float16 sparse tensors cannot be summed."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import (
        allreduce_hook,
        fp16_compress_hook,
    )

    return (allreduce_hook if bucket.buffer().is_sparse else fp16_compress_hook)(state, bucket)


def distribution(launcher: str, use_gpu: bool, gradient_compression: str = "none") -> Local:
    fp16 = gradient_compression == "fp16"
    if launcher == "horovod":
        return Horovod(fp16)
    if launcher == "torch_distributor":
        return TorchDDP(use_gpu, fp16)
    return Local()  # one process: nothing travels


HOROVOD_VERBOSE = 0


def before_spark(cfg: Config) -> None:
    """Call before the driver's SparkSession exists.

    ``horovod.spark.run`` checks how Horovod was built in a *forked* child process
    (``horovod.common.util._check_extension_lambda``). A fork taken while py4j connections
    are open copies their sockets; the child's garbage collector then closes connections
    that only the parent's threads still used, and the parent's next py4j call on one of them
    fails (``Exception while sending command ... ConnectionResetError``, then a retry).
    Running the (cached) check before Spark starts makes that fork harmless.
    """
    if cfg.train.launcher == "horovod":
        from horovod.common.util import gloo_built

        gloo_built(verbose=HOROVOD_VERBOSE)


def launch(worker: Callable[[Any], dict | None], payload: Any, cfg: Config) -> dict | None:
    """Run ``worker(payload)`` on ``train.num_proc`` processes (rank 0's result returned).

    Where the processes run on the executors (Horovod; TorchDistributor without
    ``train.local_mode``), :func:`hinet_spark.ops.shipping.prepare` first checks that the
    executors can import what training needs, and carries the project to them if they lack only
    that. Horovod's worker processes run the executors' interpreter (``spark.pyspark.python``),
    not the driver's path, and their output is streamed to the driver's log."""
    t = cfg.train
    on_executors = t.launcher == "horovod" or (t.launcher == "torch_distributor" and not t.local_mode)
    fn, args, unwrap = worker, (payload,), (lambda r: r)
    spark = None
    if on_executors:
        from pyspark.sql import SparkSession

        from hinet_spark.ops import shipping

        spark = SparkSession.getActiveSession()
        if spark is not None:
            fn, args, unwrap = shipping.prepare(spark, worker, (payload,),
                                                ("horovod",) if t.launcher == "horovod" else ())
    if t.launcher == "horovod":
        import horovod.spark

        from hinet_spark.ops.shipping import executor_python

        executable = (executor_python(spark) if spark is not None else None) or sys.executable
        results = horovod.spark.run(fn, args=args, num_proc=t.num_proc, use_gloo=True, start_timeout=600,
                                    verbose=HOROVOD_VERBOSE, executable=executable,
                                    stdout=sys.stdout, stderr=sys.stderr)
        result = unwrap(results[0])
    elif t.launcher == "torch_distributor":
        from pyspark.ml.torch.distributor import TorchDistributor

        logger.info("TorchDistributor: %d processes %s, %s", t.num_proc,
                    "on the driver (train.local_mode)" if t.local_mode else "on the executors",
                    "GPU + NCCL" if t.use_gpu else "CPU + Gloo")
        result = unwrap(TorchDistributor(num_processes=t.num_proc, local_mode=t.local_mode,
                                         use_gpu=t.use_gpu).run(fn, *args))
    else:
        result = worker(payload)
    return result
