"""``build_city``: the sample town at city scale (100 = ~2 M buildings), streamed district by district.

``generate_town`` holds a whole town in memory (~1.6 GB at scale 10 with its rasters), so a
scale-100 town in one piece would need ~16 GB and one very long transaction. A city is
instead built as ``n = ceil(scale / DISTRICT_SCALE)`` *districts*, each a complete sample
town of ``scale / n`` (its own seed ``seed + k``, villages, roads and utility networks)
laid out on a grid ``spacing`` apart. One district at a time is generated, written with
COPY (``SpatialStore.write_features`` → the PostGIS dialect's ``bulk_insert``) and
committed, then freed: memory stays that of one district.

District 0 is exactly ``generate_town(seed, scale / n)`` at the usual origin, with the
usual codes: at scale 10 the city *is* the scale-10 town, and at scale 100 its district 0
is the scale-10 town again (the same streets at the same place, which is what
``bench/scale.py`` compares). Districts 1… get their codes (``code``, every ``*_code`` and
``unit_grid_codes``) prefixed ``D01-`` … so codes stay unique and cross-references hold.

For a multi-district build the secondary indexes of the layer tables are dropped before
the first district and created again after the last (unique constraints stay), as a bulk
loader should. The building blocks (z12–z13) are computed per district once all are
loaded (one district's cells at a time), so the first server start does not recompute
2 M footprints at once. The orthophoto is written per district at ``CITY_ORTHO_RES_M``, the
DEM from the district layouts (district 0 at 10 m, the others at ``CITY_DEM_RES_M``), and
each mosaicked into one COG with GDAL.
"""

from __future__ import annotations

import contextlib
import gc
import math
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import text

from sample_data import events
from sample_data.town import DEFAULT_SEED, LAYER_ORDER, generate_town

#: Largest district: a city of scale s is ceil(s / DISTRICT_SCALE) towns of equal scale.
DISTRICT_SCALE = 10.0
#: Rasters of a multi-district city: 30 m DEM, 15 m orthophoto (a scale-10 town alone: 10 m, ~3 m).
CITY_DEM_RES_M = 30.0
CITY_ORTHO_RES_M = 15.0
_ORIGIN = (120.9, 31.7)
_BUILD_TIMEOUT_MS = 6 * 3_600_000  # COPYs and index builds of a city take minutes each
_M_PER_DEG_LAT = 111_320.0


