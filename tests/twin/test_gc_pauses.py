"""A started worker freezes its start-up heap once (twin/gc_pauses.py) and reports its GC pauses.

Each case runs in a subprocess: gc.freeze() is process-wide, and a worker does it once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import gc, json
from starlette.testclient import TestClient
from gis_api.app import create_app
from twin import gc_pauses
with TestClient(create_app()) as c:
    frozen = gc.get_freeze_count()
    again = gc_pauses.freeze_startup_heap()  # a second app in the same process freezes nothing more
    gc.collect()
    metrics = c.get("/metrics").text
print(json.dumps({"frozen": frozen, "again": again,
                  "pauses": 'twin_gc_pause_seconds_count{generation="2"}' in metrics}))
"""


def run(tmp_path: Path, **env: str) -> dict:
    import json

    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "TWIN_HOME": str(tmp_path),
                              "TWIN_DATABASE_URL": "", "TWIN_MQTT_URL": "", "TWIN_TILE_BLOCKS": "false", **env})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_started_worker_freezes_its_heap_once_and_counts_its_pauses(tmp_path: Path) -> None:
    r = run(tmp_path)
    assert r["frozen"] > 50_000  # the app, its libraries and routers: out of the full passes
    assert r["again"] == 0
    assert r["pauses"]


def test_gc_freeze_can_be_turned_off(tmp_path: Path) -> None:
    r = run(tmp_path, TWIN_GC_FREEZE="false")
    assert r["frozen"] == 0
    assert r["pauses"]
