"""MQTT ingest from real Mosquitto brokers: mosquitto_pub to a WebSocket client, bad messages, restarts."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest
import websockets
from live_support import MQTT_URL, WEST, change_ids, make_settings, receive_until, unique
from paho.mqtt.enums import CallbackAPIVersion


def mosquitto_pub(port: int, topic: str, payload: bytes | str, qos: int = 1) -> None:
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", str(qos), "-t", topic,
                    "-m", payload if isinstance(payload, str) else payload.decode()], check=True, timeout=10)


def wait_for(cond, timeout: float = 15.0, step: float = 0.05) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def test_mosquitto_pub_reading_appears_at_its_place_in_a_websocket_client(live_server) -> None:
    prefix = unique("twintest")
    port = int(MQTT_URL.rsplit(":", 1)[1])
    with live_server(mqtt_url=MQTT_URL, mqtt_topic_prefix=prefix, mqtt_client_id=unique("twin")) as srv:
        live = srv.app.state.live
        assert live.mqtt.connected.wait(10)

        async def main() -> None:
            bbox = ",".join(map(str, WEST))
            async with websockets.connect(f"{srv.ws_url}/live/ws?layers=devices&bbox={bbox}") as ws:
                await ws.recv()
                t0 = time.perf_counter()
                await asyncio.to_thread(mosquitto_pub, port, f"{prefix}/devices/DUST-W",
                                        '{"values": {"pm10": 182.0}}')
                # a fraction of a second on an idle machine (bench/live.py measures it); the test
                # asserts the reading arrives, not how fast: a busy machine is no failure
                msg = await receive_until(ws, lambda m: m["type"] == "changes", timeout=30)
                print(f"mosquitto_pub → WebSocket: {time.perf_counter() - t0:.3f} s")
                assert change_ids(msg) == ["DUST-W"]
                feat = msg["changes"][0]["feature"]
                assert feat["geometry"]["coordinates"] == [120.80, 31.70]
                assert feat["properties"]["values"] == {"pm10": 182.0}

        asyncio.run(main())


def test_bad_mqtt_messages_are_counted_and_the_consumer_keeps_going(live_server) -> None:
    from layers.service import REJECTED

    prefix = unique("twintest")
    port = int(MQTT_URL.rsplit(":", 1)[1])
    with live_server(mqtt_url=MQTT_URL, mqtt_topic_prefix=prefix, mqtt_client_id=unique("twin")) as srv:
        live = srv.app.state.live
        assert live.mqtt.connected.wait(10)
        before = {r: REJECTED.labels(r, "mqtt")._value.get() for r in
                  ("malformed_json", "invalid_value", "unknown_device", "timestamp_out_of_range", "layer_not_found")}
        mosquitto_pub(port, f"{prefix}/devices/DUST-W", "{oops")
        mosquitto_pub(port, f"{prefix}/devices/DUST-W", '{"values": {"pm10": [1]}}')
        mosquitto_pub(port, f"{prefix}/devices/NO-SUCH", '{"values": {"pm10": 1}}')
        mosquitto_pub(port, f"{prefix}/devices/DUST-W", '{"ts": "2099-01-01T00:00:00Z", "values": {}}')
        mosquitto_pub(port, f"{prefix}/buildings/DUST-W", '{"values": {}}')
        mosquitto_pub(port, f"{prefix}/devices/DUST-W", '{"values": {"pm10": 7}}')
        assert wait_for(lambda: live.state.get("devices", "DUST-W")["properties"]["values"] == {"pm10": 7.0})
        after = {r: REJECTED.labels(r, "mqtt")._value.get() for r in before}
        assert all(after[r] == before[r] + 1 for r in before), (before, after)


def _publisher(port: int, client_id: str, acked: set[int]) -> mqtt.Client:
    """A device-side client: QoS 1 messages published while the broker is down wait in paho's queue."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    c.reconnect_delay_set(1, 2)
    c.max_queued_messages_set(0)
    c.on_publish = lambda client, userdata, mid, rc, props: acked.add(mid)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _history_values(store, code: str) -> list[float]:  # noqa: ANN001
    from layers.history import history

    return [r.values["water_level_m"] for r in history(store, "devices", code, None, None, 100_000)]