def plan(scale: float, seed: int = DEFAULT_SEED, district_scale: float = DISTRICT_SCALE
         ) -> list[dict[str, Any]]:
    """The districts of a city of ``scale``: ``[{'k', 'seed', 'scale', 'origin', 'prefix'}]``.

    Districts sit on a square grid (district 0 in the middle of the first row) with
    centres ``2.4 × radius`` apart, radius that of a disc of the district's land area
    (the town outline reaches ~1.1 radius), so neighbours do not overlap.
    """
    if scale <= 0:
        raise ValueError("scale must be positive")
    n = max(1, math.ceil(scale / district_scale - 1e-9))
    ds = scale / n
    radius = math.sqrt(60e6 * ds / math.pi)
    spacing = 2.4 * radius
    cols = math.ceil(math.sqrt(n))
    lat0 = _ORIGIN[1]
    out = []
    for k in range(n):
        r, c = divmod(k, cols)
        dx, dy = (c - cols // 2) * spacing, -r * spacing
        if k == 0:
            dx = dy = 0.0
        elif r == 0 and c <= cols // 2:  # district 0 took the middle of row 0: shift the left ones by one
            dx = (c - 1 - cols // 2) * spacing
        lon = _ORIGIN[0] + dx / (_M_PER_DEG_LAT * math.cos(math.radians(lat0)))
        lat = lat0 + dy / _M_PER_DEG_LAT
        out.append({"k": k, "seed": seed + k, "scale": ds, "origin": (lon, lat),
                    "prefix": f"D{k:02d}-" if k else ""})
    return out


def _prefix_codes(rows: list[dict[str, Any]], prefix: str) -> None:
    """Prefix ``code``, every ``*_code`` value and every ``unit_grid_codes`` item (in place)."""
    if not prefix:
        return
    for r in rows:
        for key, v in r.items():
            if v is None:
                continue
            if key == "code" or key.endswith("_code"):
                r[key] = prefix + str(v)
            elif key.endswith("_codes") and isinstance(v, list):
                r[key] = [prefix + str(x) for x in v]


@contextlib.contextmanager
def deferred_indexes(engine: Any, tables: list[str]) -> Iterator[list[str]]:
    """PostGIS: drop the secondary indexes of ``tables`` now, create them again on exit.

    Indexes backing a constraint (primary keys, unique codes) stay. The definitions are kept in
    the table ``deferred_indexes`` until they are created again, so a build that was killed
    (no ``finally``) leaves them to the next build, which creates them at its end. On exit
    (also after an error) each index is created again and the tables analysed.
    """
    if engine.dialect.name != "postgresql":
        yield []
        return
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS deferred_indexes (name text PRIMARY KEY, ddl text NOT NULL)")
        defs = conn.execute(text(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = current_schema() "
            "AND i.tablename = ANY(:t) AND NOT EXISTS (SELECT 1 FROM pg_constraint c "
            "WHERE c.conname = i.indexname)"), {"t": tables}).all()
        for name, ddl in defs:
            conn.execute(text("INSERT INTO deferred_indexes VALUES (:n, :d) ON CONFLICT (name) DO NOTHING"),
                         {"n": name, "d": ddl})
            conn.exec_driver_sql(f'DROP INDEX IF EXISTS "{name}"')
        saved = conn.execute(text("SELECT name, ddl FROM deferred_indexes ORDER BY name")).all()
    try:
        yield [name for name, _ in saved]
    finally:
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql("SET maintenance_work_mem = '512MB'")
            conn.exec_driver_sql("SET statement_timeout = 0")  # a GiST index on 2 M rows takes minutes
            for name, ddl in saved:
                conn.exec_driver_sql(ddl.replace("CREATE INDEX ", "CREATE INDEX IF NOT EXISTS ", 1))
                conn.execute(text("DELETE FROM deferred_indexes WHERE name = :n"), {"n": name})
            for t in tables:
                conn.exec_driver_sql(f"ANALYZE {t}")


def _mosaic(parts: list[Path], dst: Path, *, nodata: float | None, jpeg: bool, resolution: str = "average") -> None:
    """One COG from district rasters (``gdalbuildvrt`` + ``gdal_translate -of COG``)."""
    vrt = dst.with_suffix(".vrt")
    cmd = ["gdalbuildvrt", "-q", "-resolution", resolution]
    if resolution == "highest":
        cmd += ["-r", "bilinear"]
    if nodata is not None:
        cmd += ["-srcnodata", str(nodata), "-vrtnodata", str(nodata)]
    subprocess.run([*cmd, str(vrt), *map(str, parts)], check=True, timeout=1800)
    co = ["-co", "BLOCKSIZE=512", "-co", "BIGTIFF=IF_SAFER", "-co", "NUM_THREADS=2", "-co", "OVERVIEW_RESAMPLING=AVERAGE"]
    co += ["-co", "COMPRESS=JPEG", "-co", "QUALITY=80"] if jpeg else ["-co", "COMPRESS=DEFLATE"]
    tmp = dst.with_suffix(".tmp.tif")
    subprocess.run(["gdal_translate", "-q", "-of", "COG", *co, str(vrt), str(tmp)], check=True, timeout=3600)
    tmp.replace(dst)
    vrt.unlink()


def _district_blocks(store: Any, bounds: tuple[float, float, float, float]) -> int:
    """Building blocks (z12–z13) of the cells under one district, built from the buildings now stored.

    Stamped with the current buildings version, so a server's ``BlockMaintainer.catch_up``
    finds them up to date; done per district so only one district's footprints are in memory.
    """
    from twin.blocks import cells_touching, recompute_cells
    from twin.versioning import bulk_change

    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql("SET LOCAL statement_timeout = 0")
        version = conn.execute(text("SELECT version FROM layer_versions WHERE layer = 'buildings'")).scalar()
        with bulk_change(conn, "building_blocks"):
            return recompute_cells(conn, cells_touching(bounds), int(version or 0))


class _Progress:
    """A tqdm bar over the build steps (a plain line per step when tqdm is missing or disabled)."""

    def __init__(self, total: int, enabled: bool, log: Callable[[str], None] | None):
        self.bar = None
        self.log = log
        self.t0 = time.perf_counter()
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="step", desc="city", dynamic_ncols=True)
            except ImportError:
                self.bar = None

    def step(self, what: str, **post: Any) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"{what} " + " ".join(f"{k}={v}" for k, v in post.items()), refresh=False)
            self.bar.update(1)
        if self.log is not None:
            self.log(f"[{time.perf_counter() - self.t0:7.1f} s] {what} " + " ".join(f"{k}={v}" for k, v in post.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _write_district(store: Any, d: dict[str, Any], tmp: Path | None, raster_dir: Path) -> dict[str, Any]:
    """Generate district ``d``, write its layers in one transaction, write its rasters.

    ``tmp`` set (a multi-district city): coarse district rasters into ``tmp/dNN`` for the
    mosaic; else the town's own ``dem.tif``/``ortho.tif`` into ``raster_dir``.
    """
    from sample_data.event_history import write_event_history
    from sample_data.rasters import write_ortho, write_rasters

    t0 = time.perf_counter()
    town = generate_town(seed=d["seed"], scale=d["scale"], origin=d["origin"])
    for layer in LAYER_ORDER:
        _prefix_codes(town.layers[layer], d["prefix"])
    t1 = time.perf_counter()
    counts: dict[str, int] = {}
    with store.engine.begin() as conn:
        for layer in LAYER_ORDER:
            counts[layer] = store.write_features(layer, town.layers[layer], mode="append", conn=conn)
        # the closed-loop steps behind each event's status
        write_event_history(conn, events.AS_OF, codes=[r["code"] for r in town.layers["events"]])
    t2 = time.perf_counter()
    placed: dict[int, dict[str, Any]] = {}
    if tmp is not None:
        for dk in [d, *d.get("copies", [])]:
            at = town if dk is d else _shifted(town, dk["origin"])
            dd = tmp / f"d{dk['k']:02d}"
            dd.mkdir(exist_ok=True)
            placed[dk["k"]] = {"bounds": at.bounds, "rasters": {
                "ortho": str(write_ortho(at, dd / "ortho.tif", res_m=CITY_ORTHO_RES_M))}}
    else:
        rasters = {k: str(v) for k, v in write_rasters(town, raster_dir).items()}
        placed[d["k"]] = {"bounds": town.bounds, "rasters": rasters}
    t3 = time.perf_counter()
    del town
    gc.collect()
    return {"k": d["k"], "counts": counts, "placed": placed,
            "timings": {"generate": t1 - t0, "write": t2 - t1, "rasters": t3 - t2}}


def _district_job(url: str, d: dict[str, Any], tmp: str, raster_dir: str) -> dict[str, Any]:
    """:func:`_write_district` in a worker process, with its own engine."""
    from twin.store import SpatialStore

    store = SpatialStore.from_url(url, statement_timeout_ms=_BUILD_TIMEOUT_MS)
    try:
        return _write_district(store, d, Path(tmp), Path(raster_dir))
    finally:
        store.engine.dispose()


def _shifted(town: Any, origin: tuple[float, float]) -> Any:
    """``town`` moved to ``origin``: the same local geometry in another frame (for its rasters)."""
    import dataclasses

    from sample_data.geo import Frame

    frame = Frame(*origin)
    tb = frame.to_lonlat(np.array([town.layout.town], dtype=object))[0].bounds
    return dataclasses.replace(town, frame=frame, origin=origin, bounds=tuple(float(b) for b in tb))


def write_city_dem(raster_dir: Path, districts: list[dict[str, Any]], tmp: Path) -> Path:
    """``raster_dir/dem.tif`` of a city: district 0 at the town's 10 m, the others at
    ``CITY_DEM_RES_M``, mosaicked on the 10 m grid (GDAL resamples the coarse ones).

    Only the layout (outline and terrain) of each district is needed, not the generated town,
    so this runs in the main process. District 0 keeps exactly the DEM of the scale-10 town,
    so a scene there costs what it costs on that town.
    """
    from types import SimpleNamespace

    from sample_data.geo import Frame
    from sample_data.layout import make_layout
    from sample_data.rasters import DEM_RES_M, write_dem
    from sample_data.town import _rng

    parts = []
    for d in districts:
        lay = make_layout(_rng(d["seed"], 1), d["scale"])
        town = SimpleNamespace(layout=lay, frame=Frame(*d["origin"]), origin=d["origin"])
        dd = tmp / f"d{d['k']:02d}"
        dd.mkdir(parents=True, exist_ok=True)
        parts.append(write_dem(town, dd / "dem.tif", res_m=DEM_RES_M if d["k"] == 0 else CITY_DEM_RES_M))
    _mosaic(parts, raster_dir / "dem.tif", nodata=-9999.0, jpeg=False, resolution="highest")
    return raster_dir / "dem.tif"


def _copy_district(store: Any, src: dict[str, Any], dst: dict[str, Any]) -> dict[str, int]:
    """PostGIS: district ``dst`` as a copy of the stored district ``src``, in SQL (one transaction).

    Every layer's rows of ``src`` are inserted again with their codes re-prefixed (``code``,
    ``*_code``, the items of ``*_codes``) and their geometry moved by the difference of the two
    frame origins in EPSG:4528 — the local frame is that CRS shifted, so this is exactly the town
    ``src`` would have been, generated at ``dst``'s origin. The event histories are copied too.
    """
    from sample_data.geo import METRIC_CRS, Frame
    from twin.catalog import get_layer
    from twin.versioning import bulk_change

    a, b = Frame(*src["origin"]), Frame(*dst["origin"])
    dx, dy = b.x0 - a.x0, b.y0 - a.y0
    srid = int(METRIC_CRS.split(":")[1])
    ps, pd = src["prefix"], dst["prefix"]
    mine = "code NOT LIKE 'D__-%'" if not ps else f"code LIKE '{ps}%'"
    n = len(ps) + 1

    def recode(col: str) -> str:
        return f"'{pd}' || substr({col}, {n})"

    counts: dict[str, int] = {}
    with store.engine.begin() as conn:
        conn.exec_driver_sql("SET LOCAL statement_timeout = 0")  # a district is ~500 k rows
        for layer in LAYER_ORDER:
            tbl = get_layer(layer).table.name
            cols = conn.execute(text(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = :t "
                "AND table_schema = current_schema() AND is_generated = 'NEVER' AND column_name <> 'id' "
                "ORDER BY ordinal_position"), {"t": tbl}).all()
            exprs = []
            for name, dtype in cols:
                q = f'"{name}"'
                if name == "geom":
                    exprs.append(f"ST_Transform(ST_Translate(ST_Transform(geom, {srid}), {dx!r}, {dy!r}), 4326)")
                elif name == "code" or name.endswith("_code"):
                    exprs.append(recode(q))
                elif name.endswith("_codes") and dtype in ("json", "jsonb"):
                    exprs.append(f"(SELECT {dtype}_agg({recode('x')}) FROM {dtype}_array_elements_text({q}) x)")
                else:
                    exprs.append(q)
            names = ", ".join(f'"{c}"' for c, _ in cols)
            with bulk_change(conn, get_layer(layer).id):
                counts[layer] = conn.execute(text(
                    f"INSERT INTO {tbl} ({names}) SELECT {', '.join(exprs)} FROM {tbl} WHERE {mine} ORDER BY id"
                )).rowcount
        conn.execute(text(
            "INSERT INTO event_transitions (event_id, from_status, to_status, by, note, at) "
            "SELECT e2.id, t.from_status, t.to_status, t.by, t.note, t.at FROM event_transitions t "
            f"JOIN events e1 ON e1.id = t.event_id JOIN events e2 ON e2.code = {recode('e1.code')} "
            f"WHERE e1.{mine} ORDER BY t.id"))
    return counts


def build_city(store: Any, raster_dir: Path, seed: int = DEFAULT_SEED, scale: float = 100.0, *,
               district_scale: float = DISTRICT_SCALE, jobs: int = 1, variants: int | None = None,
               progress: bool = True, log: Callable[[str], None] | None = None,
               blocks: bool = True, resume: bool = False) -> dict[str, Any]:
    """Replace every sample layer in ``store`` with the city of ``scale``; write dem.tif/ortho.tif.

    ``jobs`` > 1 generates that many districts at once in worker processes (PostGIS only;
    each ~1 GB at district scale 10); their writes queue on the layer-version rows, so the
    generation overlaps but the COPYs do not.

    ``variants`` (PostGIS only; default: every district distinct) generates only that many
    districts; district ``k`` beyond them is district ``k % variants`` copied in SQL to its own
    place with its own codes (:func:`_copy_district`) — the same town moved, as fast as the
    database can copy rows, for machines where generating ten towns is too slow.

    Returns the row counts per layer plus ``districts``, ``variants``, ``seconds`` and a
    ``timings`` dict (summed over the districts). One district is one transaction: an
    interrupted build leaves whole districts; ``resume=True`` keeps them and builds the rest
    (the orthophoto is then mosaicked from the districts rendered in that run only).
    """
    districts = plan(scale, seed, district_scale)
    if store.engine.dialect.name == "postgresql":  # an engine of our own without the 15 s statement timeout of a server's store
        with contextlib.ExitStack() as own:
            from twin.store import SpatialStore

            mine = SpatialStore.from_url(store.engine.url.render_as_string(hide_password=False),
                                         statement_timeout_ms=_BUILD_TIMEOUT_MS)
            own.callback(mine.engine.dispose)
            return _build_city(mine, districts, raster_dir, jobs, variants, progress, log, blocks, resume)
    return _build_city(store, districts, raster_dir, jobs, variants, progress, log, blocks, resume)


def _present(store: Any, districts: list[dict[str, Any]]) -> set[int]:
    """The districts that have buildings in ``store`` (a resumed build keeps them)."""
    with store.engine.connect() as conn:
        prefixes = set(conn.execute(text(
            "SELECT DISTINCT substr(code, 1, 4) FROM buildings WHERE code LIKE 'D__-%'")).scalars())
        zero = conn.execute(text("SELECT 1 FROM buildings WHERE code NOT LIKE 'D__-%' LIMIT 1")).first()
    return {d["k"] for d in districts if (d["prefix"] in prefixes if d["prefix"] else zero is not None)}


def _district_bounds(d: dict[str, Any]) -> tuple[float, float, float, float]:
    """A district's lon/lat bounds from its layout alone (no generated town needed)."""
    from sample_data.geo import Frame
    from sample_data.layout import make_layout
    from sample_data.town import _rng

    lay = make_layout(_rng(d["seed"], 1), d["scale"])
    b = Frame(*d["origin"]).to_lonlat(np.array([lay.town], dtype=object))[0].bounds
    return (float(b[0]), float(b[1]), float(b[2]), float(b[3]))


def _build_city(store: Any, districts: list[dict[str, Any]], raster_dir: Path, jobs: int, variants: int | None,
                progress: bool, log: Callable[[str], None] | None, blocks: bool, resume: bool) -> dict[str, Any]:
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from twin.catalog import get_layer

    multi = len(districts) > 1
    pg = store.engine.dialect.name == "postgresql"
    nv = len(districts) if not (variants and pg) else max(1, min(variants, len(districts)))
    have = _present(store, districts) if resume else set()
    generated = [d for d in districts[:nv] if d["k"] not in have]
    for d in generated:
        d["copies"] = [c for c in districts[nv + d["k"]::nv] if c["k"] not in have]
    raster_dir = Path(raster_dir)
    raster_dir.mkdir(parents=True, exist_ok=True)
    tables = [get_layer(name).table.name for name in LAYER_ORDER]
    bar = _Progress(len(districts) + 2, progress, log)
    timings = {"generate": 0.0, "write": 0.0, "copy": 0.0, "rasters": 0.0, "blocks": 0.0, "indexes": 0.0}
    t_start = time.perf_counter()
    if not resume:
        store.clear()
    placed: dict[int, dict[str, Any]] = {}
    for k in sorted(have):
        bar.step(f"district {k} already stored")

    def finished(res: dict[str, Any]) -> None:
        placed.update(res["placed"])
        for k, v in res["timings"].items():
            timings[k] += v
        bar.step(f"district {res['k']} generated and written", buildings=sum(res["counts"].values()))

    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="city-rasters-", dir=raster_dir)))
        stack.enter_context(deferred_indexes(store.engine, tables) if multi else contextlib.nullcontext())
        if jobs > 1 and len(generated) > 1 and pg:
            url = store.engine.url.render_as_string(hide_password=False)
            with ProcessPoolExecutor(min(jobs, len(generated)), mp_context=get_context("spawn")) as pool:
                futs = [pool.submit(_district_job, url, d, str(tmp), str(raster_dir)) for d in generated]
                for f in as_completed(futs):
                    finished(f.result())
        else:
            for d in generated:
                finished(_write_district(store, d, tmp if multi else None, raster_dir))
        for d in districts[nv:]:
            if d["k"] in have:
                continue
            t = time.perf_counter()
            _copy_district(store, districts[d["k"] % nv], d)
            timings["copy"] += time.perf_counter() - t
            bar.step(f"district {d['k']} copied from {d['k'] % nv}")
        if multi:
            t = time.perf_counter()
            write_city_dem(raster_dir, districts, tmp)
            if placed:  # a resumed build keeps the orthophoto it has unless it rendered districts again
                ks = sorted(placed)
                _mosaic([Path(placed[k]["rasters"]["ortho"]) for k in ks], raster_dir / "ortho.tif", nodata=None,
                        jpeg=True)
            timings["rasters"] += time.perf_counter() - t
        t = time.perf_counter()
    timings["indexes"] = time.perf_counter() - t  # the deferred indexes are created on leaving the stack
    bar.step("indexes and ANALYZE")
    if blocks:  # after the indexes: each district's cells are read by bbox
        t = time.perf_counter()
        for d in districts:
            _district_blocks(store, placed[d["k"]]["bounds"] if d["k"] in placed else _district_bounds(d))
        timings["blocks"] = time.perf_counter() - t
    bar.step("building blocks")
    bar.close()
    counts: dict[str, int] = {}
    with store.engine.connect() as conn:
        for layer in LAYER_ORDER + (("building_blocks",) if blocks else ()):
            tbl = get_layer(layer).table.name if layer != "building_blocks" else layer
            counts[layer] = conn.execute(text(f"SELECT count(*) FROM {tbl}")).scalar_one()
    return {**counts, "districts": len(districts), "variants": nv, "seconds": round(time.perf_counter() - t_start, 1),
            "timings": {k: round(v, 1) for k, v in timings.items()}}


__all__ = ["CITY_DEM_RES_M", "CITY_ORTHO_RES_M", "DISTRICT_SCALE", "build_city", "deferred_indexes", "plan"]
