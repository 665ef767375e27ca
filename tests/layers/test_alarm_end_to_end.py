"""End to end: a reading published with the real ``mosquitto_pub`` breaks an alarm threshold → an
event opens in the device's unit grid → it reaches a /live/ws client and the HTTP API."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
import websockets
from live_support import MQTT_URL, WEST, auth, receive_until, unique
from shapely.geometry import MultiPolygon, box
from sqlalchemy import delete
from test_mqtt_ingest import mosquitto_pub

from twin.schema import DeviceAlarm, Event


@pytest.fixture
def grids(live_store):
    """Two unit grids: DUST-W (120.80, 31.70) lies in G-WEST, the others in G-EAST."""
    live_store.write_features("grids", [
        {"code": "G-WEST", "name": "西网格", "level": "unit", "geom": MultiPolygon([box(120.70, 31.60, 120.85, 31.80)])},
        {"code": "G-EAST", "name": "东网格", "level": "unit", "geom": MultiPolygon([box(120.85, 31.60, 121.10, 31.80)])},
    ])
    yield live_store
    with live_store.engine.begin() as conn:
        conn.execute(delete(DeviceAlarm.__table__))
        conn.execute(delete(Event.__table__))
    live_store.clear(["grids"])


def test_a_mosquitto_pub_reading_over_threshold_opens_an_event_in_its_grid_on_the_stream(grids, live_server):
    prefix = unique("twinalarm")
    port = int(MQTT_URL.rsplit(":", 1)[1])
    with live_server(mqtt_url=MQTT_URL, mqtt_topic_prefix=prefix, mqtt_client_id=unique("twin")) as srv:
        assert srv.app.state.live.mqtt.connected.wait(10)

        async def main() -> tuple[dict, dict, float]:
            bbox = ",".join(map(str, WEST))
            async with websockets.connect(f"{srv.ws_url}/live/ws?layers=devices,events&bbox={bbox}") as ws:
                snap = await receive_until(ws, lambda m: m["type"] == "snapshot")
                assert [c for c in snap["changes"] if c["layer"] == "events"] == []
                t0 = time.perf_counter()
                await asyncio.to_thread(mosquitto_pub, port, f"{prefix}/devices/DUST-W",
                                        '{"values": {"pm10": 182.0}}')
                seen: dict[str, dict] = {}
                while "events" not in seen or "devices" not in seen:
                    msg = await receive_until(ws, lambda m: m["type"] == "changes", timeout=5)
                    for ch in msg["changes"]:
                        seen.setdefault(ch["layer"], ch)
                return seen["devices"], seen["events"], time.perf_counter() - t0

        reading, event, took = asyncio.run(main())
        assert reading["feature"]["id"] == "DUST-W"
        assert reading["feature"]["geometry"]["coordinates"] == [120.80, 31.70]
        assert reading["feature"]["properties"]["values"] == {"pm10": 182.0}
        assert event["op"] == "add"
        feat = event["feature"]
        assert feat["geometry"]["coordinates"] == pytest.approx([120.80, 31.70])  # at the device
        props = feat["properties"]
        assert props["grid_code"] == "G-WEST" and props["device_code"] == "DUST-W"
        assert props["status"] == "reported" and props["source"] == "iot_alarm" and props["category"] == "dust"
        # a fraction of a second on a quiet machine (typically < 0.1 s; bench/live.py measures it)
        print(f"reading → event on the stream: {took:.3f} s")

        # the same event through HTTP: the live layer, the stored feature and its closed-loop history
        live = httpx.get(f"{srv.url}/live/events", params={"bbox": ",".join(map(str, WEST))}, headers=auth())
        assert live.status_code == 200
        assert [f["id"] for f in live.json()["features"]] == [feat["id"]]
        stored = httpx.get(f"{srv.url}/collections/events/items/{feat['id']}", headers=auth())
        assert stored.status_code == 200, stored.text
        assert stored.json()["properties"]["grid_code"] == "G-WEST"
        assert stored.json()["geometry"]["coordinates"] == pytest.approx([120.80, 31.70])
        steps = httpx.get(f"{srv.url}/events/{feat['id']}/history", headers=auth()).json()
        assert [s["to"] for s in steps["history"]] == ["reported"]

        # the alarm persists: a second breach opens no second event
        mosquitto_pub(port, f"{prefix}/devices/DUST-W", '{"values": {"pm10": 185.0}}')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and \
                srv.app.state.live.state.get("devices", "DUST-W")["properties"]["values"] != {"pm10": 185.0}:
            time.sleep(0.05)
        again = httpx.get(f"{srv.url}/live/events", headers=auth()).json()["features"]
        assert [f["id"] for f in again] == [feat["id"]]
