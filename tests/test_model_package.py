"""The registered model is self-contained: it loads and predicts where this project is not
installed (its code travels in the model, its requirements are pinned and on an index)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient

from hinet_spark.config import ModelSection
from hinet_spark.features.spec import FeatureSpec
from hinet_spark.models import ModelSpec, build_model
from hinet_spark.serving import RUNTIME_PACKAGES, log_pyfunc

REPO = Path(__file__).resolve().parents[1]
NAME = "packaged_hinet"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A small HiNet with random weights, registered with the alias champion in a sqlite store."""
    root = tmp_path_factory.mktemp("package")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp = MlflowClient().create_experiment("package", artifact_location=(root / "artifacts").as_uri())
    spec = FeatureSpec(("a", "b", "c"), {"price": (1.0, 5.0, 9.0)}, {"city": ("x", "y", "z")},
                       {"user_id": 100}, ("2026-01-01", "2026-01-02"), 1)
    model_spec = ModelSpec(ModelSection(embedding_dim=4, sei_hidden=(8,), cgc_hidden=(8,), tower_hidden=(4,)),
                           spec.vocab_sizes, len(spec.scenarios))
    torch.manual_seed(3)
    model = build_model(model_spec).eval()
    with mlflow.start_run(experiment_id=exp):
        info = log_pyfunc(model, model_spec, spec, NAME)
    MlflowClient().set_registered_model_alias(NAME, "champion", str(info.registered_model_version))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"f_price": rng.integers(0, 5, 64), "f_city": rng.integers(0, 5, 64),
                          "f_user_id": rng.integers(0, 102, 64), "scenario_idx": rng.integers(0, 3, 64)}
                         ).astype("int32")
    expected = mlflow.pyfunc.load_model(f"models:/{NAME}@champion").predict(frame)
    with torch.no_grad():  # the in-process model itself, not through MLflow
        ids = torch.as_tensor(frame[spec.columns].to_numpy(dtype=np.int64))
        direct = torch.sigmoid(model(ids, torch.as_tensor(frame["scenario_idx"].to_numpy(dtype=np.int64))))
    np.testing.assert_allclose(expected[["p_ctr", "p_ctcvr"]].to_numpy(), direct.numpy(), atol=1e-6)
    return {"root": root, "uri": uri, "frame": frame, "expected": expected, "source": info.model_uri}


def test_requirements_are_pinned_and_installable(registered):
    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion"))
    reqs = (local / "requirements.txt").read_text().split()
    names = {r.split("==")[0].lower() for r in reqs if "==" in r}
    assert set(RUNTIME_PACKAGES) <= names, reqs
    assert all("==" in r for r in reqs if not r.startswith("-")), reqs  # every one pinned
    assert not any(r.lower().startswith("hinet") for r in reqs), reqs  # nothing that is on no index
    assert f"torch=={torch.__version__.split('+')[0]}" in reqs
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["python_function"]["code"] == "code"
    assert (local / "code" / "hinet_spark" / "serving.py").is_file()


def _isolated_env(registered) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "MLFLOW_"))}
    env["MLFLOW_TRACKING_URI"] = registered["uri"]
    return env


def test_loads_and_predicts_without_the_project(registered, tmp_path):
    registered["frame"].to_json(tmp_path / "input.json", orient="split")
    script = textwrap.dedent(f"""
        import importlib.abc, json, sys
        repo = {str(REPO)!r}
        # the project is installed in editable mode: drop its path entries and its finder
        sys.path[:] = [p for p in sys.path if p not in ("", ".", repo, repo + "/")]
        sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in type(f).__module__.lower()
                            and "editable" not in repr(f).lower()]
        try:
            import hinet_spark
            raise SystemExit("the project is still importable: " + hinet_spark.__file__)
        except ImportError:
            pass
        import mlflow, pandas as pd
        frame = pd.read_json("input.json", orient="split").astype("int32")
        out = mlflow.pyfunc.load_model("models:/{NAME}@champion").predict(frame)
        import hinet_spark
        print(json.dumps({{"code": hinet_spark.__file__, "p": out[["p_ctr", "p_ctcvr"]].values.tolist()}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=_isolated_env(registered),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert not out["code"].startswith(str(REPO)), out["code"]  # the model's own copy of the code
    np.testing.assert_allclose(np.array(out["p"]), registered["expected"][["p_ctr", "p_ctcvr"]].to_numpy(),
                               atol=1e-6)


def test_any_integer_width_is_taken(registered):
    """The signature's ids are long: an int64 frame (pandas' default) and the batch UDF's int32
    columns both predict, the same scores."""
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    frame = registered["frame"]
    wide, narrow = model.predict(frame.astype("int64")), model.predict(frame.astype("int32"))
    np.testing.assert_allclose(wide[["p_ctr", "p_ctcvr"]].to_numpy(), narrow[["p_ctr", "p_ctcvr"]].to_numpy())
    np.testing.assert_allclose(wide[["p_ctr", "p_ctcvr"]].to_numpy(),
                               registered["expected"][["p_ctr", "p_ctcvr"]].to_numpy(), atol=1e-6)
    types = {c.name: (c.type.name, c.required) for c in model.metadata.get_input_schema().inputs}
    assert {c: types[c] for c in frame.columns} == {c: ("long", False) for c in frame.columns}
    # and the raw form beside it (every column optional: the model checks that one form is complete)
    assert {c: types[c] for c in ("scenario", "price", "city", "user_id")} == {
        "scenario": ("string", False), "price": ("double", False), "city": ("string", False),
        "user_id": ("string", False)}


def _raw_rows(n: int = 64) -> pd.DataFrame:
    """Raw rows for the fixture's spec: scenario, price (numeric), city (categorical), user_id (hashed)."""
    rng = np.random.default_rng(5)
    return pd.DataFrame({"exposure_id": [f"e{i}" for i in range(n)], "scenario": rng.choice(["a", "b", "c"], n),
                         "price": np.round(rng.random(n) * 12, 2), "city": rng.choice(["x", "y", "w", None], n),
                         "user_id": [f"user-{k}" for k in rng.integers(0, 1000, n)]})


