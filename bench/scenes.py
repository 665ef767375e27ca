"""Issue 6: 3D scenes and 3D Tiles, twin vs py3dtiles (PyPI 12.x) on the same buildings.

    bash bench/run.sh scenes                  # or: .venv/bin/python bench/scenes.py
    .venv/bin/python bench/scenes.py --quick  # a 2 km square and a scale-0.1 export

twin, in process, one thread, caches off, on the bench town in PostGIS (``twin_bench``):

* **scene**: ``build_scene`` of the densest 600 m × 600 m square of the town (found from
  a histogram of building centres) with buildings, pipelines, pipe nodes and terrain
  (uncached; median of ``--scene-n`` runs);
* **bytes per building**: the buildings-only GLB of that square, raw, gzip (level 6, as
  the server's GZip middleware sends it) and br (quality 5);
* **tile pipeline**: the buildings tileset (index + every content tile rendered once),
  content-tile p50 and buildings per second (rendering only, and with the index build);
* **export**: ``twin scenes export`` of a whole sample town at ``--export-scale`` (1 =
  20,000 buildings with pipes and nodes) into a temporary SpatiaLite file.

The peer, in the same run and on the same buildings (the whole town, or the
``--quick`` square): buildings extruded in PostGIS with SFCGAL's ``ST_Extrude`` (base at
``ground_elev_m``, up ``height_m``, in EPSG:4978), then ``py3dtiles export`` (3D Tiles
1.1, glTF content) from that table. py3dtiles' ``export`` reads a PostGIS table of
polyhedral surfaces, so it can still build building tilesets; it runs in its own
virtualenv (``bench/.venv-py3dtiles``), timed as a subprocess.
"""

from __future__ import annotations

import argparse
import gzip
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
# this file is bench/scenes.py: keep the bench folder *behind* the root so `import scenes` is the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.path.insert(0, str(ROOT))
sys.path.append(str(BENCH))

import harness as h  # noqa: E402
from data import DB_URL, RASTER_DIR, ensure_data  # noqa: E402

DOC = ROOT / "docs" / "benchmarks.md"
PEER_VENV = BENCH / ".venv-py3dtiles"
PEER_SCHEMA = "bench_scenes"


def _centres(store, table: str) -> np.ndarray:  # noqa: ANN001
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return np.array(conn.execute(text(
            f"SELECT ST_X(c), ST_Y(c) FROM (SELECT ST_Centroid(geom) c FROM {table}) s")).all(), float)


