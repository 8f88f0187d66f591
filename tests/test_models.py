"""HiNet, ablations and baselines: shapes, gates, routing, loss, golden values, reference."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from hinet_spark.config import load_config
from hinet_spark.models import MODELS, ModelSpec, build_model, compile_model
from hinet_spark.models.hinet import HiNet
from hinet_spark.models.loss import esmm_logits, hinet_loss, scenario_weights
from tests.reference_hinet import LoopHiNet

M, T, F_, V = 6, 2, 5, 40


def spec_for(name: str = "hinet", **overrides) -> ModelSpec:
    cfg = load_config().model
    return ModelSpec(dataclasses.replace(cfg, name=name, **overrides), (V,) * F_, M, T)


def batch(n: int = 64, seed: int = 0, scenario: int | None = None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, V, (n, F_), generator=g)
    s = torch.full((n,), scenario) if scenario is not None else torch.arange(n) % M
    return ids, s


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_keeps_the_contract(name):
    torch.manual_seed(0)
    model = build_model(spec_for(name))
    ids, s = batch()
    out = model(ids, s)
    assert out.shape == (64, T)
    assert torch.isfinite(out).all()
    out.sum().backward()  # differentiable end to end
    model.eval()
    assert model(ids[:3], s[:3]).shape == (3, T)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_esmm_output_is_ctr_times_cvr_and_trains_cvr_through_the_product(name):
    torch.manual_seed(0)
    towers = build_model(spec_for(name))
    esmm = build_model(spec_for(name, task_output="esmm"))
    esmm.load_state_dict(towers.state_dict())  # the same parameters: only the second tower's meaning changes
    ids, s = batch()
    raw, out = towers(ids, s).detach(), esmm(ids, s)
    p = torch.sigmoid(out)
    assert torch.equal(out[:, 0].detach(), raw[:, 0])  # CTR untouched
    expected = torch.sigmoid(raw[:, 0].double()) * torch.sigmoid(raw[:, 1].double())
    assert torch.allclose(p[:, 1].double(), expected, atol=1e-6)
    assert (p[:, 1] <= p[:, 0]).all()  # an order implies a click, for every row
    # the CTCVR term trains both towers through the product (ESMM); the CTR term only the first
    logits = raw.clone().requires_grad_()
    (ctcvr_grad,) = torch.autograd.grad(torch.nn.functional.binary_cross_entropy_with_logits(
        esmm_logits(logits)[:, 1], torch.ones(64)), logits)
    assert (ctcvr_grad[:, 0].abs() > 0).all() and (ctcvr_grad[:, 1].abs() > 0).all()
    (ctr_grad,) = torch.autograd.grad(esmm_logits(logits)[:, 0].sum(), logits)
    assert (ctr_grad[:, 1] == 0).all()


def test_unknown_model_name_is_an_error():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model(spec_for("nope"))


def test_gates_are_distributions():
    torch.manual_seed(0)
    model = HiNet(spec_for())
    ids, s = batch()
    x = model.embedding(ids)
    for sei in (model.shared_sei, model.specific_sei):
        g = sei.gate_weights(x)
        assert g.shape[-1] == 5
        torch.testing.assert_close(g.sum(-1), torch.ones(g.shape[:-1]))
    c = model.scenario_representation(x, s)
    for i in range(M):
        d = model.cgc.gate_weights(c[s == i], i)
        n_i = int((s == i).sum())
        assert d.shape == (T, n_i, 2 + 2)  # m_i shared + n_i^j specific experts per task gate
        torch.testing.assert_close(d.sum(-1), torch.ones(T, n_i))
    w = model.san.gate_weights(s)
    assert w.shape == (64, M - 1)  # SAN has M-1 outputs (Eq. 5)
    torch.testing.assert_close(w.sum(-1), torch.ones(64))


def test_san_gives_own_scenario_no_weight():
    torch.manual_seed(0)
    model = HiNet(spec_for())
    mat = model.san_matrix()
    assert mat.shape == (M, M)
    assert torch.all(mat.diagonal() == 0)
    torch.testing.assert_close(mat.sum(1), torch.ones(M))
    # A_i does not change when S_i changes (only the other scenarios feed it).
    s_all = torch.randn(M, 4, 64)
    scen = torch.full((4,), 2)
    a = model.san(s_all, scen)
    s_all2 = s_all.clone()
    s_all2[2] += 100.0
    torch.testing.assert_close(model.san(s_all2, scen), a)
    s_all2[3] += 1.0
    assert not torch.allclose(model.san(s_all2, scen), a)


def test_gradients_of_scenario_i_reach_only_its_cgc_and_towers():
    torch.manual_seed(0)
    model = HiNet(spec_for())
    i = 3
    ids, s = batch(32, scenario=i)
    model(ids, s).sum().backward()
    per = model.cgc.per_scenario
    for layer in model.cgc.experts.layers:
        g = layer.weight.grad
        for k in range(M):
            part = g[:, k * per:(k + 1) * per]  # weights are [in, E, out]
            assert (part.abs().sum() > 0) == (k == i), f"CGC experts of scenario {k}"
    gates = model.cgc.gates.weight.grad
    for head in range(M * T):
        assert (gates[:, head].abs().sum() > 0) == (head // T == i), f"CGC gate {head}"
    for layer in [*model.towers.mlp.layers, model.towers.out]:
        for head in range(M * T):
            assert (layer.weight.grad[:, head].abs().sum() > 0) == (head // T == i), f"tower {head}"
    # SAN: only scenario i's W_a row is used; the other scenarios' SEIs do get gradient.
    assert model.san.w_a.grad[i].abs().sum() > 0
    assert all(model.san.w_a.grad[k].abs().sum() == 0 for k in range(M) if k != i)
    assert model.specific_sei.experts.layers[0].weight.grad.abs().sum() > 0


def test_vectorized_hinet_equals_loop_reference():
    torch.manual_seed(1)
    vec = HiNet(spec_for())
    ref = LoopHiNet(spec_for()).load_from(vec)
    ids, _ = batch(256, seed=3)
    s = torch.randint(0, M, (256,), generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(vec(ids, s), ref(ids, s), atol=1e-5, rtol=1e-5)
    # and the gradients of the embedding agree too
    vec(ids, s).pow(2).sum().backward()
    ref(ids, s).pow(2).sum().backward()
    torch.testing.assert_close(vec.embedding.table.weight.grad, ref.embedding.table.weight.grad,
                               atol=1e-5, rtol=1e-4)


def test_loss_matches_hand_computation():
    # Two scenarios, two tasks, three samples: scenario 0 has samples 0 and 2, scenario 1 has 1.
    logits = torch.tensor([[0.0, 1.0], [2.0, -1.0], [-1.0, 0.5]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]])
    scen = torch.tensor([0, 1, 0])
    lam = torch.tensor([1.5, 3.0])

    def bce(z, y):
        p = 1 / (1 + math.exp(-z))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    # Loss_i^j sums scenario i's samples only, normalised by the batch size (3)
    s0_ctr = (bce(0.0, 1) + bce(-1.0, 1)) / 3
    s0_cvr = (bce(1.0, 0) + bce(0.5, 1)) / 3
    s1_ctr, s1_cvr = bce(2.0, 0) / 3, bce(-1.0, 0) / 3
    expected = 1.5 * (s0_ctr + s0_cvr) + 3.0 * (s1_ctr + s1_cvr)
    got = hinet_loss(logits, labels, scen, lam)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # a scenario absent from the batch contributes nothing
    only0 = hinet_loss(logits[[0, 2]], labels[[0, 2]], scen[[0, 2]], lam)
    expected0 = 1.5 * (bce(0.0, 1) + bce(-1.0, 1) + bce(1.0, 0) + bce(0.5, 1)) / 2
    assert only0.item() == pytest.approx(expected0, rel=1e-6)


def test_scenario_weights_are_reciprocal_shares():
    w = scenario_weights([600, 300, 100, 0])
    torch.testing.assert_close(w, torch.tensor([1000 / 600, 1000 / 300, 10.0, 0.0]))
    torch.testing.assert_close(scenario_weights([1, 3], {0: 1.0}), torch.tensor([1.0, 4 / 3]))
    with pytest.raises(ValueError, match="all zero"):
        scenario_weights([0, 0])


# Golden values: HiNet at torch.manual_seed(1234) with a tiny config, on a fixed batch.
GOLDEN = [[0.38401, -0.10959], [0.1541, 0.46584], [-0.13223, -0.4307], [-0.4023, -0.12203]]


def test_golden_forward_pass():
    torch.manual_seed(1234)
    model = HiNet(spec_for(embedding_dim=4, sei_hidden=(8, 4), cgc_hidden=(8, 4), tower_hidden=(4,),
                           scenario_emb_dim=3))
    ids = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13, 14], [39, 38, 37, 36, 35]])
    s = torch.tensor([0, 1, 4, 5])
    torch.testing.assert_close(model(ids, s), torch.tensor(GOLDEN), atol=1e-4, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hinet", "star"])
def test_compiled_model_gives_the_eager_loss_and_gradients(name):
    # train.compile / scoring.compile: torch.compile (inductor, dynamic shapes) of everything but
    # the id table, whose gradients are sparse as in training (SplitOptimizer). Two batch sizes,
    # the second without scenario 5: one graph serves both.
    torch.manual_seed(0)
    spec = spec_for(name, sei_hidden=(32, 16), cgc_hidden=(32, 16), tower_hidden=(16,))
    eager, twin = build_model(spec), build_model(spec)
    twin.load_state_dict(eager.state_dict())
    for model in (eager, twin):
        model.embedding.table.sparse = True
    compiled = compile_model(twin)
    for n, seed, scenario in ((256, 1, None), (100, 2, 0)):
        ids, s = batch(n, seed)
        if scenario is not None:
            s = s.clamp(max=M - 2)  # scenario M-1 absent
        y = torch.randint(0, 2, (n, T), generator=torch.Generator().manual_seed(seed)).float()
        losses = []
        for model in (eager, compiled):
            model.zero_grad(set_to_none=True)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(ids, s), y)
            loss.backward()
            losses.append(loss.detach())
        torch.testing.assert_close(losses[1], losses[0], rtol=1e-5, atol=1e-6)
        for (key, p), q in zip(eager.named_parameters(), twin.parameters()):
            assert (p.grad is None) == (q.grad is None), key
            if p.grad is not None:
                assert p.grad.is_sparse == q.grad.is_sparse == (key == "embedding.table.weight"), key
                torch.testing.assert_close(q.grad.to_dense(), p.grad.to_dense(), rtol=1e-4, atol=1e-6, msg=key)
