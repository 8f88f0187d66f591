"""Choose the model on your own samples table (``jobs/compare_models.py``).

Every model trains through the project's own :func:`~hinet_spark.train.loop.fit` (local
launcher) on the configured splits. For each model a small grid (``--grid KEY=V1,V2``:
learning rate, embedding size, weight decay by default) is tried with seed 0 and the setting
with the best *validation* mean AUC is kept; the test split is read only to report. The kept
setting then trains with ``--seeds`` seeds. Differences against HiNet are paired by seed
(same data, same seed), with a t-interval over the seeds. The recommendation compares HiNet
with the baseline that had the best validation AUC (chosen without looking at test).
Comparison runs log to ``<mlflow.experiment>-comparisons`` and never register a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import shlex
import shutil
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from hinet_spark.config import Config, ConfigError, load_config
from hinet_spark.evaluation import auc
from hinet_spark.models.registry import MODELS
from hinet_spark.ops.io import read_table, table_exists
from hinet_spark.tasks import LABELS, SCORES, TASKS
from hinet_spark.train.loop import best_record, fit

logger = logging.getLogger(__name__)

BASELINES = ("shared_bottom", "mmoe", "hmoe", "ple", "star")
NO_BEHAVIOUR = "-nobh"  # a model's arm trained on the same samples without the behaviour counters


def arm(name: str) -> tuple[str, dict[str, str]]:
    """``star-nobh`` -> (``star``, ``{"train.use_behaviour": "false"}``); ``star`` -> (``star``, {})."""
    if name.endswith(NO_BEHAVIOUR):
        return name.removesuffix(NO_BEHAVIOUR), {"train.use_behaviour": "false"}
    return name, {}
DEFAULT_GRID = ("train.learning_rate=0.001,0.003", "model.embedding_dim=8,16", "train.weight_decay=0,0.00001")


@dataclass
class Run:
    model: str
    seed: int
    setting: dict[str, str]
    val_mean: float | None
    test_mean: float | None
    test_auc: dict[str, dict[str, float | None]]
    test_logloss: dict[str, dict[str, float]]
    seconds: float
    notes: tuple[str, ...] = ()  # the test evaluation's notes (undefined AUCs)
    curve: list[dict] = field(default_factory=list)  # the validation points (fit's history)

    @property
    def budget(self) -> str:
        """Where the run ended: its epochs and steps, and whether its best point was its last."""
        if not self.curve:
            return "n/a"
        last, best = self.curve[-1], best_record(self.curve)
        return (f"{last['epoch'] + 1} epoch(s), {last['step']} steps, best at step {best['step']}"
                + (" (its last: more budget would likely help)" if best is last else ""))


@dataclass
class Comparison:
    models: list[str]
    scenarios: list[str]
    dates: dict[str, tuple[str, str]]
    rows: dict[str, int]  # test rows per scenario
    positives: dict[str, dict[str, int]]  # task -> scenario -> test positives
    chosen: dict[str, dict[str, str]] = field(default_factory=dict)  # model -> setting
    tuning: list[Run] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    oracle: dict[str, dict[str, float | None]] | None = None
    seconds: float = 0.0
    train_command: str = "spark-submit jobs/train_hinet.py"  # the job sets its --conf, --end-date and --set
    overrides: dict[str, str] = field(default_factory=dict)  # the comparison's own --set (every run had them)
    min_positives: int = 0  # mlflow.min_positives: test cells with fewer positives are shown, not judged

    @property
    def judged(self) -> list[tuple[str, str]]:
        """The (task, scenario) test cells with at least ``min_positives`` positives: the cells the
        paired differences, the lift and the recommendation average (the promotion judge's rule)."""
        return [(t, s) for t in TASKS for s in self.scenarios
                if self.positives.get(t, {}).get(s, self.min_positives) >= self.min_positives]

    @property
    def unjudged(self) -> list[tuple[str, str]]:
        judged = set(self.judged)
        return [(t, s) for t in TASKS for s in self.scenarios if (t, s) not in judged]

    def score(self, r: Run) -> float | None:
        """A run's test AUC as the comparison judges it (:meth:`judged_mean`)."""
        return self.judged_mean(r.test_auc, r.test_mean)

    def judged_mean(self, test_auc: dict[str, dict[str, float | None]], test_mean: float | None) -> float | None:
        """The mean of ``test_auc`` over the judged cells; ``test_mean`` (the run's own mean
        over every cell) when every cell, or none, is judged."""
        if not self.unjudged or not self.judged:
            return test_mean
        values = [test_auc.get(t, {}).get(s) for t, s in self.judged]
        values = [v for v in values if v is not None]
        return float(np.mean(values)) if values else None


def parse_grid(specs: list[str], cfg: Config) -> list[dict[str, str]]:
    """``KEY=V1,V2`` strings -> every combination, each checked against the config."""
    axes = []
    for spec in specs:
        key, _, values = spec.partition("=")
        if not values:
            raise ConfigError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. train.learning_rate=0.001,0.003)")
        axes.append([(key.strip(), v.strip()) for v in values.split(",") if v.strip()])
    points = [dict(p) for p in itertools.product(*axes)] if axes else [{}]
    for p in points:
        load_config(None, [f"{k}={v}" for k, v in p.items()])  # a bad key or value: named now, not after hours
    return points


