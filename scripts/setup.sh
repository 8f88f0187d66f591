#!/usr/bin/env bash
# One command from a fresh machine to a working environment:
#   - a project-local virtualenv (.venv) on Python 3.11
#   - torch first, then Horovod 0.28.1 built from its sdist with the C++17 fix (PyTorch + Gloo),
#     the built wheel cached outside the repo ($HINET_CACHE/wheels) so later clones reuse it
#   - the rest of the pinned stack from setup.cfg (the local and dev extras)
#   - the Delta Lake jars fetched through Maven into $HINET_CACHE/jars (Spark then starts offline)
#   - a check that proves the stack (scripts/check_stack.py)
# Idempotent: when nothing changed since the last successful run it only re-runs the check.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

# --runtime NAME: an environment pinned like a Databricks runtime (envs/NAME.txt) instead
if [[ "${1:-}" == "--runtime" ]]; then
  exec bash scripts/setup_runtime.sh "${2:?usage: scripts/setup.sh --runtime dbr15.4|dbr17.3|dbr18}"
fi

PYTHON="${PYTHON:-python3.11}"
VENV="${HINET_VENV:-$here/.venv}"
CACHE="${HINET_CACHE:-$HOME/.cache/hinet-spark}"
WHEELS="$CACHE/wheels"
JARS="$CACHE/jars"
TORCH_VERSION="2.13.0"
HOROVOD_VERSION="0.28.1"
DELTA_VERSION="4.0.1"
SCALA_BINARY="2.13"

source scripts/lib.sh

stamp_of() {
  cat setup.cfg scripts/setup.sh scripts/lib.sh | sha256sum | cut -c1-16
}

mkdir -p "$WHEELS" "$JARS"
stamp="$(stamp_of)"
if [[ -x "$VENV/bin/python" && -f "$VENV/.hinet-setup-stamp" && "$(cat "$VENV/.hinet-setup-stamp")" == "$stamp" ]] \
   && ls "$JARS"/delta-spark_"$SCALA_BINARY"-"$DELTA_VERSION".jar >/dev/null 2>&1; then
  log "environment up to date ($VENV); checking the stack"
  HINET_JARS_DIR="$JARS" "$VENV/bin/python" scripts/check_stack.py
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "[setup] error: $PYTHON not found; set PYTHON=/path/to/python3.11" >&2
  exit 1
fi
pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$pyver" != "3.11" ]]; then
  echo "[setup] error: Python 3.11 is required (Horovod's build and Petastorm import distutils); $PYTHON is $pyver" >&2
  exit 1
fi
command -v mvn >/dev/null 2>&1 || { echo "[setup] error: Maven (mvn) is required to fetch the Delta jars" >&2; exit 1; }
command -v cmake >/dev/null 2>&1 || log "cmake not on PATH; it will come from pip"

if [[ ! -x "$VENV/bin/python" ]]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
quiet pip-tools "${PIP[@]}" install -q --upgrade pip wheel "setuptools>=77" packaging cmake

log "torch==$TORCH_VERSION"
quiet torch "${PIP[@]}" install -q "torch==$TORCH_VERSION"

build_horovod "$VENV/bin/python" "$HOROVOD_VERSION" "$WHEELS"
hvd_wheel="$HOROVOD_WHEEL"
quiet horovod-install "${PIP[@]}" install -q "$hvd_wheel"

log "project and pinned stack (setup.cfg, local + dev extras)"
quiet project "${PIP[@]}" install -q --find-links "$WHEELS" -e ".[local,dev]"

delta_jars "$JARS" "$SCALA_BINARY" "$DELTA_VERSION"
spark_defaults "$VENV/bin/python" "$JARS" "$SCALA_BINARY" "$DELTA_VERSION"

HINET_JARS_DIR="$JARS" "$VENV/bin/python" scripts/check_stack.py
echo "$stamp" > "$VENV/.hinet-setup-stamp"
log "done: activate with 'source .venv/bin/activate'"
