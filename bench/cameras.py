"""Camera queries: twin's "who sees this point" against a one-statement PostGIS peer, and cone costs.

    .venv/bin/python bench/cameras.py [--scale 0.2] [--points 200] [--db postgresql://…/video_bench]

Builds the sample town at ``--scale`` into a fresh PostGIS database (unless ``--reuse``), then for
``--points`` random points near cameras asks

* twin: :func:`layers.cameras.covering` (one statement: candidate cameras within the longest
  range through the spatial index; then the exact distance and angle in a local metric frame,
  in Python);
* the peer: one SQL statement doing the same on the geography type
  (``ST_DWithin(geography)`` + ``ST_Azimuth`` against heading ± fov/2), as a PostGIS-only
  implementation would — once on one connection held for the whole run, once taking a
  connection from the pool per query as a server answering requests does (twin's case);

and reports per-query latency (p50/p95) of each, whether both found the same cameras, and the
time of one cone without and with building occlusion. In-process (no HTTP) on one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from pyproj import Geod
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from layers import cameras  # noqa: E402
from twin.db import normalise_url  # noqa: E402
from twin.settings import TwinSettings  # noqa: E402
from twin.store import FeatureQuery, SpatialStore  # noqa: E402

PEER_SQL = text("""
SELECT id FROM cameras
WHERE ST_DWithin(geom::geography, ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography, range_m)
  AND (fov_deg >= 360 OR abs(mod((degrees(ST_Azimuth(geom::geography,
        ST_SetSRID(ST_MakePoint(:lon, :lat), 4326)::geography)) - heading_deg + 540)::numeric, 360) - 180)
      <= fov_deg / 2)
""")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.array(xs) * 1000, q))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=0.2)
    ap.add_argument("--points", type=int, default=200)
    ap.add_argument("--db", default="postgresql://postgres@127.0.0.1:5432/video_bench")
    ap.add_argument("--reuse", action="store_true", help="keep the database if it holds a town")
    args = ap.parse_args()

    admin_url, name = args.db.rsplit("/", 1)
    if not args.reuse:
        admin = create_engine(normalise_url(admin_url + "/postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            c.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    store = SpatialStore.from_url(args.db)
    store.migrate()
    if store.summary("buildings").count == 0:
        from sample_data import build_sample_town

        t0 = time.perf_counter()
        build_sample_town(store, Path("/tmp/video_bench_rasters"), scale=args.scale)
        print(f"sample town (scale {args.scale}) built in {time.perf_counter() - t0:.1f} s")
    settings = TwinSettings(database_url=args.db)

    cams = store.query(FeatureQuery("cameras", limit=100_000))
    geod, rng = Geod(ellps="GRS80"), np.random.default_rng(1)
    points = []
    for g in cams.geometries[rng.integers(0, len(cams.ids), args.points)]:
        lon, lat, _ = geod.fwd(g.x, g.y, float(rng.uniform(0, 360)), float(rng.uniform(0, 150)))
        points.append((lon, lat))

    twin_t, peer_t, peer_req_t, occ_t, same, hits = [], [], [], [], 0, 0
    for _ in range(20):  # warm both (pool, statement caches, psycopg's prepared statements)
        cameras.covering(store, settings, *points[0])
    with store.engine.connect() as conn:
        for lon, lat in points:
            t0 = time.perf_counter()
            ours = {f["id"] for f in cameras.covering(store, settings, lon, lat)["features"]}
            twin_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            theirs = {r[0] for r in conn.execute(PEER_SQL, {"lon": lon, "lat": lat})}
            peer_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()  # the peer as a server runs it: a connection from the pool per request
            with store.engine.connect() as own:
                own.execute(PEER_SQL, {"lon": lon, "lat": lat}).all()
            peer_req_t.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            cameras.covering(store, settings, lon, lat, occlusion=True)
            occ_t.append(time.perf_counter() - t0)
            same += ours == theirs
            hits += bool(ours)

    cone_plain, cone_occ = [], []
    for ident in [str(i) for i in cams.ids[:50]]:
        cam = cameras.find_camera(store, ident)
        t0 = time.perf_counter()
        cameras.cone_feature(cam, settings, store)
        cone_plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        cameras.cone_feature(cam, settings, store, occlusion=True)
        cone_occ.append(time.perf_counter() - t0)

    print(f"\n{len(cams.ids)} cameras, {store.summary('buildings').count} buildings, {len(points)} points "
          f"({hits} covered by at least one camera); same answer from both: {same}/{len(points)}\n")
    print("| query | p50 ms | p95 ms |")
    print("| --- | --- | --- |")
    print(f"| covering, twin (Python exact) | {pct(twin_t, 50):.2f} | {pct(twin_t, 95):.2f} |")
    print(f"| covering, PostGIS one statement (peer), one held connection | {pct(peer_t, 50):.2f} | "
          f"{pct(peer_t, 95):.2f} |")
    print(f"| covering, PostGIS one statement (peer), pool checkout per query | {pct(peer_req_t, 50):.2f} | "
          f"{pct(peer_req_t, 95):.2f} |")
    print(f"| covering, twin, occlusion=true | {pct(occ_t, 50):.2f} | {pct(occ_t, 95):.2f} |")
    print(f"| one cone | {pct(cone_plain, 50):.2f} | {pct(cone_plain, 95):.2f} |")
    print(f"| one cone, occlusion=true | {pct(cone_occ, 50):.2f} | {pct(cone_occ, 95):.2f} |")
    print(f"\nratio twin/peer (p50): {statistics.median(twin_t) / statistics.median(peer_t):.2f} against the held "
          f"connection, {statistics.median(twin_t) / statistics.median(peer_req_t):.2f} against a checkout per query")
    store.engine.dispose()


if __name__ == "__main__":
    main()