def densest_square(store, side_m: float) -> tuple[float, float, float, float]:  # noqa: ANN001
    """The ``side_m`` square (lon/lat) holding the most building centres among squares with pipes."""
    xy = _centres(store, "buildings")
    pipes = _centres(store, "pipelines")
    lat0 = float(np.median(xy[:, 1]))
    dlat = side_m / 110_570
    dlon = side_m / (111_320 * math.cos(math.radians(lat0)))
    # quarter-side cells, then the best 4×4 block of them
    step_x, step_y = dlon / 4, dlat / 4
    x0, y0 = xy[:, 0].min(), xy[:, 1].min()
    shape = (int((xy[:, 0].max() - x0) / step_x) + 1, int((xy[:, 1].max() - y0) / step_y) + 1)

    def blocks(pts: np.ndarray) -> np.ndarray:
        ix = ((pts[:, 0] - x0) / step_x).astype(int)
        iy = ((pts[:, 1] - y0) / step_y).astype(int)
        ok = (ix >= 0) & (iy >= 0) & (ix < shape[0]) & (iy < shape[1])
        grid = np.zeros(shape)
        np.add.at(grid, (ix[ok], iy[ok]), 1)
        c = np.pad(grid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
        return c[4:, 4:] - c[:-4, 4:] - c[4:, :-4] + c[:-4, :-4]

    score = blocks(xy)
    if len(pipes):
        score = np.where(blocks(pipes) >= 20, score, 0)  # the town's centre: buildings over pipes
    bx, by = np.unravel_index(np.argmax(score), score.shape)
    minx, miny = x0 + bx * step_x, y0 + by * step_y
    return (minx, miny, minx + dlon, miny + dlat)


def square_around(bbox, side_m: float):  # noqa: ANN001, ANN201
    cx, cy = (bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2
    dlat = side_m / 2 / 110_570
    dlon = side_m / 2 / (111_320 * math.cos(math.radians(cy)))
    return (cx - dlon, cy - dlat, cx + dlon, cy + dlat)


def bench_scene(store, rasters: Path, n: int) -> dict[str, Any]:  # noqa: ANN001
    import brotli

    from scenes import SceneOptions, build_scene

    bbox = densest_square(store, 600)
    opts = SceneOptions()
    times, scene = [], None
    for _ in range(n):
        t = time.perf_counter()
        scene = build_scene(store, bbox, ("buildings", "pipelines", "pipe_nodes", "terrain"), raster_dir=rasters,
                            opts=opts, max_area_km2=25)
        times.append(time.perf_counter() - t)
    assert scene is not None
    blds = build_scene(store, bbox, ("buildings",), raster_dir=rasters, opts=opts, max_area_km2=25)
    nb = blds.metadata["content"]["buildings"]["features"]
    return {
        "bbox": bbox, "runs": n, "p50_ms": statistics.median(times) * 1000, "min_ms": min(times) * 1000,
        "bytes": len(scene.glb), "content": {k: v.get("features", v.get("triangles"))
                                             for k, v in scene.metadata["content"].items()},
        "buildings": nb, "bld_raw_B": len(blds.glb) / max(nb, 1),
        "bld_gzip_B": len(gzip.compress(blds.glb, 6)) / max(nb, 1),
        "bld_br_B": len(brotli.compress(blds.glb, quality=5)) / max(nb, 1),
    }


def bench_tiles(store, rasters: Path, bbox) -> dict[str, Any]:  # noqa: ANN001
    from scenes.service import SceneService
    from scenes.tileset import build_index, build_tree, square_root_bounds
    from tiles.cache import TileCache
    from twin.settings import TwinSettings

    svc = SceneService(store, TwinSettings(scene_cache_mb=0), cache=TileCache(0), raster_dir=rasters)
    t = time.perf_counter()
    if bbox is None:
        st = svc.state(("buildings",))
    else:  # index only the subset, same code path as state()
        from scenes.dem import dem_path, read_dem
        from scenes.service import TilesetState
        from scenes.source import read_rows

        rows = {"buildings": read_rows(store, "buildings", bbox=bbox)}
        dem = read_dem(dem_path(rasters), bbox)
        index = build_index(rows, dem, svc.opts)
        root = build_tree(index, square_root_bounds(bbox), svc.settings.scene_tile_feature_cap)
        from scenes.frame import LocalFrame

        st = TilesetState(("buildings",), {}, "bench", index, root,
                          LocalFrame((bbox[0] + bbox[2]) / 2, (bbox[1] + bbox[3]) / 2))
    index_s = time.perf_counter() - t
    tiles = [t for t in st.tiles if len(t.content)]
    times, sizes = [], []
    t0 = time.perf_counter()
    for tile in tiles:
        a = time.perf_counter()
        sizes.append(len(svc.render(st, tile)))
        times.append(time.perf_counter() - a)
    render_s = time.perf_counter() - t0
    svc.close()
    n = len(st.index)
    return {"buildings": n, "tiles": len(tiles), "index_s": index_s, "render_s": render_s,
            "tile_p50_ms": statistics.median(times) * 1000, "tile_max_ms": max(times) * 1000,
            "bld_per_s_render": n / render_s, "bld_per_s_total": n / (render_s + index_s),
            "bytes": sum(sizes), "bytes_per_bld": sum(sizes) / max(n, 1)}


def bench_export(scale: float) -> dict[str, Any]:
    from sample_data import build_sample_town
    from scenes.service import SceneService
    from twin.settings import TwinSettings
    from twin.store import SpatialStore

    tmp = Path(tempfile.mkdtemp(prefix="twin-scenes-bench-"))
    try:
        store = SpatialStore.from_url(f"sqlite:///{tmp / 'town.sqlite'}")
        store.migrate()
        t = time.perf_counter()
        build_sample_town(store, tmp / "rasters", scale=scale)
        build_s = time.perf_counter() - t
        svc = SceneService(store, TwinSettings(home=tmp, scene_cache_mb=0))
        t = time.perf_counter()
        out = svc.export(("buildings", "pipelines", "pipe_nodes"), tmp / "3d")
        export_s = time.perf_counter() - t
        svc.close()
        store.engine.dispose()
        return {"scale": scale, "town_build_s": build_s, "export_s": export_s, **out}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- the peer
def ensure_peer() -> bool:
    if (PEER_VENV / "bin" / "py3dtiles").exists():
        return True
    print("setup: creating bench/.venv-py3dtiles (py3dtiles 12.x, psycopg2)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(PEER_VENV)], check=True)
    r = subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "py3dtiles>=12,<13", "psycopg2-binary"])
    return r.returncode == 0


def bench_peer(url: str, bbox) -> dict[str, Any]:  # noqa: ANN001
    """py3dtiles export of the same buildings, extruded in PostGIS with SFCGAL (in ``bench_scenes``)."""
    import psycopg
    from sqlalchemy.engine import make_url

    if not ensure_peer():
        return {"error": "py3dtiles could not be installed"}
    if subprocess.run([str(PEER_VENV / "bin" / "python"), "-c", "import psycopg2"]).returncode != 0:
        subprocess.run([str(PEER_VENV / "bin" / "pip"), "install", "-q", "psycopg2-binary"], check=False)
    u = make_url(url)
    conninfo = f"host={u.host or '127.0.0.1'} port={u.port or 5432} user={u.username or 'postgres'} dbname={u.database}"
    where = "" if bbox is None else \
        f"WHERE ST_Intersects(geom, ST_MakeEnvelope({bbox[0]}, {bbox[1]}, {bbox[2]}, {bbox[3]}, 4326))"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis_sfcgal")
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {PEER_SCHEMA}")
        conn.execute(f"DROP TABLE IF EXISTS {PEER_SCHEMA}.extruded")
        t = time.perf_counter()
        # extrude in a metric CRS (Gauss-Kruger zone 40), then to ECEF with the heights as ellipsoidal heights
        conn.execute(f"""
            CREATE TABLE {PEER_SCHEMA}.extruded AS
            SELECT b.id, ST_Transform(ST_SetSRID(ST_Transform(
                     ST_Extrude(ST_Force3D(ST_Transform(d.geom, 4528), coalesce(b.ground_elev_m, 0)),
                                0, 0, b.height_m), 4326), 4979), 4978) AS geom
            FROM (SELECT * FROM buildings {where}) b, LATERAL ST_Dump(b.geom) d""")
        extrude_s = time.perf_counter() - t
        n = conn.execute(f"SELECT count(DISTINCT id) FROM {PEER_SCHEMA}.extruded").fetchone()[0]
    out = Path(tempfile.mkdtemp(prefix="py3dtiles-"))
    try:
        t = time.perf_counter()
        r = subprocess.run([str(PEER_VENV / "bin" / "py3dtiles"), "export", "-D", conninfo, "-t",
                            f"{PEER_SCHEMA}.extruded", "-c", "geom", "-i", "id", "-s", str(out),
                            "--spec-version", "1.1"], capture_output=True, text=True)
        export_s = time.perf_counter() - t
        if r.returncode != 0:
            return {"error": r.stderr[-1500:], "buildings": n, "extrude_s": extrude_s}
        files = [p for p in out.rglob("*") if p.is_file() and p.name != "tileset.json"]
        size = sum(p.stat().st_size for p in files)
        version = subprocess.run([str(PEER_VENV / "bin" / "python"), "-c",
                                  "import importlib.metadata as m; print(m.version('py3dtiles'))"],
                                 capture_output=True, text=True).stdout.strip()
        return {"version": version, "buildings": n, "extrude_s": extrude_s, "export_s": export_s,
                "tiles": len(files), "bytes": size, "bytes_per_bld": size / max(n, 1),
                "bld_per_s": n / (extrude_s + export_s), "bld_per_s_export_only": n / export_s}
    finally:
        shutil.rmtree(out, ignore_errors=True)


# --------------------------------------------------------------------------- report
def report(res: dict[str, Any], meta: dict[str, Any]) -> str:
    sc, ti, ex, pe = res["scene"], res["tiles"], res["export"], res["peer"]
    rows = [
        ["600 m × 600 m dense scene (uncached, p50)", f"{sc['p50_ms']:.0f} ms",
         f"{sc['content']}", "≤ 300 ms", h.verdict(sc["p50_ms"] <= 300)],
        ["bytes per building in the GLB (raw)", f"{sc['bld_raw_B']:.0f} B", f"{sc['buildings']} buildings",
         "≤ 1 KB", h.verdict(sc["bld_raw_B"] <= 1024)],
        ["bytes per building as sent (gzip / br)", f"{sc['bld_gzip_B']:.0f} / {sc['bld_br_B']:.0f} B", "",
         "≤ 250 B", h.verdict(sc["bld_gzip_B"] <= 250)],
        ["tileset content tile p50 (uncached)", f"{ti['tile_p50_ms']:.0f} ms",
         f"{ti['tiles']} tiles, max {ti['tile_max_ms']:.0f} ms", "≤ 150 ms", h.verdict(ti["tile_p50_ms"] <= 150)],
        ["buildings/s through the tile pipeline", f"{ti['bld_per_s_render']:,.0f}",
         f"{ti['bld_per_s_total']:,.0f}/s with the index ({ti['index_s']:.1f} s)", "≥ 5,000",
         h.verdict(ti["bld_per_s_render"] >= 5000)],
        [f"tileset export, scale {ex['scale']:g} town", f"{ex['export_s']:.1f} s",
         f"{ex['tiles']} tiles, {ex['features']:,} features, {ex['bytes'] / 2**20:.1f} MiB", "≤ 60 s (scale 1)",
         h.verdict(ex["export_s"] <= 60) if ex["scale"] >= 1 else "small run"],
    ]
    out = ["## 3D scenes and tiles (issue 6)", "",
           f"Run {meta['date']}, commit {meta['commit']}, load {meta['load_before']} → {meta.get('load_after')}, "
           f"`{meta['command']}`. {meta['buildings']:,} buildings in PostGIS ({meta['data']}).", "",
           h.md_table(["measure", "twin", "detail", "target", ""], rows), "",
           f"The densest 600 m square with pipes (`{', '.join(f'{v:.5f}' for v in sc['bbox'])}`) holds "
           f"{sc['buildings']} buildings: this town is less dense than the issue's ~1,500-building centre.", ""]
    if "--quick" in meta["command"]:
        out += ["`--quick`: the tile pipeline and the peer run on a 2 km square around that scene; figures from a "
                "shared, busy machine are indicative only.", ""]
    if "error" in pe:
        out += [f"py3dtiles failed: `{pe['error'][:500]}`"]
    else:
        ratio = ti["bld_per_s_total"] / pe["bld_per_s"] if pe.get("bld_per_s") else float("nan")
        out += [h.md_table(["buildings → tileset", "buildings", "seconds", "buildings/s", "bytes/building",
                            "carries"], [
            ["twin (index + every tile)", f"{ti['buildings']:,}", f"{ti['index_s'] + ti['render_s']:.1f}",
             f"{ti['bld_per_s_total']:,.0f}", f"{ti['bytes_per_bld']:.0f}",
             "ids + properties (EXT_structural_metadata), base on the DEM, normals, outlines; pipes, nodes, terrain available"],
            [f"py3dtiles {pe['version']} (ST_Extrude + export)", f"{pe['buildings']:,}",
             f"{pe['extrude_s']:.1f} + {pe['export_s']:.1f}", f"{pe['bld_per_s']:,.0f}",
             f"{pe['bytes_per_bld']:.0f}", "geometry + normals + ids (batch table), base at ground_elev_m; no pipes or terrain"],
        ]), "", f"twin / py3dtiles throughput: **{ratio:.1f}×** (target ≥ 5×).", "",
            "The peer is py3dtiles' `export` (the PyPI 12.x command that builds a tileset from a PostGIS "
            "table of polyhedral surfaces) over the same buildings extruded by SFCGAL's `ST_Extrude` "
            "(each footprint part a row, base at `ground_elev_m`, in EPSG:4978); its time includes the "
            "extrusion. twin's includes its quadtree index and rendering every content tile, uncached, one "
            "thread. The scene and tile numbers are in-process (no HTTP)."]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a 2 km square for the tile pipeline and the peer, "
                    "a scale-0.1 export")
    ap.add_argument("--scene-n", type=int, default=7)
    ap.add_argument("--export-scale", type=float, default=None, help="sample-town scale exported (default 1; "
                    "0.1 with --quick)")
    ap.add_argument("--rasters", type=Path, default=RASTER_DIR, help="folder with dem.tif and ortho.tif")
    ap.add_argument("--no-doc", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.scene_n = 3
    if args.export_scale is None:
        args.export_scale = 0.1 if args.quick else 1.0
    data = ensure_data()
    meta = h.run_meta("scenes", data, args.quick)
    from twin.store import SpatialStore

    store = SpatialStore.from_url(DB_URL, statement_timeout_ms=3_600_000)
    res: dict[str, Any] = {"scene": bench_scene(store, args.rasters, args.scene_n)}
    subset = square_around(res["scene"]["bbox"], 2000) if args.quick else None
    res["tiles"] = bench_tiles(store, args.rasters, subset)
    res["peer"] = bench_peer(DB_URL, subset)
    res["export"] = bench_export(args.export_scale)
    meta["load_after"] = h.loadavg()
    body = report(res, meta)
    print()
    print(body)
    h.save_json("scenes", {"meta": meta, "results": res})
    if not args.no_doc:
        h.write_section(DOC, "scenes", body)
        print(f"\nwrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
