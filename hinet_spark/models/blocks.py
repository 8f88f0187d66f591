"""Building blocks shared by HiNet and the baselines.

Shapes: B = batch, F = sparse features, D = embedding dim, E = experts, M = scenarios,
T = tasks, H = hidden width. Stacked experts use the expert-major layout [E, B, H] so that
every layer of all experts is one batched matmul (``torch.baddbmm``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


class FeatureEmbedding(nn.Module):
    """One shared table for all sparse features, each with its own id range.

    ids [B, F] (feature f's ids in [0, vocab_sizes[f])) -> x [B, F * D].
    """

    def __init__(self, vocab_sizes: Sequence[int], dim: int) -> None:
        super().__init__()
        offsets = torch.tensor([0, *list(vocab_sizes)[:-1]], dtype=torch.long).cumsum(0)
        self.register_buffer("offsets", offsets, persistent=False)
        self.table = nn.Embedding(int(sum(vocab_sizes)), dim)
        nn.init.normal_(self.table.weight, std=0.05)
        self.out_dim = len(vocab_sizes) * dim

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.table(ids + self.offsets).flatten(1)


class MLP(nn.Sequential):
    """Linear + ReLU layers (ReLU after every layer, the last one too)."""

    def __init__(self, in_dim: int, hidden: Sequence[int]) -> None:
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width), nn.ReLU()]
            in_dim = width
        super().__init__(*layers)
        self.out_dim = in_dim


class StackedLinear(nn.Module):
    """``E`` linear maps of one shape: x [B, in] (shared) or [E', B, in] -> [E', B, out].

    The weight is stored [in, E, out] so that a shared input needs one ``addmm`` against the
    free view [in, E * out]; per-expert inputs use ``baddbmm`` on the [E, in, out] view.
    ``experts=(first, count)`` applies only that contiguous block of the stack (E' = count),
    which is how a scenario's own experts are evaluated on that scenario's samples.
    Initialised like ``nn.Linear`` (uniform +-1/sqrt(in)) for every expert.
    """

    def __init__(self, n: int, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.n, self.in_dim, self.out_dim = n, in_dim, out_dim
        bound = 1.0 / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(in_dim, n, out_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, out_dim).uniform_(-bound, bound))

    def expert(self, e: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Expert e's (weight [out, in], bias [out]), as ``nn.Linear`` holds them."""
        return self.weight[:, e].t(), self.bias[e]

    def forward(self, x: torch.Tensor, experts: tuple[int, int] | None = None) -> torch.Tensor:
        w, b = self.weight, self.bias
        if experts is not None:
            first, count = experts
            w, b = w[:, first:first + count], b[first:first + count]
        e = w.shape[1]
        if x.dim() == 2:  # one GEMM for all experts: [B, in] @ [in, E * out]
            y = torch.addmm(b.reshape(1, -1), x, w.reshape(self.in_dim, e * self.out_dim))
            return y.view(x.shape[0], e, self.out_dim).transpose(0, 1)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(0, 1))


class StackedMLP(nn.Module):
    """``E`` independent MLPs of one shape (ReLU after every layer): -> [E, B, H_last]."""

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        dims = [in_dim, *hidden]
        self.layers = nn.ModuleList(StackedLinear(n, a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out_dim = dims[-1]

    def forward(self, x: torch.Tensor, experts: tuple[int, int] | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = torch.relu(layer(x, experts))
        return x


class StackedTower(nn.Module):
    """``E`` towers, an MLP then a linear to one logit: [E, B, in] -> logits [E, B]."""

    def __init__(self, n: int, in_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.mlp = StackedMLP(n, in_dim, hidden)
        self.out = StackedLinear(n, self.mlp.out_dim, 1)

    def forward(self, x: torch.Tensor, experts: tuple[int, int] | None = None) -> torch.Tensor:
        return self.out(self.mlp(x, experts), experts).squeeze(-1)


def mix(weights: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    """Gate-weighted sum of experts: weights [B, E], experts [E, B, H] -> [B, H]."""
    return torch.einsum("be,ebh->bh", weights, experts)


def gather_rows(per_group: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Row b of group index[b, k]: per_group [G, B, ...], index [B, K] -> [K, B, ...]."""
    rows = torch.arange(per_group.shape[1], device=index.device)
    return per_group[index.t(), rows.unsqueeze(0)]


def scenario_segments(scenario: torch.Tensor, n_scenarios: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Group a batch by scenario: (order, inverse, counts).

    ``x[order]`` lists scenario 0's samples first, then scenario 1's...; ``y[inverse]``
    puts rows computed in that order back in batch order; ``counts[i]`` is the size of
    scenario i's segment.
    """
    order = torch.argsort(scenario, stable=True)
    inverse = torch.empty_like(order)
    inverse[order] = torch.arange(order.numel(), device=order.device)
    counts = torch.bincount(scenario, minlength=n_scenarios).tolist()
    return order, inverse, counts


def own_heads(scenario: torch.Tensor, n_tasks: int) -> torch.Tensor:
    """Head indices ``m * T + t`` of each sample's own scenario: [B] -> [B, T]."""
    return scenario.unsqueeze(1) * n_tasks + torch.arange(n_tasks, device=scenario.device)
