"""Live layers over HTTP, WebSocket and SSE, on both backends, with real clients."""

from __future__ import annotations

import asyncio
import datetime as dt
import time

import httpx
import orjson
import websockets
from live_support import EAST, WEST, auth, change_ids, receive_until


def post(client, body, layer: str = "devices", headers=None):  # noqa: ANN001, ANN201
    return client.post(f"/live/{layer}/features", content=orjson.dumps(body),
                       headers=auth() if headers is None else headers)


def test_reading_posted_over_http_is_the_latest_state_and_in_the_history(live_client) -> None:
    ts = dt.datetime.now(dt.UTC).replace(microsecond=0)
    r = post(live_client, [{"id": "DUST-W", "ts": (ts - dt.timedelta(minutes=10)).isoformat(), "values": {"pm10": 80}},
                           {"id": "DUST-W", "ts": ts.isoformat(), "values": {"pm10": 182.0, "pm25": 60}}])
    assert r.status_code == 202, r.text
    assert r.json()["accepted"] == 2
    fc = live_client.get("/live/devices").json()
    feat = {f["id"]: f for f in fc["features"]}["DUST-W"]
    assert feat["properties"]["values"] == {"pm10": 182.0, "pm25": 60.0}
    assert feat["properties"]["status"] == "online" and feat["properties"]["breaches"] == ["pm10"]
    assert feat["geometry"]["coordinates"] == [120.80, 31.70]
    assert {f["id"] for f in fc["features"]} == {"DUST-W", "DUST-E", "WATER-1", "GAS-1"}
    assert {f["properties"]["status"] for f in fc["features"] if f["id"] != "DUST-W"} == {"offline"}
    live_client.app.state.live.writer.flush()
    h = live_client.get("/live/devices/DUST-W/history").json()
    assert [r["values"]["pm10"] for r in h["readings"]] == [80.0, 182.0]
    a = (ts - dt.timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    h = live_client.get("/live/devices/DUST-W/history", params={"datetime": f"{a}/.."}).json()
    assert [r["values"]["pm10"] for r in h["readings"]] == [182.0]


def test_history_aggregates_per_interval(live_client) -> None:
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    body = [{"id": "WATER-1", "ts": (start + dt.timedelta(minutes=10 * i)).isoformat(),
             "values": {"water_level_m": float(i)}} for i in range(12)]  # two hours, 6 per hour
    assert post(live_client, body).status_code == 202
    live_client.app.state.live.writer.flush()
    end = start + dt.timedelta(hours=2)
    r = live_client.get("/live/devices/WATER-1/history",
                        params={"datetime": f"{start.isoformat()}/{end.isoformat()}", "interval": "1h"})
    aggs = r.json()["aggregates"]
    assert [a["count"] for a in aggs] == [6, 6]
    assert aggs[0]["metrics"]["water_level_m"] == {"count": 6, "min": 0.0, "max": 5.0, "mean": 2.5}
    assert aggs[1]["metrics"]["water_level_m"]["mean"] == 8.5
    assert live_client.get("/live/devices/WATER-1/history", params={"interval": "soon"}).status_code == 400


def test_bad_readings_are_refused_counted_and_nothing_is_stored(live_client) -> None:
    def rejected(reason: str) -> float:
        text = live_client.get("/metrics").text
        for line in text.splitlines():
            if line.startswith(f'twin_live_rejected_total{{reason="{reason}",source="http"}}'):
                return float(line.split()[-1])
        return 0.0

    before = rejected("invalid_value")
    assert post(live_client, {"id": "DUST-W", "values": {"pm10": 1}},
                headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    r = live_client.post("/live/devices/features", content=b"{not json", headers=auth())
    assert r.status_code == 400 and r.json()["code"] == "malformed_json"
    r = post(live_client, [{"id": "DUST-W", "values": {"pm10": 1}}, {"id": "DUST-E", "values": {"pm10": "x"}}])
    assert r.status_code == 400 and r.json()["code"] == "invalid_value"
    assert r.json()["detail"][0]["index"] == 1
    r = post(live_client, {"id": "NOPE", "values": {}})
    assert r.status_code == 404 and r.json()["code"] == "unknown_device"
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    r = post(live_client, {"id": "DUST-W", "ts": future, "values": {"pm10": 1}})
    assert r.status_code == 400 and r.json()["code"] == "timestamp_out_of_range"
    assert post(live_client, {"id": "DUST-W"}, layer="buildings").status_code == 404
    assert rejected("invalid_value") == before + 1
    live_client.app.state.live.writer.flush()
    assert live_client.get("/live/devices/DUST-W/history").json()["readings"] == []  # the good half too
    assert {f["properties"]["ts"] for f in live_client.get("/live/devices").json()["features"]} == {None}


def test_readings_do_not_change_the_devices_layer_version(live_client) -> None:
    store = live_client.app.state.store
    before = store.version("devices")
    assert post(live_client, {"id": "GAS-1", "values": {"lel_pct": 3}}).status_code == 202
    live_client.app.state.live.writer.flush()
    assert store.version("devices") == before


def test_websocket_snapshot_then_changes_in_the_bbox_then_moved_bbox(live_server) -> None:
    with live_server() as srv:
        async def main() -> None:
            bbox = ",".join(map(str, WEST))
            async with websockets.connect(f"{srv.ws_url}/live/ws?layers=devices&bbox={bbox}") as ws:
                snap = orjson.loads(await ws.recv())
                assert snap["type"] == "snapshot" and change_ids(snap) == ["DUST-W"]
                async with httpx.AsyncClient(base_url=srv.url) as http:
                    for code in ("DUST-E", "DUST-W"):
                        r = await http.post("/live/devices/features", headers=auth(),
                                            json={"id": code, "values": {"pm10": 99}})
                        assert r.status_code == 202
                    msg = await receive_until(ws, lambda m: m["type"] == "changes")
                    assert change_ids(msg) == ["DUST-W"]  # DUST-E is outside the bbox
                    await ws.send(orjson.dumps({"type": "subscribe", "layers": ["devices"], "bbox": list(EAST)}))
                    snap = await receive_until(ws, lambda m: m["type"] == "snapshot")
                    assert change_ids(snap) == ["DUST-E"]
                    assert snap["changes"][0]["feature"]["properties"]["values"] == {"pm10": 99.0}
                    await http.post("/live/devices/features", headers=auth(),
                                    json=[{"id": "DUST-W", "values": {"pm10": 1}}, {"id": "DUST-E", "values": {"pm10": 2}}])
                    msg = await receive_until(ws, lambda m: m["type"] == "changes")
                    assert change_ids(msg) == ["DUST-E"]
                    await ws.send(b"nonsense")
                    err = await receive_until(ws, lambda m: m["type"] == "error")
                    assert err["code"] == "invalid_parameter"

        asyncio.run(main())


def test_websocket_with_a_bad_filter_gets_an_error_and_is_closed(live_server) -> None:
    with live_server() as srv:
        async def main() -> None:
            async with websockets.connect(f"{srv.ws_url}/live/ws?layers=nothing") as ws:
                msg = orjson.loads(await ws.recv())
                assert msg["type"] == "error" and msg["code"] == "layer_not_found"
                await asyncio.wait_for(ws.wait_closed(), 5)
                assert ws.close_code == 1008

        asyncio.run(main())


def test_sse_stream_snapshot_changes_and_moving_the_filter(live_server) -> None:
    with live_server() as srv:
        with httpx.Client(base_url=srv.url, timeout=10) as http, \
                http.stream("GET", "/live/sse", params={"layers": "devices", "bbox": ",".join(map(str, WEST))}) as s:
            events = _sse_events(s.iter_lines())
            name, hello = next(events)
            assert name == "hello"
            name, snap = next(events)
            assert name == "snapshot" and change_ids(snap) == ["DUST-W"]
            http.post("/live/devices/features", headers=auth(), json={"id": "DUST-W", "values": {"pm10": 5}})
            name, msg = next(events)
            assert name == "changes" and change_ids(msg) == ["DUST-W"]
            r = http.post(f"/live/sse/{hello['stream']}/subscribe", json={"bbox": list(EAST)})
            assert r.status_code == 200
            name, snap = next(events)
            assert name == "snapshot" and change_ids(snap) == ["DUST-E"]


def _sse_events(lines):  # noqa: ANN001, ANN202
    name = None
    for line in lines:
        if line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield name, orjson.loads(line[6:])


def test_silent_device_goes_offline_and_subscribers_are_told(live_server) -> None:
    with live_server(live_offline_after_s=1.0) as srv:
        async def main() -> None:
            async with websockets.connect(f"{srv.ws_url}/live/ws?layers=devices") as ws:
                await ws.recv()
                async with httpx.AsyncClient(base_url=srv.url) as http:
                    await http.post("/live/devices/features", headers=auth(), json={"id": "GAS-1", "values": {}})
                t0 = time.monotonic()
                online = await receive_until(ws, lambda m: any(
                    c["feature"]["properties"]["status"] == "online" for c in m.get("changes", [])))
                assert change_ids(online) == ["GAS-1"]
                off = await receive_until(ws, lambda m: any(
                    c["feature"]["properties"]["status"] == "offline" for c in m.get("changes", [])))
                assert change_ids(off) == ["GAS-1"] and time.monotonic() - t0 >= 0.9

        asyncio.run(main())


def test_openapi_documents_the_live_routes(live_client) -> None:
    spec = live_client.get("/api/openapi.json").json()
    paths = spec["paths"]
    for p in ("/live/{layer}", "/live/{layer}/{fid}/history", "/live/{layer}/features", "/live/sse",
              "/live/sse/{stream}/subscribe"):
        assert p in paths, p
    body = paths["/live/{layer}/features"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "oneOf" in body
