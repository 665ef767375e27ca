"""MQTT ingest (paho-mqtt 2): topics ``{prefix}/{layer}/{device_code}``, QoS 1, persistent session.

* **Nothing lost while twin is down**: the client connects with a fixed client id
  (``TWIN_MQTT_CLIENT_ID``) and ``clean_session=False`` and subscribes at QoS 1, so the
  broker keeps every QoS 1 message published while twin is away and hands them over
  when it reconnects (Mosquitto caps that queue with ``max_queued_messages``, 1000 by
  default; ``run.sh`` starts its broker with a larger one).
* **Reconnect with backoff**: paho reconnects by itself, waiting 1 s doubling to 30 s.
* **Never a crashed consumer**: a bad message is counted (``twin_live_rejected_total``)
  and logged; the network thread only queues messages, a worker thread validates them
  and accepts them in batches (one hub delivery per batch, not per reading; at most one
  batch per 10 ms, so a busy stream comes in batches of tens, not ones and twos).

Acknowledgement: paho acknowledges a message when it has been queued here, so a twin
process killed within ``TWIN_LIVE_FLUSH_S`` of a reading can lose that reading's
history row (the broker's restart and twin's restart lose nothing).
"""

from __future__ import annotations

import logging
import queue
import struct
import threading
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Counter, Gauge

from layers.readings import ReadingRejected, UnknownDevice, decode_payload
from twin.errors import LayerNotFound

if TYPE_CHECKING:
    from layers.service import LiveService

log = logging.getLogger("twin.live.mqtt")

CONNECTED = Gauge("twin_live_mqtt_connected", "1 while the MQTT ingest is connected to the broker")
CONNECTS = Counter("twin_live_mqtt_connects_total", "Successful (re)connections to the broker")
BATCH = 1000
BATCH_WINDOW_S = 0.01  # shortest time between two batches handed to the hub (adds ≤ 10 ms under load)
QUEUE_MAX = 50_000
PUBACK = 0x40  # MQTT control packet type (high nibble)


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None, bool]:
    u = urlsplit(url)
    if u.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
        raise ValueError(f"TWIN_MQTT_URL must be mqtt://host:port, not {url!r}")
    tls = u.scheme in ("mqtts", "ssl")
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), u.username, u.password, tls


class BatchedReadClient(mqtt.Client):
    """paho's client, reading its socket in large chunks and acknowledging a read's messages at once.

    paho reads one packet per ``select()`` with three or four ``recv()`` calls (the command byte,
    the length bytes, the rest) and sends one PUBACK per QoS 1 message, after a byte to its
    wake-up socket pair: ~7 system calls per reading. Each releases the GIL, and while another
    thread of the worker runs Python (the event loop sending a tick's frames, the ingest batch,
    the history writer) the network thread waits up to the interpreter's switch interval (5 ms)
    to take it back — per call. At 2,000 readings/s that hand-off, not the broker, is where
    readings queue up whenever the other threads are busy.

    Here one ``recv()`` takes whatever has arrived (up to 256 KiB) into a buffer paho's packet
    reader then consumes without system calls, every whole packet in it is handled before paho
    goes back to ``select()``, and the PUBACKs of those packets go out as one write. Everything
    else (connect, subscribe, keepalive, reconnect, QoS 1 semantics) is paho's own; the overrides
    are of paho 2's private ``_sock_recv``, ``loop_read`` and ``_send_puback``, checked at start
    (a paho without them gets the plain client)."""

    RECV_BYTES = 1 << 18

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._acks = bytearray()
        self._batching = False

    @staticmethod
    def usable() -> bool:
        return all(hasattr(mqtt.Client, name) for name in ("_sock_recv", "loop_read", "_send_puback",
                                                           "_packet_queue"))

    def reconnect(self) -> mqtt.MQTTErrorCode:
        self._rbuf.clear()  # bytes of the old connection
        self._acks.clear()  # their messages come again (QoS 1, persistent session)
        return super().reconnect()

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._rbuf:
            data = super()._sock_recv(self.RECV_BYTES)  # BlockingIOError when nothing has arrived
            if not data:
                return data  # connection closed
            self._rbuf += data
        out = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return out

    def loop_read(self, max_packets: int = 1) -> mqtt.MQTTErrorCode:
        self._batching = True
        try:
            rc = super().loop_read(max_packets)
            while rc == mqtt.MQTT_ERR_SUCCESS and self._rbuf and self._sock is not None:
                rc = super().loop_read(max_packets)  # whole packets already read: no select() in between
        finally:
            self._batching = False
            if self._acks:
                acks, self._acks = bytes(self._acks), bytearray()
                self._packet_queue(PUBACK, acks, 0, 0)  # one write for the read's messages
        return rc

    def _send_puback(self, mid: int) -> mqtt.MQTTErrorCode:
        if not self._batching:
            return super()._send_puback(mid)
        self._acks += struct.pack("!BBH", PUBACK, 2, mid)
        return mqtt.MQTT_ERR_SUCCESS


