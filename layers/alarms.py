"""Alarms become events: the engine the live ingest calls for every accepted reading.

``AlarmEngine(store, settings).on_reading(layer, device_code, ts, values)`` grades each value by
the rules (:mod:`layers.alarm_rules`) and returns the feature changes it caused on the ``events``
layer, ready for the hub: ``{"op": "add"|"update", "layer": "events", "feature": {...}}``.

- A breach (grade at or above the rule's alarm level) with no open alarm for that device and
  metric opens one: an ``iot_alarm`` event at the device, in the unit grid containing it, status
  ``reported`` (first history step by ``alarm-engine``), plus a ``device_alarms`` row. One
  transaction; the partial unique index on open alarms makes a second worker's attempt fail, so
  there is never a duplicate event, whatever the caches say.
- While the alarm lasts, further breaches add nothing; a higher grade updates the event's
  ``severity`` (an ``update`` change).
- A value below the alarm bound minus the deadband ends the alarm: ``alarm_cleared_at`` is set on
  the event (an ``update``); the event stays in its closed loop for people to finish. The next
  breach opens a new event.
- Readings older than the last one seen for a device metric are ignored (QoS-1 redelivery after a
  broker restart must not reopen or clear alarms out of order).

State: open alarms are cached and re-read from the table at most every ``alarm_state_ttl_s``; the
devices (kind, thresholds, position) are cached until the ``devices`` layer version moves.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import shapely
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from layers.alarm_rules import AlarmRules, Level, MetricRule, load_rules
from layers.events_loop import event_feature, open_event
from twin.schema import Device, DeviceAlarm, Event
from twin.settings import TwinSettings, get_settings
from twin.store import SpatialStore

log = logging.getLogger("twin.alarms")
ENGINE_ACTOR = "alarm-engine"


@dataclass(frozen=True)
class DeviceInfo:
    code: str
    name: str
    kind: str
    thresholds: dict[str, Any] | None
    lon: float
    lat: float


@dataclass
class OpenAlarm:
    id: int
    event_id: int
    level: int
    opened_at: dt.datetime


def _utc(ts: dt.datetime) -> dt.datetime:
    return ts.replace(tzinfo=dt.UTC) if ts.tzinfo is None else ts.astimezone(dt.UTC)


class AlarmEngine:
    """Turns readings into events. Thread-safe; one per worker process is enough."""

    def __init__(self, store: SpatialStore, settings: TwinSettings | None = None,
                 rules: AlarmRules | None = None):
        self.store = store
        self.settings = settings or get_settings()
        self.rules = rules or load_rules(self.settings.alarm_rules)
        self._lock = threading.RLock()
        self._devices: dict[str, DeviceInfo] = {}
        self._devices_version = -1
        self._devices_checked = 0.0
        self._devices_refreshing = False
        self._open: dict[tuple[str, str], OpenAlarm] = {}
        self._open_loaded = -math.inf
        self._last_ts: dict[tuple[str, str], dt.datetime] = {}

    def warm(self) -> None:
        """Load the devices now (at start-up), not on the first reading's way through the ingest: that
        query and 2,000 shapely points held the MQTT worker for tens of ms with every reading behind it."""
        with self._lock:
            self._refresh_devices()
            self._devices_checked = time.monotonic()

    # --- the interface the live ingest calls ---------------------------------------------
    def on_reading(self, layer: str, device_code: str, ts: dt.datetime, values: dict[str, Any]) -> list[dict]:
        """Grade one reading; return the ``events`` feature changes it caused (often none)."""
        ts = _utc(ts)
        with self._lock:
            device = self._device(device_code)
            if device is None:
                return []
            changes: list[dict] = []
            for metric, raw in values.items():
                if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
                    continue
                rule = self.rules.rule_for(device.kind, metric, device.thresholds)
                if rule is None:
                    continue
                key = (device.code, metric)
                last = self._last_ts.get(key)
                if last is not None and ts < last:
                    continue  # out of order: an older reading must not undo a newer decision
                self._last_ts[key] = ts
                change = self._evaluate(device, rule, metric, float(raw), ts)
                if change is not None:
                    changes.append(change)
            return changes

    # --- decisions ---------------------------------------------------------------------------
    def _evaluate(self, device: DeviceInfo, rule: MetricRule, metric: str, value: float,
                  ts: dt.datetime) -> dict | None:
        self._refresh_open()
        key = (device.code, metric)
        level = rule.grade(value, device.thresholds)
        alarm = self._open.get(key)
        if rule.is_alarm(level):
            if alarm is None:
                return self._open_alarm(device, rule, metric, value, level, ts)
            if level.level > alarm.level:
                return self._escalate(alarm, rule, device, metric, value, level, ts)
            return None
        if alarm is not None and ts >= alarm.opened_at and rule.cleared(value, device.thresholds):
            return self._clear(key, alarm, ts)
        return None

    def _describe(self, device: DeviceInfo, rule: MetricRule, metric: str, value: float, level: Level) -> str:
        iaqi = rule.iaqi(value)
        extra = f"，IAQI {iaqi:.0f}" if iaqi is not None else ""
        return f"{device.name}（{device.code}）{metric} = {value:g} {rule.unit}".rstrip() + f"，{level.name_zh}{extra}"

    def _open_alarm(self, device: DeviceInfo, rule: MetricRule, metric: str, value: float, level: Level,
                    ts: dt.datetime) -> dict | None:
        kind = self.rules.kinds[device.kind]
        try:
            with self.store.engine.begin() as conn:
                event_id = open_event(
                    conn, self.store, lon=device.lon, lat=device.lat, source="iot_alarm", category=kind.category,
                    title=f"{kind.title_zh}（{device.code}）", by=ENGINE_ACTOR,
                    description=self._describe(device, rule, metric, value, level), device_code=device.code,
                    severity=level.name, at=ts,
                )
                res = conn.execute(insert(DeviceAlarm.__table__).values(
                    device_code=device.code, metric=metric, level=level.level, value=value, opened_at=ts,
                    event_id=event_id))
                feature = event_feature(self.store, event_id, conn)
        except IntegrityError:  # another worker opened this alarm first: adopt theirs
            self._open_loaded = -math.inf
            self._refresh_open()
            return None
        self._open[(device.code, metric)] = OpenAlarm(int(res.inserted_primary_key[0]), event_id, level.level, ts)
        log.info("alarm opened: %s %s=%s (%s) → event %s", device.code, metric, value, level.name, event_id)
        return {"op": "add", "layer": "events", "feature": feature}

    def _escalate(self, alarm: OpenAlarm, rule: MetricRule, device: DeviceInfo, metric: str, value: float,
                  level: Level, ts: dt.datetime) -> dict:
        ev, da = Event.__table__, DeviceAlarm.__table__
        with self.store.engine.begin() as conn:
            conn.execute(update(da).where(da.c.id == alarm.id).values(level=level.level, value=value))
            conn.execute(update(ev).where(ev.c.id == alarm.event_id).values(
                severity=level.name, updated_at=ts, description=self._describe(device, rule, metric, value, level)))
            feature = event_feature(self.store, alarm.event_id, conn)
        alarm.level = level.level
        return {"op": "update", "layer": "events", "feature": feature}

    def _clear(self, key: tuple[str, str], alarm: OpenAlarm, ts: dt.datetime) -> dict | None:
        ev, da = Event.__table__, DeviceAlarm.__table__
        with self.store.engine.begin() as conn:
            done = conn.execute(update(da).where(da.c.id == alarm.id, da.c.cleared_at.is_(None)).values(cleared_at=ts))
            if done.rowcount != 1:  # cleared elsewhere already
                feature = None
            else:
                conn.execute(update(ev).where(ev.c.id == alarm.event_id).values(alarm_cleared_at=ts, updated_at=ts))
                feature = event_feature(self.store, alarm.event_id, conn)
        self._open.pop(key, None)
        if feature is None:
            return None
        log.info("alarm cleared: %s %s → event %s", key[0], key[1], alarm.event_id)
        return {"op": "update", "layer": "events", "feature": feature}

    # --- caches ------------------------------------------------------------------------------
    def _refresh_open(self) -> None:
        now = time.monotonic()
        if now - self._open_loaded < self.settings.alarm_state_ttl_s:
            return
        da = DeviceAlarm.__table__
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(da.c.id, da.c.device_code, da.c.metric, da.c.level, da.c.opened_at,
                                       da.c.event_id).where(da.c.cleared_at.is_(None))).all()
        self._open = {(r.device_code, r.metric): OpenAlarm(r.id, r.event_id, r.level, _utc(r.opened_at))
                      for r in rows}
        self._open_loaded = now

    def _device(self, code: str) -> DeviceInfo | None:
        """The device's cached record. Every ``alarm_state_ttl_s`` the devices layer's version is checked:
        for a device already known, in a background thread (the ingest must not wait a database round
        trip per second: under load that stalled every reading behind it); for an unknown one, at once."""
        now = time.monotonic()
        if now - self._devices_checked >= self.settings.alarm_state_ttl_s:
            self._devices_checked = now
            if code not in self._devices:
                self._refresh_devices()
            elif not self._devices_refreshing:
                self._devices_refreshing = True
                threading.Thread(target=self._refresh_devices_in_background, name="twin-alarm-devices",
                                 daemon=True).start()
        return self._devices.get(code)

    def _refresh_devices(self) -> None:
        version = self.store.version("devices")
        if version != self._devices_version:
            self._load_devices()  # builds a new dict, then swaps it in
            self._devices_version = version

    def _refresh_devices_in_background(self) -> None:
        try:
            self._refresh_devices()
        except Exception:
            log.exception("refreshing the alarm engine's devices failed; keeping the cached ones")
        finally:
            self._devices_refreshing = False

    def _load_devices(self) -> None:
        tbl = Device.__table__
        with self.store.engine.connect() as conn:
            rows = conn.execute(select(tbl.c.code, tbl.c.name, tbl.c.kind, tbl.c.thresholds,
                                       self.store.dialect.geometry_wkb(tbl))).all()  # type: ignore[arg-type]
        devices = {}
        for code, name, kind, thresholds, wkb in rows:
            p = shapely.from_wkb(bytes(wkb))
            devices[code] = DeviceInfo(code, name, kind, thresholds, float(p.x), float(p.y))
        self._devices = devices


__all__ = ["AlarmEngine", "DeviceInfo", "ENGINE_ACTOR"]
