"""Issue 2: OGC API Features bbox queries, twin vs TiPg, and GeoPackage load time.

    bash bench/run.sh features            # or: .venv/bin/python bench/features.py
    .venv/bin/python bench/features.py --quick   # fewer requests, shorter wrk runs

Both servers run side by side on the same database (``twin_bench``), one uvicorn
worker each. For a fixed set of random bboxes in the built-up area, each holding
≥500 buildings, both are asked for ``limit=500`` items:

* sequential latency (p50/p95) over ``--n`` requests each, one kept-alive connection;
* throughput with ``wrk -t1 -c4`` for ``--seconds`` each, cycling over the bboxes.

Then the buildings are exported to a GeoPackage and loaded with
``twin.loader.load_file(store, path, "buildings", mode="replace")`` into a separate
database (``twin_bench_load``) so the benchmark data stays untouched.
"""

from __future__ import annotations

import argparse
import json
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
from data import DB_URL, ensure_data  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
LOAD_DB_URL = DB_URL.rsplit("/", 1)[0] + "/twin_bench_load"
GOAL_P50_MS = 30.0
GOAL_LOAD_S = 60.0
N_BBOXES = 40


def pick_bboxes(n: int = N_BBOXES, seed: int = 7, min_count: int = 500) -> list[tuple[float, ...]]:
    """``n`` bboxes around random buildings (so density-weighted), grown until they hold ≥``min_count``."""
    import psycopg

    rng = np.random.default_rng(seed)
    out: list[tuple[float, ...]] = []
    with psycopg.connect(DB_URL.replace("postgresql://", "postgresql://", 1)) as conn:
        total = conn.execute("SELECT count(*) FROM buildings").fetchone()[0]
        ids = [r[0] for r in conn.execute("SELECT id FROM buildings ORDER BY id").fetchall()]
        tries = 0
        while len(out) < n and tries < n * 20:
            tries += 1
            fid = ids[int(rng.integers(0, total))]
            x, y = conn.execute("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geom) c FROM buildings "
                                "WHERE id = %s) s", (fid,)).fetchone()
            half = 0.0015
            while half < 0.01:
                bbox = (round(x - half, 6), round(y - half, 6), round(x + half, 6), round(y + half, 6))
                cnt = conn.execute("SELECT count(*) FROM buildings WHERE geom && ST_MakeEnvelope(%s,%s,%s,%s,4326)",
                                   bbox).fetchone()[0]
                if cnt >= min_count:
                    out.append(bbox)
                    break
                half *= 1.4
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} bboxes with ≥{min_count} buildings found")
    return out


def check_page(port: int, path: str) -> tuple[bool, str]:
    status, _, body = h.http_get(port, path)
    if status != 200:
        return False, f"HTTP {status}: {body[:200]!r}"
    doc = json.loads(body)
    got = len(doc.get("features", []))
    return got == 500, f"{got} features, {len(body) / 1024:.0f} KB"


def bench_items(args: argparse.Namespace) -> dict[str, Any]:
    bboxes = pick_bboxes()
    bb = [",".join(f"{v:.6f}" for v in b) for b in bboxes]
    paths = {
        "twin": [f"/collections/buildings/items?bbox={b}&limit=500" for b in bb],
        "tipg": [f"/collections/public.buildings/items?bbox={b}&limit=500" for b in bb],
    }
    res: dict[str, Any] = {"bboxes": len(bb)}
    with h.twin_server(DB_URL) as twin, h.tipg_server(DB_URL) as tipg:
        ports = {"twin": twin.port, "tipg": tipg.port}
        for name in ("twin", "tipg"):
            ok, info = check_page(ports[name], paths[name][0])
            res[f"{name}_check"] = info
            print(f"  check {name}: {info}")
            if not ok:
                raise RuntimeError(f"{name} did not return 500 features: {info}")
            h.sample(ports[name], paths[name], n=min(40, args.n))  # warm-up (pools, caches)
        for name in ("twin", "tipg"):
            s = h.sample(ports[name], paths[name], n=args.n)
            res[f"{name}_seq"] = s.__dict__
            print(f"  sequential {name}: p50 {s.p50_ms:.1f} ms  p95 {s.p95_ms:.1f} ms  ({s.n} req, {s.mean_kb:.0f} KB)")
        for name in ("twin", "tipg"):
            r = h.wrk(ports[name], paths[name], connections=4, duration=args.seconds)
            res[f"{name}_wrk"] = r.row()
            print(f"  wrk -c4 {name}: {r.rps:.1f} req/s  p50 {r.p50_ms:.1f} ms  p99 {r.p99_ms:.1f} ms  "
                  f"errors {r.errors} non2xx {r.non2xx}")
    return res