class MqttIngest:
    def __init__(self, service: LiveService, settings: Any):
        self.service = service
        self.prefix = settings.mqtt_topic_prefix.rstrip("/")
        self.host, self.port, user, password, tls = parse_mqtt_url(settings.mqtt_url)
        cls = BatchedReadClient if BatchedReadClient.usable() else mqtt.Client
        self.client = cls(CallbackAPIVersion.VERSION2, client_id=settings.mqtt_client_id,
                          clean_session=False, protocol=mqtt.MQTTv311)
        if user:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set()
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self._sub_mid: int | None = None
        # bounded: when ingest falls behind, paho's thread blocks here, stops reading the socket and
        # the broker holds the rest (QoS 1) instead of this process growing without limit
        self._q: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=QUEUE_MAX)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="twin-live-mqtt-ingest", daemon=True)
        self.connected = threading.Event()
        self._gone = threading.Event()  # set by on_disconnect (close() waits for it)

    def start(self) -> None:
        self._worker.start()
        self.client.connect_async(self.host, self.port, keepalive=30)
        self.client.loop_start()  # paho's network thread; it retries the first connection too

    def close(self) -> None:
        # paho writes what it has queued (the last read's PUBACKs, then DISCONNECT) on its own
        # thread: stopping that thread at once could drop the acknowledgements of readings already
        # taken, which the broker would then deliver again on the next start (duplicates)
        self._gone.clear()
        if self.client.disconnect() == mqtt.MQTT_ERR_SUCCESS:
            self._gone.wait(5.0)
        self.client.loop_stop()
        self._stop.set()
        self._worker.join(timeout=10)
        CONNECTED.set(0)

    # -- paho callbacks (network thread) -----------------------------------------------------
    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.warning("MQTT broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        CONNECTS.inc()
        log.info("MQTT ingest connected to %s:%d (session present: %s)", self.host, self.port,
                 getattr(flags, "session_present", None))
        # "connected" (readiness, tests, the demo) waits for the broker's SUBACK, not the CONNACK:
        # a fresh session gets only what is published after the subscription is in place
        result, self._sub_mid = client.subscribe(f"{self.prefix}/+/+", qos=1)
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.warning("MQTT subscribe could not be sent (%s); the reconnect will retry", result)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid != self._sub_mid:
            return
        if any(r.is_failure for r in reasons):
            log.warning("MQTT broker refused the subscription to %s/+/+: %s", self.prefix, reasons)
            return
        CONNECTED.set(1)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        CONNECTED.set(0)
        self.connected.clear()
        self._gone.set()
        if not self._stop.is_set():
            log.warning("MQTT broker connection lost (%s); reconnecting with backoff", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        self._q.put((msg.topic, bytes(msg.payload)))

    # -- worker thread ----------------------------------------------------------------------
    def _work(self) -> None:
        from layers.service import REJECTED

        last = 0.0
        while not (self._stop.is_set() and self._q.empty()):
            try:
                items = [self._q.get(timeout=0.2)]
            except queue.Empty:
                continue
            # at most one batch per BATCH_WINDOW_S: a hub delivery has a fixed cost per batch (its filter
            # against every subscriber), so at 2,000 readings/s batches of one or two cost more than the
            # readings; the first reading after a quiet spell goes at once
            wait = last + BATCH_WINDOW_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            last = time.monotonic()
            while len(items) < BATCH:
                try:
                    items.append(self._q.get_nowait())
                except queue.Empty:
                    break
            parsed = []
            for topic, payload in items:
                try:
                    layer, code = self._topic(topic)
                    self.service.check_layer(layer)
                    parsed.append(self.service.parse(layer, code, decode_payload(payload)))
                except (ReadingRejected, UnknownDevice, LayerNotFound) as exc:
                    REJECTED.labels(exc.code, "mqtt").inc()
                    log.warning("refused MQTT message on %s: %s", topic[:120], exc.message)
                except Exception:  # anything else: count it, keep consuming
                    REJECTED.labels("internal_error", "mqtt").inc()
                    log.exception("MQTT message on %s failed", topic[:120])
            if parsed:
                try:
                    self.service.accept(parsed, "mqtt")
                except Exception:
                    log.exception("accepting %d MQTT readings failed", len(parsed))

    def _topic(self, topic: str) -> tuple[str, str]:
        parts = topic.split("/")
        if len(parts) != 3 or parts[0] != self.prefix or not parts[1] or not parts[2]:
            raise ReadingRejected(f"topic {topic[:120]!r} is not {self.prefix}/{{layer}}/{{device_id}}",
                                  code="invalid_topic")
        return parts[1], parts[2]
