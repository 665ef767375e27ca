"""Planning overlap held to geodesic areas (pyproj.Geod) of the lon/lat intersections."""

from __future__ import annotations

import shapely
from pyproj import Geod

from twin.analysis import buffer_polygon
from twin.analysis.overlap import MU_M2
from twin.analysis.source import features_in_bbox

GEOD = Geod(ellps="WGS84")
WORLD = (-180, -90, 180, 90)


def geodesic_area(g) -> float:
    return abs(GEOD.geometry_area_perimeter(g)[0]) if not g.is_empty else 0.0


def test_overlap_with_permanent_farmland_is_a_conflict(town_client, town_store):
    farm = features_in_bbox(town_store, "farmland", WORLD, cap=100_000)
    k = next(i for i, p in enumerate(farm.properties) if p["is_permanent_basic"])
    centre = farm.geometries[k].representative_point()
    poly, _ = buffer_polygon(centre, 60.0)
    r = town_client.post("/analysis/overlap", json={"geometry": shapely.geometry.mapping(poly)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["area_m2"] - geodesic_area(poly)) < geodesic_area(poly) * 1e-4
    assert abs(body["area_mu"] - body["area_m2"] / MU_M2) < 1e-3
    # farmland by grade, independently
    by_grade: dict[str, float] = {}
    pbf = 0.0
    for p, g in zip(farm.properties, farm.geometries, strict=True):
        a = geodesic_area(g.intersection(poly))
        if a > 0:
            by_grade[str(p["grade"])] = by_grade.get(str(p["grade"]), 0.0) + a
            pbf += a if p["is_permanent_basic"] else 0.0
    assert set(body["farmland"]["by_grade"]) == set(by_grade)
    for grade, a in by_grade.items():
        assert abs(body["farmland"]["by_grade"][grade]["area_m2"] - a) < max(0.05, a * 1e-4)
    assert abs(body["farmland"]["permanent_basic"]["area_m2"] - pbf) < max(0.05, pbf * 1e-4)
    assert body["verdict"]["conflict"] is True and "永久基本农田" in body["verdict"]["message"]
    # zones add up to the polygon where it lies inside the town's zoning
    zones = features_in_bbox(town_store, "zones", WORLD, cap=100)
    for p, g in zip(zones.properties, zones.geometries, strict=True):
        a = geodesic_area(g.intersection(poly))
        got = body["zones"].get(p["kind"], {"area_m2": 0.0})["area_m2"]
        assert abs(got - a) < max(0.05, a * 1e-4)
    assert sum(v["area_m2"] for v in body["by_village"]) <= body["area_m2"] + 0.1
    assert body["by_grid"]


def test_overlap_clear_outside_protected_land(town_client):
    poly, _ = buffer_polygon(shapely.Point(10.0, 10.0), 50.0)
    body = town_client.post("/analysis/overlap", json={"geometry": shapely.geometry.mapping(poly)}).json()
    assert body["verdict"]["conflict"] is False and body["zones"] == {} and body["farmland"]["total"]["area_m2"] == 0


def test_overlap_bad_input(town_client):
    for geom, status in (
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}, 422),  # bow-tie
        ({"type": "Point", "coordinates": [121, 31]}, 422),
        ({"type": "Polygon", "coordinates": [[[120, 30], [122, 30], [122, 32], [120, 30]]]}, 400),  # too big
    ):
        r = town_client.post("/analysis/overlap", json={"geometry": geom})
        assert r.status_code == status, r.text
