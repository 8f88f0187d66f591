"""HiNet (Zhou et al., ICDE'23), Eq. 1-8, vectorized.

Forward pass, for a batch of B samples each with its scenario index s_b:

    x      = Emb(ids)                                  [B, F*D]      shared embedding
    G      = SEI_sh(x)                                 [B, H]        Eq. 1-2
    S_m    = SEI_sp^m(x) for every scenario m          [M, B, H]     Eq. 3
    A_i    = sum_{m != i} softmax(W_a^i Emb(s_i)) S_m  [B, H]        Eq. 4-5 (SAN, M-1 outputs)
    C_i    = concat[G, S_i, A_i]                       [B, 3H]
    T_i^j  = softmax(W_i^j C_i) [E_th^i || E_tp^ij]    [B, T, H']    Eq. 6-7 (CGC of scenario i)
    y_i^j  = tower_i^j(T_i^j)                          [B, T]        Eq. 8 (logits)

Each sample takes its own scenario's path (i = s_b). All sub-experts of all SEIs (the shared
one and every scenario's) are one batched matmul per layer, on every sample (SAN needs every
S_m). The task extraction layer is routed: the batch is sorted by scenario once, and each
scenario's CGC experts, gates and towers run as stacked ops (all experts of that scenario in
one matmul per layer) on that scenario's segment only. So no Python loop runs over samples or
experts; one short loop runs over the M scenarios' segments, and no FLOP is spent on another
scenario's CGC. A scenario-i sample's gradient reaches only scenario i's CGC and towers (the
other scenarios' SEIs still receive it through SAN, as Eq. 4 says).

Ablations of Table III are flags of the same module (``use_san``, ``scenario_gating``,
``task_gating``); "w/o hierarchy" is :class:`FlatCGC` in ``baselines.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from hinet_spark.models.blocks import (
    FeatureEmbedding,
    StackedLinear,
    StackedMLP,
    StackedTower,
    gather_rows,
    mix,
    scenario_segments,
)
from hinet_spark.models.spec import ModelSpec


class SEI(nn.Module):
    """Sub-Expert Integration for ``n_groups`` independent SEIs on the same input (Eq. 1-3).

    x [B, in] -> [n_groups, B, H]: group g's K sub-experts mixed by its softmax gate on x.
    With ``gating=False`` the sub-experts are averaged (the "w/o scenario gating" ablation).
    """

    def __init__(self, n_groups: int, n_experts: int, in_dim: int, hidden: tuple[int, ...],
                 gating: bool = True) -> None:
        super().__init__()
        self.n_groups, self.n_experts = n_groups, n_experts
        self.experts = StackedMLP(n_groups * n_experts, in_dim, hidden)
        self.gate = StackedLinear(n_groups, in_dim, n_experts) if gating else None
        self.out_dim = self.experts.out_dim

    def gate_weights(self, x: torch.Tensor) -> torch.Tensor:
        """[n_groups, B, K], each row a softmax (uniform without gating)."""
        if self.gate is None:
            return x.new_full((self.n_groups, x.shape[0], self.n_experts), 1.0 / self.n_experts)
        return torch.softmax(self.gate(x), dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.experts(x)  # [G*K, B, H]
        q = q.view(self.n_groups, self.n_experts, x.shape[0], -1)  # [G, K, B, H]
        g = self.gate_weights(x)  # [G, B, K]
        return torch.einsum("gbk,gkbh->gbh", g, q)


class SAN(nn.Module):
    """Scenario-aware Attentive Network (Eq. 4-5).

    W_a^i in R^{(M-1) x d}: scenario i's gate has M-1 outputs, one per *other* scenario, so
    the own scenario gets no weight by construction (``others[i]`` lists them in order).
    """

    def __init__(self, n_scenarios: int, emb_dim: int) -> None:
        super().__init__()
        m = n_scenarios
        self.embedding = nn.Embedding(m, emb_dim)
        self.w_a = nn.Parameter(torch.empty(m, m - 1, emb_dim))
        nn.init.xavier_uniform_(self.w_a)
        others = torch.tensor([[k for k in range(m) if k != i] for i in range(m)], dtype=torch.long)
        self.register_buffer("others", others, persistent=False)  # [M, M-1]

    def gate_weights(self, scenario: torch.Tensor) -> torch.Tensor:
        """softmax(W_a^i Emb(s_i)): [B] -> [B, M-1]."""
        e = self.embedding(scenario)  # [B, d]
        return torch.softmax(torch.einsum("bd,bod->bo", e, self.w_a[scenario]), dim=-1)

    def forward(self, s_all: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """s_all [M, B, H] (every scenario's S_m) -> A_i [B, H]."""
        others = gather_rows(s_all, self.others[scenario])  # [M-1, B, H]
        return mix(self.gate_weights(scenario), others)

    def weight_matrix(self) -> torch.Tensor:
        """[M, M]: row i = the weight scenario i gives each scenario (0 on the diagonal); Fig. 3."""
        m = self.w_a.shape[0]
        idx = torch.arange(m, device=self.w_a.device)
        w = self.gate_weights(idx)  # [M, M-1]
        out = w.new_zeros(m, m)
        out.scatter_(1, self.others, w)
        return out


class ScenarioCGC(nn.Module):
    """One CGC per scenario (Eq. 6-7), the weights of all scenarios stacked.

    Scenario i has ``m`` task-shared experts and ``n`` task-specific experts per task; task
    j's gate sees ``m + n`` experts (the shared ones, then its own). ``forward(c, i)`` takes
    the representations C_i [n_i, in] of scenario i's samples -> T_i [T, n_i, H'].
    """

    def __init__(self, n_scenarios: int, n_tasks: int, n_shared: int, n_specific: int,
                 in_dim: int, hidden: tuple[int, ...], gating: bool = True) -> None:
        super().__init__()
        self.m, self.t, self.n_shared, self.n_specific = n_scenarios, n_tasks, n_shared, n_specific
        self.per_scenario = n_shared + n_tasks * n_specific
        self.experts = StackedMLP(n_scenarios * self.per_scenario, in_dim, hidden)
        self.gates = StackedLinear(n_scenarios * n_tasks, in_dim, n_shared + n_specific) if gating else None
        self.out_dim = self.experts.out_dim
        # expert index (within a scenario) seen by task j's gate: shared ones, then task j's
        sel = [list(range(n_shared)) + [n_shared + j * n_specific + k for k in range(n_specific)]
               for j in range(n_tasks)]
        self.register_buffer("task_experts", torch.tensor(sel, dtype=torch.long), persistent=False)

    def gate_weights(self, c: torch.Tensor, i: int) -> torch.Tensor:
        """delta_i^j(C_i): [T, n_i, m + n], each a softmax (uniform without task gating)."""
        k = self.n_shared + self.n_specific
        if self.gates is None:
            return c.new_full((self.t, c.shape[0], k), 1.0 / k)
        return torch.softmax(self.gates(c, (i * self.t, self.t)), dim=-1)

    def forward(self, c: torch.Tensor, i: int) -> torch.Tensor:
        experts = self.experts(c, (i * self.per_scenario, self.per_scenario))  # [E, n_i, H]
        chosen = experts[self.task_experts]  # [T, m + n, n_i, H]
        return torch.einsum("tbk,tkbh->tbh", self.gate_weights(c, i), chosen)


class HiNet(nn.Module):
    """HiNet: embedding -> scenario extraction layer -> task extraction layer -> towers.

    ``forward(ids [B, F] long, scenario [B] long) -> logits [B, T]`` for each sample's own
    scenario; probabilities are ``sigmoid(logits)``. The loss lives outside (``loss.py``).
    """

    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c = spec.config
        m, t = spec.n_scenarios, spec.n_tasks
        self.spec = spec
        self.embedding = FeatureEmbedding(spec.vocab_sizes, c.embedding_dim)
        d_in = self.embedding.out_dim
        self.shared_sei = SEI(1, c.sei_experts, d_in, c.sei_hidden, c.scenario_gating)
        self.specific_sei = SEI(m, c.sei_experts, d_in, c.sei_hidden, c.scenario_gating)
        self.san = SAN(m, c.scenario_emb_dim) if c.use_san else None
        h = self.shared_sei.out_dim
        c_dim = h * (3 if c.use_san else 2)
        self.cgc = ScenarioCGC(m, t, c.task_shared_experts, c.task_specific_experts, c_dim,
                               c.cgc_hidden, c.task_gating)
        self.towers = StackedTower(m * t, self.cgc.out_dim, c.tower_hidden)

    def scenario_representation(self, x: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        """C_i = concat[G, S_i, A_i]: [B, 3H] (without SAN: [B, 2H])."""
        g = self.shared_sei(x)[0]  # [B, H]
        s_all = self.specific_sei(x)  # [M, B, H]
        s_own = gather_rows(s_all, scenario.unsqueeze(1))[0]  # [B, H]
        parts = [g, s_own]
        if self.san is not None:
            parts.append(self.san(s_all, scenario))
        return torch.cat(parts, dim=-1)

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        c = self.scenario_representation(x, scenario)  # [B, 3H]
        # Task extraction layer: each scenario's CGC and towers run on that scenario's
        # samples only (a contiguous segment after sorting by scenario).
        n_tasks = self.spec.n_tasks
        order, inverse, counts = scenario_segments(scenario, self.spec.n_scenarios)
        c_sorted = c[order]
        out, start = [], 0
        for i, n in enumerate(counts):
            if n:
                t = self.cgc(c_sorted[start:start + n], i)  # T_i^j: [T, n_i, H']
                out.append(self.towers(t, (i * n_tasks, n_tasks)).t())  # y_i^j: [n_i, T]
                start += n
        return torch.cat(out)[inverse]  # [B, T] in batch order

    def san_matrix(self) -> torch.Tensor | None:
        return None if self.san is None else self.san.weight_matrix()
