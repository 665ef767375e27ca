"""The quantized-mesh encoder, checked by decoding what it writes with a decoder written from the spec."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qm_decoder import decode, ecef, scaled_point_visible
from scipy.spatial import Delaunay

from scenes.quantized_mesh import (
    QMAX,
    TileMesh,
    encode_tile,
    high_water_mark_encode,
    zigzag_delta_encode,
)

A, B = 6378137.0, 6356752.3142451793


@st.composite
def meshes(draw, max_points: int = 60):
    """A Delaunay mesh of random points including the four corners and points on each edge,
    with random heights (any range, including below the ellipsoid and perfectly flat)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n = draw(st.integers(0, max_points))
    coords = st.integers(0, QMAX)
    pts = {(0, 0), (QMAX, 0), (0, QMAX), (QMAX, QMAX)}
    pts |= {tuple(p) for p in rng.integers(0, QMAX + 1, (n, 2)).tolist()}
    pts |= {(0, draw(coords)), (draw(coords), 0), (QMAX, draw(coords)), (draw(coords), QMAX)}
    uv = np.array(sorted(pts), dtype=np.int64)
    tri = Delaunay(uv.astype(float)).simplices
    low = draw(st.floats(-500, 8000))
    span = draw(st.sampled_from([0.0, 0.01, 5.0, 3000.0]))
    return TileMesh(uv[:, 0], uv[:, 1], rng.uniform(low, low + span, len(uv)), tri)


@st.composite
def tile_bounds(draw):
    z = draw(st.integers(1, 18))
    size = 180.0 / (1 << z)
    x = draw(st.integers(0, (1 << (z + 1)) - 1))
    y = draw(st.integers(0, (1 << z) - 1))
    return (-180 + x * size, -90 + y * size, -180 + (x + 1) * size, -90 + (y + 1) * size)


def _corner_set(u, v, tri):
    """Triangles as sets of (u, v) corners, independent of vertex numbering and winding."""
    return {frozenset(zip(u[t].tolist(), v[t].tolist(), strict=True)) for t in tri}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mesh=meshes(), bounds=tile_bounds(), normals=st.booleans())
def test_decoding_gives_back_the_vertices_triangles_and_edges(mesh, bounds, normals):
    d = decode(encode_tile(mesh, bounds, normals=normals))
    # every input vertex comes back (all are used by a Delaunay triangulation), heights within quantization
    lo, hi = float(mesh.heights.min()), float(mesh.heights.max())
    assert d.min_height == pytest.approx(lo, abs=1e-3 + 1e-6 * abs(lo))
    assert d.max_height == pytest.approx(hi, abs=1e-3 + 1e-6 * abs(hi))
    got = {(int(a), int(b)): h for a, b, h in zip(d.u, d.v, d.heights, strict=True)}
    want = {(int(a), int(b)): h for a, b, h in zip(mesh.u, mesh.v, mesh.heights, strict=True)}
    assert got.keys() == want.keys()
    step = (hi - lo) / QMAX
    for key, h in want.items():
        assert abs(got[key] - h) <= step / 2 + 1e-3 + 1e-6 * abs(h)
    # the same triangles, all counter-clockwise seen from above (Cesium culls back faces)
    keep = _corner_set(mesh.u, mesh.v, mesh.triangles)
    assert _corner_set(d.u, d.v, d.triangles) == {t for t in keep if len(t) == 3} or len(keep) > len(d.triangles)
    a, b, c = (d.triangles[:, k] for k in range(3))
    cross = (d.u[b] - d.u[a]) * (d.v[c] - d.v[a]) - (d.v[b] - d.v[a]) * (d.u[c] - d.u[a])
    assert (cross > 0).all()
    # the triangles tile the whole square
    assert cross.sum() == 2 * QMAX * QMAX
    # edge lists hold exactly the vertices on each edge
    for ids, on_edge in ((d.west, d.u == 0), (d.south, d.v == 0), (d.east, d.u == QMAX), (d.north, d.v == QMAX)):
        assert sorted(ids.tolist()) == np.flatnonzero(on_edge).tolist()
    # the bounding sphere holds every vertex
    lon, lat = d.lonlat(bounds)
    pos = ecef(lon, lat, d.heights)
    dist = np.linalg.norm(pos - np.array(d.sphere_center), axis=1)
    assert (dist <= d.sphere_radius * (1 + 1e-9) + 1e-6).all()
    if normals:
        n = d.normals()
        assert n.shape == (len(d.u), 3)
        assert np.allclose(np.linalg.norm(n, axis=1), 1.0)
        lam, phi = np.radians(lon), np.radians(lat)
        up = np.column_stack([np.cos(phi) * np.cos(lam), np.cos(phi) * np.sin(lam), np.sin(phi)])
        assert ((n * up).sum(axis=1) > -0.02).all(), "a normal points into the ground"  # 2/255 oct rounding
    else:
        assert d.extensions == {}