def bench_load(args: argparse.Namespace) -> dict[str, Any]:
    """Export buildings to GeoPackage, then time twin.loader.load_file into twin_bench_load."""
    try:
        from twin.loader import load_file
    except ImportError:
        # TODO(bench): twin.loader.load_file is being written by another helper; re-run when it lands.
        print("  twin.loader.load_file missing: GeoPackage load not timed (TODO: re-run when it lands)")
        return {"status": "loader missing"}
    from data import ensure_database, get_meta

    from twin.store import SpatialStore

    src = SpatialStore.from_url(DB_URL)
    version = get_meta(src).get("data_version", "?")
    gpkg = h.RESULTS / f"buildings-{version}.gpkg"
    t0 = time.perf_counter()
    if not gpkg.exists():
        export_gpkg(src, gpkg)
    export_s = time.perf_counter() - t0
    src.engine.dispose()
    ensure_database(LOAD_DB_URL)
    dst = SpatialStore.from_url(LOAD_DB_URL, statement_timeout_ms=3_600_000)
    dst.migrate()
    t0 = time.perf_counter()
    result = load_file(dst, gpkg, "buildings", mode="replace")
    load_s = time.perf_counter() - t0
    from sqlalchemy import text

    with dst.engine.connect() as conn:
        count = conn.execute(text("SELECT count(*) FROM buildings")).scalar_one()
    dst.engine.dispose()
    print(f"  GeoPackage ({gpkg.stat().st_size / 2**20:.0f} MB) → PostGIS: {count} buildings in {load_s:.1f} s"
          f" ({count / load_s:,.0f}/s)")
    return {"status": "ok", "seconds": load_s, "count": count, "gpkg_mb": gpkg.stat().st_size / 2**20,
            "export_seconds": export_s, "result": repr(result)[:300]}


def export_gpkg(store: Any, path: Path) -> None:
    """Write the buildings table to a GeoPackage with pyogrio (raw API, no geopandas needed)."""
    from pyogrio.raw import write
    from sqlalchemy import text

    from twin.catalog import get_layer

    spec = get_layer("buildings")
    cols = [c.name for c in spec.property_columns]
    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT {', '.join(cols)}, ST_AsBinary(geom) FROM buildings ORDER BY id")).all()
    fields = []
    for i, name in enumerate(cols):
        vals = [r[i] for r in rows]
        kind = next((type(v) for v in vals if v is not None), str)
        if kind is int:
            arr = np.array([v if v is not None else 0 for v in vals], dtype=np.int64)
            mask = np.array([v is None for v in vals])
            fields.append((name, arr, mask))
        elif kind is float:
            fields.append((name, np.array([np.nan if v is None else v for v in vals], dtype=np.float64), None))
        else:
            fields.append((name, np.array(vals, dtype=object), None))
    geometry = np.array([bytes(r[-1]) for r in rows], dtype=object)
    masks = [m if m is not None else np.zeros(len(rows), dtype=bool) for _, _, m in fields]
    tmp = path.with_suffix(".tmp.gpkg")
    tmp.unlink(missing_ok=True)
    write(str(tmp), geometry, [a for _, a, _ in fields], [n for n, _, _ in fields], field_mask=masks,
          layer="buildings", driver="GPKG", geometry_type="MultiPolygon", crs="EPSG:4326")
    tmp.rename(path)