def test_raw_rows_predict_as_their_ids(registered):
    """The model applies its own feature spec: raw rows (extra columns ignored) score as the ids
    the pipeline gives them; a row the batch job would quarantine is refused by position."""
    from hinet_spark.features.rows import ids_of_rows

    model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    raw = _raw_rows()
    spec = FeatureSpec.load(Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion"))
                            / "artifacts" / "feature_spec.json")
    from_raw = model.predict(raw)
    from_ids = model.predict(ids_of_rows(raw, spec))
    np.testing.assert_allclose(from_raw[["p_ctr", "p_ctcvr"]].to_numpy(), from_ids[["p_ctr", "p_ctcvr"]].to_numpy())
    assert len(from_raw) == len(raw) and from_raw[["p_ctr", "p_ctcvr"]].std().min() > 0  # per row, not a constant
    bad = raw.assign(scenario=raw["scenario"].where(raw.index != 2, "zzz"))
    with pytest.raises(Exception, match=r"unknown_scenario: rows \[2\]"):
        model.predict(bad)
    with pytest.raises(Exception, match=r"neither raw rows .* nor ids"):
        model.predict(pd.DataFrame({"something": [1]}))


def test_serving_requirements_can_name_a_cpu_torch_and_its_index(registered, tmp_path):
    from hinet_spark.config import ConfigError, load_config
    from hinet_spark.serving import pinned_requirements

    reqs = pinned_requirements("torch==2.13.0+cpu", "https://example.org/whl/cpu")
    assert reqs[0] == "--extra-index-url https://example.org/whl/cpu" and "torch==2.13.0+cpu" in reqs
    assert not any(r.startswith("torch==") and r != "torch==2.13.0+cpu" for r in reqs)
    assert not pinned_requirements()[0].startswith("-")  # by default: no index line, PyPI's torch of training
    with pytest.raises(ConfigError, match="mlflow.serving_torch: 'torch==2.13.0 requests' is not one torch"):
        load_config(None, [f"storage.root={tmp_path}", "mlflow.serving_torch=torch==2.13.0 requests"])
    with pytest.raises(ConfigError, match="mlflow.serving_index_url: 'file:/x' is not an http"):
        load_config(None, [f"storage.root={tmp_path}", "mlflow.serving_index_url=file:/x"])


def test_mlflow_models_predict_from_another_directory(registered, tmp_path):
    # the scoring protocol's request format (what Model Serving receives)
    split = json.loads(registered["frame"].to_json(orient="split", index=False))
    (tmp_path / "input.json").write_text(json.dumps({"dataframe_split": split}))
    cli = Path(sys.executable).with_name("mlflow")
    done = subprocess.run([str(cli), "models", "predict", "-m", f"models:/{NAME}@champion", "-i", "input.json",
                           "-t", "json", "-o", "out.json", "--env-manager", "local"],
                          cwd=tmp_path, env=_isolated_env(registered), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    raw = json.loads((tmp_path / "out.json").read_text())
    got = pd.DataFrame(raw["predictions"] if isinstance(raw, dict) else raw)
    np.testing.assert_allclose(got[["p_ctr", "p_ctcvr"]].to_numpy(),
                               registered["expected"][["p_ctr", "p_ctcvr"]].to_numpy(), atol=1e-6)


def test_the_model_is_logged_from_code_with_its_weights_hash_in_the_registry(registered, tmp_path):
    """Issue #25: loading runs no pickle, and scoring checks the weights against the registry."""
    import shutil

    from hinet_spark.scoring.batch import ModelRef, ScoringError, verify_weights
    from hinet_spark.serving import WEIGHTS_TAG, file_sha256

    local = Path(mlflow.artifacts.download_artifacts(f"models:/{NAME}@champion", dst_path=str(tmp_path / "m")))
    assert not list(local.rglob("*.pkl")), list(local.rglob("*.pkl"))  # nothing to unpickle
    flavor = yaml.safe_load((local / "MLmodel").read_text())["flavors"]["python_function"]
    assert flavor["model_code_path"].endswith("serving_code.py"), flavor
    mv = MlflowClient().get_model_version_by_alias(NAME, "champion")
    assert mv.tags[WEIGHTS_TAG] == file_sha256(local / "artifacts" / "weights.pt")
    ref = ModelRef(f"models:/{NAME}/{mv.version}", NAME, str(mv.version), mv.run_id, mv.source)
    verify_weights(local, ref)  # the registered files: fine
    tampered = tmp_path / "tampered"
    shutil.copytree(local, tampered)
    weights = torch.load(tampered / "artifacts" / "weights.pt", weights_only=True)
    weights[next(iter(weights))] += 1.0
    torch.save(weights, tampered / "artifacts" / "weights.pt")
    with pytest.raises(ScoringError, match=rf"model {NAME} version {mv.version} .*: weights\.pt has sha256 .*the "
                                           "registry says .*replaced or damaged after registration"):
        verify_weights(tampered, ref)
    with pytest.raises(Exception, match="weights.pt does not match the sha256 in model_meta.json"):
        mlflow.pyfunc.load_model(str(tampered))  # also refused where the registry is not at hand
