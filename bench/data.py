"""Benchmark data: the 10× sample town (~200,000 buildings) in the PostGIS database ``twin_bench``.

    .venv/bin/python bench/data.py [--force] [--synthetic]

Uses ``sample_data.build_sample_town(store, raster_dir, seed=20261123, scale=10)`` when
that exists; otherwise (or with ``--synthetic``) writes 200,000 synthetic rectangular
buildings around 120.9°E 31.7°N (dense core + villages) and a synthetic DEM/ortho.

Rebuilding is skipped when the table ``bench_meta`` records the same data version
and the buildings count matches. Rasters (COGs) go to ``bench/results/rasters``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from sqlalchemy import text
from sqlalchemy.engine import make_url

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from twin.store import SpatialStore  # noqa: E402

DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/twin_bench")
RASTER_DIR = BENCH / "results" / "rasters"
SEED = 20261123
SCALE = 10.0
SYNTHETIC_VERSION = "synthetic-v1"
CENTER = (120.9, 31.7)


def build_blocks(db_url: str) -> None:
    """Bring ``building_blocks`` (the z12–z13 buildings) up to date before any server starts.

    A server builds them itself when they are missing (``TWIN_TILE_BLOCKS``), but on the 10×
    town that takes minutes of one core in a background thread of the server being measured,
    which is a one-off cost of a fresh database, not of serving tiles.
    """
    import time as _time

    from twin.blocks import ensure_blocks

    store = SpatialStore.from_url(db_url, statement_timeout_ms=600_000)
    try:
        started = _time.monotonic()
        n = ensure_blocks(store)
        if n:
            print(f"  building blocks brought up to date ({'all cells' if n < 0 else f'{n} cells'}) "
                  f"in {_time.monotonic() - started:.0f} s, before the servers start")
    finally:
        store.engine.dispose()


# --------------------------------------------------------------------------- database
def ensure_database(url: str = DB_URL) -> None:
    """CREATE DATABASE twin_bench (via the maintenance DB) and the PostGIS extension if missing."""
    import psycopg

    u = make_url(url)
    admin = psycopg.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
                            password=u.password, dbname="postgres", autocommit=True)
    with admin:
        if not admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (u.database,)).fetchone():
            admin.execute(f'CREATE DATABASE "{u.database}"')
    with psycopg.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username or "postgres",
                         password=u.password, dbname=u.database, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
        conn.execute("CREATE TABLE IF NOT EXISTS bench_meta (key text PRIMARY KEY, value text NOT NULL)")


def get_meta(store: SpatialStore) -> dict[str, str]:
    with store.engine.connect() as conn:
        return dict(conn.execute(text("SELECT key, value FROM bench_meta")).all())


def set_meta(store: SpatialStore, **kv: Any) -> None:
    with store.engine.begin() as conn:
        for k, v in kv.items():
            conn.execute(text("INSERT INTO bench_meta (key, value) VALUES (:k, :v) "
                              "ON CONFLICT (key) DO UPDATE SET value = excluded.value"), {"k": k, "v": str(v)})


def building_count(store: SpatialStore) -> int:
    with store.engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM buildings")).scalar_one()


def sample_town_available() -> bool:
    """True once ``build_sample_town`` is committed (a half-written working copy is not used)."""
    import subprocess

    try:
        out = subprocess.run(["git", "-C", str(ROOT), "grep", "-l", "def build_sample_town", "HEAD", "--",
                              "sample_data"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    if not out.strip():
        return False
    try:
        from sample_data import build_sample_town  # noqa: F401
    except ImportError:
        return False
    return True


def sample_town_version() -> str:
    """Version of the sample town generator: the git tree hash of the committed ``sample_data``."""
    import subprocess

    tree = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD:sample_data"],
                          capture_output=True, text=True, timeout=30).stdout.strip() or "unknown"
    return f"sample_town-scale{SCALE:g}-seed{SEED}-{tree}"


# --------------------------------------------------------------------------- synthetic town
USES = np.array(["residential", "residential", "residential", "commercial", "public", "industrial", "other"])


def synthetic_buildings(n: int = 200_000, seed: int = SEED) -> list[dict[str, Any]]:
    """``n`` rotated rectangles: 60 % in a dense core (~4.5 km square), the rest in 60 villages."""
    rng = np.random.default_rng(seed)
    lon0, lat0 = CENTER
    m_lat = 1 / 111_320.0
    m_lon = 1 / (111_320.0 * np.cos(np.radians(lat0)))
    n_core = int(n * 0.6)
    # dense core: a jittered grid of plots ~18 m apart
    side = int(np.ceil(np.sqrt(n_core)))
    gx, gy = np.meshgrid(np.arange(side), np.arange(side))
    gx, gy = gx.ravel()[:n_core], gy.ravel()[:n_core]
    cx = (gx - side / 2) * 18.0 + rng.normal(0, 1.5, n_core)
    cy = (gy - side / 2) * 18.0 + rng.normal(0, 1.5, n_core)
    # villages: gaussian clusters around the core
    n_vil = n - n_core
    centres = rng.uniform(-11_000, 11_000, (60, 2))
    which = rng.integers(0, 60, n_vil)
    vx = centres[which, 0] + rng.normal(0, 260, n_vil)
    vy = centres[which, 1] + rng.normal(0, 260, n_vil)
    x = np.concatenate([cx, vx])
    y = np.concatenate([cy, vy])
    village = np.concatenate([np.full(n_core, -1), which])
    w = rng.uniform(7, 14, n)
    d = rng.uniform(6, 11, n)
    a = rng.normal(0, 0.15, n)
    # corners in local metres, rotated, to lon/lat
    hx = np.array([-1, 1, 1, -1, -1])[None, :] * (w / 2)[:, None]
    hy = np.array([-1, -1, 1, 1, -1])[None, :] * (d / 2)[:, None]
    ca, sa = np.cos(a)[:, None], np.sin(a)[:, None]
    px = x[:, None] + hx * ca - hy * sa
    py = y[:, None] + hx * sa + hy * ca
    coords = np.stack([lon0 + px * m_lon, lat0 + py * m_lat], axis=-1)  # (n, 5, 2)
    rings = shapely.linearrings(coords.reshape(-1, 2), indices=np.repeat(np.arange(n), 5))
    polys = shapely.polygons(rings)
    multis = shapely.multipolygons(polys, indices=np.arange(n))
    floors = rng.choice([1, 2, 2, 3, 3, 4, 6, 11, 18], n)
    uses = rng.choice(USES, n)
    rows = []
    for i in range(n):
        vc = f"V{village[i]:03d}" if village[i] >= 0 else "CORE"
        rows.append({
            "code": f"B{i:07d}",
            "name": None,
            "address": f"{vc} road {i // 40} no. {i % 40 + 1}",
            "use": str(uses[i]),
            "floors": int(floors[i]),
            "height_m": round(float(floors[i]) * 3.0 + 0.6, 1),
            "households": int(floors[i]) * 2 if uses[i] == "residential" else None,
            "year_built": int(1970 + (i * 7919) % 55),
            "village_code": vc,
            "grid_code": f"{vc}-G{(i // 500) % 100:02d}",
            "ground_elev_m": round(3.5 + float(np.sin(x[i] / 900) + np.cos(y[i] / 1300)), 2),
            "geom": multis[i],
        })
    return rows


def synthetic_rasters(raster_dir: Path, half_m: float = 12_000.0) -> dict[str, Path]:
    """DEM (float32, 10 m) and ortho (RGB, 5 m) COGs in EPSG:3857 over the town square."""
    import rasterio
    from pyproj import Transformer
    from rasterio.transform import from_origin

    raster_dir.mkdir(parents=True, exist_ok=True)
    mx, my = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True).transform(*CENTER)
    k = 1 / np.cos(np.radians(CENTER[1]))  # mercator metres per ground metre
    out = {}
    for name, res, bands, dtype in (("dem", 10.0, 1, "float32"), ("ortho", 5.0, 3, "uint8")):
        path = raster_dir / f"{name}.tif"
        out[name] = path
        if path.exists():
            continue
        px = res * k
        size = int(2 * half_m / res)
        xs = (np.arange(size) - size / 2) * res
        gx, gy = np.meshgrid(xs, -xs)
        z = (3.5 + np.sin(gx / 900) + np.cos(gy / 1300) + 0.8 * np.exp(-((gx - 2000) ** 2 + (gy - 1500) ** 2) / 4e5))
        if name == "dem":
            data = z.astype("float32")[None]
        else:
            g = ((z - z.min()) / (z.max() - z.min()) * 120 + 60).astype("uint8")
            data = np.stack([g // 2 + 30, g, g // 2 + 20])
        profile = dict(driver="COG", width=size, height=size, count=bands, dtype=dtype, crs="EPSG:3857",
                       transform=from_origin(mx - size / 2 * px, my + size / 2 * px, px, px),
                       compress="deflate" if name == "dem" else "jpeg", blocksize=512,
                       overview_resampling="average")
        if name == "dem":
            profile["nodata"] = -9999.0
        tmp = path.with_suffix(".tmp.tif")
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(data)
        tmp.rename(path)
    return out


# --------------------------------------------------------------------------- entry
def ensure_data(force: bool = False, synthetic: bool | None = None, url: str = DB_URL) -> dict[str, Any]:
    """Make sure ``url`` holds the benchmark town; returns {'version', 'buildings', 'rasters', 'seconds'}."""
    ensure_database(url)
    store = SpatialStore.from_url(url, statement_timeout_ms=3_600_000)
    store.migrate()
    if synthetic is None:
        synthetic = os.environ.get("BENCH_DATA") == "synthetic" or not sample_town_available()
    version = SYNTHETIC_VERSION if synthetic else sample_town_version()
    meta = get_meta(store)
    count = building_count(store)
    if not force and meta.get("data_version") == version and str(count) == meta.get("buildings"):
        store.engine.dispose()
        return {"version": version, "buildings": count, "rasters": str(RASTER_DIR), "seconds": 0.0,
                "rebuilt": False}
    t0 = time.perf_counter()
    if synthetic:
        print(f"data: writing 200,000 synthetic buildings to {url}", file=sys.stderr)
        rows = synthetic_buildings()
        store.write_features("buildings", rows, mode="replace")
        for f in ("dem.tif", "ortho.tif"):
            if force:
                (RASTER_DIR / f).unlink(missing_ok=True)
        synthetic_rasters(RASTER_DIR)
        counts = {"buildings": len(rows)}
    else:
        from sample_data import build_sample_town

        print(f"data: build_sample_town(scale={SCALE:g}) into {url}", file=sys.stderr)
        RASTER_DIR.mkdir(parents=True, exist_ok=True)
        store.clear()
        counts = build_sample_town(store, RASTER_DIR, seed=SEED, scale=SCALE)
    with store.engine.begin() as conn:
        conn.exec_driver_sql("ANALYZE")
    count = building_count(store)
    secs = time.perf_counter() - t0
    set_meta(store, data_version=version, buildings=count, counts=counts, built_seconds=round(secs, 1))
    store.engine.dispose()
    print(f"data: {version}: {count} buildings in {secs:.1f} s", file=sys.stderr)
    return {"version": version, "buildings": count, "rasters": str(RASTER_DIR), "seconds": secs, "rebuilt": True}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--force", action="store_true", help="rebuild even when the data version matches")
    ap.add_argument("--synthetic", action="store_true", help="synthetic buildings even if sample_data exists")
    args = ap.parse_args()
    print(ensure_data(force=args.force, synthetic=True if args.synthetic else None))


if __name__ == "__main__":
    main()
