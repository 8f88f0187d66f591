# The README's commands. Each one first runs scripts/setup.sh, which is idempotent
# (a ready machine passes through it in seconds).
PY := .venv/bin/python
CONF ?= conf/local.yaml

RUNTIME ?= dbr17.3
# scripts/setup.sh's cache (the environment variable HINET_CACHE moves it)
HINET_CACHE ?= $(HOME)/.cache/hinet-spark
RUNTIME_PY := $(HINET_CACHE)/venvs/$(RUNTIME)/bin/python

.PHONY: setup test test-fast test-runtime demo lint wheel clean-data

setup:
	bash scripts/setup.sh

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

# The tests marked runtime (per stage, those whose behaviour depends on the runtime's Spark, Delta,
# MLflow, pyarrow or launcher: the feature pipeline, training with the runtime's launcher, scoring,
# importing) in an environment pinned like a Databricks LTS ML runtime (envs/$(RUNTIME).txt):
# RUNTIME=dbr15.4, dbr17.3 or dbr18. The whole suite runs in the project's own environment (make test).
test-runtime:
	bash scripts/setup.sh --runtime $(RUNTIME)
	PYTHONPATH=$(CURDIR) HINET_JARS_DIR=$(HINET_CACHE)/jars $(RUNTIME_PY) -m pytest -p no:cacheprovider -m runtime \
	  tests/test_reader.py tests/test_features.py tests/test_training.py tests/test_scoring.py tests/test_import.py

demo: setup
	$(PY) jobs/generate_synthetic.py --conf $(CONF)
	$(PY) jobs/build_features.py --conf $(CONF)
	$(PY) jobs/train_hinet.py --conf $(CONF)
	$(PY) jobs/score_candidates.py --conf $(CONF)
	$(PY) jobs/build_features.py --conf $(CONF) --date 2026-01-08
	$(PY) jobs/evaluate_scores.py --conf $(CONF) --date 2026-01-08
	$(PY) scripts/demo_summary.py --conf $(CONF)

wheel: setup
	bash scripts/build_wheel.sh

lint: setup
	$(PY) -m ruff check hinet_spark jobs tests benchmarks scripts

clean-data:
	rm -rf data
