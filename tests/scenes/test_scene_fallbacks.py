"""Documented fallbacks and edits, on both backends: no DEM, no height, no inverts; an edit shows at once."""

from __future__ import annotations

import pytest
from gltf_check import Glb, assert_valid
from shapely.geometry import LineString, MultiPolygon, Point, box
from sqlalchemy import update

from scenes.frame import LocalFrame
from twin.schema import Building

LON, LAT = 121.0, 31.6
BBOX = f"{LON - 0.002},{LAT - 0.002},{LON + 0.004},{LAT + 0.004}"


@pytest.fixture
def client(empty_store, client_for, tmp_path):
    empty_store.write_features("buildings", [
        {"id": 1, "code": "B-1", "use": "residential", "floors": 4, "height_m": 0.0,
         "geom": MultiPolygon([box(LON, LAT, LON + 0.0002, LAT + 0.0002)])},   # no height: floors × 3 m
        {"id": 2, "code": "B-2", "use": "public", "floors": 0, "height_m": -1.0, "ground_elev_m": 7.5,
         "geom": MultiPolygon([box(LON + 0.001, LAT, LON + 0.0012, LAT + 0.0002)])},  # nothing: default
        {"id": 3, "code": "B-3", "use": "commercial", "floors": 2, "height_m": 9.0,
         "geom": MultiPolygon([box(LON + 0.002, LAT, LON + 0.0022, LAT + 0.0002)])},
    ])
    empty_store.write_features("pipelines", [
        {"id": 1, "code": "P-1", "utility": "gas", "material": "PE", "diameter_mm": 200.0, "gravity": False,
         "geom": LineString([(LON, LAT + 0.001), (LON + 0.002, LAT + 0.001)])},      # no inverts, no depths
        {"id": 2, "code": "P-2", "utility": "water_supply", "material": "DI", "diameter_mm": 400.0, "gravity": False,
         "start_depth_m": 1.5, "end_depth_m": 2.0,
         "geom": LineString([(LON, LAT + 0.002), (LON + 0.002, LAT + 0.002)])},      # depths only
    ])
    empty_store.write_features("pipe_nodes", [
        {"id": 1, "code": "N-1", "kind": "manhole", "utility": "sewage", "geom": Point(LON, LAT + 0.003)},
    ])
    # home without rasters: the DEM does not cover anything
    return client_for(empty_store, home=tmp_path)


def _frame(g: Glb) -> LocalFrame:
    o = g.twin["frame"]["origin"]
    return LocalFrame(o["lon"], o["lat"], o["height"])


def test_fallbacks_give_a_valid_scene_and_say_so(client):
    r = client.get("/scenes/scene.glb", params={"bbox": BBOX, "layers": "buildings,pipelines,pipe_nodes,terrain"})
    assert r.status_code == 200, r.text
    assert_valid([r.content], {"EXT_mesh_features", "EXT_structural_metadata"})
    g = Glb(r.content)
    content = g.twin["content"]
    assert content["buildings"]["sources"]["height"] == {"floors": 1, "default": 1, "attribute": 1}
    assert content["buildings"]["sources"]["base"] == {"default": 2, "attribute": 1}
    assert content["pipelines"]["sources"]["elevation"] == {"default": 2, "depth": 2}
    assert content["terrain"]["triangles"] == 0
    assert any("DEM does not cover" in n for n in g.twin["notes"])
    t = g.table("buildings")
    by_id = dict(zip(t["id"], zip(t["height_m"], t["base_m"], t["height_source"], strict=True), strict=True))
    assert by_id[1] == (12.0, 0.0, "floors")
    assert by_id[2] == (3.0, 7.5, "default")
    p = g.table("pipelines")
    row = p["id"].index(1)
    assert p["elevation_source"][row] == "default"
    assert p["start_axis_m"][row] == pytest.approx(0 - 1.2 - 0.1)  # ground 0 − default cover − radius
    row = p["id"].index(2)
    assert p["start_axis_m"][row] == pytest.approx(0 - 1.5 - 0.2)


def test_an_edit_shows_in_the_tileset_at_once(client, empty_store):
    ts = client.get("/scenes/tileset.json", params={"layers": "buildings"}).json()
    uri = "/scenes/" + ts["root"]["content"]["uri"]
    before = client.get(uri)
    g = Glb(before.content)
    t = g.table("buildings")
    assert t["height_m"][t["id"].index(3)] == 9.0
    with empty_store.engine.begin() as conn:
        conn.execute(update(Building).where(Building.id == 3).values(height_m=21.0))
    ts2 = client.get("/scenes/tileset.json", params={"layers": "buildings"}).json()
    assert ts2["asset"]["extras"]["twin"]["version"] != ts["asset"]["extras"]["twin"]["version"]
    after = client.get("/scenes/" + ts2["root"]["content"]["uri"])
    assert after.headers["etag"] != before.headers["etag"]
    t2 = Glb(after.content).table("buildings")
    assert t2["height_m"][t2["id"].index(3)] == 21.0
    assert ts2["root"]["boundingVolume"]["region"][5] == pytest.approx(21.0, abs=0.01)


def test_an_empty_store_gives_an_empty_tileset(empty_store, client_for, tmp_path):
    client = client_for(empty_store, home=tmp_path)
    r = client.get("/scenes/tileset.json")
    assert r.status_code == 200
    doc = r.json()
    assert "content" not in doc["root"] and doc["root"]["geometricError"] == 0
    assert client.get("/scenes/tiles/0/0/0.glb").status_code == 404
