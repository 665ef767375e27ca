"""One device reading: parsing and validation of the ingest payload (MQTT and HTTP alike).

Payload (``shared/design/API.md``)::

    {"ts": "2026-11-22T08:00:00+08:00", "values": {"pm10": 182.0}, "lon": 120.9, "lat": 31.7}

``ts`` (RFC 3339 with an offset) defaults to the arrival time; ``lon``/``lat`` (CRS84)
only for things that move; ``values`` maps metric names to finite numbers or booleans.
A payload with no values is a heartbeat: it keeps the device online.

Anything else is refused with a :class:`ReadingRejected` whose ``code`` says why
(``malformed_json``, ``invalid_payload``, ``invalid_value``, ``invalid_timestamp``,
``timestamp_out_of_range``, ``unknown_device``); the code is also the ``reason`` label
of ``twin_live_rejected_total``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from typing import Any

import orjson

from twin.errors import InvalidParameter, NotFound

METRIC_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
MAX_METRICS = 64
MAX_PAYLOAD_BYTES = 64 * 1024
ALLOWED_KEYS = {"ts", "values", "lon", "lat", "id"}

Value = float | bool


class ReadingRejected(InvalidParameter):
    """A reading was refused; ``code`` says why (answered 400 over HTTP)."""


class UnknownDevice(NotFound):
    """The topic or ``id`` names no device of the layer (answered 404 over HTTP)."""

    code = "unknown_device"


@dataclass(frozen=True)
class Reading:
    layer: str
    device_code: str
    ts: dt.datetime  # aware, UTC
    values: dict[str, Value]
    lon: float | None = None
    lat: float | None = None


def decode_payload(raw: bytes | str) -> Any:
    """JSON bytes → object, or ``ReadingRejected(malformed_json)``."""
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise ReadingRejected(f"payload of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}", code="invalid_payload")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ReadingRejected(f"payload is not JSON: {exc}", code="malformed_json") from None


def parse_reading(layer: str, device_code: str, payload: Any, *, now: dt.datetime,
                  max_future_s: float, max_past_s: float) -> Reading:
    """Validate one decoded payload for ``device_code`` on ``layer``; ``now`` is the arrival time (aware)."""
    if not isinstance(payload, dict):
        raise ReadingRejected("a reading is a JSON object {ts, values, lon, lat}", code="invalid_payload")
    extra = set(payload) - ALLOWED_KEYS
    if extra:
        raise ReadingRejected(f"unknown fields {sorted(extra)}; a reading has ts, values, lon, lat",
                              code="invalid_payload")
    values = _values(payload.get("values", {}))
    ts = _timestamp(payload.get("ts"), now, max_future_s, max_past_s)
    lon, lat = payload.get("lon"), payload.get("lat")
    if (lon is None) != (lat is None):
        raise ReadingRejected("give both lon and lat, or neither", code="invalid_payload")
    if lon is not None:
        lon, lat = _coord(lon, "lon", 180.0), _coord(lat, "lat", 90.0)
    return Reading(layer, device_code, ts, values, lon, lat)


def _values(values: Any) -> dict[str, Value]:
    if not isinstance(values, dict):
        raise ReadingRejected("values must be an object of metric: number", code="invalid_value")
    if len(values) > MAX_METRICS:
        raise ReadingRejected(f"at most {MAX_METRICS} metrics in one reading", code="invalid_value")
    out: dict[str, Value] = {}
    for name, v in values.items():
        if not METRIC_NAME.match(name):
            raise ReadingRejected(f"metric name {name[:80]!r} must match {METRIC_NAME.pattern}", code="invalid_value")
        if isinstance(v, bool):
            out[name] = v
        elif isinstance(v, int | float) and math.isfinite(v):
            out[name] = float(v)
        else:
            raise ReadingRejected(f"value of {name!r} must be a finite number or a boolean, not {str(v)[:40]!r}",
                                  code="invalid_value")
    return out


def _timestamp(raw: Any, now: dt.datetime, max_future_s: float, max_past_s: float) -> dt.datetime:
    if raw is None:
        return now.astimezone(dt.UTC)
    if not isinstance(raw, str):
        raise ReadingRejected("ts must be an RFC 3339 string with an offset", code="invalid_timestamp")
    try:
        ts = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ReadingRejected(f"ts {raw[:40]!r} is not RFC 3339", code="invalid_timestamp") from None
    if ts.tzinfo is None:
        raise ReadingRejected(f"ts {raw[:40]!r} has no UTC offset", code="invalid_timestamp")
    ts = ts.astimezone(dt.UTC)
    ahead = (ts - now).total_seconds()
    if ahead > max_future_s:
        raise ReadingRejected(f"ts {raw} lies {ahead:.0f} s in the future (at most {max_future_s:.0f})",
                              code="timestamp_out_of_range")
    if -ahead > max_past_s:
        raise ReadingRejected(f"ts {raw} lies {-ahead:.0f} s in the past (at most {max_past_s:.0f})",
                              code="timestamp_out_of_range")
    return ts


def _coord(v: Any, name: str, limit: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or abs(v) > limit:
        raise ReadingRejected(f"{name} must be a number within ±{limit:g}", code="invalid_payload")
    return float(v)
