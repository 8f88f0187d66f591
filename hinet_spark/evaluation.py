"""AUC and logloss per scenario x task.

AUC is the Mann-Whitney statistic with average ranks for ties (the probability that a
random positive scores above a random negative, ties counting one half). A scenario whose
label is constant has no AUC; :func:`evaluate` reports ``None`` with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hinet_spark.tasks import TASKS


def auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    labels = np.asarray(labels).astype(bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).mean())


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> list[tuple[float, float, int]]:
    """Reliability curve: rows sorted by prediction, cut into ``bins`` equal-count groups;
    (mean predicted, observed positive rate, rows) per group."""
    order = np.argsort(np.asarray(probs, dtype=np.float64), kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, len(order))):
        if len(idx):
            out.append((float(np.mean(probs[idx])), float(np.mean(labels[idx])), int(len(idx))))
    return out


@dataclass
class Evaluation:
    auc: dict[str, dict[str, float | None]] = field(default_factory=dict)  # task -> scenario -> AUC
    logloss: dict[str, dict[str, float]] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)
    positives: dict[str, dict[str, int]] = field(default_factory=dict)  # task -> scenario -> positive rows
    calibration: dict[str, dict[str, list]] = field(default_factory=dict)  # task -> scenario -> curve
    notes: list[str] = field(default_factory=list)
    # scenario -> share of rows with p_ctcvr > p_ctr (an order implies a click: ranking cannot use them)
    ctcvr_above_ctr: dict[str, float] = field(default_factory=dict)

    @property
    def ctcvr_above_ctr_all(self) -> float | None:
        """The share over all rows (scenarios weighed by their rows)."""
        n = sum(self.rows[s] for s in self.ctcvr_above_ctr)
        return sum(v * self.rows[s] for s, v in self.ctcvr_above_ctr.items()) / n if n else None

    @property
    def mean_auc(self) -> float | None:
        values = [v for per in self.auc.values() for v in per.values() if v is not None]
        return float(np.mean(values)) if values else None

    def metrics(self, prefix: str) -> dict[str, float]:
        """Flat names that sort well: ``<prefix>_auc.ctr.scenario_a``, ``<prefix>_auc.mean``."""
        out: dict[str, float] = {}
        for task, per in self.auc.items():
            for s, v in per.items():
                if v is not None:
                    out[f"{prefix}_auc.{task}.scenario_{s}"] = v
        for task, per in self.logloss.items():
            for s, v in per.items():
                out[f"{prefix}_logloss.{task}.scenario_{s}"] = v
        if self.mean_auc is not None:
            out[f"{prefix}_auc.mean"] = self.mean_auc
        for s, n in self.rows.items():
            out[f"{prefix}_rows.scenario_{s}"] = float(n)
        for task, per in self.positives.items():
            for s, n in per.items():
                out[f"{prefix}_positives.{task}.scenario_{s}"] = float(n)
        for s, v in self.ctcvr_above_ctr.items():
            out[f"{prefix}_ctcvr_above_ctr.scenario_{s}"] = v
        if self.ctcvr_above_ctr_all is not None:
            out[f"{prefix}_ctcvr_above_ctr.all"] = self.ctcvr_above_ctr_all
        return out


def evaluate(scenario: np.ndarray, labels: np.ndarray, probs: np.ndarray,
             scenario_names: Sequence[str]) -> Evaluation:
    """scenario [N] (index), labels [N, T], probs [N, T] -> metrics per scenario x task."""
    ev = Evaluation()
    for i, name in enumerate(scenario_names):
        mask = scenario == i
        ev.rows[name] = int(mask.sum())
        if not mask.any():
            ev.notes.append(f"scenario {name}: no rows, no metrics")
            continue
        ev.ctcvr_above_ctr[name] = float(np.mean(probs[mask, 1] > probs[mask, 0]))
        for j, task in enumerate(TASKS):
            y, p = labels[mask, j], probs[mask, j]
            a = auc(y, p)
            ev.auc.setdefault(task, {})[name] = a
            ev.logloss.setdefault(task, {})[name] = logloss(y, p)
            ev.positives.setdefault(task, {})[name] = int(np.asarray(y).sum())
            ev.calibration.setdefault(task, {})[name] = calibration(y, p)
            if a is None:
                ev.notes.append(f"scenario {name}, {task}: label is constant ({int(y[0])}) over "
                                f"{int(mask.sum())} rows, AUC undefined")
    return ev
