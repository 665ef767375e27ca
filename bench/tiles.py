"""Issue 3: vector and raster tiles, twin vs TiPg / TiTiler / a bare Starlette app.

    bash bench/run.sh tiles            # or: .venv/bin/python bench/tiles.py
    .venv/bin/python bench/tiles.py --quick

Servers (one uvicorn worker each, 127.0.0.1, free ports), all on the same data:

* ``twin-uncached``: twin with ``TWIN_TILE_CACHE_MB=0`` (no tile cache at all);
* ``twin-cached``: twin with its default in-process tile cache;
* ``tipg``: TiPg 1.x, ``/collections/public.buildings/tiles/WebMercatorQuad/{z}/{x}/{y}``;
* ``titiler``: ``bench/titiler_app.py`` (titiler.core TilerFactory) over the same DEM COG;
* ``bare``: ``bench/bare_starlette.py``, a fixed 70 KB body (the cached-tile ceiling).

Scenarios: uncached vector tiles at z14 and z16 (the densest tiles of the town, each
tile once for the sequential pass, cycled by wrk), the densest z12 tile (p50, size),
a cached vector tile repeated (twin vs bare Starlette), uncached raster DEM tiles at
z14 (twin vs TiTiler) and a cached raster tile. Endpoints that do not exist yet are
reported as "endpoint missing".
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import harness as h  # noqa: E402
from data import DB_URL, RASTER_DIR, build_blocks, ensure_data  # noqa: E402
from features import DOC, write_doc_header  # noqa: E402

from twin.catalog import LAYERS  # noqa: E402

# TiPg is asked for exactly the attributes twin's building tiles carry
TIPG_PROPS = ",".join(LAYERS["buildings"].tile_properties)
REF = {"tipg_z14_rps": 85, "tipg_z16_rps": 235, "tipg_z12_kb": 317, "tipg_z12_ms": 1600, "bare_rps": 4200,
       "titiler_rps": 24}


# --------------------------------------------------------------------------- tile picking
def lonlat_to_tile(lon: np.ndarray, lat: np.ndarray, z: int) -> tuple[np.ndarray, np.ndarray]:
    n = 2**z
    x = np.floor((lon + 180.0) / 360.0 * n).astype(np.int64)
    lr = np.radians(lat)
    y = np.floor((1.0 - np.log(np.tan(lr) + 1.0 / np.cos(lr)) / math.pi) / 2.0 * n).astype(np.int64)
    return x, y


def densest_tiles(z: int, k: int) -> list[tuple[int, int, int, int]]:
    """The ``k`` tiles at zoom ``z`` holding the most building centroids: (z, x, y, count)."""
    import psycopg

    with psycopg.connect(DB_URL) as conn:
        pts = np.array(conn.execute("SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_PointOnSurface(geom) c "
                                    "FROM buildings) s").fetchall(), dtype=float)
    x, y = lonlat_to_tile(pts[:, 0], pts[:, 1], z)
    keys, counts = np.unique(x * 2**z + y, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:k]
    return [(z, int(keys[i] // 2**z), int(keys[i] % 2**z), int(counts[i])) for i in order]


def raster_tiles(path: Path, z: int, k: int, seed: int = 3) -> tuple[list[tuple[int, int, int]], str]:
    """Up to ``k`` z-tiles well inside the COG (one tile margin), and a rescale 'min,max' for it."""
    import rasterio
    from rasterio.warp import transform_bounds

    with rasterio.open(path) as src:
        w, s, e, n = transform_bounds(src.crs, "EPSG:4326", *src.bounds)
        ovr = src.overviews(1)
        factor = ovr[-1] if ovr else 1
        data = src.read(1, out_shape=(max(1, src.height // factor), max(1, src.width // factor)), masked=True)
        lo, hi = float(data.min()), float(data.max())
    x0, y0 = lonlat_to_tile(np.array([w]), np.array([n]), z)
    x1, y1 = lonlat_to_tile(np.array([e]), np.array([s]), z)
    tiles = [(z, x, y) for x in range(int(x0[0]) + 1, int(x1[0])) for y in range(int(y0[0]) + 1, int(y1[0]))]
    rng = np.random.default_rng(seed)
    if len(tiles) > k:
        tiles = [tiles[i] for i in sorted(rng.choice(len(tiles), k, replace=False))]
    return tiles, f"{math.floor(lo)},{math.ceil(hi)}"


# --------------------------------------------------------------------------- endpoints
def twin_vector_template(port: int) -> str | None:
    """Path template of twin's per-layer vector tiles from its OpenAPI document, or None if missing."""
    status, _, body = h.http_get(port, "/api/openapi.json")
    if status != 200:
        return None
    paths = list(json.loads(body).get("paths", {}))
    if "/tiles/{layer}/{z}/{x}/{y}.mvt" in paths:
        return "/tiles/buildings/{z}/{x}/{y}.mvt"
    for p in paths:
        if p.startswith("/tiles/{") and p.endswith("/{z}/{x}/{y}.mvt"):
            return "/tiles/buildings/{z}/{x}/{y}.mvt"
    return None


