"""Issue 12: OSM-style buildings into PostGIS, `twin load --preset osm` vs `ogr2ogr` (the floor).

    python bench/load.py --rows 100000 [--pg postgresql://postgres@127.0.0.1:5432/postgres]

Writes N OpenStreetMap-style buildings (osm_ref, name, building, building:levels
or height as text "12 m", or neither) to a GeoPackage once, then in the same run:

* **twin**: ``twin load buildings.gpkg --layer buildings --preset osm --mode replace``
  in a subprocess (parses heights/levels, derives floors⇄height, defaults, codes,
  checks CRS and geometries, writes in one transaction, streamed in batches);
* **ogr2ogr**: the same file into a plain table of the same database
  (``-f PostgreSQL``, ``PG_USE_COPY``), no checks, no derivation: the floor.

Wall time and peak RSS (each child's ``VmHWM``) are printed as a table and as
JSON (``bench/results/load-<rows>.json``). Numbers from a busy shared machine are
indicative only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyogrio.raw
import shapely
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def make_gpkg(path: Path, n: int, seed: int = 12) -> None:
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(n)))
    i = np.arange(n)
    x = 120.5 + (i % side) * 2e-4
    y = 31.2 + (i // side) * 2e-4
    w = rng.uniform(4e-5, 1.4e-4, n)
    geoms = shapely.multipolygons(shapely.box(x, y, x + w, y + w).reshape(-1, 1).tolist())
    kind = rng.random(n)
    levels = np.where(kind < 0.45, rng.integers(1, 30, n).astype(str), None).astype(object)
    height = np.where((kind >= 0.45) & (kind < 0.6), [f"{h:.1f} m" for h in rng.uniform(3, 90, n)], None).astype(object)
    building = rng.choice(np.array(["yes", "residential", "apartments", "commercial", "school", "industrial"],
                                   dtype=object), n)
    names = np.where(rng.random(n) < 0.3, [f"楼{k}" for k in range(n)], None).astype(object)
    refs = np.array([f"w{k + 1}" for k in range(n)], dtype=object)
    pyogrio.raw.write(str(path), shapely.to_wkb(np.asarray(geoms, dtype=object)),
                      field_data=[refs, names, building, levels, height],
                      fields=["osm_ref", "name", "building", "building:levels", "height"],
                      geometry_type="MultiPolygon", crs="EPSG:4326", driver="GPKG", layer="buildings")


def ensure_db(pg: str, name: str) -> str:
    admin = create_engine(make_url(pg).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        if not c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name}).scalar():
            c.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(pg).set(database=name).render_as_string(hide_password=False)
    eng = create_engine(make_url(url).set(drivername="postgresql+psycopg"))
    with eng.begin() as c:
        c.execute(text("CREATE EXTENSION IF NOT EXISTS postgis"))
    eng.dispose()
    return url


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(seconds, peak RSS MB, stdout) of one child.

    Peak RSS is the child's ``VmHWM`` from ``/proc``, polled every 20 ms (exec resets it, so
    unlike ``ru_maxrss`` it does not include the memory of this Python process at fork time).
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err)
        peak_kb = 0
        status = Path(f"/proc/{proc.pid}/status")
        while proc.poll() is None:
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak_kb = max(peak_kb, int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        dt = time.perf_counter() - t0
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            sys.exit(f"{cmd[0]} failed: {err.read().decode()[-2000:]}")
        return dt, peak_kb / 1024, out.read().decode()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--pg", default=os.environ.get("TWIN_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres"))
    ap.add_argument("--db", default="twin_bench_load")
    args = ap.parse_args()
    if not shutil.which("ogr2ogr"):
        sys.exit("ogr2ogr not found: apt-get install gdal-bin (run.sh does)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    gpkg = RESULTS / f"osm-buildings-{args.rows}.gpkg"
    if not gpkg.exists():
        print(f"writing {args.rows:,} OSM-style buildings to {gpkg} …", flush=True)
        make_gpkg(gpkg, args.rows)
    url = ensure_db(args.pg, args.db)
    env = {**os.environ, "TWIN_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    load = os.getloadavg()
    twin_s, twin_mb, out = timed([sys.executable, "-m", "gis_api.cli", "load", str(gpkg), "--layer", "buildings",
                                  "--preset", "osm", "--mode", "replace"], env)
    report = json.loads(out)
    u = make_url(url)
    pg_conn = f"PG:host={u.host} port={u.port or 5432} dbname={u.database} user={u.username}"
    ogr_s, ogr_mb, _ = timed(["ogr2ogr", "-f", "PostgreSQL", pg_conn, str(gpkg), "-nln", "ogr_buildings",
                              "-overwrite", "-lco", "GEOMETRY_NAME=geom", "-lco", "SPATIAL_INDEX=GIST",
                              "--config", "PG_USE_COPY", "YES"], env)
    res = {"rows": args.rows, "gpkg_mb": round(gpkg.stat().st_size / 2**20, 1), "load_avg": load,
           "twin": {"seconds": round(twin_s, 1), "peak_rss_mb": round(twin_mb), "written": report["written"],
                    "derived": report["derived"], "defaulted": report["defaulted"]},
           "ogr2ogr": {"seconds": round(ogr_s, 1), "peak_rss_mb": round(ogr_mb)}}
    (RESULTS / f"load-{args.rows}.json").write_text(json.dumps(res, indent=2, ensure_ascii=False))
    print(f"\n{args.rows:,} OSM-style buildings ({res['gpkg_mb']} MB .gpkg) into PostGIS; "
          f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}\n")
    print("| loader | seconds | rows/s | peak RSS |\n| --- | ---: | ---: | ---: |")
    for name, s, mb in (("twin load --preset osm", twin_s, twin_mb), ("ogr2ogr (floor)", ogr_s, ogr_mb)):
        print(f"| {name} | {s:.1f} | {args.rows / s:,.0f} | {mb:.0f} MB |")
    print(f"\ntwin derived {report['derived']}, defaulted {report['defaulted']}; ratio {twin_s / ogr_s:.1f}× ogr2ogr")


if __name__ == "__main__":
    main()
