"""Every plot the jobs log to MLflow, in one place: training (AUC bars, SAN heatmap,
calibration), scoring (score histograms) and evaluation (reliability of a day's scores).

Each function draws one figure into ``path`` (PNG) and returns it; matplotlib runs headless.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)
import numpy as np  # noqa: E402

from hinet_spark.evaluation import Evaluation  # noqa: E402
from hinet_spark.tasks import SCORES, TASKS  # noqa: E402


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _reliability(ax, curve, color: str) -> None:
    """Mean predicted (x) vs observed rate (y) per bin, and the diagonal, on the panel's own range."""
    top = 0.0
    if curve:
        pred, obs, _ = zip(*curve)
        ax.plot(pred, obs, "o-", color=color, markersize=3)
        top = max(*pred, *obs)
    top = top * 1.05 or 1.0
    ax.plot([0, top], [0, top], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)


def _bar_labels(ev: Evaluation, names: tuple[str, ...]) -> list[str]:
    return [f"{s}\nn={ev.rows.get(s, 0):,}\n+{ev.positives.get('ctr', {}).get(s, 0):,}/"
            f"{ev.positives.get('ctcvr', {}).get(s, 0):,}" for s in names]


def auc_bars(val: Evaluation, test: Evaluation, names: tuple[str, ...], path: Path) -> Path:
    """Validation and test AUC per scenario x task, rows and positives under each group,
    "n/a" where the label is constant, and the chance line."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
    width = 0.4
    seen = [v for ev in (val, test) for per in ev.auc.values() for v in per.values() if v is not None]
    low = min(0.4, np.floor((min(seen, default=0.5) - 0.05) * 10) / 10)
    for ax, (split, ev) in zip(axes, (("validation", val), ("test", test))):
        for j, task in enumerate(TASKS):
            xs = np.arange(len(names)) + (j - 0.5) * width
            vals = [ev.auc.get(task, {}).get(s) for s in names]
            ax.bar(xs, [v if v is not None else 0.0 for v in vals], width, label=task, color=f"C{j}")
            for x, v, s in zip(xs, vals, names):
                if v is None:
                    n = ev.rows.get(s, 0)
                    ax.text(x, low + 0.02, f"n/a: constant label\nover {n:,} rows", rotation=90, ha="center",
                            va="bottom", fontsize=6)
                else:
                    ax.text(x, v + 0.005, f"{v:.3f}", ha="center", va="bottom", fontsize=6, rotation=90)
        ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance (0.5)")
        ax.set_xticks(range(len(names)), _bar_labels(ev, names), fontsize=7)
        ax.set_ylim(low, 1.0)
        ax.set_title(f"{split} AUC (mean {ev.mean_auc:.4f})" if ev.mean_auc is not None else f"{split} AUC")
        ax.set_xlabel("scenario, rows, positives ctr/ctcvr")
    axes[0].set_ylabel("AUC")
    axes[1].legend(fontsize=7, loc="upper right")
    return _save(fig, path)


def san_heatmap(san: np.ndarray, names: tuple[str, ...], check: dict | None, path: Path) -> Path:
    uniform = 1.0 / (len(names) - 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("RdBu_r").copy()
    cmap.set_bad("lightgrey")  # the diagonal: SAN attends to the other scenarios only
    masked = np.ma.masked_array(san, mask=np.eye(len(names), dtype=bool))
    im = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=2 * uniform)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(j, i, "-" if i == j else f"{san[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("attended scenario m")
    ax.set_ylabel("scenario i")
    title = f"SAN weights (Fig. 3); white = uniform 1/(M-1) = {uniform:.2f}"
    if check is not None:
        title += f"\nstrongest weight inside the true group: {check['in_group']}/{check['of']} scenarios"
    ax.set_title(title, fontsize=9)
    fig.colorbar(im)
    return _save(fig, path)


def calibration_plot(ev: Evaluation, names: tuple[str, ...], split: str, path: Path) -> Path:
    """Per scenario x task (one panel each, on its own range): mean predicted vs observed
    rate in equal-count bins."""
    fig, axes = plt.subplots(2, len(names), figsize=(2.7 * len(names), 5.6), squeeze=False)
    for j, task in enumerate(TASKS):
        for k, s in enumerate(names):
            ax = axes[j][k]
            _reliability(ax, ev.calibration.get(task, {}).get(s) or [], f"C{j}")
            pos = ev.positives.get(task, {}).get(s, 0)
            ax.set_title(f"{task} {s}: {ev.rows.get(s, 0):,} rows, {pos:,} pos", fontsize=8)
            ax.tick_params(labelsize=6)
            if k == 0:
                ax.set_ylabel("observed rate", fontsize=8)
            if j == 1:
                ax.set_xlabel("mean predicted", fontsize=8)
    fig.suptitle(f"{split} calibration: 10 equal-count bins per panel, dashed = perfect", fontsize=10)
    return _save(fig, path)


def score_histograms(hist: dict[str, dict[str, dict]], stats: dict[str, dict[str, dict]], date: str,
                     path: Path) -> Path | None:
    """Per task x scenario: the day's score histogram (0 to its 99.9th percentile) and its mean."""
    scen = sorted(hist.get(SCORES[0], {}))
    if not scen:
        return None
    fig, axes = plt.subplots(2, len(scen), figsize=(2.8 * len(scen), 5), squeeze=False)
    for j, task in enumerate(SCORES):
        for i, s in enumerate(scen):
            panel = hist[task].get(s, {"upper": 1.0, "counts": []})
            counts, top = panel["counts"], panel["upper"]
            width = top / max(len(counts), 1)
            ax = axes[j][i]
            ax.bar([(k + 0.5) * width for k in range(len(counts))], counts, width=width, color=f"C{j}")
            mean = stats.get(task, {}).get(s, {}).get("mean")
            if mean is not None:
                ax.axvline(mean, color="black", linewidth=1, linestyle="--")
            ax.set_xlim(0, top)
            ax.set_title(f"{task} {s}: n={sum(counts):,}\nmean {mean:.4f} (dashed)", fontsize=8)
            ax.tick_params(labelsize=6)
    fig.suptitle(f"scores {date}: each panel 0 to its own 99.9th percentile (last bin holds the rest)", fontsize=9)
    return _save(fig, path)


def day_reliability(rows: list[dict], date: str, path: Path) -> Path:
    """Per task x scenario row of ``score_quality``: its reliability curve."""
    scen = sorted({r["scenario"] for r in rows})
    fig, axes = plt.subplots(2, len(scen), figsize=(2.7 * len(scen), 5.6), squeeze=False)
    for r in rows:
        j, k = TASKS.index(r["task"]), scen.index(r["scenario"])
        ax = axes[j][k]
        if r["reliability"]:
            _reliability(ax, r["reliability"], f"C{j}")
        ax.set_title(f"{r['task']} {r['scenario']}: {r['rows']:,} rows, {r['positives']:,} pos", fontsize=8)
        ax.tick_params(labelsize=6)
    fig.suptitle(f"scores of {date} against their labels: mean predicted (x) vs observed (y), "
                 "equal-count bins", fontsize=10)
    return _save(fig, path)