def _with(cfg: Config, overrides: dict[str, str]) -> Config:
    """``cfg`` with dotted-key overrides (through the config's own coercion and checks)."""
    ref = load_config(None, [f"{k}={v}" for k, v in overrides.items()])
    for key in overrides:
        section, name = key.split(".", 1)
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(
            getattr(cfg, section), **{name: getattr(getattr(ref, section), name)})})
    return cfg


def _run(spark: SparkSession, cfg: Config, model: str, seed: int, setting: dict[str, str]) -> Run:
    tag = "-".join([model, str(seed), *(v for v in setting.values())]).replace("/", "_")
    ckpt = f"{cfg.train.checkpoint_dir or cfg.storage.root + '/checkpoints'}/compare/{tag}"
    name, extra = arm(model)
    run_cfg = _with(cfg, {**setting, **extra, "model.name": name, "train.seed": str(seed),
                          "train.checkpoint_dir": ckpt})
    began = time.perf_counter()
    try:
        result = fit(spark, run_cfg)
    finally:  # a comparison run is never resumed: its checkpoints (60 runs: 3.4 GB at 100k rows) go
        shutil.rmtree(ckpt, ignore_errors=True)
    seconds = time.perf_counter() - began
    logger.info("%s seed %d %s: validation mean AUC %.4f, test %.4f (%.0f s)", model, seed,
                " ".join(f"{k}={v}" for k, v in setting.items()) or "(config)", result.val.mean_auc or float("nan"),
                result.test.mean_auc or float("nan"), seconds)
    return Run(model, seed, setting, result.val.mean_auc, result.test.mean_auc, result.test.auc,
               result.test.logloss, seconds, tuple(result.test.notes),
               [{k: h[k] for k in ("epoch", "step", "train_loss", "val_auc_mean", "kept") if k in h}
                for h in result.history])


def compare(spark: SparkSession, cfg: Config, models: list[str], seeds: int, grid: list[dict[str, str]]
            ) -> Comparison:
    """Tune each model on validation, train it with ``seeds`` seeds, report on test."""
    unknown = [m for m in models if arm(m)[0] not in MODELS]
    if unknown:
        raise ConfigError(f"--models: unknown {unknown}; known: {sorted(MODELS)}, each also as <model>{NO_BEHAVIOUR} "
                          "(trained without the behaviour counters)")
    if "hinet" not in models:
        raise ConfigError("--models: include hinet (every model is compared with it)")
    if seeds < 2:
        raise ConfigError(f"--seeds: at least 2 for an interval, got {seeds}")
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, launcher="local"),
                              mlflow=dataclasses.replace(cfg.mlflow, register=False))
    began = time.perf_counter()
    out = comparison_frame(spark, cfg, models)
    with _quiet_training():
        for model in models:
            tried = [_run(spark, cfg, model, 0, point) for point in grid]
            best = max(tried, key=lambda r: -1.0 if r.val_mean is None else r.val_mean)
            out.tuning += tried
            out.chosen[model] = best.setting
            out.runs += [best] + [_run(spark, cfg, model, seed, best.setting) for seed in range(1, seeds)]
    out.seconds = time.perf_counter() - began
    return out


