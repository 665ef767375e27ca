"""Reading the features an analysis needs, through the store (both backends alike).

The store's dialect supplies the bbox clause (each backend's spatial index) and the
geometry encoding; the exact spatial test is then done by the analysis in a local metric
frame. Reads are capped so no request can pull a whole province into memory.

Reads run on an *autocommit* view of the store's engine: a single SELECT needs no
transaction, and skipping BEGIN/ROLLBACK saves two of the three round trips of a small
query — most of a 50 m buffer's time against a fast index lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import orjson
import shapely
from sqlalchemy import DateTime, Float, Integer, Select, bindparam, select
from sqlalchemy.engine import Engine

from twin.analysis.metric import frame_for, metres_to_degrees_box
from twin.catalog import get_layer
from twin.dialect import BBox, SpatialDialect
from twin.errors import InvalidParameter, LimitExceeded
from twin.store import FeatureQuery, SpatialStore, _aware


@dataclass
class FeatureSet:
    """Features of one layer: ids, property dicts and lon/lat shapely geometries (aligned)."""

    layer: str
    ids: list[int] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)
    geometries: np.ndarray = field(default_factory=lambda: np.array([], dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def take(self, idx: Sequence[int] | np.ndarray) -> FeatureSet:
        idx = [int(i) for i in idx]
        return FeatureSet(self.layer, [self.ids[i] for i in idx], [self.properties[i] for i in idx],
                          self.geometries[idx] if idx else np.array([], dtype=object))


def features_in_bbox(store: SpatialStore, layer: str, bbox: BBox, *, cap: int,
                     filters: dict[str, str] | None = None, properties: Sequence[str] | None = None) -> FeatureSet:
    """Every feature of ``layer`` whose geometry meets the lon/lat ``bbox``; at most ``cap``
    (:class:`LimitExceeded` beyond, so a result is never silently cut short)."""
    spec = get_layer(layer)
    tbl = spec.table
    cols = spec.property_columns
    if properties is not None:
        by_name = {c.name: c for c in cols}
        unknown = [p for p in properties if p not in by_name]
        if unknown:
            raise InvalidParameter(f"unknown properties {unknown} for layer {spec.id!r}")
        cols = [by_name[p] for p in properties]
    filters = filters or {}
    for name in filters:
        if name not in tbl.c or name in ("id", "geom"):
            raise InvalidParameter(f"unknown property {name!r} for layer {spec.id!r}")
    stmt = _statement(store.dialect, spec.id, tuple(c.name for c in cols), tuple(sorted(filters)))
    params = {"x0": bbox[0], "y0": bbox[1], "x1": bbox[2], "y1": bbox[3], "cap": cap + 1,
              **{f"f_{k}": v for k, v in filters.items()}}
    with _reader(store).connect() as conn:
        rows = conn.execute(stmt, params).all()
    if len(rows) > cap:
        raise LimitExceeded(
            f"more than {cap} {spec.id} features lie in the area; narrow the area or the distance",
            detail={"layer": spec.id, "max_features": cap},
        )
    names = [c.name for c in cols]
    props = [dict(zip(names, r[1:-1], strict=True)) for r in rows]
    stamps = [c.name for c in cols if isinstance(c.type, DateTime)]
    for d in props if stamps else ():  # SQLite hands datetimes back naive (stored in UTC)
        for n in stamps:
            d[n] = _aware(d[n])
    geoms = shapely.from_wkb([bytes(r[-1]) for r in rows]) if rows else np.array([], dtype=object)
    return FeatureSet(spec.id, [r[0] for r in rows], props, geoms)


def features_within(store: SpatialStore, layer: str, geom: shapely.Geometry, distance_m: float, bbox: BBox, *,
                    cap: int, geometry: str = "shapely") -> tuple[FeatureSet, np.ndarray]:
    """Every feature of ``layer`` within ``distance_m`` metres on the ground of ``geom`` (lon/lat), with
    its distance in metres, nearest first (ties by id). ``bbox`` is a lon/lat box holding every point
    within the distance (the index prefilter); more than ``cap`` candidates → :class:`LimitExceeded`.

    ``geometry`` says what the feature set's ``geometries`` hold: ``"shapely"`` geometries,
    ``"geojson"`` (each as GeoJSON text in an ``orjson.Fragment``, ready to embed in an answer, made
    by the database) or ``"none"`` (``None``).

    Membership and distances are exact ground distances in a local azimuthal-equidistant frame
    centred near ``geom`` (:mod:`twin.analysis.metric`). The database narrows the candidates:
    SpatiaLite by its R-tree on ``bbox``; PostGIS also by a planar ``ST_DWithin`` in degrees whose
    radius (the box's larger half-width) holds the whole ground buffer, so only the corners of the
    box are left out. Around a point (or points) PostGIS decides it all itself — ``ST_DWithin`` and
    ``ST_Distance`` on the geography: geodesic distances on the WGS84 spheroid, agreeing with the
    local frame to well under a centimetre — and only the hits come back. Not from lines or
    polygons: PostGIS 3.3's geography distance reads nearly parallel edges metres apart as
    touching (0 between water pipes 2 m apart in the sample town), which would put such pipes
    inside a buffer drawn around their neighbour. Either query goes straight through the driver
    (a pooled connection in autocommit mode: no transaction, and no SQLAlchemy statement
    machinery, which cost more than the query itself).
    """
    if geometry not in ("shapely", "geojson", "none"):
        raise ValueError(f"geometry: 'shapely', 'geojson' or 'none', not {geometry!r}")
    if store.dialect.name == "postgis" and shapely.get_type_id(geom) in (0, 4):  # Point, MultiPoint
        return _within_of_points(store, layer, geom, distance_m, bbox, cap, geometry)
    if store.dialect.name != "postgis":
        fs = features_in_bbox(store, layer, bbox, cap=cap)
        text = None
    else:
        fs, text = _candidates_postgis(store, layer, geom, distance_m, bbox, cap, geometry == "geojson")
    if not len(fs):
        return fs, np.zeros(0)
    frame = frame_for(geom)
    d = shapely.distance(frame.to_metric(geom), frame.to_metric(np.asarray(fs.geometries, dtype=object)))
    keep = np.flatnonzero(d <= distance_m + DISTANCE_EPS_M)
    keep = keep[np.lexsort((np.asarray(fs.ids)[keep], d[keep]))]
    out = fs.take(keep)
    if geometry == "geojson":
        out.geometries = np.empty(len(keep), dtype=object)
        out.geometries[:] = ([orjson.Fragment(text[i]) for i in keep] if text is not None
                             else [orjson.Fragment(g) for g in shapely.to_geojson(fs.geometries[keep])])
    elif geometry == "none":
        out.geometries = np.full(len(keep), None, dtype=object)
    return out, d[keep]


#: slack on the distance test: float noise of the projection, far below survey accuracy
DISTANCE_EPS_M = 1e-6
#: GeoJSON from PostGIS with the digits shapely writes (15: the same text as ``shapely.to_geojson``)
GEOJSON_DIGITS = 15


def features_near_point(store: SpatialStore, layer: str, lon: float, lat: float, distance_m: float, bbox: BBox, *,
                        cap: int, geometry: str = "shapely") -> tuple[FeatureSet, np.ndarray]:
    """:func:`features_within` of the point ``(lon, lat)``: the same answer, from the coordinates
    themselves (on PostGIS no geometry is made or encoded on this side: the query builds the point)."""
    if store.dialect.name != "postgis":
        return features_within(store, layer, shapely.Point(lon, lat), distance_m, bbox, cap=cap, geometry=geometry)
    if geometry not in ("shapely", "geojson", "none"):
        raise ValueError(f"geometry: 'shapely', 'geojson' or 'none', not {geometry!r}")
    return _within_of_points(store, layer, None, distance_m, bbox, cap, geometry, xy=(float(lon), float(lat)))


def _within_of_points(store: SpatialStore, layer: str, geom: shapely.Geometry | None, distance_m: float, bbox: BBox,
                      cap: int, geometry: str, xy: tuple[float, float] | None = None) -> tuple[FeatureSet, np.ndarray]:
    """Hits around ``geom`` (a point or points), or around the single point ``xy`` when given."""
    spec = get_layer(layer)
    sql, names = _points_sql(spec.id, geometry, xy is not None)
    params = {"x0": bbox[0], "y0": bbox[1], "x1": bbox[2], "y1": bbox[3], "m": float(distance_m), "cap": cap + 1}
    if xy is not None:
        params["px"], params["py"] = xy
    else:
        params["g"] = shapely.to_wkb(geom)
    rows = _raw_fetch(store, sql, params)
    if len(rows) > cap:
        raise LimitExceeded(f"more than {cap} {spec.id} features lie within the distance; narrow it",
                            detail={"layer": spec.id, "max_features": cap})
    n = len(names)
    props = [dict(zip(names, r[1:n + 1], strict=True)) for r in rows]
    geoms = np.empty(len(rows), dtype=object)
    if geometry == "shapely" and rows:
        geoms = shapely.from_wkb([r[n + 1] for r in rows])
    elif geometry == "geojson":
        geoms[:] = [orjson.Fragment(r[n + 1]) for r in rows]
    return FeatureSet(spec.id, [r[0] for r in rows], props, geoms), np.array([r[-1] for r in rows], dtype=float)


@lru_cache(maxsize=64)
def _points_sql(layer: str, geometry: str, xy: bool = False) -> tuple[str, list[str]]:
    """The PostGIS query of :func:`features_within` around points: hits and geodesic distances
    (``xy``: around the one point ``%(px)s, %(py)s``; else the WKB points ``%(g)s``)."""
    spec = get_layer(layer)
    names = [c.name for c in spec.property_columns]
    cols = "".join(f't."{n}", ' for n in names)
    geom = {"shapely": "ST_AsBinary(t.geom), ", "geojson": f"ST_AsGeoJSON(t.geom, {GEOJSON_DIGITS}), ",
            "none": ""}[geometry]
    point = "ST_SetSRID(ST_MakePoint(%(px)s, %(py)s), 4326)" if xy else "ST_GeomFromWKB(%(g)s, 4326)"
    sql = (f'SELECT t.id, {cols}{geom}ST_Distance(t.geom::geography, s.q) AS d '
           f'FROM "{spec.table.name}" t, (SELECT {point}::geography AS q) s '
           'WHERE t.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326) '
           'AND ST_DWithin(t.geom::geography, s.q, %(m)s) ORDER BY d, t.id LIMIT %(cap)s')
    return sql, names


def _candidates_postgis(store: SpatialStore, layer: str, geom: shapely.Geometry, distance_m: float, bbox: BBox,
                        cap: int, geojson: bool) -> tuple[FeatureSet, list[str] | None]:
    spec = get_layer(layer)
    sql, names = _within_sql(spec.id, geojson)
    minx, miny, maxx, maxy = geom.bounds
    dlon, dlat = metres_to_degrees_box((minx + maxx) / 2, max(abs(miny), abs(maxy)), distance_m)
    params = {"g": shapely.to_wkb(geom), "x0": bbox[0], "y0": bbox[1], "x1": bbox[2], "y1": bbox[3],
              "r": max(dlon, dlat), "cap": cap + 1}
    rows = _raw_fetch(store, sql, params)
    if len(rows) > cap:
        raise LimitExceeded(f"more than {cap} {spec.id} features lie in the area; narrow the area or the distance",
                            detail={"layer": spec.id, "max_features": cap})
    n = len(names)
    props = [dict(zip(names, r[1:n + 1], strict=True)) for r in rows]
    geoms = shapely.from_wkb([r[n + 1] for r in rows]) if rows else np.array([], dtype=object)
    return FeatureSet(spec.id, [r[0] for r in rows], props, geoms), [r[n + 2] for r in rows] if geojson else None


@lru_cache(maxsize=64)
def _within_sql(layer: str, geojson: bool) -> tuple[str, list[str]]:
    """The PostGIS query of :func:`features_within` for ``layer`` and its property names (made once)."""
    spec = get_layer(layer)
    names = [c.name for c in spec.property_columns]
    cols = "".join(f't."{n}", ' for n in names)
    text = f", ST_AsGeoJSON(t.geom, {GEOJSON_DIGITS})" if geojson else ""
    sql = (f'SELECT t.id, {cols}ST_AsBinary(t.geom){text} '
           f'FROM "{spec.table.name}" t, (SELECT ST_GeomFromWKB(%(g)s, 4326) AS q) s '
           'WHERE t.geom && ST_MakeEnvelope(%(x0)s, %(y0)s, %(x1)s, %(y1)s, 4326) '
           'AND ST_DWithin(t.geom, s.q, %(r)s) ORDER BY t.id LIMIT %(cap)s')
    return sql, names


def _raw_fetch(store: SpatialStore, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows of one read-only query, run by the driver itself on a pooled connection in autocommit mode
    (the pool's checkout checks, read routing to replicas and reset still apply); driver errors come
    out as SQLAlchemy's, so the API maps them as any other (timeout, lost database → 503)."""
    from sqlalchemy import exc

    raw = store.engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        conn.autocommit = True
        try:
            # binary results: the same Python values, less for the server to format (floats, ids, WKB)
            return conn.execute(sql, params, binary=True).fetchall()
        finally:
            if not conn.closed:
                conn.autocommit = False
    except Exception as e:  # noqa: BLE001 - the driver's own error, re-raised as SQLAlchemy would
        dbapi = store.engine.dialect.loaded_dbapi
        if isinstance(e, dbapi.Error):
            if getattr(raw.driver_connection, "closed", False):
                raw.invalidate(e)
            raise exc.DBAPIError.instance(sql, params, e, dbapi.Error) from e
        raise
    finally:
        raw.close()


@lru_cache(maxsize=512)
def _statement(dialect: SpatialDialect, layer: str, columns: tuple[str, ...], filters: tuple[str, ...]) -> Select:
    """One SELECT per (backend, layer, columns, filter names) with bound parameters: built and
    compiled once, then only executed (SQLAlchemy's cache key is memoised on the statement)."""
    tbl = get_layer(layer).table
    box = tuple(bindparam(n, type_=Float) for n in ("x0", "y0", "x1", "y1"))
    where = [dialect.bbox_clause(tbl, box)]  # type: ignore[arg-type]
    where += [tbl.c[name] == bindparam(f"f_{name}") for name in filters]
    return (select(tbl.c.id, *(tbl.c[c] for c in columns), dialect.geometry_wkb(tbl)).where(*where)
            .order_by(tbl.c.id).limit(bindparam("cap", type_=Integer)))


class VersionClock:
    """The store's layer data versions, re-read at most every ``ttl_s`` seconds.

    Caches built from layers (network graphs, the search index, the dust heat map) check the
    versions on every request; one query per check would cost more than the cached answer.
    ``ttl_s`` is the bound on how long another process's edit can go unseen — the same bound
    the tile caches keep (``TWIN_TILE_VERSION_TTL_S``).
    """

    def __init__(self, store: SpatialStore, ttl_s: float = 1.0):
        import threading

        self.store = store
        self.ttl_s = ttl_s
        self._at = -1e18
        self._versions: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self) -> dict[str, int]:
        import time

        now = time.monotonic()
        if now - self._at > self.ttl_s:
            versions = self.store.versions()
            with self._lock:
                self._versions, self._at = versions, now
        return self._versions


def _reader(store: SpatialStore) -> Engine:
    """The store's engine in autocommit mode (same pool), made once per store."""
    eng = getattr(store, "_analysis_reader", None)
    if eng is None:
        eng = store.engine.execution_options(isolation_level="AUTOCOMMIT")
        store._analysis_reader = eng  # type: ignore[attr-defined]
    return eng


def feature_by_ref(store: SpatialStore, layer: str, *, id: int | None = None, code: str | None = None) -> FeatureSet:
    """One feature named by ``id`` or business ``code`` (``FeatureNotFound`` → 404 otherwise)."""
    from twin.errors import FeatureNotFound

    spec = get_layer(layer)
    if id is not None:
        page = store.get(spec.id, int(id))
    elif code is not None:
        page = store.query(FeatureQuery(layer=spec.id, filters={"code": str(code)}, limit=1))
        if not page.ids:
            raise FeatureNotFound(f"no feature with code {code!r} in layer {spec.id!r}")
    else:
        raise InvalidParameter("a feature reference needs 'id' or 'code'")
    return FeatureSet(spec.id, page.ids, page.properties, page.geometries)


__all__ = ["FeatureSet", "VersionClock", "feature_by_ref", "features_in_bbox", "features_near_point", "features_within"]
