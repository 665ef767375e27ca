"""Issue 6 item 4: quantized-mesh terrain tiles, uncached and cached, in absolute numbers.

    python bench/terrain.py            # DEM of the 10x bench town if `bench/run.sh data` built it, else scale 1
    python bench/terrain.py --quick    # a few tiles per scenario, scale-0.2 DEM

No pip-installable terrain *server* to compare with was found (Cesium's own
cesium-terrain-server is Go and serves pre-built tiles; quantized-mesh-encoder is an
encoder, not a server), so this reports absolute figures:

* ``library``: ``TerrainService.tile`` in-process, no cache — read the DEM window,
  Martini, encode, gzip — over every available tile of the three deepest levels;
* ``http uncached``: one uvicorn worker with ``TWIN_TILE_CACHE_MB=0`` (every request
  renders), requests one after another with Cesium's headers (normals, gzip);
* ``http cached``: the same tiles again from a server with its default cache, warmed.

Everything talks to 127.0.0.1 only; loops are bounded in count and time.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for p in (str(ROOT), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

import harness as h  # noqa: E402

from scenes.terrain import TerrainService  # noqa: E402

ACCEPT = "application/vnd.quantized-mesh;extensions=octvertexnormals,application/octet-stream;q=0.9,*/*;q=0.01"
DOC = ROOT / "docs" / "benchmarks.md"


def dem_for(scale: float) -> Path:
    """The bench town's DEM if built, else a sample-town DEM at ``scale`` (no database needed)."""
    built = BENCH / "results" / "rasters" / "dem.tif"
    if built.exists() and scale >= 10:
        return built
    out = BENCH / "results" / f"terrain-rasters-{scale:g}"
    dem = out / "dem.tif"
    if not dem.exists():
        from sample_data import generate_town
        from sample_data.rasters import write_dem

        out.mkdir(parents=True, exist_ok=True)
        write_dem(generate_town(scale=scale), dem)
    return dem


