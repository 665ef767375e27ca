"""Issue 8: analysis speed — buffer-and-intersect vs hand-written PostGIS SQL, cross-section, network
trace and valve isolation (vs pgRouting doing the same traversal), dust-heat recompute, search.

    .venv/bin/python bench/analysis.py                # 10× sample town (the issue's scale)
    .venv/bin/python bench/analysis.py --quick        # 0.2× town, fewer samples: proves it runs
    .venv/bin/python bench/analysis.py --scale 2 --n 100 --db twin_bench_analysis_mine --no-doc
                                                      # a smaller town in a database of your own, no doc update

Everything runs in one process against one PostGIS database (``twin_bench_analysis``, built
from the sample town at ``--scale`` and reused while the scale matches). Each analysis is timed
as the HTTP handler runs it (the ``run_*`` functions behind the routers: store reads, the
analysis, the JSON-ready result), without HTTP itself; the peers are timed from the same
Python process over psycopg, so both sides pay the same client overhead:

* **buffer** 50 m around random points in the built-up area, buildings layer: twin's
  ``run_buffer`` vs one hand-written ``ST_DWithin(geography)`` query with the bbox prefilter
  (``&& ST_Expand``) returning the same columns — the floor. Both answers are compared.
* **cross-section**: 30 m cuts across random pipes.
* **trace**: downstream from random water pipes over the whole network: twin's in-memory
  graph vs ``pgr_drivingDistance`` (Debian ``postgresql-15-pgrouting``) over the same directed
  edges; the reached node sets are compared.
* **valve isolation** on random water pipes; **dust heat** full recompute at 25 m cells over the
  monitors' extent (readings changed before each run, so nothing is cached); **search** p50.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import harness as h  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
DB_NAME = "twin_bench_analysis"
DB_URL = f"postgresql://postgres@127.0.0.1:5432/{DB_NAME}"
GOALS_MS = {"buffer": 50.0, "cross-section": 50.0, "trace": 200.0, "valve-isolation": 200.0,
            "dust-heat": 500.0, "search": 30.0}


def timed(fn, *args, **kw) -> tuple[float, Any]:  # noqa: ANN001
    t = time.perf_counter()
    out = fn(*args, **kw)
    return (time.perf_counter() - t) * 1000.0, out


def q(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    return {"p50": statistics.median(v), "p95": v[min(len(v) - 1, int(round(0.95 * (len(v) - 1))))], "n": len(v)}


def ensure_db(scale: float):  # noqa: ANN201
    import psycopg

    from sample_data import build_sample_town
    from twin.store import SpatialStore

    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone():
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    home = "analysis-home" if DB_NAME == "twin_bench_analysis" else f"analysis-home-{DB_NAME}"
    raster_dir = BENCH / "results" / home / "rasters"  # TwinSettings(home=…).raster_dir
    if scale == 10.0 and DB_NAME == "twin_bench_analysis":
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            has = conn.execute("SELECT to_regclass('bench_meta') IS NOT NULL").fetchone()[0]
            row = conn.execute("SELECT v FROM bench_meta WHERE k = 'scale'").fetchone() if has else None
        if row is None or float(row[0]) != scale or not (raster_dir / "dem.tif").exists():
            _clone_bench_town(raster_dir)
    store = SpatialStore.from_url(DB_URL)
    store.migrate()
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (k text primary key, v text)")
        row = conn.execute("SELECT v FROM bench_meta WHERE k = 'scale'").fetchone()
        if row is None or float(row[0]) != scale or not (raster_dir / "dem.tif").exists():
            print(f"building the sample town at scale {scale} …", flush=True)
            t = time.perf_counter()
            build_sample_town(store, raster_dir, scale=scale)
            conn.execute("INSERT INTO bench_meta VALUES ('scale', %s) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
                         (str(scale),))
            print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    return store, raster_dir


def _clone_bench_town(raster_dir: Path) -> bool:
    """The 10× town is the one ``bench/data.py`` builds as ``twin_bench`` (same generator, seed and scale):
    copy that database (``CREATE DATABASE … TEMPLATE``, a file copy) and its rasters instead of
    generating it again for 20 minutes. False if there is no such town to copy."""
    import shutil

    import psycopg
    from data import DB_URL as TOWN_URL
    from data import RASTER_DIR

    town_db = TOWN_URL.rsplit("/", 1)[1]
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    try:
        with psycopg.connect(TOWN_URL) as town:
            n = town.execute("SELECT count(*) FROM buildings").fetchone()[0]
    except psycopg.Error:
        return False
    if n != 200_000 or not (RASTER_DIR / "dem.tif").exists():
        return False
    print(f"copying the 10× town from {town_db} …", flush=True)
    with psycopg.connect(admin, autocommit=True) as a:
        a.execute("DROP DATABASE IF EXISTS twin_bench_analysis WITH (FORCE)")
        a.execute(f'CREATE DATABASE twin_bench_analysis TEMPLATE "{town_db}"')
    raster_dir.mkdir(parents=True, exist_ok=True)
    for f in RASTER_DIR.glob("*.tif"):
        shutil.copy2(f, raster_dir / f.name)
    with psycopg.connect(DB_URL, autocommit=True) as c:
        c.execute("DROP TABLE IF EXISTS bench_meta")
        c.execute("CREATE TABLE bench_meta (k text primary key, v text)")
        c.execute("INSERT INTO bench_meta VALUES ('scale', '10.0')")
    return True


def bench_buffer(store, settings, rng, n: int) -> dict[str, Any]:  # noqa: ANN001
    import psycopg

    from gis_api.routers.analysis import BufferRequest, run_buffer
    from twin.analysis.source import features_in_bbox
    from twin.catalog import get_layer

    b = features_in_bbox(store, "buildings", (-180, -90, 180, 90), cap=10**7, properties=["code"])
    pts = [b.geometries[int(i)].centroid for i in rng.integers(0, len(b), n)]
    cols = ", ".join(f'"{c.name}"' for c in get_layer("buildings").property_columns)
    sql = (f"SELECT id, {cols}, ST_AsBinary(geom), ST_Distance(geom::geography, p::geography) AS d "
           "FROM buildings, (SELECT ST_SetSRID(ST_MakePoint(%(x)s, %(y)s), 4326) AS p) s "
           "WHERE geom && ST_Expand(p, %(deg)s) AND ST_DWithin(geom::geography, p::geography, %(m)s) ORDER BY d")
    ours, floor, mismatch, counts = [], [], 0, []
    with psycopg.connect(DB_URL) as conn:
        for p in pts:
            req = BufferRequest(geometry={"type": "Point", "coordinates": [p.x, p.y]}, distance=50, layers=["buildings"])
            ms, res = timed(run_buffer, store, settings, req)
            ours.append(ms)
            deg = 50 / 111_000 / np.cos(np.radians(p.y)) * 1.01
            ms2, rows = timed(lambda p=p, deg=deg: conn.execute(sql, {"x": p.x, "y": p.y, "deg": deg, "m": 50}).fetchall())
            floor.append(ms2)
            got = {f["id"] for f in res["features"]["features"]}
            want = {r[0] for r in rows if r[-1] < 49.99}
            near_edge = {r[0] for r in rows if r[-1] >= 49.99}
            if not (want <= got <= want | near_edge | _edge_extra(res)):
                mismatch += 1
            counts.append(len(got))
    return {"twin": q(ours), "postgis_sql": q(floor), "mismatches": mismatch, "mean_hits": float(np.mean(counts))}


def _edge_extra(res: dict[str, Any]) -> set[int]:
    """Hits within 1 cm of the buffer edge (geography and the local frame may disagree by < 1 cm)."""
    return {f["id"] for f in res["features"]["features"] if f["properties"]["distance_m"] > 49.99}


def bench_section(store, settings, rng, n: int) -> dict[str, Any]:  # noqa: ANN001
    import shapely

    from gis_api.routers.analysis import CrossSectionRequest, run_cross_section
    from twin.analysis.metric import frame_for
    from twin.analysis.source import features_in_bbox

    pipes = features_in_bbox(store, "pipelines", (-180, -90, 180, 90), cap=10**7, properties=["code"])
    times, crossings = [], []
    for i in rng.integers(0, len(pipes), n):
        g = pipes.geometries[int(i)]
        fr = frame_for(g)
        m = fr.to_metric(g).interpolate(0.5, normalized=True)
        ang = rng.uniform(0, np.pi)
        cut = fr.to_lonlat(shapely.LineString([(m.x - 15 * np.cos(ang), m.y - 15 * np.sin(ang)),
                                               (m.x + 15 * np.cos(ang), m.y + 15 * np.sin(ang))]))
        ms, sec = timed(run_cross_section, store, settings, CrossSectionRequest(line=shapely.geometry.mapping(cut)))
        times.append(ms)
        crossings.append(len(sec.crossings))
    return {"twin": q(times), "mean_crossings": float(np.mean(crossings))}


def bench_network(store, settings, rng, n: int) -> dict[str, Any]:  # noqa: ANN001
    import psycopg

    from gis_api.routers.analysis import FeatureRef
    from gis_api.routers.analysis_network import (
        IsolationRequest,
        TraceRequest,
        run_isolation,
        run_trace,
    )
    from twin.analysis.network_service import NetworkService

    svc = NetworkService(store)
    build_ms, _ = timed(svc.utilities)
    net = svc.network("water_supply")
    codes = sorted(net.pipes)
    vid = {c: k + 1 for k, c in enumerate(sorted(net.graph.nodes))}
    out: dict[str, Any] = {"graph_build_ms": build_ms, "pipes": len(codes), "nodes": len(vid)}
    pg_times: list[float] = []
    have_pgr = False
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pgrouting")
            have_pgr = True
        except psycopg.Error as exc:
            out["pgrouting"] = f"unavailable: {str(exc).splitlines()[0]} (apt-get install postgresql-15-pgrouting)"
        if have_pgr:
            conn.execute("DROP TABLE IF EXISTS bench_water_edges")
            conn.execute("CREATE TABLE bench_water_edges (id int primary key, source int, target int, "
                         "cost float8, reverse_cost float8)")
            with conn.cursor().copy("COPY bench_water_edges FROM STDIN") as cp:
                for k, c in enumerate(codes):
                    p = net.pipes[c]
                    cp.write_row((k + 1, vid[p.flow_from], vid[p.flow_to], max(p.length_m, 1e-6), -1.0))
            conn.execute("ANALYZE bench_water_edges")
    # the first isolation finds every building's and device's nearest pipe (once per data version)
    first = net.pipes[codes[0]].id
    out["isolation_first_ms"], _ = timed(run_isolation, svc, settings,
                                         IsolationRequest(feature=FeatureRef(layer="pipelines", id=first)))
    trace_core, trace_full, iso_core, iso_full, mism = [], [], [], [], 0
    with psycopg.connect(DB_URL) as conn:
        for i in rng.integers(0, len(codes), n):
            code = codes[int(i)]
            ms, (_, nodes) = timed(net.trace, code, "downstream")
            trace_core.append(ms)
            fid = net.pipes[code].id
            ms, _ = timed(run_trace, svc, settings, TraceRequest(feature=FeatureRef(layer="pipelines", id=fid),
                                                                direction="downstream"))
            trace_full.append(ms)
            ms, _ = timed(net.isolate, code)
            iso_core.append(ms)
            ms, _ = timed(run_isolation, svc, settings, IsolationRequest(feature=FeatureRef(layer="pipelines", id=fid)))
            iso_full.append(ms)
            if have_pgr:
                start = vid[net.pipes[code].flow_to]
                ms, rows = timed(lambda start=start: conn.execute(
                    "SELECT node FROM pgr_drivingDistance('SELECT id, source, target, cost, reverse_cost "
                    "FROM bench_water_edges', %s, 1e12, true)", (start,)).fetchall())
                pg_times.append(ms)
                if {r[0] for r in rows} != {vid[c] for c in nodes}:
                    mism += 1
    out.update({"trace_traversal": q(trace_core), "trace_request": q(trace_full),
                "isolation_traversal": q(iso_core), "isolation_request": q(iso_full)})
    out["isolation_after_change"] = bench_after_change(svc, settings, codes, rng, max(5, n // 10))
    if have_pgr:
        out["pgrouting_driving_distance"] = q(pg_times)
        out["trace_mismatches_vs_pgrouting"] = mism
    return out


def bench_after_change(svc, settings, codes: list[str], rng, k: int) -> dict[str, Any]:  # noqa: ANN001
    """The first valve isolation after another client edits the water network, ``k`` times.

    Each round edits a water pipe over SQL (by turns one pipe's diameter ±1 mm, another's geometry
    moved ±10 cm, so whole cycles leave the data as it was), waits until the version clock sees the change, then times the first isolation of another
    random pipe: the networks are patched inside that request (nothing warms them beforehand).
    """
    import psycopg

    from gis_api.routers.analysis import FeatureRef
    from gis_api.routers.analysis_network import IsolationRequest, run_isolation

    times, kinds, stale = [], [], 0
    a, b = (svc.network("water_supply").pipes[codes[int(i)]].id for i in rng.integers(0, len(codes), 2))
    edits = [("attribute", "UPDATE pipelines SET diameter_mm = diameter_mm + 1 WHERE id = %s", a),
             ("geometry", "UPDATE pipelines SET geom = ST_Translate(geom, 1e-6, 0) WHERE id = %s", b),
             ("attribute", "UPDATE pipelines SET diameter_mm = diameter_mm - 1 WHERE id = %s", a),
             ("geometry", "UPDATE pipelines SET geom = ST_Translate(geom, -1e-6, 0) WHERE id = %s", b)]
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        for j in range(4 * ((k + 3) // 4)):  # whole cycles: the data ends as it began
            kind, sql, fid = edits[j % 4]
            conn.execute(sql, (fid,))
            kinds.append(kind)
            time.sleep(svc.clock.ttl_s + 0.05)  # the edit is now visible to the next request
            net = svc.network("water_supply")
            start = net.pipes[codes[int(rng.integers(0, len(codes)))]].id
            ms, out = timed(run_isolation, svc, settings, IsolationRequest(feature=FeatureRef(layer="pipelines", id=start)))
            times.append(ms)
            stale += bool(out["data_version"]["stale"])  # answered from the previous version (patch not done in time)
    return {**q(times), "edits": kinds, "stale": stale}


def bench_dust(store, n: int) -> dict[str, Any]:  # noqa: ANN001
    from twin.analysis.dust_service import DustHeatService
    from twin.analysis.source import features_in_bbox

    svc = DustHeatService(store)
    devs = features_in_bbox(store, "devices", (-180, -90, 180, 90), cap=10**6, filters={"kind": "dust"})
    rng = np.random.default_rng(3)
    times, cells = [], 0
    for _ in range(n):
        svc.set_inputs({p["code"]: float(rng.uniform(40, 320)) for p in devs.properties}, replace=True)
        ms, grid = timed(svc.grid, None, 25.0)
        times.append(ms)
        cells = int(grid.scores.size) if grid is not None else 0
    return {"twin": q(times), "cells": cells, "monitors": len(devs)}


def bench_search(store, n: int) -> dict[str, Any]:  # noqa: ANN001
    import re

    from twin.analysis.source import features_in_bbox
    from twin.search import SearchService

    svc = SearchService(store)
    build_ms, _ = timed(svc.index)
    b = features_in_bbox(store, "buildings", (-180, -90, 180, 90), cap=10**7, properties=["code", "address"])
    rng = np.random.default_rng(5)
    queries = []
    for i in rng.integers(0, len(b), n):
        p = b.properties[int(i)]
        addr = p["address"] or p["code"]
        m = re.match(r"^(.*?)(\d+)组", addr)
        queries.append([addr[:3], addr, p["code"].lower(), f"{m.group(1)}{int(m.group(2))}组" if m else addr[:5]]
                       [int(rng.integers(0, 4))])
    times = [timed(svc.search, qq, 20)[0] for qq in queries]
    return {"twin": q(times), "index_build_ms": build_ms, "entries": len(svc.index().ids)}


def main() -> None:
    global DB_NAME, DB_URL
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="0.2× town and fewer samples")
    ap.add_argument("--scale", type=float, default=None, help="sample-town scale (default 10, --quick 0.2)")
    ap.add_argument("--n", type=int, default=None, help="samples per analysis (default 200, --quick 20)")
    ap.add_argument("--db", default=DB_NAME, help="PostGIS database to build and use (default %(default)s; "
                    "give your own name for a run at another scale, so the 10× database is not rebuilt)")
    ap.add_argument("--no-doc", action="store_true", help="do not write the table into docs/benchmarks.md")
    args = ap.parse_args()
    if not args.db.replace("_", "").isalnum():
        ap.error("--db: letters, digits and _ only")
    DB_NAME, DB_URL = args.db, f"postgresql://postgres@127.0.0.1:5432/{args.db}"
    scale = args.scale or (0.2 if args.quick else 10.0)
    n = args.n or (20 if args.quick else 200)
    from twin.settings import TwinSettings

    store, raster_dir = ensure_db(scale)
    settings = TwinSettings(home=raster_dir.parent, database_url=DB_URL)
    assert settings.raster_dir == raster_dir
    rng = np.random.default_rng(11)
    meta = {"date": h.now(), "commit": h.git_commit(), "load_before": h.loadavg(), "scale": scale, "n": n,
            "machine": h.machine_info(), "command": "python bench/analysis.py" + (" --quick" if args.quick else "")}
    print(f"analysis bench: scale {scale}, n {n}, load avg {meta['load_before']}", flush=True)
    res: dict[str, Any] = {"meta": meta}
    res["buffer"] = bench_buffer(store, settings, rng, n)
    print("buffer", res["buffer"], flush=True)
    res["cross-section"] = bench_section(store, settings, rng, n)
    print("cross-section", res["cross-section"], flush=True)
    res["network"] = bench_network(store, settings, rng, n)
    print("network", res["network"], flush=True)
    res["dust-heat"] = bench_dust(store, max(3, n // 20))
    print("dust-heat", res["dust-heat"], flush=True)
    res["search"] = bench_search(store, n)
    print("search", res["search"], flush=True)
    res["meta"]["load_after"] = h.loadavg()
    path = h.save_json("analysis", res)
    if not args.no_doc:
        write_doc(res)
    print(f"results: {path}")


def write_doc(res: dict[str, Any]) -> None:
    m = res["meta"]
    net = res["network"]
    pg = net.get("pgrouting_driving_distance", {}).get("p50", float("nan"))
    buf = res["buffer"]
    pg95 = net.get("pgrouting_driving_distance", {}).get("p95", float("nan"))
    after = net.get("isolation_after_change", {})
    rows = [
        ["buffer 50 m ∩ buildings", buf["twin"]["p50"], buf["twin"]["p95"], buf["postgis_sql"]["p50"],
         buf["postgis_sql"]["p95"], h.ratio(buf["twin"]["p50"], buf["postgis_sql"]["p50"]), GOALS_MS["buffer"],
         h.verdict(buf["twin"]["p50"] <= GOALS_MS["buffer"] and buf["twin"]["p50"] <= 1.5 * buf["postgis_sql"]["p50"])],
        ["cross-section 30 m", res["cross-section"]["twin"]["p50"], res["cross-section"]["twin"]["p95"], "–", "–", "–",
         GOALS_MS["cross-section"], h.verdict(res["cross-section"]["twin"]["p50"] <= GOALS_MS["cross-section"])],
        ["trace downstream (traversal)", net["trace_traversal"]["p50"], net["trace_traversal"]["p95"], pg, pg95,
         h.ratio(net["trace_traversal"]["p50"], pg), GOALS_MS["trace"],
         h.verdict(net["trace_traversal"]["p50"] <= GOALS_MS["trace"] and (pg != pg or net["trace_traversal"]["p50"] < pg))],
        ["trace downstream (request)", net["trace_request"]["p50"], net["trace_request"]["p95"], "–", "–", "–",
         GOALS_MS["trace"], h.verdict(net["trace_request"]["p95"] <= GOALS_MS["trace"])],
        ["valve isolation (traversal)", net["isolation_traversal"]["p50"], net["isolation_traversal"]["p95"], pg, pg95,
         h.ratio(net["isolation_traversal"]["p50"], pg), GOALS_MS["valve-isolation"],
         h.verdict(net["isolation_traversal"]["p95"] <= GOALS_MS["valve-isolation"]
                   and (pg != pg or net["isolation_traversal"]["p50"] < pg))],
        ["valve isolation (request)", net["isolation_request"]["p50"], net["isolation_request"]["p95"], "–", "–", "–",
         GOALS_MS["valve-isolation"], h.verdict(net["isolation_request"]["p95"] <= GOALS_MS["valve-isolation"])],
        [f"valve isolation, first after an edit ({after.get('n', 0)} edits)", after.get("p50", float("nan")),
         after.get("p95", float("nan")), "–", "–", "–", GOALS_MS["valve-isolation"],
         h.verdict(after.get("p95", float("inf")) <= GOALS_MS["valve-isolation"])],
        [f"dust heat recompute ({res['dust-heat']['cells']:,} cells of 25 m)", res["dust-heat"]["twin"]["p50"],
         res["dust-heat"]["twin"]["p95"], "–", "–", "–", GOALS_MS["dust-heat"],
         h.verdict(res["dust-heat"]["twin"]["p50"] <= GOALS_MS["dust-heat"])],
        ["search", res["search"]["twin"]["p50"], res["search"]["twin"]["p95"], "–", "–", "–", GOALS_MS["search"],
         h.verdict(res["search"]["twin"]["p50"] <= GOALS_MS["search"])],
    ]
    body = "\n".join([
        "## Analysis (issue 8)", "",
        f"`{m['command']}` — {m['date']}, commit {m['commit']}, sample town ×{m['scale']}, {m['n']} samples each, "
        f"load average {m['load_before']} → {m.get('load_after', '?')} (busy shared machine: indicative only)."
        + ("" if m["scale"] >= 10 else " **Small-scale run to prove the script**: the issue's goals are for the "
           "10× town — `bash bench/run.sh analysis`."), "",
        h.md_table(["analysis", "twin p50 ms", "twin p95 ms", "peer p50 ms", "peer p95 ms", "twin/peer (p50)", "goal ms",
                    "verdict"], rows),
        "",
        f"Peers: buffer — one hand-written PostGIS query (`&& ST_Expand` + `ST_DWithin(geography)`, same columns); "
        f"answers differed in {buf['mismatches']} of {buf['twin']['n']} cases (mean {buf['mean_hits']:.1f} hits). "
        f"Trace — `pgr_drivingDistance` over the same directed water edges "
        f"({net['pipes']:,} pipes); node sets differed in {net.get('trace_mismatches_vs_pgrouting', '–')} cases. "
        f"{net.get('pgrouting', '')} Valve isolation's peer is the same pgRouting traversal: a lower bound of "
        "an isolation in pgRouting, which needs two (from the burst to the valves, then from the sources). "
        f"Network graphs built from scratch in {net['graph_build_ms']:.0f} ms and the first isolation "
        f"(nearest pipe of every building and device) took {net.get('isolation_first_ms', float('nan')):.0f} ms, "
        "both once at start, outside the samples; after that an edit is patched in by the first request that "
        "sees it (the *first after an edit* line: another client edits one water pipe over SQL — its diameter "
        "or its geometry, by turns — and the next isolation is timed; "
        f"{after.get('stale', '?')} of {after.get('n', 0)} of those answers came from the previous version "
        "because the patch took longer than the request waits); "
        f"search index of {res['search']['entries']:,} texts built in {res['search']['index_build_ms']:.0f} ms "
        "(once per data version).",
    ])
    h.write_section(DOC, "analysis", body)


if __name__ == "__main__":
    main()
