"""Buffer analysis held to an independent computation: geodesic distances (pyproj.Geod)."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Geod

from twin.analysis import buffer_analysis, distances_m, parse_geometry, search_bbox
from twin.analysis.inputs import check_distance
from twin.analysis.source import features_in_bbox
from twin.errors import InvalidGeometry, InvalidParameter, LimitExceeded

GEOD = Geod(ellps="WGS84")


def geodesic_distance_to(lon: float, lat: float, geom: shapely.Geometry, step_m: float = 0.05) -> float:
    """Shortest geodesic distance from a point to ``geom``: 0 inside a polygon, else the least
    distance to its boundary densified to ``step_m`` (independent of any projection)."""
    if geom.geom_type.endswith("Polygon") and geom.contains(shapely.Point(lon, lat)):
        return 0.0
    line = geom.boundary if geom.geom_type.endswith("Polygon") else geom
    step_deg = step_m / 111_000
    pts = shapely.get_coordinates(shapely.segmentize(line, step_deg)) if line.geom_type != "Point" else \
        shapely.get_coordinates(line)
    _, _, d = GEOD.inv(np.full(len(pts), lon), np.full(len(pts), lat), pts[:, 0], pts[:, 1])
    return float(np.min(d))


def test_point_distances_match_geodesic():
    lon0, lat0 = 121.0, 31.4
    rng = np.random.default_rng(1)
    lons = lon0 + rng.uniform(-0.02, 0.02, 200)
    lats = lat0 + rng.uniform(-0.02, 0.02, 200)
    ours = distances_m(shapely.Point(lon0, lat0), shapely.points(lons, lats))
    _, _, ref = GEOD.inv(np.full(200, lon0), np.full(200, lat0), lons, lats)
    assert np.max(np.abs(ours - ref)) < 0.01  # 1 cm over ±2 km


def test_buffer_of_buildings_complete_and_exact(town_store):
    """Every building within 80 m of a point is reported with its geodesic distance; none beyond."""
    page = features_in_bbox(town_store, "buildings", (-180, -90, 180, 90), cap=100_000)
    centre = shapely.centroid(shapely.union_all(page.geometries[:50]))
    lon, lat = centre.x, centre.y
    dist = 80.0
    box = search_bbox(centre, dist)
    cands = features_in_bbox(town_store, "buildings", box, cap=100_000)
    res = buffer_analysis(centre, dist, [cands])
    got = {h.id: h.distance_m for h in res.hits}
    ref = {fid: geodesic_distance_to(lon, lat, g) for fid, g in zip(page.ids, page.geometries, strict=True)}
    inside = {fid for fid, d in ref.items() if d <= dist - 0.05}
    outside = {fid for fid, d in ref.items() if d > dist + 0.05}
    assert inside, "the test point should have buildings around it"
    assert inside <= set(got), "a building inside the buffer was missed"
    assert not (set(got) & outside), "a building outside the buffer was reported"
    for fid, d in got.items():
        assert abs(d - ref[fid]) < 0.06
    assert [h.distance_m for h in res.hits] == sorted(h.distance_m for h in res.hits)
    # the polygon drawn has the area of a circle of radius 80 m (within the 16-segment chord loss)
    assert np.pi * dist**2 * 0.99 < res.area_m2 <= np.pi * dist**2


@pytest.mark.parametrize("kind", ["point", "pipe"])
def test_buffer_endpoint_complete_and_exact(town_client, town_store, kind):
    """POST /analysis/buffer as a user calls it (PostGIS: one geography query; SpatiaLite: the local
    frame) against geodesic distances computed here: every building, device and pipe within the
    distance is there with its ground distance, none beyond, nearest first; the polygon is the circle."""
    layers = ["buildings", "devices", "pipelines"]
    pages = {name: features_in_bbox(town_store, name, (-180, -90, 180, 90), cap=100_000) for name in layers}
    b = pages["buildings"]
    centre = shapely.centroid(shapely.union_all(b.geometries[:50]))
    dist = 60.0
    if kind == "point":
        body = {"geometry": {"type": "Point", "coordinates": [centre.x, centre.y]}}
        ref_geom, exclude = centre, None
    else:
        p = pages["pipelines"]
        k = int(np.argmin(shapely.distance(p.geometries, centre)))
        body = {"feature": {"layer": "pipelines", "id": p.ids[k]}}
        ref_geom, exclude = p.geometries[k], ("pipelines", p.ids[k])
    r = town_client.post("/analysis/buffer", json={**body, "distance": dist, "layers": layers})
    assert r.status_code == 200, r.text
    res = r.json()
    got = {(f["properties"]["layer"], f["id"]): f["properties"]["distance_m"] for f in res["features"]["features"]}
    want: dict[tuple[str, int], float] = {}
    # a lower bound of the ground distance from the planar one in degrees (a degree is at least
    # m_per_deg metres anywhere in the town): a feature clearly beyond the distance needs no
    # geodesic reference (it only has to be absent), which spares the pipe case's 2-cm densified
    # line against every feature of the town
    # (within 1° of latitude of the centre; anything farther is over 100 km away anyway)
    m_per_deg = 0.99 * 111_000 * np.cos(np.radians(min(abs(centre.y) + 1.0, 89.0)))
    for name, page in pages.items():
        lower = np.asarray(shapely.distance(ref_geom, page.geometries)) * m_per_deg
        for fid, g, lb in zip(page.ids, page.geometries, lower, strict=True):
            if (name, fid) == exclude:
                continue
            if lb > dist + 1.0:
                want[(name, fid)] = float(lb)
                continue
            if kind == "point":
                d = geodesic_distance_to(centre.x, centre.y, g)
            else:  # line to feature: geodesic distance from the pipe's densified vertices (2 cm apart)
                pts = shapely.get_coordinates(shapely.segmentize(ref_geom, 0.02 / 111_000))
                near = shapely.distance(shapely.points(pts), g)
                best = pts[np.argsort(near)[:20]]
                d = min(geodesic_distance_to(x, y, g) for x, y in best)
            want[(name, fid)] = d
    inside = {k for k, d in want.items() if d <= dist - 0.05}
    outside = {k for k, d in want.items() if d > dist + 0.05}
    assert inside, "the test should have features around it"
    assert inside <= set(got), f"missed: {sorted(inside - set(got))[:5]}"
    assert not (set(got) & outside), f"reported beyond the distance: {sorted(set(got) & outside)[:5]}"
    for k, d in got.items():
        assert abs(d - want[k]) < 0.06, (k, d, want[k])
    assert list(got.values()) == sorted(got.values())
    assert res["counts"] == {name: sum(1 for k in got if k[0] == name) for name in layers}
    poly = shapely.from_geojson(__import__("json").dumps(res["buffer"]))
    assert poly.is_valid and poly.contains(ref_geom)
    if kind == "point":  # vertices on the circle (geodesic), the area that of the 64-gon
        ring = shapely.get_coordinates(poly.exterior)
        _, _, radii = GEOD.inv(np.full(len(ring), centre.x), np.full(len(ring), centre.y), ring[:, 0], ring[:, 1])
        assert np.max(np.abs(radii - dist)) < 0.001
        assert res["area_m2"] == pytest.approx(0.5 * 64 * dist**2 * np.sin(2 * np.pi / 64), rel=1e-6)


def test_search_bbox_contains_the_true_buffer():
    for lat in (0.0, 31.4, 60.0):
        p = shapely.Point(120.0, lat)
        minx, miny, maxx, maxy = search_bbox(p, 1000.0)
        for az in range(0, 360, 15):
            lon2, lat2, _ = GEOD.fwd(120.0, lat, az, 1000.0)
            assert minx <= lon2 <= maxx and miny <= lat2 <= maxy


@pytest.mark.parametrize("bad", [-5, 1e9, float("nan"), float("inf"), "50", True, None])
def test_bad_distances_are_refused(bad):
    with pytest.raises((InvalidParameter, LimitExceeded)):
        check_distance(bad, maximum=10_000)


def test_self_intersecting_polygon_is_refused():
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    with pytest.raises(InvalidGeometry, match="Self-intersection"):
        parse_geometry(bowtie)


@settings(max_examples=200, deadline=None)
@given(st.recursive(
    st.one_of(st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
              st.integers(-10**12, 10**12), st.text(max_size=5)),
    lambda children: st.one_of(st.lists(children, max_size=5),
                               st.dictionaries(st.sampled_from(["type", "coordinates", "geometries", "x"]),
                                               children, max_size=3)),
    max_leaves=20,
))
def test_parse_geometry_never_crashes(obj):
    """Arbitrary JSON: either a valid geometry comes back or a core error says why."""
    try:
        g = parse_geometry(obj)
    except (InvalidGeometry, InvalidParameter, LimitExceeded):
        return
    assert g.is_valid and not g.is_empty


coord = st.tuples(st.floats(-180, 180), st.floats(-90, 90))


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(["Point", "LineString", "Polygon", "MultiPoint"]), st.lists(coord, min_size=0, max_size=6))
def test_parse_geometry_of_random_coordinates(kind, pts):
    coords: object
    if kind == "Point":
        coords = list(pts[0]) if pts else []
    elif kind == "Polygon":
        coords = [[list(p) for p in pts + pts[:1]]]
    else:
        coords = [list(p) for p in pts]
    try:
        g = parse_geometry({"type": kind, "coordinates": coords})
    except (InvalidGeometry, InvalidParameter, LimitExceeded):
        return
    assert g.is_valid and g.geom_type == kind


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**15, 10**15)))
def test_check_distance_accepts_exactly_the_range(d):
    try:
        v = check_distance(d, maximum=10_000)
    except (InvalidParameter, LimitExceeded):
        assert not (0 <= d <= 10_000)
        return
    assert 0 <= v <= 10_000


@settings(max_examples=300, deadline=None)
@given(lon=st.floats(-179.9, 179.9), lat=st.floats(-84.0, 84.0), r=st.floats(0.01, 5_000.0))
def test_circle_ring_vertices_lie_on_the_geodesic_circle(lon, lat, r):
    """Whichever way :func:`circle_ring` draws it (directly for a small circle, through the projected
    frame otherwise), every vertex is ``r`` metres from the centre on the ellipsoid, within 1 mm
    (plus the projection's own 10⁻⁶ relative error for a large circle), and the ring closes."""
    from twin.analysis.buffer import SMALL_RING_TOLERANCE_M, circle_ring

    ring, area = circle_ring(None, lon, lat, r)
    assert ring.shape == (65, 2) and (ring[0] == ring[-1]).all()
    _, _, radii = GEOD.inv(np.full(len(ring), lon), np.full(len(ring), lat), ring[:, 0], ring[:, 1])
    assert np.max(np.abs(radii - r)) <= SMALL_RING_TOLERANCE_M + 1e-6 * r
    assert area == pytest.approx(0.5 * 64 * r * r * np.sin(2 * np.pi / 64), rel=1e-12)


def test_point_buffer_answers_as_the_general_path(town_client, town_store):
    """A Point takes the short path (no geometry made); a one-point MultiPoint the general one: the
    same hits, distances and order, and the same circle within a millimetre."""
    b = features_in_bbox(town_store, "buildings", (-180, -90, 180, 90), cap=100_000)
    c = shapely.centroid(shapely.union_all(b.geometries[:30]))
    layers = ["buildings", "devices", "pipelines"]
    a = town_client.post("/analysis/buffer", json={"geometry": {"type": "Point", "coordinates": [c.x, c.y]},
                                                   "distance": 75, "layers": layers}).json()
    m = town_client.post("/analysis/buffer", json={"geometry": {"type": "MultiPoint", "coordinates": [[c.x, c.y]]},
                                                   "distance": 75, "layers": layers}).json()
    assert a["features"]["features"], "the test point should have features around it"
    assert [(f["properties"]["layer"], f["id"], f["properties"]["distance_m"]) for f in a["features"]["features"]] == \
        [(f["properties"]["layer"], f["id"], f["properties"]["distance_m"]) for f in m["features"]["features"]]
    assert a["counts"] == m["counts"]
    pa = shapely.from_geojson(__import__("json").dumps(a["buffer"]))
    pm = shapely.from_geojson(__import__("json").dumps(m["buffer"]))
    assert pa.symmetric_difference(pm).area < 1e-12 or shapely.hausdorff_distance(pa, pm) < 0.001 / 111_000