@settings(max_examples=100, deadline=None)
@given(bounds=tile_bounds(), seed=st.integers(0, 2**32 - 1), camera=st.tuples(
    st.floats(-180, 180), st.floats(-89, 89), st.floats(10, 4e7)))
def test_the_horizon_occlusion_point_is_hidden_only_when_the_whole_tile_is(bounds, seed, camera):
    rng = np.random.default_rng(seed)
    uv = np.array([[0, 0], [QMAX, 0], [0, QMAX], [QMAX, QMAX], *rng.integers(0, QMAX, (20, 2)).tolist()])
    uv = np.unique(uv, axis=0)
    mesh = TileMesh(uv[:, 0], uv[:, 1], rng.uniform(0, 3000, len(uv)), Delaunay(uv.astype(float)).simplices)
    d = decode(encode_tile(mesh, bounds))
    scale = np.array([1 / A, 1 / A, 1 / B])
    cam = ecef(np.array([camera[0]]), np.array([camera[1]]), np.array([camera[2]]))[0] * scale
    if scaled_point_visible(np.array(d.occlusion_point), cam):
        return
    lon, lat = d.lonlat(bounds)
    for p in ecef(lon, lat, d.heights) * scale:
        assert not scaled_point_visible(p, cam), "Cesium would cull a tile with a visible vertex"


@given(st.lists(st.integers(0, QMAX), max_size=200))
def test_zigzag_delta_codes_sum_back_to_the_values(values):
    c = zigzag_delta_encode(np.array(values, dtype=np.int64)).astype(np.int64)
    assert c.dtype == np.int64 and (c <= 65535).all()
    assert np.cumsum((c >> 1) ^ -(c & 1)).tolist() == values


def test_high_water_mark_codes_are_zero_for_each_new_index():
    assert high_water_mark_encode(np.array([0, 1, 2, 0, 2, 3, 1, 3, 4])).tolist() == [0, 0, 0, 3, 1, 0, 3, 1, 0]


def test_more_than_65536_vertices_switch_to_32_bit_indices():
    n = 300  # 90,000 vertices
    g = np.linspace(0, QMAX, n).round().astype(np.int64)
    uu, vv = np.meshgrid(g, g)
    idx = np.arange(n * n).reshape(n, n)
    a, b, c, e = idx[:-1, :-1].ravel(), idx[:-1, 1:].ravel(), idx[1:, 1:].ravel(), idx[1:, :-1].ravel()
    tri = np.concatenate([np.column_stack([a, b, c]), np.column_stack([a, c, e])])
    heights = np.sin(uu.ravel() / 3000.0) * 50
    d = decode(encode_tile(TileMesh(uu.ravel(), vv.ravel(), heights, tri), (120.0, 31.0, 121.0, 32.0), normals=True))
    assert len(d.u) == n * n and len(d.triangles) == 2 * (n - 1) ** 2
    assert len(d.west) == len(d.south) == len(d.east) == len(d.north) == n
    assert np.abs(np.sort(d.heights) - np.sort(heights)).max() < 100 / QMAX


def test_a_mesh_without_area_is_refused():
    with pytest.raises(ValueError):
        encode_tile(TileMesh(np.array([0, 10, 20]), np.array([0, 10, 20]), np.zeros(3), np.array([[0, 1, 2]])),
                    (0.0, 0.0, 1.0, 1.0))
