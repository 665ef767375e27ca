"""Property-based tests of the scene inputs (layers, bbox) and the mesh builders."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scenes.frame import LocalFrame
from scenes.meshes import extrude_footprints
from scenes.scene import parse_scene_layers
from twin.errors import InvalidParameter

FRAME = LocalFrame(120.9, 31.7, 0.0)


@given(st.text(max_size=60))
def test_layer_lists_parse_or_say_what_is_wrong(raw):
    try:
        names = parse_scene_layers(raw)
    except InvalidParameter as exc:
        assert exc.message and "scene_layers" in exc.detail
    else:
        assert names and set(names) <= {"buildings", "pipelines", "pipe_nodes", "terrain"}


@given(st.floats(-0.01, 0.01), st.floats(-0.01, 0.01), st.floats(0.3, 3.0), st.floats(0.05, 2.0),
       st.floats(-5, 50), st.floats(0.5, 120), st.integers(3, 12))
def test_extruded_polygons_stand_from_base_to_top(x, y, rx, ry, base, height, sides):
    ang = np.linspace(0, 2 * np.pi, sides, endpoint=False)
    ring = np.stack([120.9 + x + rx * 1e-4 * np.cos(ang), 31.7 + y + ry * 1e-4 * np.sin(ang)], axis=1)
    poly = shapely.MultiPolygon([shapely.Polygon(ring)])
    m = extrude_footprints(FRAME, np.array([poly], dtype=object), np.array([base]), np.array([base + height]),
                           np.array([0]))
    _, _, h = FRAME.to_lonlath(m.positions)
    assert h.min() == pytest.approx(base, abs=1e-3)
    assert h.max() == pytest.approx(base + height, abs=1e-3)
    assert m.triangles == 2 * sides + (sides - 2)  # walls + roof
    assert np.allclose(np.linalg.norm(m.normals, axis=1), 1.0, atol=1e-5)
    # every triangle faces the way its normals say (counter-clockwise seen from outside)
    t = m.indices.reshape(-1, 3)
    p = m.positions
    face = np.cross(p[t[:, 1]] - p[t[:, 0]], p[t[:, 2]] - p[t[:, 0]])
    assert (np.einsum("ij,ij->i", face, m.normals[t[:, 0]]) > 0).all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bbox=st.one_of(
    st.text(max_size=40),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4).map(
        lambda v: ",".join(map(str, v))),
    st.tuples(st.floats(120.85, 120.95), st.floats(31.65, 31.75), st.floats(0, 0.02), st.floats(0, 0.02)).map(
        lambda t: f"{t[0]},{t[1]},{t[0] + t[2]},{t[1] + t[3]}")),
    layers=st.sampled_from([None, "buildings", "terrain", "pipelines,pipe_nodes", "x"]))
def test_any_bbox_gives_a_scene_or_a_json_4xx(town_client, bbox, layers):
    params = {"bbox": bbox}
    if layers:
        params["layers"] = layers
    r = town_client.get("/scenes/scene.glb", params=params)
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.content[:4] == b"glTF"
    else:
        assert set(r.json()) == {"code", "message", "detail"}


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 400), cap=st.integers(1, 50), seed=st.integers(0, 2**31))
def test_the_quadtree_holds_every_feature_once_largest_first(n, cap, seed):
    from scenes.tileset import FeatureIndex, build_tree, square_root_bounds

    rng = np.random.default_rng(seed)
    x = rng.uniform(120.8, 120.9, n)
    y = rng.uniform(31.6, 31.7, n)
    w = rng.uniform(1e-5, 5e-4, n)
    box = np.stack([x, y, x + w, y + w], axis=1) if n else np.zeros((0, 4))
    zmin = rng.uniform(-5, 10, n)
    index = FeatureIndex(np.full(n, "buildings", dtype=object), np.arange(n), box, zmin,
                         zmin + rng.uniform(1, 80, n), rng.uniform(1, 100, n))
    extent = (120.8, 31.6, 120.9005, 31.7005)
    root = build_tree(index, square_root_bounds(extent), cap)
    tiles = list(root.walk())
    held = np.concatenate([t.content for t in tiles]) if tiles else np.zeros(0, int)
    assert sorted(held.tolist()) == list(range(n))                    # every feature exactly once
    for t in tiles:
        assert len(t.content) <= cap or not t.children
        w_, s_, e_, n_, lo, hi = t.region
        if len(t.content):
            assert (index.box[t.content, 0] >= w_ - 1e-12).all() and (index.box[t.content, 2] <= e_ + 1e-12).all()
            assert (index.zmin[t.content] >= lo - 1e-9).all() and (index.zmax[t.content] <= hi + 1e-9).all()
        for c in t.children:
            assert c.region[0] >= w_ - 1e-12 and c.region[2] <= e_ + 1e-12       # children inside parents
            assert c.region[4] >= lo - 1e-9 and c.region[5] <= hi + 1e-9
            if len(c.content) and len(t.content):
                assert index.size[c.content].max() <= index.size[t.content].min()  # largest kept above
            assert t.geometric_error >= c.geometric_error
        if not t.children:
            assert t.geometric_error == 0
