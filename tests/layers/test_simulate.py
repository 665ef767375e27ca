"""The simulated day: plausible shapes, and a real publish → ingest round trip through Mosquitto."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import numpy as np
from live_support import MQTT_URL, make_settings, unique

from layers.registry import Thing
from layers.simulate import Simulation, mqtt_publisher, values_at

TZ = dt.timezone(dt.timedelta(hours=8))


def day(thing: Thing, leak: str | None = None) -> list[dict]:
    rng = np.random.default_rng(0)
    base = dt.datetime(2026, 11, 23, tzinfo=TZ)
    return [values_at(thing, base + dt.timedelta(minutes=15 * k), rng, leak) for k in range(96)]


def thing(kind: str, code: str = "X1") -> Thing:
    return Thing("devices", code, 1, code, kind, 120.9, 31.7)


def test_pm10_peaks_in_the_morning_and_evening_rush_and_drops_in_the_rain() -> None:
    pm = [v["pm10"] for v in day(thing("dust"))]
    night, morning, rain, evening = np.mean(pm[8:16]), np.mean(pm[30:36]), np.mean(pm[50:58]), np.mean(pm[72:78])
    assert morning > 1.5 * night and evening > 1.5 * night and rain < night


def test_water_level_rises_after_the_rain_starts_and_drains_later() -> None:
    lvl = [v["water_level_m"] for v in day(thing("water_level"))]
    assert max(lvl[:44]) - min(lvl[:44]) < 0.1  # dry morning
    peak = int(np.argmax(lvl))
    assert 13 * 4 <= peak <= 17 * 4 and lvl[peak] > lvl[0] + 1.0
    assert lvl[-1] < lvl[peak]


def test_the_gas_leak_breaches_the_alarm_only_at_the_leaking_detector_and_only_then() -> None:
    leaking = [v["lel_pct"] for v in day(thing("gas", "G2"), leak="G2")]
    quiet = [v["lel_pct"] for v in day(thing("gas", "G1"), leak="G2")]
    assert max(quiet) < 20 and max(leaking) > 20
    over = [k / 4 for k, v in enumerate(leaking) if v > 20]
    assert 14 <= min(over) and max(over) <= 16


def test_a_simulated_hour_goes_through_mosquitto_into_the_history(live_store, tmp_path) -> None:
    from layers.history import history
    from layers.service import LiveService

    prefix = unique("twintest")
    settings = make_settings(live_store, tmp_path, mqtt_url=MQTT_URL, mqtt_topic_prefix=prefix,
                             mqtt_client_id=unique("twin"))
    live = LiveService(live_store, settings)
    live.ensure_started()
    client, publish = mqtt_publisher(MQTT_URL, prefix, client_id=unique("sim"))
    try:
        assert live.mqtt.connected.wait(10)
        sent = Simulation(live.registry.all("devices"), publish, hours=1, step_s=600, speed=1e6).run(progress=False)
        assert sent == 4 * 7
        import time

        deadline = time.time() + 20
        while time.time() < deadline:
            live.writer.flush()
            rows = history(live_store, "devices", "WATER-1", None, None, 1000)
            if len(rows) == 7:
                break
            time.sleep(0.2)
        assert len(rows) == 7 and all("water_level_m" in r.values for r in rows)
    finally:
        client.loop_stop()
        live.close()


def test_twin_simulate_command_prints_progress_and_refuses_bad_speed(live_store, tmp_path) -> None:
    env = {"TWIN_HOME": str(tmp_path), "TWIN_DATABASE_URL": live_store.engine.url.render_as_string(hide_password=False),
           "TWIN_MQTT_TOPIC_PREFIX": unique("twintest"), "PATH": "/usr/bin:/bin"}
    import os

    env = {**os.environ, **env}
    cmd = [sys.executable, "-m", "gis_api.cli", "simulate", "--mqtt", MQTT_URL]
    r = subprocess.run([*cmd, "--hours", "0.5", "--speed", "100000"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "published 28 readings" in r.stdout and "readings" in r.stderr
    r = subprocess.run([*cmd, "--speed", "0"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "invalid_parameter" in r.stderr
