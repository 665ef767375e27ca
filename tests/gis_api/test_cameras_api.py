"""Camera cones, /cameras/covering and play URLs over HTTP, on both backends."""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyproj import Geod
from shapely.geometry import Point, shape

GEOD = Geod(ellps="GRS80")
LON, LAT = 120.75, 31.65


def _offset(lon, lat, bearing, dist):
    x, y, _ = GEOD.fwd(lon, lat, bearing, dist)
    return x, y


def _square(lon, lat, half_m):
    """A square footprint of side 2·half_m centred at lon/lat (as a MultiPolygon, like the table)."""
    from shapely.geometry import MultiPolygon, Polygon

    pts = [_offset(lon, lat, b, half_m * math.sqrt(2)) for b in (45, 135, 225, 315)]
    return MultiPolygon([Polygon(pts)])


@pytest.fixture
def street(empty_store):
    """One camera looking north (60°, 100 m, eye 6 m), one 360° camera, a tall block 30 m north of the
    first and a low kiosk 30 m east-north-east."""
    empty_store.write_features("cameras", [
        {"code": "CAM-N", "name": "北向", "heading_deg": 0.0, "fov_deg": 60.0, "range_m": 100.0,
         "mount_height_m": 6.0, "status": "online", "protocol": "rtsp", "stream_url": "rtsp://gw/cam/n",
         "streams": {"hls": "/video/demo/index.m3u8", "flv": "http://gw/rtp/n.live.flv"},
         "gb28181_id": "32058110001320000001", "geom": Point(LON, LAT)},
        {"code": "CAM-PTZ", "name": "球机", "heading_deg": 0.0, "fov_deg": 360.0, "range_m": 60.0,
         "status": "offline", "geom": Point(*_offset(LON, LAT, 90, 200))},
    ])
    tall = _offset(LON, LAT, 0, 35)
    empty_store.write_features("buildings", [
        {"code": "B-TALL", "use": "residential", "floors": 6, "height_m": 20.0, "geom": _square(*tall, 5)},
    ])
    yield empty_store
    empty_store.clear(["cameras", "buildings"])


def _codes(body):
    return [f["properties"]["code"] for f in body["features"]]


