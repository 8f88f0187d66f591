from pathlib import Path

import pytest

from hinet_spark.config import Config, ConfigError, load_config, parse_override, validate_synthetic

REPO = Path(__file__).resolve().parent.parent


def test_base_loads_with_defaults():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert cfg.scenarios.names == ("a", "b", "c", "d", "e", "f")
    assert cfg.synthetic.traffic_share["e"] == pytest.approx(0.004)
    assert cfg.spark.master == "local[2]"


def test_env_file_and_overrides_layer_in_order(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("spark:\n  shuffle_partitions: 3\nsynthetic:\n  days: 4\n")
    cfg = load_config(env, ["synthetic.days=2", "storage.root=/x/y"])
    assert cfg.spark.shuffle_partitions == 3
    assert cfg.synthetic.days == 2  # the override beats the env file
    assert cfg.storage.root == "/x/y"
    assert cfg.spark.app_name == "hinet-spark"  # untouched keys keep the base value


def test_shipped_env_files_load():
    for name in ("local.yaml", "databricks.yaml"):
        load_config(REPO / "conf" / name)


def test_unknown_key_names_key_and_file(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("spark:\n  mastr: local[1]\n")
    with pytest.raises(ConfigError, match=r"spark\.mastr.*env\.yaml"):
        load_config(env)


def test_unknown_section_from_override():
    with pytest.raises(ConfigError, match=r"'trian'.*--set trian.batch_size=1"):
        load_config(None, ["trian.batch_size=1"])


def test_wrong_type_names_key_value_and_source(tmp_path):
    env = tmp_path / "bad.yaml"
    env.write_text("synthetic:\n  days: seven\n")
    with pytest.raises(ConfigError, match=r"synthetic\.days: expected an integer, got 'seven' \(from .*bad\.yaml\)"):
        load_config(env)
    with pytest.raises(ConfigError, match=r"spark\.shuffle_partitions: expected an integer, got True"):
        load_config(None, ["spark.shuffle_partitions=true"])


def test_missing_file_is_named(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="config file not found: .*nope.yaml"):
        load_config(missing)


def test_synthetic_cross_field_checks_belong_to_the_generator():
    # checked by generate_synthetic (validate_synthetic), not at load: see the real-logs test below
    with pytest.raises(ConfigError, match=r"synthetic\.traffic_share\.e: must be > 0, got 0\.0"):
        validate_synthetic(load_config(None, ["synthetic.traffic_share={a: 0.5, b: 0.2, c: 0.1, d: 0.1, e: 0, f: 0.1}"]))
    with pytest.raises(ConfigError, match=r"synthetic\.ctr: keys \['a', 'b'\] must be the scenarios"):
        validate_synthetic(load_config(None, ["synthetic.ctr={a: 0.1, b: 0.2}"]))
    with pytest.raises(ConfigError, match=r"synthetic\.ctcvr\.a: 0\.2 must be below synthetic\.ctr\.a"):
        validate_synthetic(load_config(None, ["synthetic.ctcvr={a: 0.2, b: 0.05, c: 0.006, d: 0.005, e: 0.003, f: 0.01}"]))
    with pytest.raises(ConfigError, match="scenario_groups"):
        validate_synthetic(load_config(None, ["synthetic.scenario_groups=[[a, b], [c, d]]"]))
    validate_synthetic(load_config())  # the defaults fit the default scenarios


def test_a_config_for_real_logs_needs_no_synthetic_block(tmp_path):
    env = tmp_path / "mine.yaml"
    env.write_text(f"storage:\n  root: {tmp_path / 'data'}\nscenarios:\n  names: [home, banner, search]\n")
    cfg = load_config(env)  # loads: the synthetic defaults (a-f) are not checked against these scenarios
    assert cfg.scenarios.names == ("home", "banner", "search")
    with pytest.raises(ConfigError, match=r"synthetic\.traffic_share: keys .* must be the scenarios"):
        validate_synthetic(cfg)  # ... until someone generates synthetic data with it
    # no dates and no synthetic data: each job names what to pass
    from hinet_spark.jobs import build_features, score_candidates
    from hinet_spark.train.snapshot import split_dates

    with pytest.raises(ConfigError, match=r"no dates given: pass --date YYYY-MM-DD, or --start-date and "
                                          r"--end-date\. .*only when synthetic\.enabled is true"):
        build_features.resolve_range(build_features.parse_args(["--conf", str(env)]), cfg)
    with pytest.raises(ConfigError, match=r"no dates given: set train\.train_start, train\.train_end, .* "
                                          r"\(or pass --end-date YYYY-MM-DD to train_hinet"):
        split_dates(cfg)
    assert build_features.main(["--conf", str(env)]) == 1  # one ERROR line, exit 1
    assert score_candidates.main(["--conf", str(env)]) == 1
    dated = load_config(env, ["train.train_start=2026-03-01", "train.train_end=2026-03-10",
                              "train.val_start=2026-03-11", "train.val_end=2026-03-11",
                              "train.test_start=2026-03-12", "train.test_end=2026-03-12"])
    assert split_dates(dated)["val"] == ("2026-03-11", "2026-03-11")


def test_parse_override_parses_yaml_values():
    assert parse_override("train.batch_size=2048") == (["train", "batch_size"], 2048)
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_override("train.batch_size")


def test_config_is_frozen_and_flattens():
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.spark.master = "x"  # type: ignore[misc]
    flat = cfg.flat()
    assert flat["synthetic.ctr.a"] == "0.1256"
    assert flat["spark.master"] == "local[2]"


def test_unquoted_dates_are_strings():
    cfg = load_config(None, ["synthetic.start_date=2026-02-03"])
    assert cfg.synthetic.start_date == "2026-02-03"


def test_numeric_ranges_name_numeric_features():
    cfg = load_config(None, ["features.numeric_ranges={price: [0, null]}"])
    assert cfg.features.numeric_ranges == {"price": (0.0, None)}
    with pytest.raises(ConfigError, match=r"features\.numeric_ranges\.colour: not a numeric feature"):
        load_config(None, ["features.numeric_ranges={colour: [0, 1]}"])
    with pytest.raises(ConfigError, match=r"features\.numeric_ranges\.price: min 5.0 is above max 1.0"):
        load_config(None, ["features.numeric_ranges={price: [5, 1]}"])


def test_base_yaml_and_the_dataclass_defaults_agree():
    # the defaults are written twice (conf/base.yaml for operators, the dataclasses for code);
    # this holds them to each other
    from hinet_spark.config import Config

    assert load_config(None) == Config()


def test_model_names_are_the_registry_s():
    from hinet_spark.config import MODEL_NAMES
    from hinet_spark.models.registry import MODELS

    assert tuple(MODELS) == MODEL_NAMES
    with pytest.raises(ConfigError, match=r"model\.name: unknown model 'hinett'; known: \[.*\] \(from --set"):
        load_config(None, ["model.name=hinett"])


def test_declared_rules_name_the_key_the_bound_and_the_source(tmp_path):
    env = tmp_path / "env.yaml"
    env.write_text("train:\n  launcher: yarn\n")
    with pytest.raises(ConfigError, match=r"train\.launcher: expected horovod, torch_distributor or local, got "
                                          rf"'yarn' \(from {env}\)"):
        load_config(env)
    with pytest.raises(ConfigError, match=r"features\.quantile_relative_error: must be in \[0\.0, 0\.5\), got 0\.5"):
        load_config(None, ["features.quantile_relative_error=0.5"])
    with pytest.raises(ConfigError, match=r"mlflow\.min_positives: must be >= 1, got 0 \(from --set"):
        load_config(None, ["mlflow.min_positives=0"])
    with pytest.raises(ConfigError, match=r"model\.tower_hidden: must be a non-empty list of positive widths"):
        load_config(None, ["model.tower_hidden=[]"])
    with pytest.raises(ConfigError, match=r"train\.val_start: expected a date YYYY-MM-DD, got '2026-13-01'"):
        load_config(None, ["train.val_start='2026-13-01'"])
    assert load_config(None, ["train.val_every_steps=null"]).train.val_every_steps is None


def test_synthetic_tables_are_said_by_the_config_not_found_by_looking(tmp_path, capfd):
    from hinet_spark.jobs import generate_synthetic, import_logs

    root = f"storage.root={tmp_path / 'data'}"
    assert generate_synthetic.main(["--set", root]) == 1  # base.yaml: synthetic.enabled false
    assert "synthetic.enabled is false: this config is for real logs" in capfd.readouterr().err
    assert not (tmp_path / "data").exists()
    mapping = tmp_path / "m.yaml"
    assert import_logs.main(["--set", root, "--set", "synthetic.enabled=true", "--mapping", str(mapping),
                             "--date", "2026-01-01"]) == 1
    assert "synthetic.enabled is true: this config says the tables are generate_synthetic's" in capfd.readouterr().err


def test_a_databricks_mlflow_uri_without_a_workspace_is_one_line_naming_it(monkeypatch, tmp_path):
    from hinet_spark.ops.mlflow_store import require_workspace

    cfg = load_config(str(REPO / "conf" / "databricks.yaml"))
    for var in ("DATABRICKS_RUNTIME_VERSION", "DATABRICKS_HOST"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.databrickscfg
    with pytest.raises(ConfigError, match=r"databricks / databricks-uc name a Databricks workspace, and this machine "
                                          r"has none configured .* or use conf/local.yaml here"):
        require_workspace(cfg)
    monkeypatch.setenv("DATABRICKS_HOST", "https://example.cloud.databricks.com")
    require_workspace(cfg)  # a configured workspace: MLflow takes it from here
    require_workspace(load_config(None))  # the local sqlite store needs none
