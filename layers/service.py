"""The live service of one worker: ingest → state, history, alarms, hub.

::

    MQTT twin/{layer}/{code} ─┐                     ┌─► HistoryWriter (batches → live_readings, live_state)
    POST /live/{layer}/features ┴─► LiveService.ingest ─┼─► AlarmEngine.on_reading (if layers.alarms exists)
                                                        └─► Hub.publish ─► every worker: LiveState + subscribers

Live state is kept apart from the static ``devices`` table: a reading changes the live
feature (and ``live_state``), never a row of ``devices``, so it bumps no layer version
and invalidates no devices tile.

One process per database holds the *leader* lock (:mod:`layers.leader`: a PostgreSQL
advisory lock shared by every host on the database; a file lock in ``TWIN_HOME`` on
SpatiaLite): it runs the MQTT consumer (one persistent session, so readings are neither
lost nor taken twice), the online/offline sweeper and retention. The others try again
every few seconds and take over when the leader dies; a leader that loses its lock steps
down. Every worker takes HTTP ingest and serves streams.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import Counter

from layers.history import HistoryWriter, load_state, purge
from layers.hub import BBox, Change, Hub, make_hub
from layers.leader import LEADER, LeaderLock, leader_lock, next_delay
from layers.readings import Reading, ReadingRejected, UnknownDevice, decode_payload, parse_reading
from layers.registry import LIVE_LAYERS, Registry, Thing
from layers.state import LiveState
from twin.errors import LayerNotFound
from twin.settings import TwinSettings
from twin.store import SpatialStore

log = logging.getLogger("twin.live")

ACCEPTED = Counter("twin_live_readings_total", "Readings accepted", ["layer", "source"])
REJECTED = Counter("twin_live_rejected_total", "Readings refused", ["reason", "source"])


def _alarm_engine(store: SpatialStore, settings: TwinSettings) -> Any:
    """``layers.alarms.AlarmEngine`` when that module is installed (built separately), else None."""
    try:
        from layers.alarms import AlarmEngine  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None
    try:
        engine = AlarmEngine(store, settings)
    except Exception:
        log.exception("alarm engine failed to start; readings flow without alarms")
        return None
    try:
        engine.warm()
    except Exception:  # the database is slow to answer: the first reading loads them instead
        log.exception("alarm engine: loading the devices at start failed; the first reading will")
    return engine


class LiveService:
    def __init__(self, store: SpatialStore, settings: TwinSettings, hub: Hub | None = None):
        self.store = store
        self.settings = settings
        self.hub = hub or make_hub(settings.hub_url, settings.hub_channel, settings.hub_queue_size,
                                   settings.live_frame_s, settings.live_frame_max_s)
        self.registry = Registry(store)
        self.state = LiveState(settings.live_offline_after_s)
        self.writer = HistoryWriter(store, settings.live_flush_s)
        self.alarms: Any = None
        self.mqtt: Any = None
        self._mqtt_wanted = True
        self.is_leader = False
        self.leader_lock: LeaderLock = leader_lock(store.engine, settings.home, settings.mqtt_client_id)
        self._stop = threading.Event()
        self._lead_stop = threading.Event()  # set when this process stops leading
        self._lead_threads: list[threading.Thread] = []
        self._leader_change = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self._started = False

    # -- life cycle ------------------------------------------------------------------------
    def ensure_started(self, *, mqtt: bool = True) -> None:
        """Start once (the app's start-up calls it; so does first use, for apps run without a lifespan)."""
        with self._start_lock:
            if not self._started:
                self.start(mqtt=mqtt)  # raises while the database is down: tried again on next use
                self._started = True

    def start(self, *, mqtt: bool = True) -> None:
        self.registry.load()
        self.state.seed(self.registry, load_state(self.store), dt.datetime.now(dt.UTC))
        self.hub.remember(self.state.snapshot(None, None))
        self.hub.add_listener(self.state.apply)
        self.hub.start()
        self.writer.start()
        self.alarms = _alarm_engine(self.store, self.settings)
        self._stop.clear()
        self._mqtt_wanted = mqtt
        if self.leader_lock.acquire():  # at once if free: the consumer is up when start() returns
            self._lead()
        self._spawn(self._watch_leadership, "twin-live-leader")

    def close(self) -> None:
        if not self._started:
            return
        self._started = False
        self._stop.set()
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self._step_down()
        self.writer.close()
        self.hub.close()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    # -- leadership (layers/leader.py) ---------------------------------------------------------
    def _lead(self) -> None:
        """The lock is ours: start the MQTT consumer and the housekeeping."""
        with self._leader_change:
            if self._stop.is_set():  # closing: the lock just taken goes back at once
                self.leader_lock.release()
                return
            if self.is_leader:
                return
            self._lead_stop.clear()
            self.is_leader = True
            LEADER.set(1)
            log.info("live leader: this process consumes MQTT and runs housekeeping")
            t = threading.Thread(target=self._housekeeping, name="twin-live-housekeeping", daemon=True)
            t.start()
            self._lead_threads = [t]
            if self._mqtt_wanted and self.settings.mqtt_url:
                from layers.mqtt import MqttIngest

                self.mqtt = MqttIngest(self, self.settings)
                self.mqtt.start()

    def _step_down(self) -> None:
        """Stop consuming and housekeeping and give the lock up (lost lock, or closing)."""
        with self._leader_change:
            was = self.is_leader
            self.is_leader = False
            self._lead_stop.set()
            if self.mqtt is not None:
                self.mqtt.close()
                self.mqtt = None
            for t in self._lead_threads:
                t.join(timeout=5)
            self._lead_threads = []
            self.leader_lock.release()
            if was:
                LEADER.set(0)

    def _watch_leadership(self) -> None:
        """Followers try the lock every few seconds; the leader checks it still holds it."""
        while not self._stop.wait(next_delay()):
            try:
                if self.is_leader:
                    if not self.leader_lock.alive():
                        log.warning("live leader lock lost: stepping down (MQTT consumer stopped)")
                        self._step_down()
                elif self.leader_lock.acquire():
                    log.info("live leader lock taken over")
                    self._lead()
            except Exception:
                log.exception("live leadership check failed; retrying")

    def _housekeeping(self) -> None:
        """Leader only: mark silent devices offline; delete history past retention (hourly)."""
        period = max(0.2, min(5.0, self.settings.live_offline_after_s / 4))
        last_purge = 0.0
        while not self._lead_stop.wait(period):
            now = dt.datetime.now(dt.UTC)
            try:
                changes = self.state.expire(now)
                if changes:
                    self.hub.publish_many(changes)
                if now.timestamp() - last_purge > 3600:
                    last_purge = now.timestamp()
                    n = purge(self.store, now - dt.timedelta(days=self.settings.live_retention_days))
                    if n:
                        log.info("retention: deleted %d readings", n)
            except Exception:
                log.exception("live housekeeping failed; retrying")

    # -- ingest ----------------------------------------------------------------------------
    def check_layer(self, layer: str) -> None:
        if layer not in LIVE_LAYERS:
            raise LayerNotFound(f"{layer!r} takes no readings; live layers: {sorted(LIVE_LAYERS)}")

    def parse(self, layer: str, code: str, payload: Any, now: dt.datetime | None = None) -> tuple[Reading, Thing]:
        """Validate one decoded payload for device ``code``; raises ReadingRejected / UnknownDevice."""
        now = now or dt.datetime.now(dt.UTC)
        reading = parse_reading(layer, code, payload, now=now, max_future_s=self.settings.live_max_future_s,
                                max_past_s=self.settings.live_max_past_s)
        thing = self.registry.get(layer, code)
        if thing is None:
            raise UnknownDevice(f"no {layer} thing with code {code[:80]!r}")
        return reading, thing

    def ingest_raw(self, layer: str, code: str, raw: bytes, source: str = "mqtt") -> Change | None:
        """One MQTT message. Bad ones are counted and logged, never raised (the consumer must live)."""
        try:
            self.check_layer(layer)
            return self.accept([self.parse(layer, code, decode_payload(raw))], source)[0]
        except (ReadingRejected, UnknownDevice, LayerNotFound) as exc:
            REJECTED.labels(exc.code, source).inc()
            log.warning("refused %s reading %s/%s: %s", source, layer, code[:80], exc.message)
            return None

    def ingest_http(self, layer: str, body: Any) -> list[Change]:
        """``POST /live/{layer}/features``: one object with ``id`` or a list; all or nothing."""
        self.check_layer(layer)
        items = body if isinstance(body, list) else [body]
        if not items:
            raise ReadingRejected("empty list: send one reading or a list of them", code="invalid_payload")
        if len(items) > self.settings.live_max_batch:
            REJECTED.labels("limit_exceeded", "http").inc(len(items))
            raise ReadingRejected(f"{len(items)} readings in one request; at most {self.settings.live_max_batch}",
                                  code="limit_exceeded")
        now = dt.datetime.now(dt.UTC)
        parsed: list[tuple[Reading, Thing]] = []
        errors = []
        for i, item in enumerate(items):
            code = item.get("id") if isinstance(item, dict) else None
            try:
                if not isinstance(code, str) or not code:
                    raise ReadingRejected("each reading needs the device code as a string `id`",
                                          code="invalid_payload")
                parsed.append(self.parse(layer, code, item, now))
            except (ReadingRejected, UnknownDevice) as exc:
                REJECTED.labels(exc.code, "http").inc()
                errors.append({"index": i, "id": code if isinstance(code, str) else None, "code": exc.code,
                               "message": exc.message})
        if errors:
            log.warning("refused HTTP batch for %s: %d of %d readings invalid", layer, len(errors), len(items))
            first = errors[0]
            cls = UnknownDevice if all(e["code"] == "unknown_device" for e in errors) else ReadingRejected
            raise cls(f"{len(errors)} of {len(items)} readings refused (nothing was stored); first: "
                      f"#{first['index']}: {first['message']}", detail=errors, code=str(first["code"]))
        return self.accept(parsed, "http")

    def accept(self, parsed: Sequence[tuple[Reading, Thing]], source: str) -> list[Change]:
        """Store, alarm and publish valid readings."""
        changes = []
        seen = dt.datetime.now(dt.UTC)
        per_layer: dict[str, int] = {}
        for reading, thing in parsed:
            self.writer.put(reading)
            ch = self.state.update(thing, reading, seen)
            changes.append(ch)
            per_layer[reading.layer] = per_layer.get(reading.layer, 0) + 1
            if self.alarms is not None:
                try:
                    changes.extend(self.alarms.on_reading(reading.layer, reading.device_code, reading.ts,
                                                          reading.values))
                except Exception:
                    log.exception("alarm engine failed on %s/%s", reading.layer, reading.device_code)
        for layer, n in per_layer.items():
            ACCEPTED.labels(layer, source).inc(n)
        self.hub.publish_many(changes)
        return changes

    # -- reading out -----------------------------------------------------------------------
    def snapshot(self, layers: Iterable[str] | None, bbox: BBox | None) -> list[Change]:
        return self.state.snapshot(layers, bbox)

    def publish(self, layer: str, change: Change) -> None:
        self.hub.publish(layer, change)
