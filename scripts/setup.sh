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

PYTHON="${PYTHON:-python3.11}"
VENV="${HINET_VENV:-$here/.venv}"
CACHE="${HINET_CACHE:-$HOME/.cache/hinet-spark}"
WHEELS="$CACHE/wheels"
JARS="$CACHE/jars"
TORCH_VERSION="2.13.0"
HOROVOD_VERSION="0.28.1"
DELTA_VERSION="4.0.1"
SCALA_BINARY="2.13"

log() { printf '[setup] %s\n' "$*"; }

# Run a step with its output in $CACHE/logs/<name>.log (pip and the Horovod build print
# pages of build-backend warnings); on failure show the log's tail and stop.
quiet() {
  local name="$1"; shift
  local out="$CACHE/logs/$name.log"
  mkdir -p "$CACHE/logs"
  if ! "$@" >"$out" 2>&1; then
    echo "[setup] error: step '$name' failed; the last lines of $out:" >&2
    tail -n 40 "$out" >&2
    exit 1
  fi
}

stamp_of() {
  cat setup.cfg scripts/setup.sh | sha256sum | cut -c1-16
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

hvd_wheel="$(ls "$WHEELS"/horovod-"$HOROVOD_VERSION"-*.whl 2>/dev/null | head -n 1 || true)"
if [[ -z "$hvd_wheel" ]]; then
  log "building horovod==$HOROVOD_VERSION from its sdist (PyTorch + Gloo, C++17 patch); a few minutes"
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
  quiet horovod-download "${PIP[@]}" download -q --no-deps --no-binary :all: -d "$build" "horovod==$HOROVOD_VERSION"
  tar -xzf "$build"/horovod-"$HOROVOD_VERSION".tar.gz -C "$build"
  src="$build/horovod-$HOROVOD_VERSION"
  # torch >= 2.1 headers need C++17; the upstream fix was merged but never released.
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  grep -q 'CMAKE_CXX_STANDARD 17' "$src/horovod/torch/CMakeLists.txt" || { echo "[setup] error: C++17 patch did not apply" >&2; exit 1; }
  quiet horovod-build env HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
    "${PIP[@]}" wheel -q --no-build-isolation --no-deps -w "$WHEELS" "$src"
  hvd_wheel="$(ls "$WHEELS"/horovod-"$HOROVOD_VERSION"-*.whl | head -n 1)"
  log "cached $hvd_wheel"
else
  log "reusing cached $hvd_wheel"
fi
quiet horovod-install "${PIP[@]}" install -q "$hvd_wheel"

log "project and pinned stack (setup.cfg, local + dev extras)"
quiet project "${PIP[@]}" install -q --find-links "$WHEELS" -e ".[local,dev]"

for artifact in "delta-spark_$SCALA_BINARY" "delta-storage"; do
  jar="$JARS/$artifact-$DELTA_VERSION.jar"
  if [[ ! -f "$jar" ]]; then
    log "fetching io.delta:$artifact:$DELTA_VERSION through Maven"
    quiet "maven-$artifact" mvn -B -q -Dstyle.color=never dependency:copy \
      -Dartifact="io.delta:$artifact:$DELTA_VERSION" -DoutputDirectory="$JARS"
  fi
done

# Any spark-submit / pyspark of this venv gets Delta, offline: pyspark reads
# $SPARK_HOME/conf/spark-defaults.conf, and SPARK_HOME of a pip install is the package folder.
sparkconf="$("$VENV/bin/python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/conf"
mkdir -p "$sparkconf"
cat > "$sparkconf/spark-defaults.conf" <<CONF
# written by hinet-spark scripts/setup.sh: Delta Lake for every session of this virtualenv
spark.jars $JARS/delta-spark_$SCALA_BINARY-$DELTA_VERSION.jar,$JARS/delta-storage-$DELTA_VERSION.jar
spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension
spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog
spark.sql.session.timeZone UTC
CONF
# ... and the project's JVM log levels (warnings only), as the embedded session has them
cp conf/log4j2.properties "$sparkconf/log4j2.properties"

HINET_JARS_DIR="$JARS" "$VENV/bin/python" scripts/check_stack.py
echo "$stamp" > "$VENV/.hinet-setup-stamp"
log "done: activate with 'source .venv/bin/activate'"