def twin_raster_template(port: int) -> str | None:
    status, _, body = h.http_get(port, "/api/openapi.json")
    if status != 200:
        return None
    paths = json.loads(body).get("paths", {})
    return "/raster/dem/{z}/{x}/{y}.png" if "/raster/{dataset}/{z}/{x}/{y}.{fmt}" in paths else None


def mvt_features(body: bytes) -> int:
    if not body:
        return 0
    try:
        import mapbox_vector_tile

        return sum(len(layer["features"]) for layer in mapbox_vector_tile.decode(body).values())
    except Exception:  # noqa: BLE001 - informational only
        return -1


def fmt_paths(template: str, tiles: list[tuple[int, ...]], query: str = "") -> list[str]:
    return [template.format(z=t[0], x=t[1], y=t[2]) + query for t in tiles]


def run_pair(label: str, servers: dict[str, tuple[int, list[str]]], args: argparse.Namespace,
             seq_n: int | None = None, do_wrk: bool = True, count_features: bool = False) -> dict[str, Any]:
    """Sequential pass (each path once, or ``seq_n`` requests) and wrk -c4 for each server."""
    out: dict[str, Any] = {}
    for name, (port, paths) in servers.items():
        h.sample(port, paths[: min(len(paths), 5)], n=min(len(paths), 5))  # warm-up
        s = h.sample(port, paths, n=seq_n or len(paths), max_seconds=args.seq_max_s)
        r: dict[str, Any] = {"seq": s.__dict__}
        if count_features:
            feats = [mvt_features(h.http_get(port, pth)[2]) for pth in paths[:5]]
            r["features_per_tile"] = float(np.mean(feats)) if feats else 0.0
        if not s.ok:
            print(f"  {label} {name}: errors {s.statuses} {s.first_error}")
        if do_wrk:
            w = h.wrk(port, paths, connections=4, duration=args.seconds)
            r["wrk"] = w.row()
            print(f"  {label} {name}: seq p50 {s.p50_ms:.1f} ms p95 {s.p95_ms:.1f} ms, {s.mean_kb:.1f} KB; "
                  f"wrk -c4 {w.rps:.1f} req/s (p50 {w.p50_ms:.1f} ms, non2xx {w.non2xx}, errors {w.errors})")
        else:
            print(f"  {label} {name}: seq p50 {s.p50_ms:.1f} ms p95 {s.p95_ms:.1f} ms, {s.mean_kb:.1f} KB")
        out[name] = r
    return out


