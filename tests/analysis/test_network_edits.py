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