@pytest.mark.slow
def test_no_reading_is_lost_at_qos1_when_the_broker_restarts_mid_stream(live_store, tmp_path, own_broker) -> None:
    """Kill the broker (its persistence survives), publish on through the outage, restart it: every
    reading arrives, once each in the history."""
    from layers.service import LiveService

    settings = make_settings(live_store, tmp_path, mqtt_url=own_broker.url, mqtt_client_id="twin-restart")
    live = LiveService(live_store, settings)
    live.ensure_started()
    acked: set[int] = set()
    pub = _publisher(own_broker.port, "sim-restart", acked)
    try:
        assert live.mqtt.connected.wait(10)
        n = 300
        infos = []
        for i in range(n):
            if i == 100:
                own_broker.stop()  # mid-stream
            if i == 200:
                own_broker.start()
            infos.append(pub.publish("twin/devices/WATER-1", orjson.dumps({"values": {"water_level_m": i}}), qos=1))
            time.sleep(0.01)
        assert wait_for(lambda: {i.mid for i in infos} <= acked, timeout=60)
        assert live.writer.flush()
        assert wait_for(lambda: len(set(_history_values(live_store, "WATER-1"))) == n and live.writer.flush(),
                        timeout=60), (sorted(set(range(n)) - set(_history_values(live_store, "WATER-1")))[:20],
                                      own_broker.log_tail())
    finally:
        pub.loop_stop()
        live.close()


def test_readings_published_while_twin_is_down_arrive_when_it_comes_back(live_store, tmp_path, own_broker) -> None:
    from layers.service import LiveService

    settings = make_settings(live_store, tmp_path, mqtt_url=own_broker.url, mqtt_client_id="twin-down")
    live = LiveService(live_store, settings)
    live.ensure_started()
    assert live.mqtt.connected.wait(10)
    live.close()  # twin goes away; its persistent session stays on the broker
    for i in range(50):
        mosquitto_pub(own_broker.port, "twin/devices/WATER-1", orjson.dumps({"values": {"water_level_m": i}}))
    live = LiveService(live_store, settings)
    live.ensure_started()
    try:
        assert wait_for(lambda: live.writer.flush() and len(_history_values(live_store, "WATER-1")) == 50)
        assert sorted(_history_values(live_store, "WATER-1")) == [float(i) for i in range(50)]
        assert live.state.get("devices", "WATER-1")["properties"]["values"] == {"water_level_m": 49.0}
    finally:
        live.close()


def test_readiness_reports_the_broker_of_the_ingesting_worker(live_server, own_broker) -> None:
    import httpx

    with live_server(mqtt_url=own_broker.url, mqtt_client_id=unique("twin")) as srv:
        assert srv.app.state.live.mqtt.connected.wait(10)
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 200 and r.json()["checks"]["mqtt"] == "ok"
        own_broker.stop()
        assert wait_for(lambda: not srv.app.state.live.mqtt.connected.is_set(), timeout=10)
        r = httpx.get(f"{srv.url}/readyz")
        assert r.status_code == 503 and r.json()["checks"]["mqtt"] == "disconnected"
        own_broker.start()
        assert wait_for(lambda: httpx.get(f"{srv.url}/readyz").status_code == 200, timeout=40)


def test_batched_read_client_takes_and_acknowledges_every_message_of_a_burst(own_broker) -> None:
    """The ingest's paho client reads many packets per recv() and acknowledges them in one write: every
    message of a burst arrives once, and the broker holds none of them for a redelivery."""
    from layers.mqtt import BatchedReadClient

    assert BatchedReadClient.usable()
    cid, topic, n = unique("batched"), unique("twin/devices") + "/D1", 3000
    got: list[bytes] = []
    subscribed = []

    def client() -> BatchedReadClient:
        c = BatchedReadClient(CallbackAPIVersion.VERSION2, client_id=cid, clean_session=False,
                              protocol=mqtt.MQTTv311)
        c.on_message = lambda cl, u, msg: got.append(msg.payload)
        c.on_connect = lambda cl, u, f, r, p: cl.subscribe(topic, qos=1)
        c.on_subscribe = lambda *a: subscribed.append(1)
        c.connect("127.0.0.1", own_broker.port)
        c.loop_start()
        return c

    sub = client()
    assert wait_for(lambda: subscribed)
    pub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("pub"), protocol=mqtt.MQTTv311)
    pub.max_inflight_messages_set(1000)
    pub.connect("127.0.0.1", own_broker.port)
    pub.loop_start()
    infos = [pub.publish(topic, b"%d" % i, qos=1) for i in range(n)]
    for info in infos:
        info.wait_for_publish(timeout=30)
    pub.disconnect()
    pub.loop_stop()
    assert wait_for(lambda: len(got) >= n, timeout=30)
    assert sorted(int(p) for p in got) == list(range(n))  # each once, none lost
    assert sub._rbuf == bytearray() and sub._acks == bytearray()  # nothing left over between reads
    gone = threading.Event()
    sub.on_disconnect = lambda *a: gone.set()
    sub.disconnect()  # graceful: the queued PUBACKs go out before the DISCONNECT
    assert gone.wait(30)
    sub.loop_stop()
    got.clear()
    subscribed.clear()
    again = client()  # the same persistent session: a message without its PUBACK would come again now
    assert wait_for(lambda: subscribed)
    time.sleep(1.0)
    again.disconnect()
    again.loop_stop()
    assert got == []
