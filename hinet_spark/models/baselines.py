"""The paper's baselines on HiNet's contract, adapted as the paper says (Sec. IV-A-2):
every task of every scenario is its own task, so a model has M x T heads and each sample
is read from its own scenario's T heads.

``forward(ids [B, F], scenario [B]) -> logits [B, T]`` for every model here.
"""

from __future__ import annotations

import torch
from torch import nn

from hinet_spark.models.blocks import (
    MLP,
    FeatureEmbedding,
    StackedLinear,
    StackedMLP,
    StackedTower,
    gather_rows,
    mix,
    own_heads,
)
from hinet_spark.models.spec import ModelSpec


class _MultiHead(nn.Module):
    """Shared plumbing: the embedding and M x T towers read at each sample's own heads."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        self.spec = spec
        self.n_heads = spec.n_scenarios * spec.n_tasks
        self.embedding = FeatureEmbedding(spec.vocab_sizes, spec.config.embedding_dim)

    def build_towers(self, in_dim: int) -> None:
        self.towers = StackedTower(self.n_heads, in_dim, self.spec.config.tower_hidden)

    def own(self, per_head: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """per_head [M*T, B] -> [B, T] at each sample's own scenario."""
        return gather_rows(per_head, own_heads(scenario, self.spec.n_tasks)).t()


class SharedBottom(_MultiHead):
    """Caruana (1997): one bottom MLP shared by all heads (hard parameter sharing)."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.bottom = MLP(self.embedding.out_dim, spec.config.bottom_hidden)
        self.build_towers(self.bottom.out_dim)

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        h = self.bottom(self.embedding(ids))
        return self.own(self.towers(h.expand(self.n_heads, *h.shape)), scenario)


class MMoE(_MultiHead):
    """Ma et al. (2018): shared experts, one softmax gate per head."""

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        c = spec.config
        d = self.embedding.out_dim
        self.experts = StackedMLP(c.n_experts, d, c.expert_hidden)
        self.gates = StackedLinear(self.n_heads, d, c.n_experts)
        self.build_towers(self.experts.out_dim)

    def head_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """All heads' logits [M*T, B]."""
        x = self.embedding(ids)
        experts = self.experts(x)  # [E, B, H]
        gates = torch.softmax(self.gates(x), dim=-1)  # [M*T, B, E]
        reps = torch.einsum("hbe,ebd->hbd", gates, experts)
        return self.towers(reps)

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        return self.own(self.head_logits(ids), scenario)