@contextlib.contextmanager
def _quiet_training() -> Iterator[None]:
    """One line per training run (this module's), not each run's progress lines and notes
    (the report lists the notes once); all of them with --log-level DEBUG."""
    names = ("hinet_spark.train.loop", "hinet_spark.train.snapshot", "hinet_spark.train.reader")
    levels = {n: logging.getLogger(n).level for n in names}
    if not logger.isEnabledFor(logging.DEBUG):
        for n in names:
            logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def comparison_frame(spark: SparkSession, cfg: Config, models: list[str]) -> Comparison:
    """An empty comparison of ``models`` on ``cfg``'s splits: the split dates, the test rows and
    positives per scenario x task (so, its judged cells), and the oracle's AUC where
    generate_synthetic left an oracle."""
    from hinet_spark.train.snapshot import split_dates

    dates = split_dates(cfg)
    a, b = dates["test"]
    test = read_table(spark, cfg, "samples").where(F.col("dt").between(a, b))
    agg = test.groupBy("scenario").agg(F.count("*").alias("n"), F.sum("label_ctr").alias("ctr"),
                                       F.sum("label_ctcvr").alias("ctcvr")).collect()
    by = {r["scenario"]: r for r in agg}
    names = list(cfg.scenarios.names)
    rows = {s: int(by[s]["n"]) if s in by else 0 for s in names}
    positives = {t: {s: int(by[s][t] or 0) if s in by else 0 for s in names} for t in TASKS}
    oracle = None
    if cfg.synthetic.enabled and table_exists(spark, cfg, "oracle"):  # the config says the tables are synthetic
        pdf = test.select("exposure_id", "scenario", *LABELS).join(
            read_table(spark, cfg, "oracle").select("exposure_id", *SCORES), "exposure_id").toPandas()
        oracle = {t: {s: auc(g[f"label_{t}"].to_numpy(), g[f"p_{t}"].to_numpy()) for s, g in pdf.groupby("scenario")}
                  for t in TASKS}
    return Comparison(models, names, dates, rows, positives, oracle=oracle, min_positives=cfg.mlflow.min_positives)


