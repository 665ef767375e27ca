#!/usr/bin/env bash
# One-command benchmarks:  bash bench/run.sh data | features | tiles | scenes | living | analysis | nginx | live | scale | security | all | setup
# Sets up peers (bench/setup.sh), ensures the twin_bench database, runs the bench,
# prints ratios and rewrites its section of docs/benchmarks.md.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$HERE")"
PY="$ROOT/.venv/bin/python"
cd "$ROOT"
bash "$HERE/setup.sh"
what="${1:-all}"; shift || true
case "$what" in
  setup) ;;
  data) "$PY" "$HERE/data.py" "$@" ;;
  features) "$PY" "$HERE/features.py" "$@" ;;
  tiles) "$PY" "$HERE/tiles.py" "$@" ;;
  scenes) "$PY" "$HERE/scenes.py" "$@" ;;
  living) "$PY" "$HERE/living.py" "$@" ;;
  analysis) "$PY" "$HERE/analysis.py" "$@" ;;
  nginx) "$PY" "$HERE/nginx.py" "$@" ;;
  live) PYTHONPATH="$ROOT" "$PY" "$HERE/live.py" --write-doc "$@" ;;
  scale) "$PY" "$HERE/scale.py" run --build "$@" ;;
  security) "$PY" "$HERE/security.py" "$@" ;;
  all) "$PY" "$HERE/features.py" "$@"; "$PY" "$HERE/tiles.py" "$@" ;;
  *) echo "usage: bash bench/run.sh data|features|tiles|scenes|living|analysis|nginx|live|scale|security|all|setup [args]" >&2; exit 2 ;;
esac