def report(res: dict[str, Any], load: dict[str, Any], meta: dict[str, Any], args: argparse.Namespace) -> str:
    ts, gs = res["twin_seq"], res["tipg_seq"]
    tw, gw = res["twin_wrk"], res["tipg_wrk"]
    p50_ok = ts["p50_ms"] <= GOAL_P50_MS
    not_slower = ts["p50_ms"] <= gs["p50_ms"] and tw["rps"] >= gw["rps"]
    rows = [
        ["sequential p50 (ms)", ts["p50_ms"], gs["p50_ms"], h.ratio(ts["p50_ms"], gs["p50_ms"])],
        ["sequential p95 (ms)", ts["p95_ms"], gs["p95_ms"], h.ratio(ts["p95_ms"], gs["p95_ms"])],
        ["response size (KB)", ts["mean_kb"], gs["mean_kb"], h.ratio(ts["mean_kb"], gs["mean_kb"])],
        ["wrk -c4 throughput (req/s)", tw["rps"], gw["rps"], h.ratio(tw["rps"], gw["rps"])],
        ["wrk -c4 p50 (ms)", tw["p50_ms"], gw["p50_ms"], h.ratio(tw["p50_ms"], gw["p50_ms"])],
        ["wrk -c4 p99 (ms)", tw["p99_ms"], gw["p99_ms"], h.ratio(tw["p99_ms"], gw["p99_ms"])],
    ]
    goals = [
        ["items p50 ≤ 30 ms (sequential, 500 features)", f"{ts['p50_ms']:.1f} ms", h.verdict(p50_ok)],
        ["twin not slower than TiPg (p50 and req/s)",
         f"p50 {h.ratio(ts['p50_ms'], gs['p50_ms'])}, req/s {h.ratio(tw['rps'], gw['rps'])}", h.verdict(not_slower)],
    ]
    if load.get("status") == "ok":
        goals.append(["GeoPackage load of 200,000 buildings ≤ 60 s",
                      f"{load['seconds']:.1f} s ({load['count']:,} rows, {load['gpkg_mb']:.0f} MB .gpkg)",
                      h.verdict(load["seconds"] <= GOAL_LOAD_S and load["count"] >= 190_000)])
    else:
        goals.append(["GeoPackage load of 200,000 buildings ≤ 60 s", load.get("status", "?"), "–"])
    return "\n".join([
        "## Features (issue 2): bbox items, 500 features per page",
        "",
        f"Run {meta['date']} · `{meta['command']}` · twin `{meta['commit']}` · data `{meta['data']}` "
        f"({meta['buildings']:,} buildings) · load average before/after: {meta['load_before']} / "
        f"{meta['load_after']}",
        "",
        f"{res['bboxes']} random bboxes in the built-up area, each holding ≥500 buildings; "
        f"`limit=500`; {args.n} sequential requests per server over one kept-alive connection; "
        f"`wrk -t1 -c4 -d{args.seconds}s` cycling over the bboxes. Ratio = twin / TiPg "
        "(latency: lower is better; req/s: higher is better).",
        "",
        h.md_table(["metric", "twin", "TiPg", "twin/TiPg"], rows),
        "",
        h.md_table(["goal", "measured", "result"], goals),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="sequential requests per server")
    ap.add_argument("--seconds", type=float, default=15, help="wrk duration per server")
    ap.add_argument("--quick", action="store_true", help="--n 60 --seconds 5")
    ap.add_argument("--skip-load", action="store_true", help="skip the GeoPackage load timing")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/benchmarks.md")
    args = ap.parse_args()
    if args.quick:
        args.n, args.seconds = 60, 5
    h.ensure_setup()
    data = ensure_data()
    meta = h.run_meta("features", data, args.quick)
    res = bench_items(args)
    load = {"status": "skipped"} if args.skip_load else bench_load(args)
    meta["load_after"] = h.loadavg()
    body = report(res, load, meta, args)
    print()
    print(body)
    h.save_json("features", {"meta": meta, "items": res, "load": load})
    if not args.no_doc:
        write_doc_header()
        h.write_section(DOC, "features", body)
        print(f"\nwrote {DOC.relative_to(ROOT)}")


def write_doc_header() -> None:
    """Intro, machine and versions (shared by features.py and tiles.py)."""
    m = h.machine_info()
    if not DOC.exists():
        DOC.write_text(DOC_INTRO)
    pg = "?"
    try:
        import psycopg

        with psycopg.connect(DB_URL) as conn:
            pg = conn.execute("SELECT split_part(version(), ' ', 2) || ' / PostGIS ' || postgis_lib_version()"
                              ).fetchone()[0]
    except Exception:  # noqa: BLE001
        pass
    body = "\n".join([
        "## Machine and versions",
        "",
        h.md_table(["", ""], [
            ["CPU", f"{m['cpu']} · {m['nproc']} cores (nproc)"],
            ["memory", m["memory"]],
            ["kernel / Python", f"{m['kernel']} / {m['python']}"],
            ["PostgreSQL / PostGIS", pg],
            ["twin commit", h.git_commit()],
            ["TiPg", h.venv_version(".venv-tipg", "tipg")],
            ["TiTiler (titiler.core)", h.venv_version(".venv-titiler", "titiler.core")],
            ["load generator", "wrk (1 thread)" if __import__("shutil").which("wrk") else "asyncio fallback"],
        ]),
    ])
    h.write_section(DOC, "machine", body)


DOC_INTRO = """# Benchmarks

Side-by-side benchmarks of twin against the reference servers (TiPg for OGC API
Features and vector tiles, TiTiler for raster tiles, a bare Starlette app for the
cached-tile ceiling), on the same data and the same machine, each in one command:

    bash bench/run.sh features      # issue 2: bbox items + GeoPackage load
    bash bench/run.sh tiles         # issue 3: vector and raster tiles

(`bench/run.sh` runs `bench/setup.sh`, which creates `bench/.venv-tipg` and
`bench/.venv-titiler` and installs `wrk`, then `.venv/bin/python bench/<name>.py`;
each script ensures the PostGIS database `twin_bench` holds the 10× sample town
with `bench/data.py`, starts the servers on free ports on 127.0.0.1, measures,
prints the tables below and rewrites its section of this file. Raw results are
kept as JSON in `bench/results/`, which is not in git.)

**Noise warning.** These numbers were taken on a shared 2-core machine while other
engineers ran test suites on it; the load average at run time is recorded with each
table. Treat them as indicative; the lead re-runs them on a quiet machine at the end.

## Method

* One uvicorn worker per server, access log off, servers and load generator on the
  same machine, all traffic to 127.0.0.1. Responses are requested uncompressed
  (`Accept-Encoding: identity`) from every server.
* Sequential latency: requests one after another over one kept-alive HTTP/1.1
  connection (Python `http.client`), time to the last body byte; p50/p95 over all.
* Throughput: `wrk -t1 -c4` for a fixed duration; a Lua script cycles over the list
  of URLs so each connection asks different bboxes/tiles; non-2xx responses are
  counted and reported.
* Both servers get a warm-up pass first; PostgreSQL's buffer cache is therefore warm
  for both (the table fits in memory).
* Data: `bench/data.py` builds the 10× sample town
  (`sample_data.build_sample_town(store, bench/results/rasters, seed=20261123, scale=10)`,
  ~200,000 buildings, DEM/ortho COGs) into `twin_bench` once; the table `bench_meta`
  records the data version (git tree hash of `sample_data`) and later runs skip the
  rebuild (≈2–8 min) while it matches. `--synthetic` writes 200,000 rectangles instead.
* GeoPackage load: the buildings are exported once with pyogrio to
  `bench/results/buildings-<version>.gpkg`, then timed through
  `twin.loader.load_file(store, path, "buildings", mode="replace")` into a separate
  database `twin_bench_load`, so the benchmark data is never touched.
* Uncached tiles: a second twin server with `TWIN_TILE_CACHE_MB=0` (no tile cache for
  vector or raster); the script checks that the same tile asked again costs the same.
  Cached tiles: the default twin server, one tile asked again and again.
* In-process profiling of one URL without sockets:
  `.venv/bin/python bench/profile_asgi.py '/tiles/buildings/14/13692/6663.mvt' [--no-middleware]`
  (`--app bare_starlette:app` for the ceiling); prints µs/request and a cProfile top list.
"""


if __name__ == "__main__":
    main()
