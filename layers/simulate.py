"""A realistic day of device readings, published to MQTT (``twin simulate``, and gently by ``twin demo``).

The models, per device kind (every value depends on the time of day and is seeded, so a
run is reproducible):

* dust (PM10/PM2.5, µg/m³): a night floor, morning (7–9 h) and evening (17–20 h) traffic
  peaks, dust from construction in working hours; monitors near sites read higher.
* water level (m): a rain event from 11 h to 15 h; each gauge fills with a lag and drains
  slowly, low gauges crossing the 3.2 m alarm line in the afternoon.
* gas (LEL %): near zero, except one detector that sees a leak from 14:00 to 16:00.
* smoke, voltage, EV chargers: plausible values with noise.
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import orjson

from layers.registry import Thing

RAIN = (11.0, 15.0)  # hours of the rain event
LEAK = (14.0, 16.0)  # hours the gas leak lasts


def _bump(h: float, centre: float, width: float) -> float:
    return math.exp(-(((h - centre) / width) ** 2))


def _rain_mm_h(h: float) -> float:
    lo, hi = RAIN
    return 0.0 if not lo <= h <= hi else 18.0 * math.sin(math.pi * (h - lo) / (hi - lo))


def _water_level(h: float, base: float, gain: float) -> float:
    """Level from the rain so far: filling with a 1 h lag, draining with a 3 h time constant."""
    level, step = base, 0.25
    t = 0.0
    while t < h:
        level += (gain * _rain_mm_h(max(0.0, t - 1.0)) * step) - (level - base) * step / 3.0
        t += step
    return level


def values_at(thing: Thing, when: dt.datetime, rng: np.random.Generator, leak_code: str | None) -> dict[str, float]:
    """The reading a device of ``thing.kind`` would send at local time ``when``."""
    h = when.hour + when.minute / 60 + when.second / 3600
    seed = zlib.crc32(thing.code.encode()) % 1000 / 1000.0  # per-device character
    n = rng.normal
    kind = thing.kind
    if kind == "dust":
        pm10 = 45 + 25 * seed + 70 * _bump(h, 8, 1.2) + 55 * _bump(h, 18.5, 1.5)
        pm10 += (60 * seed if 8 <= h <= 18 else 0) + n(0, 6)
        pm10 *= 0.3 if RAIN[0] + 0.5 <= h <= RAIN[1] + 2 else 1.0  # rain washes dust out
        pm10 = max(5.0, pm10)
        return {"pm10": round(pm10, 1), "pm25": round(max(3.0, pm10 * 0.45 + n(0, 3)), 1)}
    if kind == "water_level":
        return {"water_level_m": round(_water_level(h, 1.2 + seed, 0.03 + 0.015 * seed) + n(0, 0.01), 3)}
    if kind == "gas":
        lel = abs(n(0.3, 0.2))
        if thing.code == leak_code and LEAK[0] <= h <= LEAK[1]:
            lel += 45 * math.sin(math.pi * (h - LEAK[0]) / (LEAK[1] - LEAK[0]))
        return {"lel_pct": round(lel, 2)}
    if kind == "smoke":
        return {"smoke_density": round(abs(n(0.01, 0.005)), 4), "temperature_c": round(14 + 8 * _bump(h, 14, 4) + n(0, 0.5), 1)}
    if kind == "voltage":
        return {"voltage_v": round(226 - 8 * _bump(h, 19.5, 1.5) + n(0, 1.2), 1),
                "current_a": round(max(0.0, 30 + 40 * _bump(h, 19.5, 2) + n(0, 3)), 1)}
    if kind == "ev_charger":
        p = max(0.0, 60 * _bump(h, 12, 3) + 90 * _bump(h, 21, 2) + n(0, 8))
        return {"power_kw": round(p, 1), "energy_kwh": round(p * 0.25, 2)}
    return {}


@dataclass
class Simulation:
    """One day (or ``hours``) of readings every ``step_s`` simulated seconds for every device."""

    things: list[Thing]
    publish: Callable[[str, bytes], None]  # (device code, payload)
    hours: float = 24.0
    step_s: float = 300.0
    speed: float = 600.0  # simulated seconds per real second
    seed: int = 20261123
    tz: dt.tzinfo = dt.timezone(dt.timedelta(hours=8))

    def run(self, progress: bool = True, stop: Callable[[], bool] = lambda: False) -> int:
        """Replay the last ``hours`` up to now at ``speed``; returns the number of readings sent."""
        rng = np.random.default_rng(self.seed)
        gas = sorted(t.code for t in self.things if t.kind == "gas")
        leak = gas[len(gas) // 2] if gas else None
        end = dt.datetime.now(dt.UTC)
        start = end - dt.timedelta(hours=self.hours)
        steps = int(self.hours * 3600 // self.step_s)
        total = steps * len(self.things)
        sent = 0
        t0 = time.monotonic()
        for k in range(steps + 1):
            if stop():
                break
            sim = start + dt.timedelta(seconds=k * self.step_s)
            wait = t0 + k * self.step_s / self.speed - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            local = sim.astimezone(self.tz)
            for thing in self.things:
                body = {"ts": local.isoformat(timespec="seconds"), "values": values_at(thing, local, rng, leak)}
                self.publish(thing.code, orjson.dumps(body))
                sent += 1
            if progress:
                rate = sent / max(1e-6, time.monotonic() - t0)
                sys.stderr.write(f"\r  simulated {local:%m-%d %H:%M}  {sent}/{total + len(self.things)} readings"
                                 f"  {rate:,.0f}/s  ")
                sys.stderr.flush()
        if progress:
            sys.stderr.write("\n")
        return sent


def live_values(things: list[Thing], rng: np.random.Generator, tz: dt.tzinfo) -> list[tuple[str, bytes]]:
    """Readings of every device for the present moment (the demo's gentle, real-time feed)."""
    now = dt.datetime.now(tz)
    gas = sorted(t.code for t in things if t.kind == "gas")
    leak = gas[len(gas) // 2] if gas else None
    return [(t.code, orjson.dumps({"ts": now.isoformat(timespec="seconds"), "values": values_at(t, now, rng, leak)}))
            for t in things]


def mqtt_publisher(url: str, prefix: str = "twin", layer: str = "devices", client_id: str = "twin-simulate"):  # noqa: ANN201
    """A connected paho client and a ``publish(code, payload)`` function at QoS 1."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from layers.mqtt import parse_mqtt_url

    host, port, user, password, tls = parse_mqtt_url(url)
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    if user:
        client.username_pw_set(user, password)
    if tls:
        client.tls_set()
    client.max_queued_messages_set(0)
    client.max_inflight_messages_set(200)
    client.reconnect_delay_set(1, 30)
    client.connect(host, port, keepalive=30)
    client.loop_start()

    def publish(code: str, payload: bytes) -> None:
        client.publish(f"{prefix}/{layer}/{code}", payload, qos=1)

    return client, publish
