"""Optimizers at production vocabulary sizes: sparse id tables, dense everything else.

With ``train.sparse_embeddings`` (default) the shared id table of every model
(:class:`hinet_spark.models.blocks.FeatureEmbedding`) produces *sparse* gradients: only the
rows a batch looked up. Those rows are updated by ``torch.optim.SparseAdam`` (lazy Adam: a
row's moments move only when the row is used) and exchanged between ranks as sparse tensors
(Horovod allgathers indices and values; DDP on Gloo reduces sparse tensors), so the work and
the bytes per step follow the batch, not the vocabulary. The dense layers keep ``Adam``.

The model's math is unchanged: a sparse gradient holds exactly the dense gradient's non-zero
rows (tests/test_optim.py checks one SGD step both ways to 1e-6). What changes is Adam's
bookkeeping for rows a batch did not touch (dense Adam still moves them by their old
momentum; lazy Adam leaves them), which is the usual choice for recommendation models.

NCCL (GPU DDP) cannot reduce sparse tensors: there the tables stay dense
(:func:`use_sparse`).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from hinet_spark.models.blocks import FeatureEmbedding

logger = logging.getLogger(__name__)


def id_tables(model: nn.Module) -> list[nn.Embedding]:
    """The id tables (the big ones): each :class:`FeatureEmbedding`'s table."""
    return [m.table for m in model.modules() if isinstance(m, FeatureEmbedding)]


def use_sparse(requested: bool, launcher: str, use_gpu: bool) -> bool:
    if requested and launcher == "torch_distributor" and use_gpu:
        logger.info("train.sparse_embeddings: dense id tables with TorchDistributor on GPUs (NCCL has no "
                    "sparse allreduce)")
        return False
    return requested


class SplitOptimizer:
    """``Adam`` for the dense parameters and, with sparse tables, ``SparseAdam`` for them;
    one object with the optimizer methods training uses."""

    def __init__(self, model: nn.Module, lr: float, sparse: bool, weight_decay: float = 0.0) -> None:
        tables = id_tables(model) if sparse else []
        for t in tables:
            t.sparse = True
        in_tables = {id(t.weight) for t in tables}
        named = list(model.named_parameters())
        self.dense_params = [(n, p) for n, p in named if id(p) not in in_tables]
        self.sparse_params = [(n, p) for n, p in named if id(p) in in_tables]
        # weight decay (L2, Adam's own) on the dense parameters: SparseAdam has none
        self.dense = torch.optim.Adam([p for _, p in self.dense_params], lr=lr, weight_decay=weight_decay)
        self.sparse = torch.optim.SparseAdam([p for _, p in self.sparse_params], lr=lr) if tables else None

    @property
    def parts(self) -> list[torch.optim.Optimizer]:
        return [o for o in (self.dense, self.sparse) if o is not None]

    def zero_grad(self) -> None:
        for o in self.parts:
            # set_to_none (torch >= 2.0's default): never a dense zero gradient of a table. Not
            # passed by name: Horovod's wrapped zero_grad() takes no arguments
            o.zero_grad()

    def step(self) -> None:
        for o in self.parts:
            o.step()

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict(), "sparse": self.sparse.state_dict() if self.sparse else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.dense.load_state_dict(state["dense"])
        if self.sparse is not None and state.get("sparse") is not None:
            self.sparse.load_state_dict(state["sparse"])


def bytes_per_step(model: nn.Module) -> int:
    """What one rank contributes to the gradient exchange of the last backward pass: every
    dense gradient whole; a sparse gradient's values and row indices."""
    total = 0
    for p in model.parameters():
        g = p.grad
        if g is None:
            continue
        if g.is_sparse:
            g = g.coalesce()
            total += g.values().numel() * g.values().element_size() + g.indices().numel() * 8
        else:
            total += g.numel() * g.element_size()
    return total
