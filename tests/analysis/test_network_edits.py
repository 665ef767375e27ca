"""Networks follow edits made by anyone (another client's SQL here): after moving, deleting and adding
pipes the patched networks and service index equal a build from scratch, on both backends; an edit of
one utility leaves the other utilities' networks as they were; a bulk replace still reloads everything."""

from __future__ import annotations

import numpy as np
import pytest
import shapely
from sqlalchemy import text

from twin.analysis.network_service import NetworkService
from twin.analysis.source import features_in_bbox

WORLD = (-180.0, -90.0, 180.0, 90.0)


@pytest.fixture
def town_copy(empty_store, tmp_path):
    from sample_data import build_sample_town

    build_sample_town(empty_store, tmp_path / "r", scale=0.05)
    return empty_store


def _state(svc: NetworkService, utility: str = "water_supply"):
    net = svc.network(utility)
    pipes = {c: (p.id, p.start, p.end, p.flow_from, p.flow_to, round(p.length_m, 6), p.diameter_mm)
             for c, p in net.pipes.items()}
    served = {}
    for layer in ("buildings", "devices"):
        fs, codes, dists = svc._service_index(layer, utility)
        served[layer] = {i: (c, round(float(d), 6)) for i, c, d in zip(fs.ids, codes, dists, strict=True) if d <= 1000}
    iso = net.isolate(sorted(net.pipes)[len(net.pipes) // 2])
    return pipes, sorted(net.graph.nodes), sorted(net.findings, key=repr), served, iso


def _fresh(store, utility: str = "water_supply"):
    return _state(NetworkService(store), utility)


def test_edits_patch_the_networks_like_a_fresh_build(town_copy):
    store = town_copy
    svc = NetworkService(store)
    svc.clock.ttl_s = 0  # see every edit at once
    svc.wait_s = 60  # and wait for the patch (a loaded test machine may take longer than a request would)
    before = _state(svc)
    gas_before = svc.network("gas")
    pipes = features_in_bbox(store, "pipelines", WORLD, cap=100_000)
    water = [(i, p, g) for i, p, g in zip(pipes.ids, pipes.properties, pipes.geometries, strict=True)
             if p["utility"] == "water_supply"]
    moved, deleted, template = water[3], water[len(water) // 2], water[-1]
    # move one water pipe 20 m east (its ends no longer at its nodes: snapped or joined, reported)
    shifted = shapely.affinity.translate(moved[2], xoff=20 / 95_000)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE pipelines SET geom = ST_GeomFromText(:wkt, 4326) WHERE id = :id"),
                     {"wkt": shifted.wkt, "id": moved[0]})
        conn.execute(text("DELETE FROM pipelines WHERE id = :id"), {"id": deleted[0]})
    # a new water pipe alongside an existing one, between its nodes
    new = {k: v for k, v in template[1].items() if v is not None}
    new.update(code="W-NEW-1", geom=shapely.affinity.translate(template[2], yoff=3 / 111_000))
    store.write_features("pipelines", [new])
    after = _state(svc)
    assert svc._pipe_rows.version == store.versions()["pipelines"]
    fresh = _fresh(store)
    assert after == fresh
    assert after != before and "W-NEW-1" in after[0] and deleted[1]["code"] not in after[0]
    assert svc.network("gas") is gas_before  # another utility's network was not rebuilt
    # an attribute edit of a gas pipe rebuilds gas only
    gas_code = sorted(gas_before.pipes)[0]
    water_net = svc.network("water_supply")
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE pipelines SET diameter_mm = 999 WHERE code = :c AND utility = 'gas'"), {"c": gas_code})
    assert svc.network("gas").pipes[gas_code].diameter_mm == 999
    assert svc.network("water_supply") is water_net
    assert _state(svc, "gas") == _fresh(store, "gas")
    # a bulk replace (whole-layer change) reloads everything
    rows = features_in_bbox(store, "pipelines", WORLD, cap=100_000)
    keep = [dict(p, geom=g) for p, g in zip(rows.properties, rows.geometries, strict=True)
            if p["code"] != "W-NEW-1"]
    store.write_features("pipelines", keep, mode="replace")
    assert _state(svc) == _fresh(store)
    assert "W-NEW-1" not in svc.network("water_supply").pipes


def test_a_node_edit_reaches_the_network(town_copy):
    store = town_copy
    svc = NetworkService(store)
    svc.clock.ttl_s = 0
    svc.wait_s = 60
    net = svc.network("water_supply")
    valve = sorted(n for n, k in net.node_kind.items() if k == "valve")[0]
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE pipe_nodes SET kind = 'junction' WHERE code = :c AND utility = 'water_supply'"),
                     {"c": valve})
    assert svc.network("water_supply").node_kind[valve] == "junction"
    assert _state(svc) == _fresh(store)
    assert np.isfinite(len(svc.network("water_supply").pipes))


def test_requests_do_not_wait_for_a_slow_rebuild(town_copy):
    """With no time to wait, a request answers from the previous version, says so, and the rebuild
    finishes in the background."""
    import time

    store = town_copy
    svc = NetworkService(store)
    svc.clock.ttl_s = 0
    svc.wait_s = 0
    code = sorted(svc.network("water_supply").pipes)[0]
    assert svc.freshness()["stale"] is False
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE pipelines SET diameter_mm = 777 WHERE code = :c AND utility = 'water_supply'"),
                     {"c": code})
    svc.network("water_supply")  # starts the rebuild, does not wait for it
    deadline = time.monotonic() + 60
    while svc.freshness()["stale"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert svc.freshness() == {"pipelines": store.versions()["pipelines"],
                               "pipe_nodes": store.versions()["pipe_nodes"], "stale": False}
    assert svc.network("water_supply").pipes[code].diameter_mm == 777


def test_isolation_after_raw_sql_edits_equals_a_fresh_computation(town_copy, client_for):
    """Another client edits water pipes by raw SQL — the diameter of a dead-end pipe (it becomes the
    assumed source's pipe), a detour that triples a pipe's length (flows in its loops turn), a pipe moved
    40 m (buildings change their nearest pipe) and 10 cm — and after each edit the next valve isolation
    over HTTP equals the one a new app computes from scratch, for bursts spread over the network; the
    edits were patched into the network (not a rebuild of it), and the answers say they are current."""
    store = town_copy
    client = client_for(store)
    svc = NetworkService(store)
    svc.clock.ttl_s = 0
    svc.wait_s = 60  # a loaded test machine: wait for the patch rather than answer from the previous version
    client.app.state.networks = svc  # the service the routes use (its clock sees every edit at once)
    net0 = svc.network("water_supply")
    codes = sorted(net0.pipes)
    bursts = [codes[i] for i in np.linspace(0, len(codes) - 1, 8).astype(int)]
    deg = dict(net0.graph.degree())
    dead_end = next(c for c in codes if (deg[net0.pipes[c].start] == 1 or deg[net0.pipes[c].end] == 1)
                    and not {net0.pipes[c].start, net0.pipes[c].end} & set(net0.sources))
    rows = features_in_bbox(store, "pipelines", WORLD, cap=100_000)
    geom = {p["code"]: g for p, g in zip(rows.properties, rows.geometries, strict=True) if p["utility"] == "water_supply"}
    looped, moved = codes[len(codes) // 3], codes[2 * len(codes) // 3]
    line = geom[looped]
    a, b = shapely.get_coordinates(line)[[0, -1]]
    mid = (a + b) / 2 + np.array([-(b - a)[1], (b - a)[0]])  # a vertex well off the line: about 3 times as long
    detour = shapely.LineString([a, mid, b])
    ids = {c: net0.pipes[c].id for c in (dead_end, looped, moved)}
    z = ", 0" if store.dialect.name != "postgis" else ""  # SpatiaLite's ST_Translate takes dz too
    edits = [
        ("UPDATE pipelines SET diameter_mm = 5000 WHERE id = :id", {"id": ids[dead_end]}),
        ("UPDATE pipelines SET geom = ST_GeomFromText(:wkt, 4326) WHERE id = :id", {"id": ids[looped], "wkt": detour.wkt}),
        (f"UPDATE pipelines SET geom = ST_Translate(geom, 4e-4, 1e-4{z}) WHERE id = :id", {"id": ids[moved]}),
        (f"UPDATE pipelines SET geom = ST_Translate(geom, 1e-6, 0{z}) WHERE id = :id", {"id": ids[moved]}),
    ]

    def isolations(c) -> list[dict]:
        out = []
        for code in bursts:
            r = c.post("/analysis/valve-isolation", json={"feature": {"layer": "pipelines", "code": code},
                                                          "service_m": 300})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["data_version"]["stale"] is False
            body.pop("data_version")
            out.append(body)
        return out

    flows = {c: (p.flow_from, p.flow_to) for c, p in net0.pipes.items()}
    turned = 0
    for sql, params in edits:
        before = svc.network("water_supply")
        with store.engine.begin() as conn:
            conn.execute(text(sql), params)
        got = isolations(client)
        after = svc.network("water_supply")
        assert after is not before and after.node_kind is before.node_kind, "the edit was not patched in"
        assert got == isolations(client_for(store))  # a new app: its own service builds everything anew
        assert _state(svc) == _fresh(store)
        turned += sum((p.flow_from, p.flow_to) != flows[c] for c, p in after.pipes.items())
        flows = {c: (p.flow_from, p.flow_to) for c, p in after.pipes.items()}
    assert turned, "the edits should turn some flows (else this test does not test the re-orientation)"
