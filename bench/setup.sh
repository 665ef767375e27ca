#!/usr/bin/env bash
# Idempotent setup of the benchmark peers and the load generator.
#   bench/.venv-tipg     TiPg 1.x (its pins clash with twin's, so it gets its own venv)
#   bench/.venv-titiler  titiler.core + uvicorn
#   bench/.venv-py3dtiles py3dtiles 12.x (3D Tiles peer of bench/scenes.py)
#   wrk                  Debian package (load generator)
# Safe to run repeatedly: each step is skipped when already done.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PY="${BENCH_PYTHON:-python3.11}"
command -v "$PY" >/dev/null || PY=python3

mkvenv() {  # mkvenv DIR CHECK_IMPORT PACKAGES...
  local dir="$1" check="$2"; shift 2
  if [[ -x "$dir/bin/python" ]] && "$dir/bin/python" -c "import $check" 2>/dev/null; then
    return 0
  fi
  echo "setup: creating $dir ($*)" >&2
  "$PY" -m venv "$dir"
  "$dir/bin/pip" install -q --upgrade pip 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  "$dir/bin/pip" install -q "$@" 2>&1 | grep -v "is ignored: it is neither" >&2 || true
  "$dir/bin/python" -c "import $check"
}

mkvenv "$HERE/.venv-tipg" "tipg, uvicorn" "tipg>=1,<2" "uvicorn[standard]"
mkvenv "$HERE/.venv-titiler" "titiler.core, uvicorn" "titiler.core" "uvicorn[standard]"
mkvenv "$HERE/.venv-py3dtiles" "py3dtiles, psycopg2" "py3dtiles>=12,<13" "psycopg2-binary"  # 3D Tiles peer (bench/scenes.py)
mkvenv "$HERE/.venv-qme" "quantized_mesh_encoder" "quantized-mesh-encoder>=0.5,<0.6"  # terrain encoder peer (bench/terrain.py)

if ! command -v wrk >/dev/null; then
  echo "setup: installing wrk" >&2
  if ! apt-get install -y -q wrk >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q wrk >/dev/null 2>&1 || echo "setup: wrk unavailable; benches fall back to an asyncio httpx loop" >&2
  fi
fi
# pgRouting: the peer of the network trace in bench/analysis.py
pgv=$(psql -V 2>/dev/null | grep -oE '[0-9]+' | head -1 || true)
if [ -n "$pgv" ] && ! dpkg -s "postgresql-$pgv-pgrouting" >/dev/null 2>&1; then
  apt-get install -y -q "postgresql-$pgv-pgrouting" >/dev/null 2>&1 || echo "setup: pgrouting unavailable; bench/analysis.py skips its trace peer" >&2
fi
mkdir -p "$HERE/results"
echo "setup: ok (tipg $("$HERE/.venv-tipg/bin/python" -c 'import tipg; print(tipg.__version__)'), titiler.core $("$HERE/.venv-titiler/bin/python" -c 'import titiler.core; print(titiler.core.__version__)'), wrk $(command -v wrk || echo none))" >&2
