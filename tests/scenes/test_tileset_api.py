"""/scenes/tileset.json and its content over the sample town, on both backends."""

from __future__ import annotations

import math

import numpy as np
import pytest
from gltf_check import Glb, assert_valid

from scenes.frame import LocalFrame


@pytest.fixture(scope="module")
def town_client(town_store, town_settings):
    """The sample town with a small tile cap (the tiny town fits one default tile)."""
    from fastapi.testclient import TestClient

    from gis_api.app import create_app

    settings = town_settings.model_copy(update={"scene_tile_feature_cap": 200})
    with TestClient(create_app(settings, store=town_store)) as client:
        yield client


@pytest.fixture(scope="module")
def tileset(town_client):
    r = town_client.get("/scenes/tileset.json", params={"layers": "buildings,pipelines,pipe_nodes"})
    assert r.status_code == 200, r.text
    return r.json()


def _nodes(node, depth=0):
    yield node, depth
    for c in node.get("children", []):
        yield from _nodes(c, depth + 1)


def _content(town_client, node) -> bytes:
    r = town_client.get(f"/scenes/{node['content']['uri']}")
    assert r.status_code == 200, r.text
    return r.content


def test_tileset_is_3d_tiles_1_1_with_a_root_transform_and_add_refinement(tileset):
    assert tileset["asset"]["version"] == "1.1"
    root = tileset["root"]
    assert len(root["transform"]) == 16
    # the transform's translation is on the Earth's surface (ECEF, metres)
    assert 6.3e6 < math.dist((0, 0, 0), root["transform"][12:15]) < 6.4e6
    nodes = list(_nodes(root))
    assert len(nodes) > 1, "the sample town needs more than one tile at the default cap"
    assert all(n["refine"] == "ADD" for n, _ in nodes)
    assert all(len(n["boundingVolume"]["region"]) == 6 for n, _ in nodes)
    assert tileset["geometricError"] >= root["geometricError"]
    for n, _ in nodes:  # errors shrink going down; leaves are exact
        for c in n.get("children", []):
            assert c["geometricError"] <= n["geometricError"]
        if not n.get("children"):
            assert n["geometricError"] == 0


def test_every_content_tile_passes_the_validator_and_fits_its_region(tileset, town_client):
    frame = LocalFrame(**{k: v for k, v in tileset["asset"]["extras"]["twin"]["frame"]["origin"].items()
                          if k in ("lon", "lat", "height")})
    nodes = [n for n, _ in _nodes(tileset["root"]) if "content" in n]
    blobs = [_content(town_client, n) for n in nodes]
    assert_valid(blobs, {"EXT_mesh_features", "EXT_structural_metadata"})
    seen: set[tuple[str, int]] = set()
    heights = []
    for n, blob in zip(nodes, blobs, strict=True):
        g = Glb(blob)
        w, s, e, nn, lo, hi = n["boundingVolume"]["region"]
        for m in g.json["meshes"]:
            lon, lat, h = frame.to_lonlath(g.enu(m["name"]))
            assert h.min() >= lo - 0.05 and h.max() <= hi + 0.05
            assert np.radians(lon).min() >= w - 1e-7 and np.radians(lon).max() <= e + 1e-7
            assert np.radians(lat).min() >= s - 1e-7 and np.radians(lat).max() <= nn + 1e-7
            t = g.table(m["name"])
            pairs = set(zip(t["layer"], t["id"], strict=True))
            assert not pairs & seen, "a feature is in two tiles"
            seen |= pairs
        heights.append(hi - lo)
    # tight per-tile heights: not every tile spans the dataset's full range
    assert min(heights) < max(heights)


def test_every_feature_is_in_the_tileset_once(tileset, town_client, town_store):
    nodes = [n for n, _ in _nodes(tileset["root"]) if "content" in n]
    total = {"buildings": 0, "pipelines": 0, "pipe_nodes": 0}
    for n in nodes:
        g = Glb(_content(town_client, n))
        for layer in total:
            if g.mesh(layer) is not None:
                total[layer] += len(g.table(layer)["id"])
    for layer, count in total.items():
        assert count == town_store.summary(layer).count


def test_the_largest_buildings_are_in_the_root_tile(tileset, town_client):
    g = Glb(_content(town_client, tileset["root"]))
    assert g.mesh("buildings") is not None


def test_content_has_an_etag_and_answers_304(tileset, town_client):
    uri = f"/scenes/{tileset['root']['content']['uri']}"
    r = town_client.get(uri)
    etag = r.headers["etag"]
    again = town_client.get(uri, headers={"if-none-match": etag})
    assert again.status_code == 304
    ts = town_client.get("/scenes/tileset.json", params={"layers": "buildings,pipelines,pipe_nodes"})
    assert town_client.get("/scenes/tileset.json", params={"layers": "buildings,pipelines,pipe_nodes"},
                           headers={"if-none-match": ts.headers["etag"]}).status_code == 304


@pytest.mark.parametrize("path, status", [
    ("/scenes/tiles/25/0/0.glb", 404),
    ("/scenes/tiles/0/0/0.glb?layers=terrain", 400),
    ("/scenes/tiles/-1/0/0.glb", 400),
    ("/scenes/tileset.json?layers=roads", 400),
])
def test_bad_tileset_requests_are_json_errors(town_client, path, status):
    r = town_client.get(path)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"code", "message", "detail"}


def test_openapi_documents_the_3d_routes(town_client):
    doc = town_client.get("/api/openapi.json").json()
    for path in ("/scenes/scene.glb", "/scenes/tileset.json", "/scenes/tiles/{z}/{x}/{y}.glb"):
        assert path in doc["paths"], path
    scene = doc["paths"]["/scenes/scene.glb"]["get"]
    assert "model/gltf-binary" in scene["responses"]["200"]["content"]
    names = {p["name"] for p in scene["parameters"]}
    assert {"bbox", "layers", "texture"} <= names


def test_the_urls_in_docs_scenes_md_work(town_client):
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "scenes.md").read_text()
    urls = sorted(set(re.findall(r'http://127\.0\.0\.1:8000(/scenes/[^"\s]+)', doc)))
    assert len(urls) >= 2
    for url in urls:
        r = town_client.get(url)
        assert r.status_code == 200, (url, r.text)
