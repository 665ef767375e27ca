"""Alarms → events, driven directly with readings, on both backends."""

import datetime as dt
import json
import threading

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from shapely.geometry import MultiPolygon, Point, box
from sqlalchemy import delete, func, select, text

from layers.alarm_rules import load_rules
from layers.alarms import AlarmEngine
from layers.events_loop import history
from twin.errors import InvalidParameter
from twin.schema import DeviceAlarm, Event
from twin.settings import TwinSettings

T0 = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)


def at(minutes):
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def town(empty_store):
    """Two unit grids side by side, a dust monitor in the east one, a gas detector, a water gauge, a smoke
    detector in the west one."""
    s = empty_store
    s.write_features("grids", [
        {"code": "G-W", "name": "西网格", "level": "unit", "geom": MultiPolygon([box(120.70, 31.60, 120.75, 31.65)])},
        {"code": "G-E", "name": "东网格", "level": "unit", "geom": MultiPolygon([box(120.75, 31.60, 120.80, 31.65)])},
        {"code": "V-1", "name": "村", "level": "village", "geom": MultiPolygon([box(120.70, 31.60, 120.80, 31.65)])},
    ])
    s.write_features("devices", [
        {"code": "YC1", "name": "扬尘监测仪001", "kind": "dust", "metrics": ["pm10"], "thresholds": {"pm10": 150.0},
         "status": "online", "geom": Point(120.77, 31.62)},
        {"code": "RQ1", "name": "可燃气体探测器001", "kind": "gas", "metrics": ["lel_pct"],
         "thresholds": {"lel_pct": 20.0}, "status": "online", "geom": Point(120.72, 31.61)},
        {"code": "SW1", "name": "水位监测仪001", "kind": "water_level", "metrics": ["water_level_m"],
         "thresholds": {"water_level_m": 2.0}, "status": "online", "geom": Point(120.73, 31.63)},
        {"code": "YG1", "name": "烟感001", "kind": "smoke", "metrics": ["smoke_density"],
         "thresholds": {"smoke_density": 0.1}, "status": "online", "geom": Point(120.74, 31.64)},
    ])
    yield s
    with s.engine.begin() as conn:
        conn.execute(delete(DeviceAlarm.__table__))
    s.clear(["events", "devices", "grids"])


def engine(store, **kw):
    return AlarmEngine(store, TwinSettings(database_url="sqlite://", **kw))


def events_of(store, device):
    ev = Event.__table__
    with store.engine.connect() as conn:
        return conn.execute(select(ev.c.id, ev.c.grid_code, ev.c.severity, ev.c.alarm_cleared_at, ev.c.status)
                            .where(ev.c.device_code == device).order_by(ev.c.id)).all()


def test_a_pm10_breach_opens_exactly_one_event_in_the_devices_unit_grid(town):
    e = engine(town)
    assert e.on_reading("devices", "YC1", at(0), {"pm10": 120.0}) == []
    changes = e.on_reading("devices", "YC1", at(1), {"pm10": 182.0})
    assert len(changes) == 1 and changes[0]["op"] == "add" and changes[0]["layer"] == "events"
    feat = changes[0]["feature"]
    assert feat["geometry"]["coordinates"] == pytest.approx((120.77, 31.62))
    p = feat["properties"]
    assert p["grid_code"] == "G-E" and p["status"] == "reported" and p["source"] == "iot_alarm"
    assert p["category"] == "dust" and p["severity"] == "lightly_polluted" and p["device_code"] == "YC1"
    assert "IAQI 116" in p["description"]  # 100 + 50·(182−150)/100
    assert [s["by"] for s in history(town, feat["id"])["history"]] == ["alarm-engine"]
    json.dumps(changes)  # plain JSON, ready for the hub

    # the alarm persists: no duplicate; a worse grade updates the same event
    assert e.on_reading("devices", "YC1", at(2), {"pm10": 190.0}) == []
    worse = e.on_reading("devices", "YC1", at(3), {"pm10": 380.0})
    assert [c["op"] for c in worse] == ["update"] and worse[0]["feature"]["id"] == feat["id"]
    assert worse[0]["feature"]["properties"]["severity"] == "heavily_polluted"
    assert len(events_of(town, "YC1")) == 1

    # within the deadband (5 µg/m³ under 150) the alarm holds; below it the alarm ends
    assert e.on_reading("devices", "YC1", at(4), {"pm10": 147.0}) == []
    cleared = e.on_reading("devices", "YC1", at(5), {"pm10": 90.0})
    assert [c["op"] for c in cleared] == ["update"]
    assert cleared[0]["feature"]["properties"]["alarm_cleared_at"].startswith("2026-11-23T08:05")
    assert cleared[0]["feature"]["properties"]["status"] == "reported"  # still for people to close

    # a new breach after the clear is a new event
    again = e.on_reading("devices", "YC1", at(9), {"pm10": 160.0})
    assert [c["op"] for c in again] == ["add"] and again[0]["feature"]["id"] != feat["id"]
    rows = events_of(town, "YC1")
    assert len(rows) == 2 and rows[0].alarm_cleared_at is not None and rows[1].alarm_cleared_at is None


