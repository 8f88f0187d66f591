"""What a model is built from: the model config plus the shape of the data."""

from __future__ import annotations

from dataclasses import dataclass

from hinet_spark.config import ModelSection


@dataclass(frozen=True)
class ModelSpec:
    config: ModelSection
    vocab_sizes: tuple[int, ...]  # one per sparse feature, ids in [0, size)
    n_scenarios: int
    n_tasks: int = 2  # CTR, CTCVR

    def __post_init__(self) -> None:
        if not self.vocab_sizes or any(v <= 0 for v in self.vocab_sizes):
            raise ValueError(f"vocab_sizes must be positive, got {self.vocab_sizes}")
        if self.n_scenarios < 2:
            raise ValueError(f"n_scenarios must be >= 2, got {self.n_scenarios}")
        if self.n_tasks < 1:
            raise ValueError(f"n_tasks must be >= 1, got {self.n_tasks}")
