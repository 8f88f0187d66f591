"""A plain HiNet: one nn.Module per expert, Python loops over experts and scenarios.

Written straight from Eq. 1-8 as an independent check of the vectorized
``hinet_spark.models.hinet.HiNet`` (tests) and as the baseline of benchmarks/bench_model.py.
``load_from`` copies a vectorized model's weights so both compute the same function.
"""

from __future__ import annotations

import torch
from torch import nn

from hinet_spark.models.blocks import MLP, FeatureEmbedding
from hinet_spark.models.hinet import HiNet
from hinet_spark.models.spec import ModelSpec


class Tower(nn.Module):
    def __init__(self, in_dim: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        self.mlp = MLP(in_dim, hidden)
        self.out = nn.Linear(self.mlp.out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.mlp(x)).squeeze(-1)


class LoopHiNet(nn.Module):
    def __init__(self, spec: ModelSpec) -> None:
        super().__init__()
        c = spec.config
        self.m, self.t = spec.n_scenarios, spec.n_tasks
        self.k, self.ns, self.np_ = c.sei_experts, c.task_shared_experts, c.task_specific_experts
        self.embedding = FeatureEmbedding(spec.vocab_sizes, c.embedding_dim)
        d = self.embedding.out_dim
        self.shared_experts = nn.ModuleList(MLP(d, c.sei_hidden) for _ in range(self.k))
        self.shared_gate = nn.Linear(d, self.k)
        self.specific_experts = nn.ModuleList(
            nn.ModuleList(MLP(d, c.sei_hidden) for _ in range(self.k)) for _ in range(self.m))
        self.specific_gates = nn.ModuleList(nn.Linear(d, self.k) for _ in range(self.m))
        self.san_emb = nn.Embedding(self.m, c.scenario_emb_dim)
        self.san_w = nn.ParameterList(
            nn.Parameter(torch.zeros(self.m - 1, c.scenario_emb_dim)) for _ in range(self.m))
        h = c.sei_hidden[-1]
        per = self.ns + self.t * self.np_
        self.cgc_experts = nn.ModuleList(
            nn.ModuleList(MLP(3 * h, c.cgc_hidden) for _ in range(per)) for _ in range(self.m))
        self.cgc_gates = nn.ModuleList(
            nn.ModuleList(nn.Linear(3 * h, self.ns + self.np_) for _ in range(self.t)) for _ in range(self.m))
        self.towers = nn.ModuleList(
            nn.ModuleList(Tower(c.cgc_hidden[-1], c.tower_hidden) for _ in range(self.t)) for _ in range(self.m))

    @staticmethod
    def _sei(x, experts, gate):
        g = torch.softmax(gate(x), dim=-1)  # Eq. 2
        return sum(g[:, k:k + 1] * e(x) for k, e in enumerate(experts))  # Eq. 1 / 3

    def forward(self, ids: torch.Tensor, scenario: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids)
        big_g = self._sei(x, self.shared_experts, self.shared_gate)
        s_all = [self._sei(x, self.specific_experts[m], self.specific_gates[m]) for m in range(self.m)]
        out = x.new_zeros(x.shape[0], self.t)
        for i in range(self.m):
            rows = (scenario == i).nonzero(as_tuple=True)[0]
            if rows.numel() == 0:
                continue
            others = [m for m in range(self.m) if m != i]
            w = torch.softmax(self.san_w[i] @ self.san_emb.weight[i], dim=-1)  # Eq. 5, M-1 outputs
            a_i = sum(w[n] * s_all[m][rows] for n, m in enumerate(others))  # Eq. 4
            c_i = torch.cat([big_g[rows], s_all[i][rows], a_i], dim=-1)
            experts = [e(c_i) for e in self.cgc_experts[i]]
            for j in range(self.t):
                mine = experts[:self.ns] + experts[self.ns + j * self.np_: self.ns + (j + 1) * self.np_]
                delta = torch.softmax(self.cgc_gates[i][j](c_i), dim=-1)  # Eq. 7
                t_ij = sum(delta[:, k:k + 1] * e for k, e in enumerate(mine))  # Eq. 6
                out[rows, j] = self.towers[i][j](t_ij)  # Eq. 8
        return out

    @torch.no_grad()
    def load_from(self, vec: HiNet) -> "LoopHiNet":
        def copy_mlp(dst: nn.Sequential, stacked, e: int) -> None:
            linears = [mod for mod in dst if isinstance(mod, nn.Linear)]
            for lin, layer in zip(linears, stacked.layers):
                copy_linear(lin, layer, e)

        def copy_linear(dst: nn.Linear, stacked, e: int) -> None:
            w, b = stacked.expert(e)
            dst.weight.copy_(w)
            dst.bias.copy_(b)

        self.embedding.load_state_dict(vec.embedding.state_dict())
        for k in range(self.k):
            copy_mlp(self.shared_experts[k], vec.shared_sei.experts, k)
        copy_linear(self.shared_gate, vec.shared_sei.gate, 0)
        for m in range(self.m):
            for k in range(self.k):
                copy_mlp(self.specific_experts[m][k], vec.specific_sei.experts, m * self.k + k)
            copy_linear(self.specific_gates[m], vec.specific_sei.gate, m)
            self.san_w[m].copy_(vec.san.w_a[m])
        self.san_emb.weight.copy_(vec.san.embedding.weight)
        per = self.ns + self.t * self.np_
        for m in range(self.m):
            for e in range(per):
                copy_mlp(self.cgc_experts[m][e], vec.cgc.experts, m * per + e)
            for j in range(self.t):
                copy_linear(self.cgc_gates[m][j], vec.cgc.gates, m * self.t + j)
                tower = self.towers[m][j]
                copy_mlp(tower.mlp, vec.towers.mlp, m * self.t + j)
                copy_linear(tower.out, vec.towers.out, m * self.t + j)
        return self
