#!/usr/bin/env bash
# Build the project wheel (dist/hinet_spark-*.whl) for a cluster: spark-submit --py-files,
# a Databricks job library. conf/*.yaml and schemas/*.json travel inside it
# (hinet_spark/resources), so jobs find base.yaml and the table contracts on executors.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
rm -rf hinet_spark/resources build dist
mkdir -p hinet_spark/resources
cp conf/*.yaml conf/log4j2.properties schemas/*.json hinet_spark/resources/
trap 'rm -rf hinet_spark/resources build' EXIT
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w dist .
ls dist/*.whl
