"""DEM and orthophoto Cloud-Optimized GeoTIFFs (EPSG:3857) consistent with the vector layers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import rasterio.enums
import rasterio.features
import rasterio.shutil
import shapely
import shapely.affinity
from rasterio.transform import from_origin
from rasterio.windows import Window

DEM_RES_M = 10.0
ORTHO_RES_M = 2.0
MAX_ORTHO_PX = 8000
NODATA = -9999.0
STRIP = 1024

CROP_RGB = {"rice": (92, 150, 62), "wheat": (196, 178, 96), "rapeseed": (214, 200, 60), "vegetables": (70, 125, 60),
            "corn": (110, 140, 55), "soybean": (120, 150, 80), "orchard": (60, 100, 50)}
ROOF_RGB = {"residential": [(150, 85, 70), (120, 120, 125), (95, 105, 125), (170, 160, 150)],
            "commercial": [(190, 190, 185), (160, 165, 170), (210, 205, 195)],
            "public": [(200, 120, 90), (185, 185, 190)],
            "industrial": [(70, 115, 170), (205, 208, 210), (90, 135, 180)]}
ROAD_RGB = {"arterial": (88, 88, 92), "collector": (110, 110, 112), "local": (150, 148, 144)}


def _grid(town, res_m: float, margin: float = 150.0):
    minx, miny, maxx, maxy = town.layout.town.bounds
    xs = np.array([minx - margin, maxx + margin, maxx + margin, minx - margin, (minx + maxx) / 2, (minx + maxx) / 2])
    ys = np.array([miny - margin, miny - margin, maxy + margin, maxy + margin, miny - margin, maxy + margin])
    mx, my = town.frame.xy_to_merc(xs, ys)
    k = 1.0 / np.cos(np.radians(town.origin[1]))
    px = res_m * k
    x0, y1 = np.floor(mx.min() / px) * px, np.ceil(my.max() / px) * px
    w = int(np.ceil((mx.max() - x0) / px))
    h = int(np.ceil((y1 - my.min()) / px))
    return from_origin(x0, y1, px, px), w, h


def _cog(tmp: Path, dst: Path, resampling: str) -> None:
    with rasterio.open(tmp, "r+") as ds:
        factors, f = [], 2
        while max(ds.width, ds.height) / f >= 128 or not factors:
            factors.append(f)
            f *= 2
        ds.build_overviews(factors, getattr(rasterio.enums.Resampling, resampling))
    rasterio.shutil.copy(tmp, dst, driver="COG", compress="DEFLATE", blocksize=512, OVERVIEWS="FORCE_USE_EXISTING",
                         BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS")
    tmp.unlink()


def _centres(transform, w, rows: slice):
    cols = np.arange(w) + 0.5
    rr = np.arange(rows.start, rows.stop) + 0.5
    mx = transform.c + cols * transform.a
    my = transform.f + rr * transform.e
    return np.meshgrid(mx, my)


def write_dem(town, path: Path, res_m: float = DEM_RES_M) -> Path:
    transform, w, h = _grid(town, res_m)
    tmp = path.with_suffix(".tmp.tif")
    inside = town.layout.town.buffer(300)
    profile = dict(driver="GTiff", width=w, height=h, count=1, dtype="float32", crs="EPSG:3857",
                   transform=transform, nodata=NODATA, tiled=True, blockxsize=512, blockysize=512, compress="DEFLATE")
    with rasterio.open(tmp, "w", **profile) as ds:
        for r0 in range(0, h, STRIP):
            r1 = min(h, r0 + STRIP)
            MX, MY = _centres(transform, w, slice(r0, r1))
            x, y = town.frame.merc_to_xy(MX.ravel(), MY.ravel())
            z = town.layout.terrain.elevation_xy(x, y).astype("float32")
            z[~shapely.contains_xy(inside, x, y)] = NODATA
            ds.write(z.reshape(MX.shape), 1, window=Window(0, r0, w, r1 - r0))
    _cog(tmp, path, "average")
    return path


def _noise(MX, MY, seed: int, scale_m: float):
    rng = np.random.default_rng(seed)
    n = np.zeros(MX.shape, dtype="float32")
    for k in range(4):
        fx, fy = rng.uniform(0.5, 1.5, 2) / (scale_m * (k + 1) ** 0.5)
        p1, p2 = rng.uniform(0, 6.3, 2)
        n += (np.sin(MX * fx + p1) * np.cos(MY * fy + p2)).astype("float32") / (k + 1)
    return n


def write_ortho(town, path: Path, res_m: float | None = None) -> Path:
    lay = town.layout
    minx, miny, maxx, maxy = lay.town.bounds
    if res_m is None:
        res_m = max(ORTHO_RES_M, max(maxx - minx, maxy - miny) / MAX_ORTHO_PX)
    transform, w, h = _grid(town, res_m)
    loc = town.local
    fr = town.frame
    # features in 3857 with their colours
    farm = fr.to_mercator(loc["farmland"])
    farm_rgb = np.array([CROP_RGB.get(c, (100, 140, 70)) for c in loc["crops"]], float).reshape(-1, 3)
    rng = np.random.default_rng([town.seed, 99])
    farm_rgb = farm_rgb * rng.uniform(0.88, 1.12, (len(farm_rgb), 1))
    farm_ang = np.array([_angle(g) for g in loc["farmland"]])
    hamlets = fr.to_mercator(np.array([g.buffer(10) for g in loc["hamlets"]], dtype=object))
    sites = fr.to_mercator(loc["sites"])
    site_rows = town.layers["construction_sites"]
    site_rgb = np.array([(70, 125, 85) if r["dust_controlled"] else (160, 130, 95) for r in site_rows], float)
    roads = loc["roads"]
    road_geoms = fr.to_mercator(np.array([r.line.buffer(r.width / 2, cap_style="flat") for r in roads], dtype=object))
    road_rgb = np.array([ROAD_RGB.get(r.road_class, (150, 148, 144)) if r.width > 4 else (175, 172, 165)
                         for r in roads], float)
    river = fr.to_mercator(np.array([lay.river.intersection(lay.town.buffer(2000))], dtype=object))
    bld = fr.to_mercator(loc["buildings"])
    uses = loc["building_use"]
    bld_rgb = np.array([ROOF_RGB[u][int(k)] for u, k in
                        zip(uses, rng.integers(0, 12, len(uses)) % np.array([len(ROOF_RGB[u]) for u in uses]),
                            strict=True)], float).reshape(-1, 3)
    heights = np.array([r["height_m"] for r in town.layers["buildings"]])
    px = transform.a
    trees = {n: shapely.STRtree(g) for n, g in (("farm", farm), ("ham", hamlets), ("site", sites), ("road", road_geoms),
                                                ("bld", bld))}
    tmp = path.with_suffix(".tmp.tif")
    profile = dict(driver="GTiff", width=w, height=h, count=3, dtype="uint8", crs="EPSG:3857", transform=transform,
                   tiled=True, blockxsize=512, blockysize=512, compress="DEFLATE", photometric="RGB")
    with rasterio.open(tmp, "w", **profile) as ds:
        for r0 in range(0, h, STRIP):
            r1 = min(h, r0 + STRIP)
            win = Window(0, r0, w, r1 - r0)
            wt = rasterio.windows.transform(win, transform)
            shape = (r1 - r0, w)
            MX, MY = _centres(transform, w, slice(r0, r1))
            box = shapely.box(transform.c, transform.f + r1 * transform.e, transform.c + w * px, transform.f + r0 * transform.e)
            prng = np.random.default_rng([town.seed, 100, r0])
            grain = prng.normal(0, 4, shape).astype("float32")
            low = _noise(MX, MY, town.seed, 120.0)
            rgb = np.empty((3,) + shape, dtype="float32")
            for c, base in enumerate((118, 132, 84)):
                rgb[c] = base + 10 * low + grain

            def burn(name, geoms, box=box, shape=shape, wt=wt):
                idx = trees[name].query(box)
                if len(idx) == 0:
                    return np.zeros(shape, dtype="int32"), idx
                shapes = ((geoms[i], int(k + 1)) for k, i in enumerate(idx))
                return rasterio.features.rasterize(shapes, out_shape=shape, transform=wt, fill=0, dtype="int32"), idx

            # farmland with row texture
            lab, idx = burn("farm", farm)
            m = lab > 0
            if m.any():
                pid = idx[lab[m] - 1]
                a = farm_ang[pid]
                stripe = np.sin((MX[m] * np.cos(a) + MY[m] * np.sin(a)) * (2 * np.pi / 5.0))
                for c in range(3):
                    rgb[c][m] = farm_rgb[pid, c] + 7 * stripe + grain[m]
            # hamlet gardens / trees
            lab, idx = burn("ham", hamlets)
            m = lab > 0
            if m.any():
                tex = _noise(MX, MY, town.seed + 1, 6.0)[m]
                for c, base in enumerate((62, 92, 52)):
                    rgb[c][m] = base + 14 * tex + grain[m]
            lab, idx = burn("site", sites)
            m = lab > 0
            if m.any():
                sid = idx[lab[m] - 1]
                for c in range(3):
                    rgb[c][m] = site_rgb[sid, c] + 2 * grain[m]
            # river
            if shapely.intersects(river[0], box):
                m = rasterio.features.rasterize([(river[0], 1)], out_shape=shape, transform=wt, fill=0, dtype="uint8") > 0
                for c, base in enumerate((48, 86, 112)):
                    rgb[c][m] = base + 5 * low[m] + 0.5 * grain[m]
            lab, idx = burn("road", road_geoms)
            m = lab > 0
            if m.any():
                rid = idx[lab[m] - 1]
                for c in range(3):
                    rgb[c][m] = road_rgb[rid, c] + 0.6 * grain[m]
            # buildings: shadow to the north-east (sun in the south-west), then roofs
            bidx = trees["bld"].query(box.buffer(60 * px))
            if len(bidx):
                sh = bld[bidx]
                off = np.minimum(heights[bidx], 60) * 0.5
                sh = np.array([shapely.affinity.translate(g, o, o) for g, o in zip(sh, off, strict=True)], dtype=object)
                smask = rasterio.features.rasterize(((g, 1) for g in sh), out_shape=shape, transform=wt, fill=0,
                                                    dtype="uint8") > 0
                rgb[:, smask] *= 0.55
                lab = rasterio.features.rasterize(((bld[i], int(k + 1)) for k, i in enumerate(bidx)), out_shape=shape,
                                                  transform=wt, fill=0, dtype="int32")
                m = lab > 0
                if m.any():
                    bid = bidx[lab[m] - 1]
                    for c in range(3):
                        rgb[c][m] = bld_rgb[bid, c] + 0.5 * grain[m]
            ds.write(np.clip(rgb, 0, 255).astype("uint8"), window=win)
    _cog(tmp, path, "average")
    return path


def _angle(poly) -> float:
    c = np.asarray(poly.exterior.coords)
    d = c[1] - c[0]
    return float(np.arctan2(d[1], d[0]))


def write_rasters(town, out_dir: Path) -> dict[str, Path]:
    """Write ``dem.tif`` (float32 m, nodata -9999) and ``ortho.tif`` (RGB) as COGs in EPSG:3857."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return {"dem": write_dem(town, out_dir / "dem.tif"), "ortho": write_ortho(town, out_dir / "ortho.tif")}
