"""Model names (``model.name`` in config) -> constructors."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from hinet_spark.config import MODEL_NAMES
from hinet_spark.models.baselines import PLE, STAR, FlatCGC, HMoE, MMoE, SharedBottom
from hinet_spark.models.blocks import FeatureEmbedding
from hinet_spark.models.hinet import HiNet
from hinet_spark.models.loss import esmm_output
from hinet_spark.models.spec import ModelSpec


def _hinet_variant(**flags: bool) -> Callable[[ModelSpec], nn.Module]:
    def build(spec: ModelSpec) -> nn.Module:
        return HiNet(dataclasses.replace(spec, config=dataclasses.replace(spec.config, **flags)))

    return build


MODELS: dict[str, Callable[[ModelSpec], nn.Module]] = {
    "hinet": HiNet,
    # Table III ablations
    "hinet_no_hierarchy": FlatCGC,
    "hinet_no_san": _hinet_variant(use_san=False),
    "hinet_no_task_gating": _hinet_variant(task_gating=False),
    "hinet_no_scenario_gating": _hinet_variant(scenario_gating=False),
    "hinet_no_gating": _hinet_variant(scenario_gating=False, task_gating=False),
    # Table II baselines
    "shared_bottom": SharedBottom,
    "mmoe": MMoE,
    "ple": PLE,
    "hmoe": HMoE,
    "star": STAR,
}


def build_model(spec: ModelSpec) -> nn.Module:
    """The model named by ``spec.config.name``."""
    try:
        factory = MODELS[spec.config.name]
    except KeyError:
        raise ValueError(f"model.name: unknown model {spec.config.name!r}; known: {sorted(MODELS)}") from None
    model = factory(spec)
    if spec.config.task_output == "esmm":
        model.register_forward_hook(esmm_output)
    return model


def compile_model(model: nn.Module) -> nn.Module:
    """``torch.compile`` (inductor, dynamic shapes) of any model: ``train.compile``, ``scoring.compile``.

    Everything after the id table is compiled (GEMMs, bias + ReLU and the gates fused by
    inductor). The id table stays eager (a graph break): its gradients are sparse tensors, which
    inductor cannot hold. ``dynamic=True``: the batch and HiNet's per-scenario segments change
    size every step, and one graph serves them all instead of a recompile per size. The result
    shares ``model``'s parameters; save and load ``model``'s state dict, not the wrapper's (its
    keys carry an ``_orig_mod.`` prefix). Compiled kernels are cached on disk by torch
    (``TORCHINDUCTOR_CACHE_DIR``, default a folder under the temp dir), so a second process
    with the same model compiles faster (docs/benchmarks.md). ``model`` itself is marked in
    place (its id tables' ``forward`` never compiled) and still runs eagerly when called directly.
    """
    for module in model.modules():
        if isinstance(module, FeatureEmbedding):
            module.forward = torch.compiler.disable(module.forward)
    return torch.compile(model, dynamic=True)


def count_parameters(model: nn.Module, include_embeddings: bool = True) -> int:
    return sum(p.numel() for name, p in model.named_parameters()
               if include_embeddings or not name.startswith("embedding."))


if tuple(MODELS) != MODEL_NAMES:  # the config checks model.name against MODEL_NAMES without importing torch
    raise ImportError(f"hinet_spark.config.MODEL_NAMES {MODEL_NAMES} must list the registry's models {tuple(MODELS)}")