def tiles_of(service: TerrainService, levels: int, cap: int) -> list[tuple[int, int, int]]:
    layer = service.layer_json()
    out: list[tuple[int, int, int]] = []
    for z in range(max(0, layer["maxzoom"] - levels + 1), layer["maxzoom"] + 1):
        (r,) = layer["available"][z]
        out += [(z, x, y) for x in range(r["startX"], r["endX"] + 1) for y in range(r["startY"], r["endY"] + 1)]
    step = max(1, len(out) // cap)
    return out[::step][:cap]


def ms_stats(values: list[float]) -> tuple[float, float]:
    v = sorted(values)
    return v[len(v) // 2] * 1000, v[min(len(v) - 1, round(0.95 * (len(v) - 1)))] * 1000


def library(dem: Path, tiles: list[tuple[int, int, int]]) -> dict:
    svc = TerrainService(dem)
    svc.tile(*tiles[0], normals=True)  # open the reader once
    lat, size = [], []
    for z, x, y in tiles:
        t0 = time.perf_counter()
        body = svc.tile(z, x, y, normals=True)
        lat.append(time.perf_counter() - t0)
        size.append(len(body))
    p50, p95 = ms_stats(lat)
    return {"n": len(lat), "p50_ms": p50, "p95_ms": p95, "kb": statistics.fmean(size) / 1024}


def encoders(dem: Path, tiles: list[tuple[int, int, int]]) -> tuple[dict, dict | None]:
    """twin's encoder vs quantized-mesh-encoder on the same meshes (encode + normals + gzip)."""
    import gzip
    import json
    import subprocess

    import numpy as np

    from scenes.quantized_mesh import QMAX, encode_tile
    from scenes.terrain import tile_bounds

    svc = TerrainService(dem)
    meshes = [(svc.mesh(*t), tile_bounds(*t)) for t in tiles]
    lat, size = [], []
    for mesh, bounds in meshes:
        t0 = time.perf_counter()
        size.append(len(gzip.compress(encode_tile(mesh, bounds, normals=True), compresslevel=6, mtime=0)))
        lat.append(time.perf_counter() - t0)
    p50, p95 = ms_stats(lat)
    ours = {"n": len(lat), "p50_ms": p50, "p95_ms": p95, "kb": statistics.fmean(size) / 1024}
    peer_py = BENCH / ".venv-qme" / "bin" / "python"
    if not peer_py.exists():
        return ours, None
    arrays: dict[str, np.ndarray] = {"count": np.array(len(meshes))}
    for i, (m, (w, s, e, n)) in enumerate(meshes):
        lon = w + (e - w) * m.u / QMAX
        lat_ = s + (n - s) * m.v / QMAX
        arrays[f"p{i}"] = np.column_stack([lon, lat_, m.heights]).astype(np.float64)
        arrays[f"t{i}"] = m.triangles.astype(np.uint32)
        arrays[f"b{i}"] = np.array([w, s, e, n])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "meshes.npz"
        np.savez(path, **arrays)
        out = subprocess.run([str(peer_py), str(BENCH / "terrain_peer_qme.py"), str(path)], capture_output=True,
                             text=True, timeout=600, check=True)
    return ours, json.loads(out.stdout.strip().splitlines()[-1])


def http_sample(port: int, tiles: list[tuple[int, int, int]], rounds: int = 1) -> dict:
    conn = http.client.HTTPConnection(h.HOST, port, timeout=60)
    lat, size, bad = [], [], 0
    try:
        for _ in range(rounds):
            for z, x, y in tiles:
                t0 = time.perf_counter()
                conn.request("GET", f"/terrain/{z}/{x}/{y}.terrain", headers={"Accept": ACCEPT, "Accept-Encoding": "gzip"})
                r = conn.getresponse()
                body = r.read()
                lat.append(time.perf_counter() - t0)
                size.append(len(body))
                bad += r.status != 200
    finally:
        conn.close()
    p50, p95 = ms_stats(lat)
    return {"n": len(lat), "p50_ms": p50, "p95_ms": p95, "kb": statistics.fmean(size) / 1024, "errors": bad}


def server(dem: Path, name: str, cache_mb: int) -> h.Server:
    home = Path(tempfile.mkdtemp(prefix="twin-bench-terrain-"))
    (home / "rasters").mkdir()
    (home / "rasters" / "dem.tif").symlink_to(dem)
    return h.Server(
        name=name,
        cmd=[sys.executable, "-m", "uvicorn", "--factory", "gis_api.app:create_app", "--host", h.HOST,
             "--port", "{port}", "--workers", "1", "--no-access-log", "--log-level", "warning"],
        env={"TWIN_HOME": str(home), "TWIN_TILE_CACHE_MB": str(cache_mb), "TWIN_REDIS_URL": ""},
        ready_path="/terrain/layer.json",
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--scale", type=float, default=None, help="sample-town scale of the DEM (default 10, quick 0.2)")
    args = ap.parse_args()
    scale = args.scale or (0.2 if args.quick else 10.0)
    cap = 30 if args.quick else 300
    dem = dem_for(scale)
    svc = TerrainService(dem)
    tiles = tiles_of(svc, 3, cap)
    print(f"terrain bench: {dem} (maxzoom {svc.max_zoom}), {len(tiles)} tiles, load avg {h.loadavg()}")
    lib = library(dem, tiles)
    ours, peer = encoders(dem, tiles)
    with server(dem, "twin-terrain-uncached", 0) as s:
        uncached = http_sample(s.port, tiles)
    with server(dem, "twin-terrain-cached", 256) as s:
        http_sample(s.port, tiles)  # warm
        cached = http_sample(s.port, tiles, rounds=3)
    rows = [
        ["library (render, no cache)", lib["n"], lib["p50_ms"], lib["p95_ms"], lib["kb"], "–"],
        ["HTTP uncached", uncached["n"], uncached["p50_ms"], uncached["p95_ms"], uncached["kb"], uncached["errors"]],
        ["HTTP cached", cached["n"], cached["p50_ms"], cached["p95_ms"], cached["kb"], cached["errors"]],
    ]
    rows.append(["encode only: twin (numpy)", ours["n"], ours["p50_ms"], ours["p95_ms"], ours["kb"], "–"])
    if peer is not None:
        rows.append([f"encode only: quantized-mesh-encoder {peer['version']}", peer["n"], peer["p50_ms"],
                     peer["p95_ms"], peer["kb"], "–"])
    table = h.md_table(["scenario", "tiles", "p50 ms", "p95 ms", "KB (gzip)", "errors"], rows)
    print(table)
    body = (f"## Terrain tiles (quantized-mesh)\n\n`python bench/terrain.py{' --quick' if args.quick else ''}` "
            f"on {h.now()}, commit {h.git_commit()}, DEM `{dem.name}` of the scale-{scale:g} sample town, "
            f"levels {tiles[0][0]}–{tiles[-1][0]} (maxzoom {svc.max_zoom}), octvertexnormals, one uvicorn worker. "
            f"Load average before: {h.loadavg()} — a shared, busy 2-core machine; the lead re-takes figures on a "
            f"quiet one. No terrain *server* peer is pip-installable, so the HTTP numbers are absolute; the encode-only rows "
            f"compare twin's numpy encoder with quantized-mesh-encoder (PyPI, Cython; `bench/.venv-qme`) on the same "
            f"meshes, both with vertex normals and gzip"
            + (f" — twin/peer p50 {h.ratio(ours['p50_ms'], peer['p50_ms'])}" if peer else "") + f".\n\n{table}\n")
    h.write_section(DOC, "terrain", body)
    h.save_json("terrain", {"library": lib, "uncached": uncached, "cached": cached, "encode_twin": ours,
                            "encode_peer": peer, "dem": str(dem)})


if __name__ == "__main__":
    main()
