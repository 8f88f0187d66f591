"""The registered model behind ``mlflow models serve``, from a venv of its own requirements only.

    .venv/bin/python -m benchmarks.bench_serving --model DIR [--default-size] [--rows 1000] [--requests 30]

``DIR`` is a downloaded model (``mlflow artifacts download -u models:/hinet@champion``). The
script builds (or reuses) a virtualenv that holds nothing but the model's ``requirements.txt``
(in ``$HINET_CACHE/venvs/serve-<sha of the requirements>``, the training Python's version),
starts ``mlflow models serve --env-manager local`` from it on 127.0.0.1 in an empty directory
(the project is not importable there: the model's own code serves), POSTs ``--requests``
requests of ``--rows`` raw rows (``scenario`` and the raw feature columns, drawn from the
model's feature spec) and prints the venv's size, the server's start time and the p50 / p95
latency per request. ``--default-size`` serves, instead, a HiNet of conf/base.yaml's model size
(random weights: speed does not depend on them) on the same feature spec. tests/test_scoring.py uses the same helpers to check the served scores
against ``score_candidates``'.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

CACHE = Path(os.environ.get("HINET_CACHE", Path.home() / ".cache" / "hinet-spark"))


def serving_venv(model_dir: Path) -> Path:
    """A virtualenv with only ``model_dir``'s requirements (built once per requirements file)."""
    reqs = (model_dir / "requirements.txt").read_bytes()
    venv = CACHE / "venvs" / f"serve-{hashlib.sha256(reqs).hexdigest()[:16]}"
    if (venv / ".ready").is_file():
        return venv
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    "-r", str(model_dir / "requirements.txt")], check=True)
    (venv / ".ready").write_text(reqs.decode())
    return venv


def size_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(model_dir: Path, venv: Path, workdir: Path, timeout_s: float = 180) -> Iterator[str]:
    """``mlflow models serve`` of ``model_dir`` from ``venv`` on 127.0.0.1; yields its invocations URL."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "MLFLOW_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    log = open(workdir / "serve.log", "w")
    proc = subprocess.Popen([str(venv / "bin" / "mlflow"), "models", "serve", "-m", str(model_dir), "-h", "127.0.0.1",
                             "-p", str(port), "--env-manager", "local", "-w", "1"],
                            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"mlflow models serve exited {proc.returncode}: "
                                   f"{(workdir / 'serve.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not answer /ping in {timeout_s:.0f} s: "
                                   f"{(workdir / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/invocations"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 15)
        proc.wait(timeout=30)
        log.close()


def post(url: str, rows: pd.DataFrame) -> pd.DataFrame:
    """POST ``rows`` in the scoring protocol's ``dataframe_split`` form; the predictions as a frame."""
    split = json.loads(rows.to_json(orient="split", index=False))
    request = urllib.request.Request(url, data=json.dumps({"dataframe_split": split}).encode(),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as r:
            body = json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise RuntimeError(f"HTTP {exc.code}: {exc.read().decode()[:2000]}") from None
    return pd.DataFrame(body["predictions"] if isinstance(body, dict) else body)


def random_raw_rows(spec, n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` raw rows for ``spec``: known scenarios, values inside each feature's fitted range."""
    from hinet_spark.features.rows import raw_columns

    rng = np.random.default_rng(seed)
    out = {"scenario": rng.choice(list(spec.scenarios), n)}
    for name, bounds in spec.bucketed.items():
        lo, hi = (bounds[0], bounds[-1]) if bounds else (0.0, 1.0)
        out[name] = np.round(rng.uniform(max(lo, 0.0), max(hi, 0.0) + 1e-9, n), 3)
    for name, vocab in spec.categorical.items():
        out[name] = rng.choice([*vocab, "never-seen"], n)
    for name in spec.hashed:
        out[name] = [f"{name}-{k}" for k in rng.integers(0, 10**6, n)]
    return pd.DataFrame(out)[raw_columns(spec)]


def default_size_model(spec_file: Path, workdir: Path) -> Path:
    """A conf/base.yaml-size HiNet (random weights) on ``spec_file``'s features, logged to a
    throwaway sqlite store and downloaded: the model folder to serve."""
    import mlflow
    import torch

    from hinet_spark.config import load_config
    from hinet_spark.features.spec import FeatureSpec
    from hinet_spark.models import ModelSpec, build_model
    from hinet_spark.serving import log_pyfunc

    spec = FeatureSpec.load(spec_file)
    store = workdir / "store"
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    store.mkdir(parents=True, exist_ok=True)
    experiment = mlflow.get_experiment_by_name("bench-serving") or mlflow.get_experiment(
        mlflow.create_experiment("bench-serving", artifact_location=(store / "artifacts").as_uri()))  # not ./mlruns
    model_spec = ModelSpec(load_config(None, [f"storage.root={store}"]).model, spec.vocab_sizes, len(spec.scenarios))
    torch.manual_seed(0)
    with mlflow.start_run(experiment_id=experiment.experiment_id):
        info = log_pyfunc(build_model(model_spec).eval(), model_spec, spec, None)
    return Path(mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(workdir / "default_model")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, type=Path, help="a downloaded model folder (holds MLmodel)")
    parser.add_argument("--default-size", action="store_true",
                        help="serve a conf/base.yaml-size HiNet on the model's feature spec instead")
    parser.add_argument("--rows", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--workdir", type=Path, default=Path("benchmarks/out/serving"))
    args = parser.parse_args(argv)
    from hinet_spark.features.spec import FeatureSpec

    model = args.model.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    if args.default_size:
        model = default_size_model(model / "artifacts" / "feature_spec.json", args.workdir.resolve())
    spec = FeatureSpec.load(model / "artifacts" / "feature_spec.json")
    meta = json.loads((model / "artifacts" / "model_meta.json").read_text())
    print(f"model: {meta['model']['name']}, {len(spec.columns)} features, sei_hidden {meta['model']['sei_hidden']}, "
          f"embedding_dim {meta['model']['embedding_dim']}")
    clock = time.perf_counter()
    venv = serving_venv(model)
    print(f"venv {venv.name}: {size_bytes(venv) / 2**30:.2f} GiB ({time.perf_counter() - clock:.0f} s to build or "
          f"find); requirements: {' '.join((model / 'requirements.txt').read_text().split())}")
    rows = random_raw_rows(spec, args.rows)
    clock = time.perf_counter()
    with served(model, venv, args.workdir.resolve()) as url:
        print(f"server answered /ping after {time.perf_counter() - clock:.1f} s")
        post(url, rows.head(10))  # warm-up
        times = []
        for _ in range(args.requests):
            t = time.perf_counter()
            out = post(url, rows)
            times.append(time.perf_counter() - t)
        assert len(out) == len(rows)
    ms = np.array(times) * 1000
    print(f"{args.requests} requests of {args.rows} raw rows: p50 {np.percentile(ms, 50):.1f} ms, "
          f"p95 {np.percentile(ms, 95):.1f} ms, {np.median(ms) / args.rows * 1000:.1f} us per row")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
