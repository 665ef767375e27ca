"""/scenes/scene.glb over the sample town, on both backends: validity, geometry, picking, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from gltf_check import Glb, assert_valid
from pyproj import Transformer

from scenes.frame import LocalFrame

EXT = {"EXT_mesh_features", "EXT_structural_metadata", "KHR_mesh_quantization", "CESIUM_primitive_outline"}
TO_MERC = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)


@pytest.fixture(scope="module")
def centre_bbox(town_store):
    ext = town_store.summary("buildings").extent
    cx, cy = (ext[0] + ext[2]) / 2, (ext[1] + ext[3]) / 2
    return (cx - 0.004, cy - 0.004, cx + 0.004, cy + 0.004)


@pytest.fixture(scope="module")
def scene(town_client, centre_bbox):
    r = town_client.get("/scenes/scene.glb", params={
        "bbox": ",".join(map(str, centre_bbox)), "layers": "buildings,pipelines,pipe_nodes,terrain",
        "texture": "ortho"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "model/gltf-binary"
    return r.content


def _frame(g: Glb) -> LocalFrame:
    o = g.twin["frame"]["origin"]
    return LocalFrame(o["lon"], o["lat"], o["height"])


def test_scene_passes_the_khronos_validator_with_the_metadata_extensions(scene):
    assert_valid([scene], EXT)
    g = Glb(scene)
    assert {m["name"] for m in g.json["meshes"]} == {"buildings", "pipelines", "pipe_nodes", "terrain"}
    assert g.json["images"][0]["mimeType"] == "image/jpeg"  # texture=ortho drapes the photo
    for layer in ("buildings", "pipelines", "pipe_nodes"):
        assert g.table(layer)["layer"][0] == layer


def test_building_top_is_its_ground_plus_height(scene, town_store):
    g = Glb(scene)
    frame = _frame(g)
    table = g.table("buildings")
    fid = g.attribute("buildings", "_FEATURE_ID_0").astype(int)
    _, _, h = frame.to_lonlath(g.enu("buildings"))
    dem = rasterio.open(town_store.raster_dir / "dem.tif")
    for row in range(0, len(table["id"]), max(1, len(table["id"]) // 15)):
        item = town_store.get("buildings", table["id"][row])
        height = item.properties[0]["height_m"]
        mine = h[fid == row]
        assert mine.max() == pytest.approx(mine.min() + height, abs=0.1)
        assert mine.min() == pytest.approx(table["base_m"][row], abs=0.01)
        # the base is the lowest ground under the footprint (DEM cells, nearest, ±1 m on this gentle terrain)
        xy = shapely.get_coordinates(item.geometries[0])
        mx, my = TO_MERC.transform(xy[:, 0], xy[:, 1])
        ground = np.array([v[0] for v in dem.sample(zip(mx, my, strict=True))])
        assert table["base_m"][row] == pytest.approx(ground.min(), abs=1.0)


def test_pipe_axis_is_invert_plus_radius(scene, town_store):
    g = Glb(scene)
    frame = _frame(g)
    table = g.table("pipelines")
    fid = g.attribute("pipelines", "_FEATURE_ID_0").astype(int)
    enu = g.enu("pipelines")
    sides = 8
    checked = 0
    for row in range(0, len(table["id"]), max(1, len(table["id"]) // 20)):
        p = town_store.get("pipelines", table["id"][row]).properties[0]
        if p["start_invert_m"] is None:
            continue
        ring = enu[fid == row][:sides]  # first ring of the first segment: around the start of the axis
        lon, lat, h = frame.to_lonlath(ring.mean(axis=0, keepdims=True))
        assert h[0] == pytest.approx(p["start_invert_m"] + p["diameter_mm"] / 2000, abs=0.1)
        radius = np.linalg.norm(ring - ring.mean(axis=0), axis=1)
        assert radius == pytest.approx(p["diameter_mm"] / 2000, rel=0.02)
        checked += 1
    assert checked > 5


def test_a_feature_id_picked_from_the_mesh_names_the_item_under_it(scene, town_client, town_store):
    g = Glb(scene)
    frame = _frame(g)
    table = g.table("buildings")
    pos = g.attribute("buildings", "POSITION").astype(float)
    tri = g.indices("buildings").reshape(-1, 3)
    fid = g.attribute("buildings", "_FEATURE_ID_0").astype(int)
    target = town_store.get("buildings", table["id"][len(table["id"]) // 2])
    point = target.geometries[0].representative_point()
    e, n, _ = frame.to_enu([point.x], [point.y], [0.0])[0]
    # cast a ray straight down at (e, n): glTF x = east, z = -north
    a, b, c = pos[tri[:, 0]], pos[tri[:, 1]], pos[tri[:, 2]]
    px, pz = e, -n

    def side(p, q):
        return (q[:, 0] - p[:, 0]) * (pz - p[:, 2]) - (q[:, 2] - p[:, 2]) * (px - p[:, 0])

    s1, s2, s3 = side(a, b), side(b, c), side(c, a)
    inside = ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))
    flat = np.abs(a[:, 1] - b[:, 1]) + np.abs(a[:, 1] - c[:, 1]) < 0.05  # roofs (level up to Earth curvature)
    hits = np.flatnonzero(inside & flat)
    assert len(hits)
    top = hits[np.argmax(a[hits, 1])]
    row = fid[tri[top, 0]]
    picked = table["id"][row]
    r = town_client.get(f"/collections/{table['layer'][row]}/items/{picked}")
    assert r.status_code == 200
    assert shapely.geometry.shape(r.json()["geometry"]).contains(point)


@pytest.mark.parametrize("params, code", [
    ({"bbox": "100,20,110,30"}, "limit_exceeded"),             # a province
    ({"bbox": "120.9,31.7,120.91,31.71", "layers": "roads"}, "invalid_parameter"),
    ({"bbox": "120.9,31.7,120.91,31.71", "layers": "buildings,nope"}, "invalid_parameter"),
    ({"bbox": "120.9,31.7,120.91,31.71", "texture": "satellite"}, "invalid_parameter"),
    ({}, "invalid_parameter"),
    ({"bbox": "1,2,3"}, "invalid_parameter"),
])
def test_bad_scene_requests_are_json_400(town_client, params, code):
    r = town_client.get("/scenes/scene.glb", params=params)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["code"] == code and body["message"]


def test_an_empty_area_is_a_valid_empty_scene(town_client):
    r = town_client.get("/scenes/scene.glb", params={"bbox": "10.0,10.0,10.01,10.01"})
    assert r.status_code == 200
    assert_valid([r.content])
    g = Glb(r.content)
    assert "meshes" not in g.json
    assert any("DEM does not cover" in n for n in g.twin["notes"])