# --------------------------------------------------------------------------- main bench
def bench(args: argparse.Namespace) -> dict[str, Any]:
    res: dict[str, Any] = {}
    z14 = densest_tiles(14, args.z14_tiles)
    z16 = densest_tiles(16, args.z16_tiles)
    z12 = densest_tiles(12, 1)
    res["tiles"] = {"z14": len(z14), "z14_buildings_min": z14[-1][3], "z16": len(z16),
                    "z16_buildings_min": z16[-1][3], "z12": z12[0]}
    dem = RASTER_DIR / "dem.tif"
    rtiles, rescale = raster_tiles(dem, 14, args.raster_tiles) if dem.exists() else ([], "0,10")
    res["raster_tiles"] = {"z14": len(rtiles), "rescale": rescale}
    build_blocks(DB_URL)
    twin_env = {"TWIN_HOME": str(h.RESULTS)}  # raster_dir = TWIN_HOME/rasters = bench/results/rasters
    with contextlib.ExitStack() as stack:
        tu = stack.enter_context(h.twin_server(DB_URL, "twin-uncached", {**twin_env, "TWIN_TILE_CACHE_MB": "0"}))
        tc = stack.enter_context(h.twin_server(DB_URL, "twin-cached", twin_env))
        tipg = stack.enter_context(h.tipg_server(DB_URL))
        vt = twin_vector_template(tu.port)
        rt = twin_raster_template(tu.port)
        res["twin_vector_endpoint"] = vt or "endpoint missing"
        res["twin_raster_endpoint"] = rt or "endpoint missing"
        tipg_t = "/collections/public.buildings/tiles/WebMercatorQuad/{z}/{x}/{y}"
        tq = f"?properties={TIPG_PROPS}"

        # -- vector, uncached
        for zname, tiles in (("z14", z14), ("z16", z16)):
            servers = {"tipg": (tipg.port, fmt_paths(tipg_t, tiles, tq))}
            if vt:
                servers = {"twin": (tu.port, fmt_paths(vt, tiles)), **servers}
            # twin-uncached has no cache, TiPg none at all: cycling the set is safe and steadies the p50
            res[f"vector_{zname}"] = run_pair(f"vector {zname}", servers, args, seq_n=max(len(tiles), args.seq_n),
                                              count_features=True)
        servers = {"tipg": (tipg.port, fmt_paths(tipg_t, z12, tq))}
        if vt:
            servers = {"twin": (tu.port, fmt_paths(vt, z12)), **servers}
        res["vector_z12"] = run_pair("vector z12 dense", servers, args, seq_n=args.z12_n, do_wrk=False,
                                     count_features=True)
        if vt:  # the uncached server must not cache: the same tile twice costs the same
            s = h.sample(tu.port, fmt_paths(vt, z16[:1]), n=6)
            res["uncached_check"] = {"same_tile_p50_ms": s.p50_ms}

        # -- vector, cached (same tile again and again) vs bare Starlette
        bare = stack.enter_context(h.Server(
            "bare-starlette", h.uvicorn_cmd(ROOT / ".venv/bin", "bare_starlette:app", extra=["--app-dir", str(BENCH)]),
            ready_path="/healthz"))
        servers = {"bare": (bare.port, ["/tile"])}
        if vt:
            cached_tile = pick_cached_tile(tc.port, vt, z14 + z16)
            res["cached_tile"] = cached_tile
            servers = {"twin": (tc.port, [vt.format(z=cached_tile[0], x=cached_tile[1], y=cached_tile[2])]),
                       **servers}
        res["vector_cached"] = run_pair("cached", servers, args, seq_n=50)

        # -- raster
        titiler = stack.enter_context(h.Server(
            "titiler", h.uvicorn_cmd(BENCH / ".venv-titiler/bin", "titiler_app:app", extra=["--app-dir", str(BENCH)]),
            ready_path="/healthz"))
        if rtiles:
            tt = "/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png"
            tt_q = f"?url={dem}&rescale={rescale}&colormap_name=terrain"
            servers = {"titiler": (titiler.port, fmt_paths(tt, rtiles, tt_q))}
            if rt:
                servers = {"twin": (tu.port, fmt_paths(rt, rtiles, f"?rescale={rescale}&colormap=terrain")),
                           **servers}
            res["raster_uncached"] = run_pair("raster z14", servers, args, seq_n=max(len(rtiles), args.seq_n))
            if rt:
                # the largest PNG among the first tiles: a representative tile, not a flat one
                cands = fmt_paths(rt, rtiles[:20], f"?rescale={rescale}&colormap=terrain")
                one = [max(cands, key=lambda pth: len(h.http_get(tc.port, pth)[2]))]
                res["raster_cached"] = run_pair("raster cached", {"twin": (tc.port, one)}, args, seq_n=50)
        else:
            res["raster_uncached"] = {"error": f"no DEM at {dem}"}
    return res


def pick_cached_tile(port: int, template: str, tiles: list[tuple[int, int, int, int]]) -> tuple[int, int, int, float]:
    """The tile (among ``tiles``) whose body is closest to 70 KB: comparable to the bare body."""
    best = None
    for t in tiles[:200]:
        status, _, body = h.http_get(port, template.format(z=t[0], x=t[1], y=t[2]))
        if status != 200:
            continue
        kb = len(body) / 1024
        if best is None or abs(kb - 70) < abs(best[3] - 70):
            best = (t[0], t[1], t[2], kb)
    return best or (tiles[0][0], tiles[0][1], tiles[0][2], 0.0)


# --------------------------------------------------------------------------- report
def _get(d: dict, *keys: str, default: Any = None) -> Any:
    for k in keys:
        if not isinstance(d, dict) or k not in d:
            return default
        d = d[k]
    return d


