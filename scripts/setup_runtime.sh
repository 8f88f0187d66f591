#!/usr/bin/env bash
# An environment pinned like a Databricks LTS ML runtime, for tests: envs/NAME.txt lists the
# runtime's versions (its header says the Python and the launcher). Built once into
# $HINET_CACHE/venvs/NAME (outside the repo, so a fresh clone and CI reuse it; rebuilt when
# envs/NAME.txt or this script changes), with Horovod built against that torch where the runtime
# ships it, and the Delta jars of that delta-spark written into the environment's Spark config.
# The project itself is not installed there: tests run it from the checkout (PYTHONPATH).
#
#   bash scripts/setup.sh --runtime dbr15.4     # or dbr17.3, dbr18
#   make test-runtime RUNTIME=dbr15.4
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
NAME="${1:?usage: scripts/setup_runtime.sh dbr15.4|dbr17.3|dbr18}"
SPEC="envs/$NAME.txt"
[[ -f "$SPEC" ]] || { echo "[setup] error: no $SPEC (known: $(ls envs | sed 's/\.txt$//' | xargs))" >&2; exit 1; }
CACHE="${HINET_CACHE:-$HOME/.cache/hinet-spark}"
VENV="$CACHE/venvs/$NAME"
source scripts/lib.sh

pyver="$(sed -n 's/^# python: *//p' "$SPEC")"
pin() { sed -n "s/^$1==//p" "$SPEC"; }
torch_v="$(pin torch)"; hvd_v="$(pin horovod)"; delta_v="$(pin delta-spark)"; spark_v="$(pin pyspark)"
scala="2.13"; [[ "$spark_v" == 3.* ]] && scala="2.12"
JARS="$CACHE/jars"
stamp="$(cat "$SPEC" scripts/setup_runtime.sh scripts/lib.sh | sha256sum | cut -c1-16)"

if [[ -x "$VENV/bin/python" && "$(cat "$VENV/.hinet-setup-stamp" 2>/dev/null)" == "$stamp" ]]; then
  log "$NAME environment up to date ($VENV); checking the stack"
else
  python="$(command -v "python$pyver" || true)"
  [[ -n "$python" ]] && "$python" -c '' 2>/dev/null || python="$HOME/.pyenv/versions/$(ls "$HOME/.pyenv/versions" 2>/dev/null | grep "^$pyver\." | sort -V | tail -n 1)/bin/python$pyver"
  [[ -x "$python" ]] || { echo "[setup] error: Python $pyver not found (install it, e.g. with pyenv)" >&2; exit 1; }
  log "$NAME: Python $pyver ($python), pyspark $spark_v, torch $torch_v${hvd_v:+, horovod $hvd_v} -> $VENV"
  rm -rf "$VENV"
  "$python" -m venv "$VENV"
  quiet "$NAME-pip-tools" "$VENV/bin/python" -m pip install -q --upgrade pip wheel "setuptools<70" packaging cmake
  quiet "$NAME-torch" "$VENV/bin/python" -m pip install -q "torch==$torch_v"
  hvd=()
  if [[ -n "$hvd_v" ]]; then
    build_horovod "$VENV/bin/python" "$hvd_v" "$CACHE/wheels/$NAME"
    hvd=(--find-links "$CACHE/wheels/$NAME")
  fi
  log "$NAME: the pinned stack ($SPEC)"
  quiet "$NAME-stack" "$VENV/bin/python" -m pip install -q "${hvd[@]}" -r "$SPEC"
  delta_jars "$JARS" "$scala" "$delta_v"
  spark_defaults "$VENV/bin/python" "$JARS" "$scala" "$delta_v"
  echo "$stamp" > "$VENV/.hinet-setup-stamp"
fi
PYTHONPATH="$here" HINET_JARS_DIR="$JARS" "$VENV/bin/python" scripts/check_stack.py
