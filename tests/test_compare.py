"""compare_models: paired intervals, the recommendation, the grid, and one end-to-end run on
a small samples table (with its oracle row, in the comparisons experiment, nothing registered)."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from hinet_spark.config import ConfigError, load_config
from hinet_spark.features.build import build_samples
from hinet_spark.lifecycle.compare import Comparison, Run, interval, parse_grid, recommendation
from jobs import compare_models, generate_synthetic


def test_interval_is_the_t_interval_of_the_paired_differences():
    mean, lo, hi = interval([0.01, 0.02, 0.03])
    # sd 0.01, n 3, t(0.975, 2) = 4.3027
    assert mean == pytest.approx(0.02) and hi - mean == pytest.approx(4.3027 * 0.01 / 3 ** 0.5, rel=1e-4)
    assert lo == pytest.approx(2 * mean - hi)


def _comparison(test: dict[str, list[float]], val: dict[str, float]) -> Comparison:
    c = Comparison(list(test), ["a", "b"], {}, {}, {})
    for model, values in test.items():
        c.runs += [Run(model, seed, {}, val[model], v, {}, {}, 1.0) for seed, v in enumerate(values)]
    return c


def test_recommendation_uses_the_baseline_best_on_validation_and_says_which_way():
    better = _comparison({"hinet": [0.71, 0.72, 0.73], "mmoe": [0.70, 0.70, 0.71], "ple": [0.75, 0.76, 0.77]},
                         {"hinet": 0.7, "mmoe": 0.69, "ple": 0.60})  # ple is best on test, not on validation
    text, rec = recommendation(better)
    assert rec["baseline"] == "mmoe" and rec["verdict"] == "HiNet is better" and rec["lo"] > 0
    assert text.startswith("HiNet vs best baseline (mmoe, chosen on validation): test mean AUC +0.0167 [")
    worse = _comparison({"hinet": [0.70, 0.71, 0.72], "star": [0.72, 0.73, 0.74]}, {"hinet": 0.7, "star": 0.7})
    assert recommendation(worse)[1]["verdict"] == "HiNet is worse"
    worse.chosen = {"star": {"train.learning_rate": "0.003", "model.embedding_dim": "16"}}
    worse.train_command = "spark-submit jobs/train_hinet.py --conf conf/shop.yaml --end-date 2026-01-08"
    worse.overrides = {"train.epochs": "4", "model.tower_hidden": "[16, 8]", "model.embedding_dim": "8"}
    # every setting the model was judged with, the chosen one over the comparison's own --set, quoted
    assert recommendation(worse)[0].endswith(
        "; train star with the settings it was judged with: `spark-submit jobs/train_hinet.py --conf conf/shop.yaml "
        "--end-date 2026-01-08 --set train.epochs=4 --set 'model.tower_hidden=[16, 8]' --set model.embedding_dim=16 "
        "--set model.name=star --set train.learning_rate=0.003`")
    assert "train hinet with the settings it was judged with" in text
    noisy = _comparison({"hinet": [0.70, 0.75, 0.70], "mmoe": [0.72, 0.70, 0.71]}, {"hinet": 0.7, "mmoe": 0.7})
    assert recommendation(noisy)[1]["verdict"] == "not distinguishable"


def test_without_behaviour_arms_report_each_models_lift_and_train_as_judged():
    from hinet_spark.lifecycle.compare import arm, render, train_command

    c = _comparison({"hinet": [0.71, 0.72, 0.73], "mmoe": [0.70, 0.70, 0.71], "hinet-nobh": [0.70, 0.70, 0.72],
                     "mmoe-nobh": [0.69, 0.70, 0.70]}, {"hinet": 0.7, "mmoe": 0.69, "hinet-nobh": 0.69, "mmoe-nobh": 0.68})
    c.dates = {k: ("2026-01-01", "2026-01-01") for k in ("train", "val", "test")}
    c.rows = {"a": 1, "b": 1}
    c.positives = {"ctr": {"a": 0, "b": 0}, "ctcvr": {"a": 0, "b": 0}}
    for r in c.runs:
        r.test_auc = {t: {"a": r.test_mean, "b": r.test_mean} for t in ("ctr", "ctcvr")}
        r.test_logloss = {t: {"a": 0.3, "b": 0.3} for t in ("ctr", "ctcvr")}
    c.chosen = {m: {} for m in c.models}
    c.tuning = [r for r in c.runs if r.seed == 0]
    report = render(c)
    assert "| hinet | +0.0100, +0.0200, +0.0100 | lift=+0.0133 [" in report
    assert "| mmoe | +0.0100, +0.0000, +0.0100 | lift=+0.0067 [" in report
    assert recommendation(c)[1]["baseline"] == "mmoe"  # an arm without counters is no baseline
    assert arm("star-nobh") == ("star", {"train.use_behaviour": "false"}) and arm("star") == ("star", {})
    assert train_command(c, "hinet-nobh").endswith("--set model.name=hinet --set train.use_behaviour=false")


def test_cells_with_too_few_test_positives_are_shown_but_not_judged():
    from hinet_spark.lifecycle.compare import paired, render

    c = _comparison({"hinet": [0.0] * 3, "star": [0.0] * 3}, {"hinet": 0.7, "star": 0.7})
    c.dates = {k: ("2026-01-01", "2026-01-01") for k in ("train", "val", "test")}
    c.rows, c.min_positives = {"a": 900, "b": 40}, 50
    c.positives = {"ctr": {"a": 120, "b": 3}, "ctcvr": {"a": 60, "b": 0}}
    big = {"hinet": [0.70, 0.71, 0.72], "star": [0.69, 0.70, 0.70]}  # a CTR; a CTCVR is 0.1 above it
    small = {"hinet": [0.30, 0.40, 0.35], "star": [0.90, 0.95, 0.85]}  # b CTR: 3 positives, wild
    for r in c.runs:
        a_ctr = big[r.model][r.seed]
        r.test_auc = {"ctr": {"a": a_ctr, "b": small[r.model][r.seed]}, "ctcvr": {"a": a_ctr + 0.1, "b": None}}
        r.test_mean = (a_ctr + small[r.model][r.seed] + a_ctr + 0.1) / 3  # fit's mean over the defined cells
        r.test_logloss = {t: {"a": 0.3, "b": 0.3} for t in ("ctr", "ctcvr")}
    c.chosen = {m: {} for m in c.models}
    c.tuning = [r for r in c.runs if r.seed == 0]
    assert c.judged == [("ctr", "a"), ("ctcvr", "a")] and c.unjudged == [("ctr", "b"), ("ctcvr", "b")]
    # judged: star - hinet on cell a only (+0.1 in both cells cancels): -0.01, -0.01, -0.02
    assert paired(c, "star") == pytest.approx([-0.01, -0.01, -0.02])
    text, rec = recommendation(c)
    assert rec["mean"] == pytest.approx(0.04 / 3) and text.startswith(
        "HiNet vs best baseline (star, chosen on validation): test AUC, mean of the 2 scenario x task cells with "
        ">= 50 test positives (mlflow.min_positives) +0.0133 [")
    report = render(c)
    assert "not judged, too few positives for a stable AUC: b CTR (3), b CTCVR (0)" in report
    assert "| hinet | 0.7100 ± 0.0100 | 0.3500 ± 0.0500 | 0.8100 ± 0.0100 | n/a | 0.6233 ± 0.0208 | 0.7600 ± 0.0100 |" \
        in report
    c.min_positives = 0  # every cell judged: the runs' own test mean AUC, as before
    assert paired(c, "star")[0] == pytest.approx(c.runs[3].test_mean - c.runs[0].test_mean)


def test_grid_points_are_checked_before_any_training():
    cfg = load_config(None, [])
    assert len(parse_grid(["train.learning_rate=0.001,0.003", "model.embedding_dim=8,16"], cfg)) == 4
    with pytest.raises(ConfigError, match=r"train\.learning_rate: must be > 0, got -1.0"):
        parse_grid(["train.learning_rate=0.001,-1"], cfg)
    with pytest.raises(ConfigError, match=r"--grid 'model.embedding_dim': expected KEY=V1,V2"):
        parse_grid(["model.embedding_dim"], cfg)


@pytest.mark.slow
def test_compare_models_end_to_end(spark, tmp_path, capfd):
    root = tmp_path / "data"
    data = [f"storage.root={root}", "synthetic.enabled=true", "synthetic.days=4", "synthetic.exposures_per_day=6000",
            "synthetic.candidates_per_day=0", "synthetic.calibration_rows_per_scenario=2000"]
    assert generate_synthetic.main([x for o in data for x in ("--set", o)]) == 0
    build_samples(spark, load_config(None, data), "2026-01-01", "2026-01-04")
    small = [*data, "model.embedding_dim=4", "model.sei_hidden=[16]", "model.cgc_hidden=[16]",
             "model.tower_hidden=[8]", "model.bottom_hidden=[16]", "train.batch_size=512", "train.max_steps_per_epoch=5",
             "train.epochs=1"]
    out = tmp_path / "report.md"
    assert compare_models.main([*[x for o in small for x in ("--set", o)], "--end-date", "2026-01-04",
                                "--models", "hinet,shared_bottom", "--seeds", "2",
                                "--grid", "train.learning_rate=0.001,0.01", "--out", str(out)]) == 0
    report = out.read_text()
    assert "test 2026-01-04..2026-01-04; 2 seeds; 6 training runs" in report
    assert "| *oracle (true p)* |" in report  # generate_synthetic's oracle table is there
    assert "| shared_bottom | train.learning_rate=" in report
    assert "**Recommendation:** HiNet vs best baseline (shared_bottom, chosen on validation)" in report
    assert "recommendation: HiNet vs best baseline" in capfd.readouterr().err
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    # this root's registry, whatever registry URI an earlier test of the process set
    client = MlflowClient(tracking_uri=f"sqlite:///{root}/mlflow.db", registry_uri=f"sqlite:///{root}/mlflow.db")
    exp = client.get_experiment_by_name("hinet-spark-comparisons")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].data.tags["recommendation"].startswith("HiNet vs best baseline")
    # the recommendation is a command with every setting the runs had
    command = runs[0].data.tags["recommendation"].split("the settings it was judged with: ")[1].strip("`")
    assert command.startswith(f"spark-submit jobs/train_hinet.py --end-date 2026-01-04 --set storage.root={root} ")
    assert "--set train.max_steps_per_epoch=5 --set train.epochs=1 --set model.name=" in command
    assert "--set train.learning_rate=0.0" in command
    # each run's validation curve and where it ended
    logged = mlflow.artifacts.load_dict(f"{runs[0].info.artifact_uri}/comparison_runs.json")
    assert len(logged) == 6  # at most 5 steps (max_steps_per_epoch), early stopping may end a run sooner
    assert all(r["curve"] and r["curve"][-1]["step"] <= 5 and r["budget"].startswith(
        f"1 epoch(s), {r['curve'][-1]['step']} steps, best at step ") for r in logged)
    assert {(r["model"], r["seed"]) for r in logged} == {("hinet", 0), ("shared_bottom", 0), ("hinet", 1),
                                                         ("shared_bottom", 1)}
    assert "| hinet | 1 | train.learning_rate=" in report and "| 1 epoch(s), " in report
    assert client.search_registered_models() == []  # nothing registered, no alias moved
    assert not any((root / "checkpoints" / "compare").iterdir())  # no run's checkpoints left behind
