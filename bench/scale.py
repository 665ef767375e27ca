"""Issue 13 part 3: how cost grows with the town — scales 1, 10 and 100 on the same machine.

    .venv/bin/python bench/scale.py build --scale 100      # twin_scale100 (≈2 M buildings), progress bar
    .venv/bin/python bench/scale.py run [--scales 1,10,100] [--n 15]
    bash bench/run.sh scale                                  # build what is missing, then run

Databases: scale 1 → ``twin_scale1``, scale 10 → ``twin_bench`` (``bench/data.py``, read
here only), scale 100 → ``twin_scale100``; each built by ``sample_data.build_sample_town``
(above scale 10 that is ``sample_data.city.build_city``: ten scale-10 districts streamed one
at a time, district 0 being the scale-10 town itself). ``bench_meta`` records the build
time, the load average and the peak memory of the build.

``run`` starts one twin server per database (``harness.twin_server``, tile cache off) and
measures, one request after another over a kept-alive connection, the same requests at
the same relative place of each town — the **town centre**, i.e. the centroid of the
commercial buildings of district 0 (codes without a ``D..-`` prefix) — so the ground, the
streets and the density under the request are the same at every scale and only the size
of the tables (and of the networks) changes:

* uncached z14 and z16 vector tiles (``/tiles/buildings/{z}/{x}/{y}.mvt``, a different
  tile per request, tile cache 0, spiral round the centre);
* an OGC API Features page (``/collections/buildings/items?bbox=…&limit=100``), a
  300 m × 300 m street-sized bbox, moved round the centre;
* a scene (``/scenes/scene.glb``?bbox of 500 m × 500 m);
* a buffer (``/analysis/buffer``: 50 m round one pipe near the centre);
* a trace (``/analysis/trace`` downstream from one water pipe near the centre);
* a load (a fixed GeoJSON file of 1,000 buildings appended with ``twin load`` into a
  scratch copy of the buildings layer in a scratch database — never the measured ones).

Median and p95 per case and scale go to ``bench/results/scale.json``, the curves to
``docs/img/scale.png`` and the table to the ``scale`` section of ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

PG = os.environ.get("BENCH_PG", "postgresql://postgres@127.0.0.1:5432")
SEED = 20261123
RESULTS = BENCH / "results"


def db_name(scale: float) -> str:
    return "twin_bench" if scale == 10 else f"twin_scale{scale:g}"


def db_url(scale: float) -> str:
    return f"{PG}/{db_name(scale)}"


def raster_dir(scale: float) -> Path:
    from data import RASTER_DIR

    return RASTER_DIR if scale == 10 else RESULTS / f"scale{scale:g}" / "rasters"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --------------------------------------------------------------------------- build
def build(scale: float, force: bool = False, jobs: int = 3) -> dict[str, Any]:
    """Build the sample town of ``scale`` into its database (skipped when bench_meta says it is there)."""
    if scale == 10:
        raise SystemExit("scale 10 is twin_bench: build it with `bash bench/run.sh data`")
    from data import building_count, ensure_database, get_meta, sample_town_version, set_meta

    from sample_data import build_sample_town
    from twin.store import SpatialStore

    url = db_url(scale)
    ensure_database(url)
    store = SpatialStore.from_url(url, statement_timeout_ms=6 * 3_600_000)
    store.migrate()
    version = sample_town_version().replace("scale10", f"scale{scale:g}")
    meta = get_meta(store)
    if not force and meta.get("data_version") == version and str(building_count(store)) == meta.get("buildings"):
        store.engine.dispose()
        return {"skipped": True, **meta}
    load_before = loadavg()
    print(f"scale {scale:g}: building into {url} (load average {load_before})", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    counts = build_sample_town(store, raster_dir(scale), seed=SEED, scale=scale, jobs=jobs)
    with store.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
    secs = time.perf_counter() - t0
    peak_gb = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024**2  # largest process
    with store.engine.connect() as conn:
        size = conn.exec_driver_sql("SELECT pg_size_pretty(pg_database_size(current_database()))").scalar_one()
        km = conn.exec_driver_sql("SELECT round(sum(ST_Length(geom::geography))/1000) FROM pipelines").scalar_one()
    rasters = {f: round((raster_dir(scale) / f).stat().st_size / 1e6, 1) for f in ("dem.tif", "ortho.tif")}
    info = {"data_version": version, "buildings": building_count(store), "counts": json.dumps(counts),
            "built_seconds": round(secs, 1), "load_before": load_before, "load_after": loadavg(),
            "peak_rss_gb_per_process": round(peak_gb, 2), "jobs": jobs, "db_size": size, "pipe_km": km, "raster_mb": json.dumps(rasters)}
    set_meta(store, **info)
    store.engine.dispose()
    print(json.dumps(info, indent=1), file=sys.stderr)
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build twin_scale<N>")
    b.add_argument("--scale", type=float, required=True)
    b.add_argument("--force", action="store_true")
    b.add_argument("--jobs", type=int, default=3, help="districts generated at once (~1 GB each)")
    args = ap.parse_args()
    if args.cmd == "build":
        build(args.scale, args.force, args.jobs)


if __name__ == "__main__":
    main()