class HMoE(MMoE):
    """Li et al. (2020): MMoE per scenario-task, then a stacked step in the label space.

    Scenario i's task-j logit is a gated mix over all scenarios' task-j logits, where the
    other scenarios' logits are detached (they inform but are not trained by i's samples).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        self.label_gates = StackedLinear(self.n_heads, self.embedding.out_dim, spec.n_scenarios)

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        m, t = self.spec.n_scenarios, self.spec.n_tasks
        z = self.head_logits(ids).view(m, t, -1)  # [M, T, B]
        own_mask = nn.functional.one_hot(scenario, m).t().unsqueeze(1).bool()  # [M, 1, B]
        z = torch.where(own_mask, z, z.detach())
        beta = torch.softmax(self.label_gates(self.embedding(ids)), dim=-1)  # [M*T, B, M]
        beta = gather_rows(beta, own_heads(scenario, t))  # [T, B, M]: own scenario's gates
        return torch.einsum("tbm,mtb->bt", beta, z)


class PLE(_MultiHead):
    """Tang et al. (2020): ``levels`` stacked CGC extraction layers over the M x T heads.

    Each level has shared experts and per-head specific experts; head h's gate mixes the
    shared experts and its own; below the top level a shared gate mixes all experts into the
    next level's shared input. ``levels=1`` is a single CGC: HiNet "w/o hierarchy" (Table III).
    """

    def __init__(self, spec: ModelSpec, levels: int | None = None, n_shared: int | None = None,
                 n_specific: int | None = None, hidden: tuple[int, ...] | None = None) -> None:
        super().__init__(spec)
        c = spec.config
        self.levels = levels or c.ple_levels
        self.n_shared = n_shared or c.task_shared_experts
        self.n_specific = n_specific or c.task_specific_experts
        hidden = hidden or c.expert_hidden
        d = self.embedding.out_dim
        hh, ns, npe = self.n_heads, self.n_shared, self.n_specific
        self.shared, self.specific, self.head_gates, self.shared_gates = (
            nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), nn.ModuleList())
        for level in range(self.levels):
            self.shared.append(StackedMLP(ns, d, hidden))
            self.specific.append(StackedMLP(hh * npe, d, hidden))
            self.head_gates.append(StackedLinear(hh, d, ns + npe))
            if level < self.levels - 1:
                self.shared_gates.append(StackedLinear(1, d, ns + hh * npe))
            d = self.shared[-1].out_dim
        self.build_towers(d)

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        hh, npe = self.n_heads, self.n_specific
        x = self.embedding(ids)
        shared_in = x
        head_in = x.expand(hh, *x.shape)  # [Hh, B, d]
        for level in range(self.levels):
            sh = self.shared[level](shared_in)  # [ns, B, h]
            sp = self.specific[level](head_in.repeat_interleave(npe, dim=0))  # [Hh*np, B, h]
            gates = torch.softmax(self.head_gates[level](head_in), dim=-1)  # [Hh, B, ns+np]
            experts = torch.cat([sh.expand(hh, *sh.shape), sp.view(hh, npe, *sp.shape[1:])], dim=1)
            head_out = torch.einsum("hbk,hkbd->hbd", gates, experts)  # [Hh, B, h]
            if level < self.levels - 1:
                g = torch.softmax(self.shared_gates[level](shared_in)[0], dim=-1)  # [B, ns+Hh*np]
                shared_in = mix(g, torch.cat([sh, sp], dim=0))
            head_in = head_out
        return self.own(self.towers(head_in), scenario)


class FlatCGC(PLE):
    """HiNet w/o hierarchy (Table III): one CGC over all scenario x task heads, on x."""

    def __init__(self, spec: ModelSpec) -> None:
        c = spec.config
        super().__init__(spec, levels=1, n_shared=c.task_shared_experts,
                         n_specific=c.task_specific_experts, hidden=c.cgc_hidden)


class PartitionedNorm(nn.Module):
    """STAR's partitioned normalization: statistics and affine terms per scenario.

    y = (gamma * gamma_s) * (x - mu_s) / sqrt(var_s + eps) + (beta + beta_s), with the
    scenario's batch statistics in training and its running averages in evaluation.
    """

    def __init__(self, n_scenarios: int, dim: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.gamma = nn.Parameter(torch.ones(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.gamma_s = nn.Parameter(torch.ones(n_scenarios, dim))
        self.beta_s = nn.Parameter(torch.zeros(n_scenarios, dim))
        self.register_buffer("running_mean", torch.zeros(n_scenarios, dim))
        self.register_buffer("running_var", torch.ones(n_scenarios, dim))

    def forward(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        m = self.gamma_s.shape[0]
        if self.training:
            count = torch.bincount(scenario, minlength=m).clamp_min(1).unsqueeze(1).to(x.dtype)
            mean = x.new_zeros(m, x.shape[1]).index_add_(0, scenario, x) / count
            var = x.new_zeros(m, x.shape[1]).index_add_(0, scenario, (x - mean[scenario]) ** 2) / count
            present = (torch.bincount(scenario, minlength=m) > 0).unsqueeze(1)
            with torch.no_grad():
                mom = self.momentum
                self.running_mean.copy_(torch.where(present, (1 - mom) * self.running_mean + mom * mean, self.running_mean))
                self.running_var.copy_(torch.where(present, (1 - mom) * self.running_var + mom * var, self.running_var))
        else:
            mean, var = self.running_mean, self.running_var
        normed = (x - mean[scenario]) / torch.sqrt(var[scenario] + self.eps)
        return self.gamma * self.gamma_s[scenario] * normed + self.beta + self.beta_s[scenario]


class STAR(_MultiHead):
    """Sheng et al. (2021): star topology FCN, partitioned normalization, auxiliary network.

    Head h's FCN layer uses weights W * W_h and bias b + b_h (shared x specific); here the
    heads are the M x T scenario-task pairs. An auxiliary network on [Emb(scenario), x] adds
    one logit per task.
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__(spec)
        c = spec.config
        d = self.embedding.out_dim
        self.pn = PartitionedNorm(spec.n_scenarios, d)
        dims = [d, *c.bottom_hidden, 1]
        self.shared_w = nn.ParameterList()
        self.shared_b = nn.ParameterList()
        self.head_w = nn.ParameterList()
        self.head_b = nn.ParameterList()
        for a, b in zip(dims[:-1], dims[1:]):
            bound = 1.0 / a ** 0.5
            self.shared_w.append(nn.Parameter(torch.empty(1, a, b).uniform_(-bound, bound)))
            self.shared_b.append(nn.Parameter(torch.zeros(1, 1, b)))
            self.head_w.append(nn.Parameter(torch.ones(self.n_heads, a, b)))
            self.head_b.append(nn.Parameter(torch.zeros(self.n_heads, 1, b)))
        self.scenario_emb = nn.Embedding(spec.n_scenarios, c.scenario_emb_dim)
        self.aux = nn.Sequential(MLP(d + c.scenario_emb_dim, (c.bottom_hidden[-1],)),
                                 nn.Linear(c.bottom_hidden[-1], spec.n_tasks))

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        emb = self.embedding(ids)
        x = self.pn(emb, scenario)
        h = x.expand(self.n_heads, *x.shape)  # [Hh, B, d]
        last = len(self.shared_w) - 1
        for i in range(len(self.shared_w)):
            w = self.shared_w[i] * self.head_w[i]
            b = self.shared_b[i] + self.head_b[i]
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = torch.relu(h)
        main = self.own(h.squeeze(-1), scenario)  # [B, T]
        aux = self.aux(torch.cat([self.scenario_emb(scenario), emb], dim=-1))
        return main + aux