def report(res: dict[str, Any], meta: dict[str, Any], args: argparse.Namespace) -> str:
    nan = float("nan")
    vec_missing = res["twin_vector_endpoint"] == "endpoint missing"
    ras_missing = res["twin_raster_endpoint"] == "endpoint missing"
    rows, goals = [], []

    def add(label: str, key: str, a: str, b: str, metric: str) -> tuple[float, float]:
        d = res.get(key, {})
        if metric == "rps":
            va, vb = _get(d, a, "wrk", "rps", default=nan), _get(d, b, "wrk", "rps", default=nan)
        else:
            va, vb = _get(d, a, "seq", metric, default=nan), _get(d, b, "seq", metric, default=nan)
        rows.append([label, "endpoint missing" if va != va else va, vb, h.ratio(va, vb)])
        return va, vb

    t = res["tiles"]
    add(f"vector z14 uncached, wrk -c4 req/s ({t['z14']} densest tiles)", "vector_z14", "twin", "tipg", "rps")
    add("vector z14 uncached, sequential p50 ms", "vector_z14", "twin", "tipg", "p50_ms")
    add("vector z14 tile size KB (mean)", "vector_z14", "twin", "tipg", "mean_kb")
    add(f"vector z16 uncached, wrk -c4 req/s ({t['z16']} densest tiles)", "vector_z16", "twin", "tipg", "rps")
    add("vector z16 uncached, sequential p50 ms", "vector_z16", "twin", "tipg", "p50_ms")
    add("vector z16 tile size KB (mean)", "vector_z16", "twin", "tipg", "mean_kb")
    add(f"vector z12 densest tile {t['z12'][:3]} ({t['z12'][3]:,} buildings), p50 ms", "vector_z12", "twin",
        "tipg", "p50_ms")
    add("vector z12 densest tile, size KB", "vector_z12", "twin", "tipg", "mean_kb")
    feats = [[f"features/tile {z}", _get(res, f"vector_{z}", "twin", "features_per_tile", default="–"),
              _get(res, f"vector_{z}", "tipg", "features_per_tile", default="–"), ""] for z in ("z14", "z16", "z12")]
    rows += feats
    vrows, rows = rows, []
    add("cached vector tile, wrk -c4 req/s (twin vs bare Starlette 70 KB)", "vector_cached", "twin", "bare", "rps")
    add("cached vector tile, sequential p50 ms", "vector_cached", "twin", "bare", "p50_ms")
    add("cached body size KB", "vector_cached", "twin", "bare", "mean_kb")
    crows, rows = rows, []
    add(f"raster z14 uncached, wrk -c4 req/s ({res['raster_tiles']['z14']} tiles)", "raster_uncached", "twin",
        "titiler", "rps")
    add("raster z14 uncached, sequential p50 ms", "raster_uncached", "twin", "titiler", "p50_ms")
    add("raster z14 PNG size KB", "raster_uncached", "twin", "titiler", "mean_kb")
    rc = _get(res, "raster_cached", "twin", "wrk", "rps", default=nan)
    rows.append(["raster cached tile, wrk -c4 req/s", "endpoint missing" if rc != rc else rc, "–", ""])
    rrows = rows

    def g(label: str, value: float, ok: bool | None, shown: str) -> None:
        goals.append([label, "endpoint missing" if value != value else shown,
                      "–" if value != value else h.verdict(ok)])

    for z in ("z14", "z16"):
        a = _get(res, f"vector_{z}", "twin", "wrk", "rps", default=nan)
        b = _get(res, f"vector_{z}", "tipg", "wrk", "rps", default=nan)
        g(f"vector uncached {z} ≥ 2× TiPg req/s", a, a >= 2 * b, f"{a:.0f} vs {b:.0f} req/s = {h.ratio(a, b)}")
    p = _get(res, "vector_z12", "twin", "seq", "p50_ms", default=nan)
    kb = _get(res, "vector_z12", "twin", "seq", "mean_kb", default=nan)
    z12_feats = _get(res, "vector_z12", "twin", "features_per_tile", default=None)
    empty = " (empty tile: every building thinned out)" if z12_feats == 0 else ""
    g("dense z12 tile p50 ≤ 150 ms", p, p <= 150, f"{p:.0f} ms{empty}")
    g("dense z12 tile ≤ 500 KB", kb, kb <= 500, f"{kb:.0f} KB{empty}")
    a = _get(res, "vector_cached", "twin", "wrk", "rps", default=nan)
    b = _get(res, "vector_cached", "bare", "wrk", "rps", default=nan)
    g("cached vector ≥ 3,000 req/s", a, a >= 3000, f"{a:,.0f} req/s")
    g("cached vector ≥ 70% of bare Starlette", a, a >= 0.7 * b, f"{a / b:.0%} of {b:,.0f} req/s" if b else "–")
    a = _get(res, "raster_uncached", "twin", "wrk", "rps", default=nan)
    b = _get(res, "raster_uncached", "titiler", "wrk", "rps", default=nan)
    g("raster uncached z14 ≥ TiTiler req/s", a, a >= b, f"{a:.0f} vs {b:.0f} req/s = {h.ratio(a, b)}")
    g("raster cached ≥ 2,000 req/s", rc, rc >= 2000, f"{rc:,.0f} req/s")

    notes = []
    if vec_missing:
        notes.append("* twin's vector tile endpoint (`/tiles/{layer}/{z}/{x}/{y}.mvt`) was missing at run time.")
    if ras_missing:
        notes.append("* twin's raster tile endpoint (`/raster/{dataset}/{z}/{x}/{y}.png`) was missing at run time.")
    uc = res.get("uncached_check")
    if uc:
        notes.append(f"* Uncached check: the same z16 tile asked 6× from `twin-uncached` has p50 "
                     f"{uc['same_tile_p50_ms']:.1f} ms (no cache hit).")
    ct = res.get("cached_tile")
    if ct:
        notes.append(f"* Cached tile: z{ct[0]}/{ct[1]}/{ct[2]} ({ct[3]:.0f} KB uncompressed), the z14/z16 tile "
                     "closest to the bare app's 70 KB.")
    return "\n".join([
        "## Tiles (issue 3): vector and raster",
        "",
        f"Run {meta['date']} · `{meta['command']}` · twin `{meta['commit']}` · data `{meta['data']}` "
        f"({meta['buildings']:,} buildings) · load average before/after: {meta['load_before']} / "
        f"{meta['load_after']}",
        "",
        "Uncached twin = a twin server with `TWIN_TILE_CACHE_MB=0`; each sequential pass cycles over the tile set "
        f"(≥{args.seq_n} requests); `wrk -t1 -c4 -d{args.seconds:g}s` cycles over the set. TiPg is asked for the same attributes "
        f"twin's building tiles carry (`?properties={TIPG_PROPS}`). All responses uncompressed "
        "(`Accept-Encoding: identity`). Ratio = twin / peer.",
        "",
        "### Vector tiles, uncached (twin vs TiPg)",
        "",
        h.md_table(["metric", "twin", "TiPg", "twin/TiPg"], vrows),
        "",
        "### Cached vector tile (twin vs bare Starlette returning a fixed 70 KB body)",
        "",
        h.md_table(["metric", "twin", "bare Starlette", "twin/bare"], crows),
        "",
        f"### Raster DEM tiles (twin vs TiTiler, same COG, `rescale={res['raster_tiles']['rescale']}`, terrain "
        "colormap, PNG)",
        "",
        h.md_table(["metric", "twin", "TiTiler", "twin/TiTiler"], rrows),
        "",
        "### Goals",
        "",
        h.md_table(["goal", "measured", "result"], goals),
        "",
        *notes,
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10, help="wrk duration per server and scenario")
    ap.add_argument("--z14-tiles", type=int, default=12)
    ap.add_argument("--z16-tiles", type=int, default=120)
    ap.add_argument("--raster-tiles", type=int, default=100)
    ap.add_argument("--z12-n", type=int, default=10, help="sequential requests of the dense z12 tile")
    ap.add_argument("--seq-n", type=int, default=100, help="least sequential requests per uncached tile set")
    ap.add_argument("--seq-max-s", type=float, default=90, help="bound on each sequential pass")
    ap.add_argument("--quick", action="store_true", help="--seconds 4, fewer tiles")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.z16_tiles, args.raster_tiles, args.z12_n, args.seq_n = 4, 40, 40, 4, 30
    h.ensure_setup()
    data = ensure_data()
    meta = h.run_meta("tiles", data, args.quick)
    res = bench(args)
    meta["load_after"] = h.loadavg()
    body = report(res, meta, args)
    print()
    print(body)
    h.save_json("tiles", {"meta": meta, "results": res})
    if not args.no_doc:
        write_doc_header()
        h.write_section(DOC, "tiles", body)
        print(f"\nwrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
