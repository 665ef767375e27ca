"""Pipe networks: traces and valve isolation on hand-built networks whose answers are known,
then on the sample town over HTTP (both backends), held to networkx component computations."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import shapely

from twin.analysis.network import build_networks, pipe_statistics
from twin.analysis.source import FeatureSet, features_in_bbox

LON0, LAT0 = 121.0, 31.0
M = 1 / 100_000  # ~1 m in degrees, enough for a toy network


def _net(nodes, pipes, utility="water_supply"):
    """nodes: code → (x, y, kind); pipes: (code, a, b, extra props) with x/y in 'metres'."""
    nf = FeatureSet("pipe_nodes", list(range(1, len(nodes) + 1)),
                    [{"code": c, "kind": k, "utility": utility} for c, (_, _, k) in nodes.items()],
                    np.array([shapely.Point(LON0 + x * M, LAT0 + y * M) for x, y, _ in nodes.values()], dtype=object))
    props, geoms = [], []
    for code, a, b, extra in pipes:
        xa, ya = nodes[a][:2] if a in nodes else extra.pop("_a")
        xb, yb = nodes[b][:2] if b in nodes else extra.pop("_b")
        props.append({"code": code, "utility": extra.pop("utility", "water_supply"), "start_node_code": a,
                      "end_node_code": b, "diameter_mm": extra.pop("dn", 200.0), "gravity": False, **extra})
        geoms.append(shapely.LineString([(LON0 + xa * M, LAT0 + ya * M), (LON0 + xb * M, LAT0 + yb * M)]))
    pf = FeatureSet("pipelines", list(range(1, len(pipes) + 1)), props, np.array(geoms, dtype=object))
    return build_networks(pf, nf)


@pytest.fixture
def water():
    #   S ─p1─ J1 ─p2─ V1 ─p3─ J2 ─p4─ V2 ─p5─ J3 ─p6─ E (dead end)
    #                          │
    #                          p7
    #                          │
    #                          V3 ─p8─ J4 ─p9─ J5 ─p10─ J2'  (J5 loops back to J1 through p11)
    nodes = {"S": (0, 0, "reservoir"), "J1": (100, 0, "junction"), "V1": (200, 0, "valve"),
             "J2": (300, 0, "junction"), "V2": (400, 0, "valve"), "J3": (500, 0, "junction"),
             "E": (600, 0, "hydrant"), "V3": (300, -100, "valve"), "J4": (300, -200, "junction"),
             "J5": (100, -200, "junction")}
    pipes = [("p1", "S", "J1", {}), ("p2", "J1", "V1", {}), ("p3", "V1", "J2", {}), ("p4", "J2", "V2", {}),
             ("p5", "V2", "J3", {}), ("p6", "J3", "E", {}), ("p7", "J2", "V3", {}), ("p8", "V3", "J4", {}),
             ("p9", "J4", "J5", {}), ("p11", "J5", "J1", {})]
    return _net(nodes, pipes)["water_supply"]


def test_isolation_closes_the_nearest_valves(water):
    iso = water.isolate("p4")
    assert iso.valves_to_close == ["V1", "V2", "V3"]
    assert iso.isolated_pipes == ["p3", "p4", "p7"]
    # beyond V2 nothing else feeds J3/E: cut off; J4/J5 still fed around the loop through p11
    assert iso.cut_off_pipes == ["p5", "p6"] and iso.cut_off_nodes == ["E", "J3"]


def test_broken_valve_moves_the_search_on(water):
    iso = water.isolate("p4", broken_valves=["V2"])
    assert iso.valves_to_close == ["V1", "V3"]
    assert iso.isolated_pipes == ["p3", "p4", "p5", "p6", "p7"]
    assert iso.cut_off_pipes == []
    assert iso.broken_valves == ["V2"]


def test_burst_at_the_source_cuts_off_everything_behind_the_valves(water):
    iso = water.isolate("p1")
    assert iso.valves_to_close == ["V1", "V3"]
    assert set(iso.isolated_pipes) == {"p1", "p2", "p11", "p9", "p8"}
    assert iso.sources_left == [] and set(iso.cut_off_pipes) == {"p3", "p4", "p5", "p6", "p7"}


def test_pressure_flow_runs_away_from_the_source_and_traces_follow_it(water):
    assert (water.pipes["p1"].flow_from, water.pipes["p1"].flow_to) == ("S", "J1")
    assert (water.pipes["p6"].flow_from, water.pipes["p6"].flow_to) == ("J3", "E")
    pipes, nodes = water.trace("p5", "downstream")
    assert pipes == ["p5", "p6"] and nodes == ["E", "J3"]
    up, _ = water.trace("p6", "upstream")
    assert {"p1", "p2", "p3", "p4", "p5", "p6"} <= set(up)


def test_gravity_direction_from_inverts_and_reverse_grade_flagged():
    nodes = {"A": (0, 0, "manhole"), "B": (50, 0, "manhole"), "C": (100, 0, "manhole"), "O": (150, 0, "outfall")}
    g = {"utility": "sewage", "gravity": True}
    nets = _net(nodes, [
        ("s1", "A", "B", {**g, "start_invert_m": 3.0, "end_invert_m": 2.9}),
        ("s2", "B", "C", {**g, "start_invert_m": 2.8, "end_invert_m": 2.85}),  # reverse graded
        ("s3", "O", "C", {**g, "start_invert_m": 2.0, "end_invert_m": 2.5}),  # drawn against the flow
    ], utility="sewage")
    net = nets["sewage"]
    assert net.pipes["s2"].reverse_graded and (net.pipes["s2"].flow_from, net.pipes["s2"].flow_to) == ("C", "B")
    assert net.pipes["s3"].reverse_graded and net.pipes["s3"].flow_to == "O"
    assert not net.pipes["s1"].reverse_graded


def test_missing_nodes_are_snapped_or_joined_and_reported():
    nodes = {"A": (0, 0, "junction"), "B": (100, 0, "junction")}
    nets = _net(nodes, [
        ("q1", "A", "B", {}),
        ("q2", "B", "GONE", {"_b": (100, 100)}),  # end node missing from the nodes
        ("q3", None, "A", {"_a": (100, 100.2)}),  # no start code: its end meets q2's loose end
        ("q4", "B", "X", {"_b": (200.0, 0.3)}),   # unknown code: 0.3 m from nothing → new node
        ("q5", "NOPE", "B", {"_a": (0.0, 0.2)}),  # unknown code 0.2 m from A → snapped to A
    ])
    net = nets["water_supply"]
    kinds = sorted({f.kind for f in net.findings})
    assert kinds == ["assumed_source", "missing_node", "snapped_end"]  # no reservoir here either
    assert net.pipes["q5"].start == "A"
    assert net.pipes["q3"].start == net.pipes["q2"].end  # the two loose ends were joined
    assert nx.is_connected(net.graph)


def test_statistics_by_band():
    nodes = {"A": (0, 0, "junction"), "B": (100, 0, "junction"), "C": (300, 0, "junction")}
    nets_pipes = [("a", "A", "B", {"dn": 150.0, "material": "PE", "start_depth_m": 0.8, "end_depth_m": 1.0,
                                   "year_laid": 2000}),
                  ("b", "B", "C", {"dn": 600.0, "material": "steel", "start_depth_m": 2.2, "end_depth_m": 2.4,
                                   "year_laid": 2024})]
    pf_nodes = dict(nodes)
    fs = FeatureSet("pipelines", [1, 2], [], np.array([], dtype=object))
    # reuse the builder's geometry by building FeatureSet directly
    props, geoms = [], []
    for code, a, b, extra in nets_pipes:
        props.append({"code": code, "utility": "water_supply", "diameter_mm": extra["dn"], **extra})
        (xa, ya, _), (xb, yb, _) = pf_nodes[a], pf_nodes[b]
        geoms.append(shapely.LineString([(LON0 + xa * M, LAT0 + ya * M), (LON0 + xb * M, LAT0 + yb * M)]))
    fs = FeatureSet("pipelines", [1, 2], props, np.array(geoms, dtype=object))
    st = pipe_statistics(fs, as_of_year=2026)
    assert st["total"]["count"] == 2
    assert abs(st["total"]["length_m"] - 300 * 0.954) < 10  # 1e-5° of longitude at 31° N ≈ 0.954 m
    assert st["by_diameter"]["100–200 mm"]["count"] == 1 and st["by_diameter"]["500–800 mm"]["count"] == 1
    assert st["by_depth"]["0.7–1 m"]["count"] == 1 and st["by_depth"]["2–3 m"]["count"] == 1
    assert st["by_age"]["20–30 years"]["count"] == 1 and st["by_age"]["<5 years"]["count"] == 1
    assert set(st["by_material"]) == {"PE", "steel"}


# --- the sample town over HTTP ------------------------------------------------------------------

WORLD = (-180, -90, 180, 90)


def _water_pipe_between_valves(town_store):
    fs = features_in_bbox(town_store, "pipelines", WORLD, cap=100_000)
    nodes = features_in_bbox(town_store, "pipe_nodes", WORLD, cap=100_000)
    kind = {p["code"]: p["kind"] for p in nodes.properties}
    for fid, p, g in zip(fs.ids, fs.properties, fs.geometries, strict=True):
        if p["utility"] == "water_supply" and kind.get(p["start_node_code"]) == "valve":
            return fid, p, g, fs, nodes, kind
    raise AssertionError("no water pipe at a valve")


def test_valve_isolation_on_the_town_matches_components(town_client, town_store):
    fid, p, g, fs, nodes, kind = _water_pipe_between_valves(town_store)
    mid = g.interpolate(0.5, normalized=True)
    r = town_client.post("/analysis/valve-isolation", json={"point": [mid.x, mid.y], "utility": "water_supply"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["burst_pipe"] == p["code"]
    # independent: the component of the burst pipe once every valve node is removed
    G = nx.MultiGraph()
    for q in fs.properties:
        if q["utility"] == "water_supply":
            G.add_edge(q["start_node_code"], q["end_node_code"], key=q["code"])
    valves = {n for n in G if kind.get(n) == "valve"}
    H = G.subgraph([n for n in G if n not in valves])
    ends = [n for n in (p["start_node_code"], p["end_node_code"]) if n not in valves]
    comp = set().union(*(nx.node_connected_component(H, n) for n in ends)) if ends else set()
    want_pipes = {k for a, b, k in G.edges(keys=True) if a in comp or b in comp} | {p["code"]}
    want_valves = {n for n in valves if any(m in comp for m in G.neighbors(n))} | \
        {n for n in (p["start_node_code"], p["end_node_code"]) if n in valves}
    got_pipes = {f["properties"]["code"] for f in body["isolated"]["pipes"]["features"]}
    assert got_pipes == want_pipes
    assert {v["code"] for v in body["valves_to_close"]} == want_valves
    assert all(v["kind"] == "valve" for v in body["valves_to_close"])
    # buildings served: brute force — each building's nearest water pipe (ground metres), if within 30 m
    from twin.analysis import distances_m

    water = [(q["code"], g) for q, g in zip(fs.properties, fs.geometries, strict=True) if q["utility"] == "water_supply"]
    wgeoms = np.array([g for _, g in water], dtype=object)
    affected = got_pipes | {f["properties"]["code"] for f in body["cut_off"]["pipes"]["features"]}
    blds = features_in_bbox(town_store, "buildings", WORLD, cap=100_000)
    want_b = set()
    for bid, bg in zip(blds.ids, blds.geometries, strict=True):
        d = distances_m(bg, wgeoms)
        k = int(np.argmin(d))
        if d[k] <= 30 and water[k][0] in affected:
            want_b.add(bid)
    assert {b["id"] for b in body["buildings_affected"]["features"]} == want_b
    # a broken valve: the search goes on, and isolates a superset
    broken = sorted(want_valves)[0]
    r2 = town_client.post("/analysis/valve-isolation", json={"point": [mid.x, mid.y], "utility": "water_supply",
                                                             "broken_valves": [broken]})
    body2 = r2.json()
    got2 = {f["properties"]["code"] for f in body2["isolated"]["pipes"]["features"]}
    assert got_pipes < got2 and broken not in {v["code"] for v in body2["valves_to_close"]}
    assert body2["broken_valves"] == [broken]


def test_sewage_downstream_trace_reaches_the_plant(town_client, town_store):
    fs = features_in_bbox(town_store, "pipelines", WORLD, cap=100_000)
    i = next(k for k, p in enumerate(fs.properties) if p["utility"] == "sewage")
    r = town_client.post("/analysis/trace", json={"feature": {"layer": "pipelines", "id": fs.ids[i]},
                                                  "direction": "downstream"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert any(n["kind"] == "treatment_plant" for n in body["nodes"])
    # downstream in a gravity network: each reached pipe's inverts fall (the sample town has no reverse grades)
    codes = {f["properties"]["code"] for f in body["pipes"]["features"]}
    for p in fs.properties:
        if p["code"] in codes:
            assert p["start_invert_m"] > p["end_invert_m"]
    up = town_client.post("/analysis/trace", json={"feature": {"layer": "pipelines", "id": fs.ids[i]},
                                                   "direction": "upstream"}).json()
    assert fs.properties[i]["code"] in {f["properties"]["code"] for f in up["pipes"]["features"]}


def test_flow_direction_and_statistics(town_client, town_store):
    fs = features_in_bbox(town_store, "pipelines", WORLD, cap=100_000)
    xy = shapely.get_coordinates(fs.geometries)
    bbox = f"{xy[:, 0].min()},{xy[:, 1].min()},{xy[:, 0].max()},{xy[:, 1].max()}"
    r = town_client.get("/analysis/flow-direction", params={"bbox": bbox, "utility": "rain"})
    assert r.status_code == 200, r.text
    feats = r.json()["features"]
    assert feats and all(f["properties"]["utility"] == "rain" for f in feats)
    assert all(0 <= f["properties"]["arrow"]["bearing_deg"] < 360 for f in feats)
    s = town_client.get("/analysis/pipe-statistics").json()
    assert s["total"]["count"] == len(fs)
    assert sum(v["count"] for v in s["by_diameter"].values()) == len(fs)


def test_network_bad_input(town_client):
    far = {"point": [121.5, 31.9], "direction": "downstream"}  # tens of km from the town
    r = town_client.post("/analysis/trace", json=far)
    assert r.status_code == 404 and r.json()["code"] == "no_pipe_nearby"
    cases = [
        ("/analysis/trace", {"direction": "sideways", "point": [121, 31]}, 400),
        ("/analysis/trace", {"direction": "upstream"}, 400),
        ("/analysis/trace", {"direction": "upstream", "point": [121]}, 400),
        ("/analysis/trace", {"direction": "upstream", "point": [121, 31], "max_snap_m": -5}, 400),
        ("/analysis/trace", {"direction": "upstream", "feature": {"layer": "pipelines", "id": 10**8}}, 404),
        ("/analysis/valve-isolation", {"point": [121.5, 31.9]}, 404),
        ("/analysis/valve-isolation", {"point": [121, 31], "max_snap_m": 1e9}, 400),
    ]
    for path, body, status in cases:
        r = town_client.post(path, json=body)
        assert r.status_code == status, (path, body, r.text)
    assert town_client.get("/analysis/flow-direction").status_code == 400


def test_isolation_of_a_sewer_is_refused(town_client, town_store):
    fs = features_in_bbox(town_store, "pipelines", WORLD, cap=100_000)
    sewer = next(i for i, p in zip(fs.ids, fs.properties, strict=True) if p["utility"] == "sewage")
    r = town_client.post("/analysis/valve-isolation", json={"feature": {"layer": "pipelines", "id": sewer}})
    assert r.status_code == 400 and "pressure networks" in r.json()["message"]
