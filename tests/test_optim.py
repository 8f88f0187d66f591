"""Sparse id tables: the same math as dense gradients, only the touched rows updated and sent."""

from __future__ import annotations

import copy

import torch

from hinet_spark.config import ModelSection
from hinet_spark.models import ModelSpec, build_model
from hinet_spark.models.loss import hinet_loss
from hinet_spark.train.optim import SplitOptimizer, bytes_per_step, id_tables

VOCAB = (22, 22, 8, 50_002, 20_002)


def _batch(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.stack([torch.randint(0, v, (n,), generator=g) for v in VOCAB], 1)
    return ids, torch.randint(0, 3, (n,), generator=g), torch.randint(0, 2, (n, 2), generator=g).float()


def _model(name="hinet"):
    torch.manual_seed(0)
    section = ModelSection(name=name, embedding_dim=8, sei_hidden=(16,), cgc_hidden=(16,), tower_hidden=(8,))
    return build_model(ModelSpec(section, VOCAB, 3))


def test_one_sgd_step_sparse_equals_dense():
    for name in ("hinet", "mmoe"):
        dense = _model(name)
        sparse = copy.deepcopy(dense)
        for t in id_tables(sparse):
            t.sparse = True
        ids, s, y = _batch()
        w = torch.ones(3)
        for m in (dense, sparse):
            opt = torch.optim.SGD(m.parameters(), lr=0.5)
            hinet_loss(m(ids, s), y, s, w).backward()
            opt.step()
        assert id_tables(sparse)[0].weight.grad.is_sparse and not id_tables(dense)[0].weight.grad.is_sparse
        for (n, a), b in zip(dense.named_parameters(), sparse.parameters()):
            assert torch.allclose(a, b, atol=1e-6), n


def test_split_optimizer_updates_only_touched_rows_and_sends_less():
    model = _model()
    before = id_tables(model)[0].weight.detach().clone()
    opt = SplitOptimizer(model, 0.01, sparse=True)
    assert len(opt.sparse_params) == 1 and opt.sparse_params[0][0] == "embedding.table.weight"
    ids, s, y = _batch()
    opt.zero_grad()
    hinet_loss(model(ids, s), y, s, torch.ones(3)).backward()
    sent_sparse = bytes_per_step(model)
    opt.step()
    after = id_tables(model)[0].weight.detach()
    changed = (after != before).any(dim=1).nonzero().flatten()
    offsets = id_tables(model)[0].weight.new_tensor([0, *torch.tensor(VOCAB[:-1]).cumsum(0).tolist()]).long()
    touched = torch.unique(ids + offsets)
    assert torch.equal(torch.sort(changed).values, touched)  # exactly the rows the batch looked up
    dense_model = _model()
    dense_opt = SplitOptimizer(dense_model, 0.01, sparse=False)
    assert dense_opt.sparse is None
    hinet_loss(dense_model(ids, s), y, s, torch.ones(3)).backward()
    assert bytes_per_step(dense_model) > 5 * sent_sparse  # the 70k-row table dominates the dense exchange


def test_state_round_trip():
    model = _model()
    opt = SplitOptimizer(model, 0.01, sparse=True)
    ids, s, y = _batch()
    hinet_loss(model(ids, s), y, s, torch.ones(3)).backward()
    opt.step()
    again = SplitOptimizer(copy.deepcopy(model), 0.01, sparse=True)
    again.load_state_dict(opt.state_dict())
    assert again.sparse.state_dict()["state"].keys() == opt.sparse.state_dict()["state"].keys()
