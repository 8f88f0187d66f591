"""The training objective, Eq. 9, outside the model.

    Loss = sum_i sum_j lambda_i^j * Loss_i^j,   Loss_i^j = (1/B) sum_{b in scenario i} BCE_b^j

Loss_i^j runs over scenario i's samples only (the other scenarios' samples never train
scenario i's head) and is normalised by the batch size B, i.e. it is scenario i's part of the
batch-mean loss. lambda_i^j defaults to the reciprocal of scenario i's share of the training
data (the paper's rule), computed from the data and overridable in config; with this
normalisation lambda_i * Loss_i^j is, in expectation, scenario i's mean BCE, so every scenario
weighs the same however small. (Normalising Loss_i^j by scenario i's own count in the batch
instead and then multiplying by 1/share would weigh a 0.4% scenario's samples ~15,000 times a
50% scenario's, which made training unstable in our runs: docs/model.md.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch.nn import functional as F


def scenario_weights(counts: Sequence[int], override: Mapping[int, float] | None = None) -> torch.Tensor:
    """lambda_i = total / count_i (reciprocal of the share); ``override`` replaces entries.

    A scenario without training rows gets weight 0 (it has no loss term to weigh).
    """
    c = torch.tensor([float(x) for x in counts])
    if (c < 0).any():
        raise ValueError(f"scenario counts must be >= 0, got {list(counts)}")
    total = c.sum()
    if total <= 0:
        raise ValueError("scenario counts are all zero: no training data")
    w = torch.where(c > 0, total / c.clamp_min(1.0), torch.zeros_like(c))
    for i, v in (override or {}).items():
        w[i] = float(v)
    return w


def hinet_loss(logits: torch.Tensor, labels: torch.Tensor, scenario: torch.Tensor,
               weights: torch.Tensor, task_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 9. logits, labels [B, T]; scenario [B]; weights [M] (lambda_i); task_weights [T].

    lambda_i^j = weights[i] * task_weights[j] (task weights default to 1).
    """
    m, t = weights.shape[0], logits.shape[1]
    bce = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")  # [B, T]
    per_scenario = bce.new_zeros(m, t).index_add_(0, scenario, bce) / bce.shape[0]  # Loss_i^j [M, T]
    lam = weights.to(bce.dtype).unsqueeze(1)
    if task_weights is not None:
        lam = lam * task_weights.to(bce.dtype).unsqueeze(0)
    return (lam * per_scenario).sum()


def esmm_logits(logits: torch.Tensor) -> torch.Tensor:
    """``model.task_output: esmm``: [B, 2] (CTR logit, CVR logit) -> (CTR logit, logit of
    p_ctr x p_cvr), so Eq. 9's CTCVR term trains the CVR tower through the product over all
    exposures (ESMM, Ma et al. SIGIR'18) and p_ctcvr <= p_ctr holds for every row.

    Computed in log space: log p = logsigmoid(a) + logsigmoid(b), logit = log p - log(1 - p),
    with log(1 - p) = log(-expm1(log p)) (exact near p = 1) and log p kept below -1e-7 (a
    finite logit where both towers saturate)."""
    log_p = (F.logsigmoid(logits[:, 0]) + F.logsigmoid(logits[:, 1])).clamp(max=-1e-7)
    return torch.stack([logits[:, 0], log_p - torch.log(-torch.expm1(log_p))], dim=1)


def esmm_output(module: torch.nn.Module, inputs: tuple, logits: torch.Tensor) -> torch.Tensor:
    """The forward hook :func:`hinet_spark.models.build_model` puts on an ESMM model (every
    architecture keeps its own towers; only what the second one means changes)."""
    return esmm_logits(logits)
