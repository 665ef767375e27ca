"""Reading validation: anything a device or client sends is accepted as typed or refused with a code."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from layers.readings import ReadingRejected, decode_payload, parse_reading

NOW = dt.datetime(2026, 11, 23, 8, 0, tzinfo=dt.UTC)
CODES = {"malformed_json", "invalid_payload", "invalid_value", "invalid_timestamp", "timestamp_out_of_range"}


def parse(payload):  # noqa: ANN001, ANN201
    return parse_reading("devices", "D1", payload, now=NOW, max_future_s=300, max_past_s=86400)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_are_parsed_or_refused_with_a_reason(raw: bytes) -> None:
    try:
        parse(decode_payload(raw))
    except ReadingRejected as exc:
        assert exc.code in CODES


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["ts", "values", "lon", "lat", "id", "x"]), json_values, max_size=5))
def test_arbitrary_json_objects_are_parsed_or_refused_with_a_reason(payload: dict) -> None:
    try:
        r = parse(payload)
    except ReadingRejected as exc:
        assert exc.code in CODES
        return
    assert all(isinstance(v, float | bool) for v in r.values.values())
    assert r.ts.tzinfo is not None and abs((r.ts - NOW).total_seconds()) <= 86400


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
                    st.floats(allow_nan=False, allow_infinity=False) | st.integers(-10**9, 10**9), max_size=6),
    st.integers(-86400, 300),
    st.floats(-180, 180), st.floats(-90, 90),
)
def test_valid_readings_keep_their_values_time_and_position(values: dict, offset_s: int, lon: float,
                                                            lat: float) -> None:
    ts = (NOW + dt.timedelta(seconds=offset_s)).astimezone(dt.timezone(dt.timedelta(hours=8)))
    raw = orjson.dumps({"ts": ts.isoformat(), "values": values, "lon": lon, "lat": lat})
    r = parse(decode_payload(raw))
    assert r.values == {k: float(v) for k, v in values.items()}
    assert r.ts == ts and (r.lon, r.lat) == (lon, lat)


@pytest.mark.parametrize(("payload", "code"), [
    ({"values": {"pm10": "high"}}, "invalid_value"),
    ({"values": [1, 2]}, "invalid_value"),
    ({"values": {"pm10": None}}, "invalid_value"),
    ({"ts": "2027-01-01T00:00:00+08:00", "values": {}}, "timestamp_out_of_range"),
    ({"ts": "2020-01-01T00:00:00Z", "values": {}}, "timestamp_out_of_range"),
    ({"ts": "2026-11-23T08:00:00", "values": {}}, "invalid_timestamp"),
    ({"ts": "yesterday", "values": {}}, "invalid_timestamp"),
    ({"lon": 120.9, "values": {}}, "invalid_payload"),
    ({"lon": 200, "lat": 0}, "invalid_payload"),
    ({"value": 3}, "invalid_payload"),
    ([1, 2], "invalid_payload"),
])
def test_bad_payloads_are_refused_with_the_reason(payload: object, code: str) -> None:
    with pytest.raises(ReadingRejected) as err:
        parse(payload)
    assert err.value.code == code


def test_missing_ts_is_the_arrival_time_and_empty_values_a_heartbeat() -> None:
    r = parse({})
    assert r.ts == NOW and r.values == {}