def interval(diffs: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and t-interval of paired differences."""
    from scipy import stats

    mean = float(np.mean(diffs))
    if len(diffs) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(diffs) - 1)) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return mean, mean - half, mean + half


def paired(c: Comparison, model: str, against: str = "hinet") -> list[float]:
    """Per seed, ``model``'s judged test AUC minus ``against``'s (:meth:`Comparison.score`)."""
    base = {r.seed: c.score(r) for r in c.runs if r.model == against}
    return [c.score(r) - base[r.seed] for r in c.runs
            if r.model == model and c.score(r) is not None and base.get(r.seed) is not None]


def judged_label(c: Comparison) -> str:
    """What the paired figures average: "test mean AUC", or over which cells when some are not judged."""
    if not c.unjudged or not c.judged:
        return "test mean AUC"
    return (f"test AUC, mean of the {len(c.judged)} scenario x task cells with >= {c.min_positives} test "
            f"positives (mlflow.min_positives)")


def recommendation(c: Comparison) -> tuple[str, dict[str, Any]]:
    """HiNet against the baseline with the best mean validation AUC."""
    val = {m: statistics.mean(r.val_mean for r in c.runs if r.model == m and r.val_mean is not None)
           for m in c.models}
    baselines = [m for m in c.models if m != "hinet" and not m.startswith("hinet_") and not m.endswith(NO_BEHAVIOUR)]
    if not baselines:
        return "no baseline compared (add one to --models)", {}
    best = max(baselines, key=lambda m: val[m])
    diffs = [-d for d in paired(c, best)]  # HiNet - best baseline
    mean, lo, hi = interval(diffs)
    verdict = "HiNet is better" if lo > 0 else "HiNet is worse" if hi < 0 else "not distinguishable"
    text = (f"HiNet vs best baseline ({best}, chosen on validation): {judged_label(c)} {mean:+.4f} "
            f"[{lo:+.4f}, {hi:+.4f}] (95% t-interval over {len(diffs)} paired seeds): {verdict}")
    if verdict == "not distinguishable":
        text += "; either serves, prefer the cheaper one or add seeds / data to decide"
    chosen = best if verdict == "HiNet is worse" else "hinet"
    command = train_command(c, chosen)
    text += f"; train {chosen} with the settings it was judged with: `{command}`"
    return text, {"baseline": best, "mean": mean, "lo": lo, "hi": hi, "verdict": verdict, "model": chosen,
                  "command": command}


def train_command(c: Comparison, model: str) -> str:
    """The train_hinet command line that trains ``model`` as the comparison did: its own
    --set overrides, the model and the setting its grid chose (a later --set wins)."""
    name, extra = arm(model)
    sets = {**c.overrides, "model.name": name, **extra, **c.chosen.get(model, {})}
    return " ".join([c.train_command, *(f"--set {shlex.quote(f'{k}={v}')}" for k, v in sets.items())])


def run_record(r: Run) -> dict[str, Any]:
    """One training run of a comparison, as its MLflow artifact lists it."""
    return {"model": r.model, "seed": r.seed, "setting": r.setting, "val_mean_auc": r.val_mean,
            "test_mean_auc": r.test_mean, "test_auc": r.test_auc, "seconds": round(r.seconds, 1), "budget": r.budget,
            "curve": r.curve}


def fmt(values: list[float | None]) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def render(c: Comparison) -> str:
    """The report, as markdown (also the job's log)."""
    s, models = c.scenarios, c.models
    seeds = len({r.seed for r in c.runs})
    split = int(bool(c.unjudged and c.judged))  # a judged-mean column when some cells are not judged
    lines = [f"Splits: train {c.dates['train'][0]}..{c.dates['train'][1]}, validation {c.dates['val'][0]}.."
             f"{c.dates['val'][1]}, test {c.dates['test'][0]}..{c.dates['test'][1]}; {seeds} seeds; "
             f"{len(c.tuning) + len(c.runs) - len(c.models)} training runs in {c.seconds / 60:.1f} min.", "",
             "Test rows and positives per scenario:", "",
             "| | " + " | ".join(s) + " |", "|---|" + "---|" * len(s),
             "| rows | " + " | ".join(f"{c.rows[x]:,}" for x in s) + " |",
             *[f"| {t.upper()} positives | " + " | ".join(f"{c.positives[t][x]:,}" for x in s) + " |" for t in TASKS],
             "", "Test AUC, mean ± std over seeds:", "",
             "| model | " + " | ".join(f"{x} {t.upper()}" for t in TASKS for x in s) + " | mean |"
             + (" judged mean |" if split else ""),
             "|---|" + "---|" * (2 * len(s) + 1 + split)]
    for m in models:
        runs = [r for r in c.runs if r.model == m]
        lines.append(f"| {m} | " + " | ".join(fmt([r.test_auc[t][x] for r in runs]) for t in TASKS for x in s)
                     + f" | {fmt([r.test_mean for r in runs])} |" + (f" {fmt([c.score(r) for r in runs])} |" if split else ""))
    if c.oracle:
        means = [v for t in TASKS for v in c.oracle[t].values() if v is not None]
        judged = [c.oracle[t].get(x) for t, x in c.judged if c.oracle[t].get(x) is not None]
        lines.append("| *oracle (true p)* | " + " | ".join(fmt([c.oracle[t].get(x)]) for t in TASKS for x in s)
                     + f" | {statistics.mean(means):.4f} |" + (f" {fmt([statistics.mean(judged)])} |" if split else ""))
    if split:
        lines += ["", f"Judged mean: the {len(c.judged)} cells with >= {c.min_positives} test positives "
                      f"(mlflow.min_positives, the promotion judge's rule); not judged, too few positives for a stable "
                      f"AUC: {', '.join(f'{x} {t.upper()} ({c.positives[t][x]})' for t, x in c.unjudged)}. The paired "
                      "differences, the lift and the recommendation use the judged mean."]
    lines += ["", "Test logloss, mean over seeds:", "",
              "| model | " + " | ".join(f"{x} {t.upper()}" for t in TASKS for x in s) + " |",
              "|---|" + "---|" * (2 * len(s))]
    for m in models:
        runs = [r for r in c.runs if r.model == m]
        lines.append(f"| {m} | " + " | ".join(
            f"{statistics.mean(r.test_logloss[t][x] for r in runs):.4f}" for t in TASKS for x in s) + " |")
    lines += ["", f"Paired by seed against HiNet ({judged_label(c)}, model - HiNet), 95% t-interval:", "",
              "| model | per seed | mean [lo, hi] |", "|---|---|---|"]
    for m in models:
        if m == "hinet":
            continue
        d = paired(c, m)
        mean, lo, hi = interval(d)
        lines.append(f"| {m} | {', '.join(f'{x:+.4f}' for x in d)} | {mean:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    lifts = [m for m in models if not m.endswith(NO_BEHAVIOUR) and m + NO_BEHAVIOUR in models]
    if lifts:
        lines += ["", f"Behaviour counters' lift ({judged_label(c)}, model - model without them, paired by seed), "
                      "95% t-interval:", "", "| model | per seed | mean [lo, hi] |", "|---|---|---|"]
        for m in lifts:
            d = [0.0 - x for x in paired(c, m + NO_BEHAVIOUR, against=m)]  # 0.0 - 0.0: +0.0000, not -0.0000
            mean, lo, hi = interval(d)
            lines.append(f"| {m} | {', '.join(f'{x:+.4f}' for x in d)} | lift={mean:+.4f} [{lo:+.4f}, {hi:+.4f}] |")
    lines += ["", "Settings chosen on validation (seed 0; the grid's best mean AUC):", "",
              "| model | setting | validation mean AUC | tried |", "|---|---|---|---|"]
    for m in models:
        tried = [r for r in c.tuning if r.model == m]
        best = max((r.val_mean or -1.0) for r in tried)
        setting = " ".join(f"{k}={v}" for k, v in c.chosen[m].items()) or "(config)"
        lines.append(f"| {m} | {setting} | {best:.4f} | "
                     + ", ".join(f"{r.val_mean or float('nan'):.4f}" for r in tried) + " |")
    lines += ["", "Where each run ended (its validation curve: the MLflow artifact comparison_runs.json):", "",
              "| model | seed | setting | budget |", "|---|---|---|---|"]
    trained = [*c.tuning, *(r for r in c.runs if r.seed > 0)]  # seed 0's chosen run is in both lists
    for r in trained:
        setting = " ".join(f"{k}={v}" for k, v in r.setting.items()) or "(config)"
        lines.append(f"| {r.model} | {r.seed} | {setting} | {r.budget} |")
    at_last = sum(bool(r.curve) and best_record(r.curve) is r.curve[-1] for r in trained)
    if at_last:
        lines += ["", f"{at_last} run(s) had their best validation point at their last: the comparison may "
                      "under-train them (raise train.epochs, or add it to --grid)."]
    notes = sorted({n for r in c.runs for n in r.notes})
    if notes:
        lines += ["", "Notes (n/a above):", "", *[f"- test: {n}" for n in notes]]
    text, _ = recommendation(c)
    lines += ["", f"**Recommendation:** {text}."]
    return "\n".join(lines) + "\n"
