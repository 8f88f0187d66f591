#!/usr/bin/env bash
# Shared steps of scripts/setup.sh and scripts/setup_runtime.sh (sourced, not run).
# Needs: CACHE (the cache folder outside the repo).

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

# build_horovod PYTHON VERSION WHEELDIR: Horovod from its sdist with the C++17 fix (PyTorch +
# Gloo), against the torch already installed in PYTHON's environment; the wheel is cached in
# WHEELDIR (one folder per torch, as the wheel's name does not say which torch it was built for).
build_horovod() {
  local py="$1" version="$2" wheels="$3"
  local wheel
  wheel="$(ls "$wheels"/horovod-"$version"-*.whl 2>/dev/null | head -n 1 || true)"
  if [[ -n "$wheel" ]]; then
    log "reusing cached $wheel"
    HOROVOD_WHEEL="$wheel"
    return
  fi
  log "building horovod==$version from its sdist (PyTorch + Gloo, C++17 patch); a few minutes"
  local build
  build="$(mktemp -d)"
  quiet horovod-download "$py" -m pip download -q --no-deps --no-binary :all: -d "$build" "horovod==$version"
  tar -xzf "$build"/horovod-"$version".tar.gz -C "$build"
  local src="$build/horovod-$version"
  # torch >= 2.1 headers need C++17; the upstream fix was merged but never released.
  sed -i 's/set(CMAKE_CXX_STANDARD 14)/set(CMAKE_CXX_STANDARD 17)/' "$src/CMakeLists.txt" "$src/horovod/torch/CMakeLists.txt"
  grep -q 'CMAKE_CXX_STANDARD 17' "$src/horovod/torch/CMakeLists.txt" || { echo "[setup] error: C++17 patch did not apply" >&2; exit 1; }
  mkdir -p "$wheels"
  quiet horovod-build env HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS="-j$(nproc)" \
    "$py" -m pip wheel -q --no-build-isolation --no-deps -w "$wheels" "$src"
  rm -rf "$build"
  HOROVOD_WHEEL="$(ls "$wheels"/horovod-"$version"-*.whl | head -n 1)"
  log "cached $HOROVOD_WHEEL"
}

# delta_jars JARSDIR SCALA VERSION: io.delta:delta-spark_<SCALA>:<VERSION> and delta-storage,
# fetched through Maven once (Spark then starts offline).
delta_jars() {
  local jars="$1" scala="$2" version="$3"
  mkdir -p "$jars"
  for artifact in "delta-spark_$scala" "delta-storage"; do
    if [[ ! -f "$jars/$artifact-$version.jar" ]]; then
      log "fetching io.delta:$artifact:$version through Maven"
      quiet "maven-$artifact-$version" mvn -B -q -Dstyle.color=never dependency:copy \
        -Dartifact="io.delta:$artifact:$version" -DoutputDirectory="$jars"
    fi
  done
}

# spark_defaults PYTHON JARSDIR SCALA VERSION: any spark-submit / pyspark of PYTHON's environment
# gets Delta, offline: pyspark reads $SPARK_HOME/conf/spark-defaults.conf, and SPARK_HOME of a
# pip install is the package folder. The project's JVM log levels go beside it.
spark_defaults() {
  local py="$1" jars="$2" scala="$3" version="$4"
  local conf
  conf="$("$py" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')/conf"
  mkdir -p "$conf"
  cat > "$conf/spark-defaults.conf" <<CONF
# written by hinet-spark scripts/setup.sh: Delta Lake for every session of this environment
spark.jars $jars/delta-spark_$scala-$version.jar,$jars/delta-storage-$version.jar
spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension
spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog
spark.sql.session.timeZone UTC
CONF
  cp conf/log4j2.properties "$conf/log4j2.properties"
}
