"""Cross-section held to an independent computation: a cut built across known pipes, the
analytic terrain of the sample town, and the pipes' own records."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest
import shapely

from twin.analysis.metric import frame_for
from twin.analysis.source import features_in_bbox

WORLD = (-180, -90, 180, 90)


@pytest.fixture(scope="module")
def town():
    from sample_data.town import generate_town

    return generate_town(scale=0.05)


def _cut_across(geom, half_len=10.0):
    """A straight cut of 2·half_len metres perpendicular to ``geom`` at its middle (lon/lat)."""
    frame = frame_for(geom)
    g = frame.to_metric(geom)
    mid = g.interpolate(0.5, normalized=True)
    a = g.interpolate(max(g.project(mid) - 0.5, 0))
    b = g.interpolate(min(g.project(mid) + 0.5, g.length))
    dx, dy = b.x - a.x, b.y - a.y
    n = np.hypot(dx, dy)
    px, py = -dy / n, dx / n
    cut = shapely.LineString([(mid.x - px * half_len, mid.y - py * half_len), (mid.x + px * half_len, mid.y + py * half_len)])
    return frame.to_lonlat(cut)


def test_cut_across_a_pipe_reports_it_at_its_depth(town_client, town_store, town):
    fs = features_in_bbox(town_store, "pipelines", WORLD, cap=100_000)
    i = next(k for k, p in enumerate(fs.properties) if p["utility"] == "sewage" and p["length_m"] > 30)
    props = fs.properties[i]
    cut = _cut_across(fs.geometries[i])
    r = town_client.post("/analysis/cross-section", json={"line": shapely.geometry.mapping(cut)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert abs(body["length_m"] - 20.0) < 0.01
    c = next(c for c in body["crossings"] if c["id"] == fs.ids[i])
    assert abs(c["offset_m"] - 10.0) < 0.05
    # inverts fall linearly along the pipe: the middle is their mean
    assert abs(c["invert_m"] - (props["start_invert_m"] + props["end_invert_m"]) / 2) < 0.01
    assert abs(c["top_m"] - c["invert_m"] - props["diameter_mm"] / 1000) < 1e-6
    # the ground is the town's terrain (DEM at 10 m, bilinear: within 0.3 m)
    ground = float(town.elevation(np.array([c["lon"]]), np.array([c["lat"]]))[0])
    assert c["ground_source"] == "dem" and abs(c["ground_m"] - ground) < 0.3
    assert abs(c["top_depth_m"] - (c["ground_m"] - c["top_m"])) < 1e-6
    # every pipe the cut touches is reported, and nothing else
    touched = {fid for fid, g in zip(fs.ids, fs.geometries, strict=True) if g.intersects(cut)}
    assert {c["id"] for c in body["crossings"]} == touched
    offs = [c["offset_m"] for c in body["crossings"]]
    assert offs == sorted(offs)
    # clearance along the cut, held to the offsets and the GB 50289 table
    from twin.analysis.clearance import clearance_table

    table = clearance_table()
    xs = body["crossings"]
    want = set()
    for k, a in enumerate(xs):
        for b in xs[k + 1:]:
            req = table.horizontal_m(a["utility"], b["utility"])
            gap = abs(a["offset_m"] - b["offset_m"]) - (a["diameter_mm"] + b["diameter_mm"]) / 2000
            if req is not None and a["id"] != b["id"] and gap < req:
                want.add((a["code"], b["code"]))
    assert {(v["a"], v["b"]) for v in body["clearance"]} == want
    prof = body["profile"]
    assert prof["offset_m"][0] == 0 and abs(prof["offset_m"][-1] - 20.0) < 0.01
    assert all(g is not None for g in prof["ground_m"])


def test_cross_section_svg_is_a_drawing(town_client, town_store):
    fs = features_in_bbox(town_store, "pipelines", WORLD, cap=100_000)
    cut = _cut_across(fs.geometries[0], 15)
    r = town_client.post("/analysis/cross-section?format=svg", json={"line": shapely.geometry.mapping(cut)})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("image/svg+xml")
    root = ET.fromstring(r.text)
    ns = "{http://www.w3.org/2000/svg}"
    assert root.findall(f".//{ns}ellipse"), "pipes are drawn"
    assert root.findall(f".//{ns}polyline"), "the ground line is drawn"
    assert fs.properties[0]["code"] in r.text


def test_cross_section_bad_input(town_client):
    cases = [
        ({"line": {"type": "LineString", "coordinates": [[121, 31]]}}, 422),
        ({"line": {"type": "LineString", "coordinates": [[121, 31], [121, 31]]}}, 422),
        ({"line": {"type": "Point", "coordinates": [121, 31]}}, 422),
        ({"line": {"type": "LineString", "coordinates": [[121, 31], [122, 31]]}}, 400),  # ~95 km
        ({"line": {"type": "LineString", "coordinates": [[121, 31], [121.001, 31]]}, "step_m": 0}, 400),
        ({"line": {"type": "LineString", "coordinates": [[121, 31], [121.001, 31]]}, "step_m": -1}, 400),
        ({}, 400),
    ]
    for body, status in cases:
        r = town_client.post("/analysis/cross-section", json=body)
        assert r.status_code == status, (body, r.text)
    r = town_client.post("/analysis/cross-section?format=pdf",
                         json={"line": {"type": "LineString", "coordinates": [[121, 31], [121.001, 31]]}})
    assert r.status_code == 400


def test_cut_far_from_pipes_and_dem_is_empty_not_an_error(town_client):
    r = town_client.post("/analysis/cross-section",
                         json={"line": {"type": "LineString", "coordinates": [[10, 10], [10.001, 10]]}})
    assert r.status_code == 200
    assert r.json()["crossings"] == [] and r.json()["ground_source"] == "none"
