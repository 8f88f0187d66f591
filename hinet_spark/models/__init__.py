"""HiNet, its Table III ablations and the paper's baselines, on one contract.

Every model maps ``(ids [B, F] long, scenario [B] long) -> logits [B, T]`` (T = 2: CTR,
CTCVR) for each sample's own scenario. Build one by name with :func:`build_model`.
"""

from hinet_spark.models.registry import MODELS, build_model, compile_model
from hinet_spark.models.spec import ModelSpec

__all__ = ["MODELS", "ModelSpec", "build_model", "compile_model"]