def test_two_workers_never_open_two_events_for_one_alarm(town):
    a, b = engine(town), engine(town, alarm_state_ttl_s=3600)
    assert b.on_reading("devices", "RQ1", at(0), {"lel_pct": 3.0}) == []  # b caches "no open alarm"
    assert [c["op"] for c in a.on_reading("devices", "RQ1", at(1), {"lel_pct": 25.0})] == ["add"]
    assert b.on_reading("devices", "RQ1", at(2), {"lel_pct": 30.0}) == []  # the unique index says no
    assert len(events_of(town, "RQ1")) == 1
    assert events_of(town, "RQ1")[0].grid_code == "G-W"


def test_out_of_order_readings_do_not_clear_or_reopen(town):
    e = engine(town)
    assert len(e.on_reading("devices", "RQ1", at(10), {"lel_pct": 55.0})) == 1
    assert e.on_reading("devices", "RQ1", at(5), {"lel_pct": 0.0}) == []  # an old reading redelivered
    assert events_of(town, "RQ1")[0].alarm_cleared_at is None
    assert events_of(town, "RQ1")[0].severity == "second_level_alarm"


def test_water_level_grades_against_the_gauges_own_warning_level(town):
    e = engine(town)
    assert e.on_reading("devices", "SW1", at(0), {"water_level_m": 1.95}) == []
    assert [c["feature"]["properties"]["severity"] for c in
            e.on_reading("devices", "SW1", at(1), {"water_level_m": 2.0})] == ["above_warning_level"]
    assert events_of(town, "SW1")[0].grid_code == "G-W"


def test_kinds_without_rules_alarm_on_the_devices_thresholds_and_junk_is_ignored(town):
    e = engine(town)
    assert e.on_reading("devices", "NOPE", at(0), {"pm10": 999.0}) == []
    assert e.on_reading("devices", "YG1", at(0), {"smoke_density": "high", "temperature_c": None,
                                                  "other": 5, "flag": True}) == []
    assert len(e.on_reading("devices", "YG1", at(1), {"smoke_density": 0.2})) == 1


readings = st.dictionaries(
    st.sampled_from(["pm10", "lel_pct", "water_level_m", "smoke_density", "x"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**6, 10**6), st.text(max_size=5),
              st.none(), st.booleans(), st.lists(st.integers(), max_size=2)),
    max_size=4,
)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(["YC1", "RQ1", "SW1", "YG1", "ZZ"]), readings), max_size=8))
def test_any_readings_leave_at_most_one_open_alarm_per_device_metric(town, steps):
    e = engine(town)
    for i, (code, values) in enumerate(steps):
        for change in e.on_reading("devices", code, at(i), values):
            assert change["op"] in ("add", "update") and change["layer"] == "events"
    da = DeviceAlarm.__table__
    with town.engine.connect() as conn:
        rows = conn.execute(select(da.c.device_code, da.c.metric, func.count()).where(da.c.cleared_at.is_(None))
                            .group_by(da.c.device_code, da.c.metric)).all()
    assert all(n == 1 for _, _, n in rows)


def test_pm10_grades_follow_the_hj633_breakpoints():
    rule = load_rules().rule_for("dust", "pm10", None)
    grades = {v: rule.grade(v).name_zh for v in (0, 50, 50.1, 150, 150.1, 250.1, 350.1, 420.1, 700)}
    assert grades == {0: "优", 50: "优", 50.1: "良", 150: "良", 150.1: "轻度污染", 250.1: "中度污染",
                      350.1: "重度污染", 420.1: "严重污染", 700: "严重污染"}
    assert [rule.iaqi(v) for v in (0, 50, 150, 250, 350, 420, 500, 600)] == [0, 50, 100, 150, 200, 300, 400, 500]