def test_covering_finds_the_camera_looking_at_a_point_and_not_one_looking_away(street, client_for):
    c = client_for(street)
    ahead = _offset(LON, LAT, 20, 70)  # inside the 60° cone, 70 m out
    r = c.get(f"/cameras/covering?point={ahead[0]},{ahead[1]}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert _codes(body) == ["CAM-N"]
    props = body["features"][0]["properties"]
    assert props["distance_m"] == pytest.approx(70, abs=0.05)
    assert props["bearing_deg"] == pytest.approx(20, abs=0.05)
    assert props["streams"]["hls"].endswith("/video/demo/index.m3u8")
    behind = _offset(LON, LAT, 180, 50)
    assert _codes(c.get(f"/cameras/covering?point={behind[0]},{behind[1]}").json()) == []
    beyond = _offset(LON, LAT, 0, 101)
    assert _codes(c.get(f"/cameras/covering?point={beyond[0]},{beyond[1]}").json()) == []
    wide = _offset(LON, LAT, 35, 80)  # 35° off a 60° cone (half-width 30°)
    assert _codes(c.get(f"/cameras/covering?point={wide[0]},{wide[1]}").json()) == []


def test_a_360_camera_covers_all_around_and_status_filters(street, client_for):
    c = client_for(street)
    ptz = _offset(LON, LAT, 90, 200)
    south = _offset(*ptz, 190, 40)
    assert _codes(c.get(f"/cameras/covering?point={south[0]},{south[1]}").json()) == ["CAM-PTZ"]
    assert _codes(c.get(f"/cameras/covering?point={south[0]},{south[1]}&status=online").json()) == []


def test_occlusion_drops_a_camera_whose_sight_line_a_building_cuts(street, client_for):
    c = client_for(street)
    hidden = _offset(LON, LAT, 0, 70)  # straight behind the 20 m block
    q = f"/cameras/covering?point={hidden[0]},{hidden[1]}"
    assert _codes(c.get(q).json()) == ["CAM-N"]
    assert _codes(c.get(q + "&occlusion=true").json()) == []
    open_ground = _offset(LON, LAT, 22, 70)  # past the block's corner
    assert _codes(c.get(f"/cameras/covering?point={open_ground[0]},{open_ground[1]}&occlusion=true").json()) \
        == ["CAM-N"]


def test_cone_by_id_or_code_with_and_without_occlusion(street, client_for):
    c = client_for(street)
    full = c.get("/cameras/CAM-N/cone")
    assert full.status_code == 200 and full.headers["content-type"].startswith("application/geo+json")
    f = full.json()
    cone = shape(f["geometry"])
    assert f["properties"]["code"] == "CAM-N"
    assert f["properties"]["area_m2"] == pytest.approx(math.pi * 100**2 / 6, rel=0.01)
    assert cone.contains(Point(*_offset(LON, LAT, 10, 50)))
    assert not cone.contains(Point(*_offset(LON, LAT, 90, 50)))
    by_id = c.get(f"/cameras/{f['id']}/cone").json()
    assert by_id["properties"]["code"] == "CAM-N"
    occ = c.get("/cameras/CAM-N/cone?occlusion=true").json()
    seen = shape(occ["geometry"])
    assert occ["properties"]["area_m2"] < f["properties"]["area_m2"] * 0.9
    assert not seen.contains(Point(*_offset(LON, LAT, 0, 70)))
    assert seen.contains(Point(*_offset(LON, LAT, 25, 70)))


def test_cones_layer_and_streams(street, client_for):
    c = client_for(street)
    body = c.get(f"/cameras/cones?bbox={LON - 0.01},{LAT - 0.01},{LON + 0.01},{LAT + 0.01}").json()
    assert sorted(_codes(body)) == ["CAM-N", "CAM-PTZ"]
    assert all(f["geometry"]["type"] == "Polygon" for f in body["features"])
    s = c.get("/cameras/CAM-N/streams").json()
    assert s["gb28181_id"] == "32058110001320000001"
    assert s["streams"]["rtsp"] == "rtsp://gw/cam/n" and s["streams"]["flv"] == "http://gw/rtp/n.live.flv"
    assert s["streams"]["hls"] == "http://testserver/video/demo/index.m3u8"


@pytest.mark.parametrize("query", ["point=1", "point=a,b", "point=200,10", "point=nan,1", "point=1,2,3",
                                   "point=120,31&target_height_m=-1", ""])
def test_bad_points_answer_400_json(store, client_for, query):
    r = client_for(store).get(f"/cameras/covering?{query}")
    assert r.status_code == 400, r.text
    assert set(r.json()) == {"code", "message", "detail"}


def test_unknown_camera_is_404_json(empty_store, client_for):
    r = client_for(empty_store).get("/cameras/NOPE/cone")
    assert r.status_code == 404 and r.json()["code"] == "feature_not_found"
    assert client_for(empty_store).get("/cameras/99999/cone").status_code == 404


def test_every_sample_camera_covers_a_point_on_its_heading(town_client, town_store):
    from twin.store import FeatureQuery

    page = town_store.query(FeatureQuery("cameras", limit=5))
    for fid, props, geom in zip(page.ids, page.properties, page.geometries, strict=True):
        lon, lat = _offset(geom.x, geom.y, props["heading_deg"], props["range_m"] / 2)
        body = town_client.get(f"/cameras/covering?point={lon},{lat}").json()
        assert fid in [f["id"] for f in body["features"]]


@pytest.fixture
def plain_client(store, client_for):
    return client_for(store)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(point=st.text(max_size=30), height=st.one_of(st.floats(), st.text(max_size=5)),
       occlusion=st.sampled_from(["true", "false", "1", "x"]))
def test_any_query_answers_200_or_a_json_400(plain_client, point, height, occlusion):
    c = plain_client
    r = c.get("/cameras/covering", params={"point": point, "target_height_m": str(height), "occlusion": occlusion})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 400:
        assert set(r.json()) == {"code", "message", "detail"}


def test_the_openapi_document_describes_the_camera_and_event_routes(store, client_for):
    paths = client_for(store).get("/api/openapi.json").json()["paths"]
    for p in ("/cameras/covering", "/cameras/cones", "/cameras/{camera}/cone", "/cameras/{camera}/streams",
              "/video/{stream}/{file}", "/events", "/events/{event_id}/transitions", "/events/{event_id}/history"):
        assert p in paths, p
    params = {x["name"] for x in paths["/cameras/covering"]["get"]["parameters"]}
    assert {"point", "occlusion", "target_height_m", "status"} <= params
    body = paths["/events/{event_id}/transitions"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith("TransitionRequest")


def test_covering_agrees_with_geodesic_distance_and_azimuth_on_the_sample_town(town_client, town_store):
    """An independent oracle (pyproj's geodesics on the ellipsoid) for random points across the town."""
    import numpy as np

    from twin.store import FeatureQuery

    cams = town_store.query(FeatureQuery("cameras", limit=10_000))
    minx, miny, maxx, maxy = town_store.summary("cameras").extent
    rng = np.random.default_rng(7)
    # points near cameras (where answers are non-trivial) plus anywhere in the extent
    near = [_offset(g.x, g.y, float(rng.uniform(0, 360)), float(rng.uniform(0, 160)))
            for g in cams.geometries[rng.integers(0, len(cams.ids), 25)]]
    anywhere = list(zip(rng.uniform(minx, maxx, 5), rng.uniform(miny, maxy, 5), strict=True))
    checked = 0
    for lon, lat in near + anywhere:
        expected, borderline = set(), False
        for fid, p, g in zip(cams.ids, cams.properties, cams.geometries, strict=True):
            az, _, dist = GEOD.inv(g.x, g.y, lon, lat)
            off = abs((az - p["heading_deg"] + 180) % 360 - 180)
            if abs(dist - p["range_m"]) < 0.05 or (p["fov_deg"] < 360 and abs(off - p["fov_deg"] / 2) < 0.01):
                borderline = True
            if dist <= p["range_m"] and (p["fov_deg"] >= 360 or off <= p["fov_deg"] / 2):
                expected.add(fid)
        if borderline:
            continue
        got = {f["id"] for f in town_client.get(f"/cameras/covering?point={lon},{lat}").json()["features"]}
        assert got == expected, (lon, lat)
        checked += 1
    assert checked >= 25
