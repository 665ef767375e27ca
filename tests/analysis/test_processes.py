"""OGC API – Processes wrapper: the same answers as the plain analysis endpoints."""

from __future__ import annotations

from twin.analysis.source import features_in_bbox


def test_process_list_and_description(town_client):
    r = town_client.get("/processes")
    assert r.status_code == 200
    ids = {p["id"] for p in r.json()["processes"]}
    assert {"buffer", "cross-section", "clearance", "overlap", "trace", "valve-isolation"} <= ids
    d = town_client.get("/processes/buffer").json()
    assert d["jobControlOptions"] == ["sync-execute"]
    assert d["inputs"]["distance"]["minOccurs"] == 1 and d["inputs"]["layers"]["minOccurs"] == 0
    assert any(link["rel"].endswith("/execute") for link in d["links"])
    assert town_client.get("/processes/nope").status_code == 404


def test_execute_matches_the_plain_endpoint(town_client, town_store):
    fs = features_in_bbox(town_store, "pipelines", (-180, -90, 180, 90), cap=100_000)
    inputs = {"feature": {"layer": "pipelines", "id": fs.ids[0]}, "distance": 25, "layers": ["buildings", "pipelines"]}
    direct = town_client.post("/analysis/buffer", json=inputs).json()
    r = town_client.post("/processes/buffer/execution", json={"inputs": inputs})
    assert r.status_code == 200, r.text
    assert r.json() == direct
    doc = town_client.post("/processes/buffer/execution", json={"inputs": inputs, "response": "document"}).json()
    assert doc["outputs"]["result"]["value"] == direct
    water = next(i for i, p in zip(fs.ids, fs.properties, strict=True) if p["utility"] == "water_supply")
    iso = town_client.post("/processes/valve-isolation/execution",
                           json={"inputs": {"feature": {"layer": "pipelines", "id": water}}})
    assert iso.status_code == 200 and iso.json()["burst_pipe"]
    stats = town_client.post("/processes/pipe-statistics/execution", json={"inputs": {"utility": "gas"}}).json()
    assert stats == town_client.get("/analysis/pipe-statistics", params={"utility": "gas"}).json()


def test_execute_bad_inputs_are_4xx(town_client):
    for pid, inputs, status in (("buffer", {"distance": "far", "geometry": {"type": "Point", "coordinates": [0, 0]}}, 400),
                                ("buffer", {"distance": -5, "geometry": {"type": "Point", "coordinates": [0, 0]}}, 400),
                                ("cross-section", {"line": {"type": "LineString", "coordinates": [[0, 0]]}}, 422),
                                ("nope", {}, 404), ("trace", {"point": [0, 0]}, 400)):
        r = town_client.post(f"/processes/{pid}/execution", json={"inputs": inputs})
        assert r.status_code == status, (pid, r.text)
        assert {"code", "message", "detail"} <= set(r.json())