@given(a=st.floats(-1e4, 1e4), b=st.floats(-1e4, 1e4))
def test_grades_never_fall_as_values_rise(a, b):
    rules = load_rules()
    lo, hi = min(a, b), max(a, b)
    for kind, metric in [("dust", "pm10"), ("gas", "lel_pct"), ("water_level", "water_level_m")]:
        rule = rules.rule_for(kind, metric, {"water_level_m": 2.0})
        assert rule.grade(lo, {"water_level_m": 2.0}).level <= rule.grade(hi, {"water_level_m": 2.0}).level


def test_a_rules_file_from_the_setting_replaces_the_packaged_one(tmp_path, town):
    custom = json.loads(load_rules.__globals__["DEFAULT_RULES"].read_text())
    custom["kinds"]["dust"]["metrics"]["pm10"]["levels"][2]["above"] = 100
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(custom))
    e = engine(town, alarm_rules=path)
    assert len(e.on_reading("devices", "YC1", at(0), {"pm10": 120.0})) == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"kinds": {"dust": {"category": "d", "title_zh": "t", "metrics": {"pm10": {"alarm_level": 9, '
                   '"levels": [{"level": 1, "name": "a"}, {"level": 2, "above": 1, "name": "b"}]}}}}}')
    with pytest.raises(InvalidParameter, match="alarm_level 9"):
        load_rules(bad)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.integers() | st.text(max_size=6),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(doc=st.one_of(json_values, st.fixed_dictionaries({"kinds": st.dictionaries(
    st.sampled_from(["dust", "gas"]), st.fixed_dictionaries(
        {"category": json_values, "title_zh": json_values, "metrics": st.one_of(
            st.just("device_thresholds"), st.dictionaries(st.just("pm10"), json_values, max_size=1))}),
    max_size=2)})))
def test_a_malformed_rules_file_is_refused_with_a_message(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("rules") / "rules.json"
    path.write_text(json.dumps(doc))
    try:
        rules = load_rules(path)
    except InvalidParameter as exc:
        assert "alarm rules" in exc.message
    else:
        for kind in rules.kinds.values():  # what loads is usable
            assert isinstance(kind.category, str) and isinstance(kind.title_zh, str)
            for rule in kind.metrics.values():
                rule.grade(100.0)


def test_of_concurrent_steps_on_one_event_exactly_one_is_accepted(town):
    """Eight threads ask to verify the same event at once: one step is kept, the others get 409."""
    from concurrent.futures import ThreadPoolExecutor

    from layers import events_loop

    with town.engine.begin() as conn:
        eid = events_loop.open_event(conn, town, lon=120.72, lat=31.61, source="grid", category="garbage",
                                     title="t", by="test")

    def step(i):
        try:
            events_loop.transition(town, eid, "verified", f"worker-{i}")
            return "ok"
        except events_loop.IllegalTransition:
            return "409"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(step, range(8)))
    assert outcomes.count("ok") == 1 and outcomes.count("409") == 7
    assert [s["to"] for s in history(town, eid)["history"]] == ["reported", "verified"]



@pytest.mark.parametrize("backend", ["postgis"], indirect=True)  # a lock another connection waits on
def test_a_known_devices_version_check_never_holds_up_a_reading(town):
    """The once-per-TTL look at the devices layer's version runs beside the ingest for a device the
    engine knows: a reading is graded at once even while that look waits on a locked table."""
    e = engine(town, alarm_state_ttl_s=0.0)
    assert e.on_reading("devices", "YC1", at(0), {"pm10": 10.0}) == []  # loads the devices
    with town.engine.connect() as locker:
        tx = locker.begin()
        locker.execute(text("LOCK TABLE layer_versions IN ACCESS EXCLUSIVE MODE"))
        released = threading.Event()

        def unlock() -> None:
            tx.rollback()
            released.set()

        release = threading.Timer(20.0, unlock)  # an engine that waits for the lock waits 20 s
        release.start()
        assert e.on_reading("devices", "YC1", at(1), {"pm10": 20.0}) == []
        graded_while_locked = not released.is_set()
        release.cancel()
        if not released.is_set():
            unlock()
    assert graded_while_locked, "the reading waited for the locked table"
