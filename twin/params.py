"""Parsing of query values shared by the HTTP layer and the CLI (bbox, datetime, limits).

Every function raises :class:`~twin.errors.InvalidParameter` with a message that
says what was wrong, so callers never produce a 500 on bad input.
"""

from __future__ import annotations

import datetime as dt
import math
import re

from twin.errors import InvalidParameter

BBox = tuple[float, float, float, float]


def parse_bbox(value: str) -> BBox:
    """``minx,miny,maxx,maxy`` (4 numbers; 6 with heights, which are ignored)."""
    parts = [p.strip() for p in value.split(",")]
    if len(parts) not in (4, 6):
        raise InvalidParameter(f"bbox must have 4 or 6 comma-separated numbers, got {len(parts)}: {value!r}")
    try:
        nums = [float(p) for p in parts]
    except ValueError:
        raise InvalidParameter(f"bbox must be numbers: {value!r}") from None
    if not all(math.isfinite(n) for n in nums):
        raise InvalidParameter(f"bbox must be finite numbers: {value!r}")
    if len(nums) == 6:
        nums = [nums[0], nums[1], nums[3], nums[4]]
    minx, miny, maxx, maxy = nums
    if minx > maxx or miny > maxy:
        raise InvalidParameter(f"bbox minimum exceeds maximum: {value!r}")
    return minx, miny, maxx, maxy


def check_lonlat_bbox(bbox: BBox) -> None:
    minx, miny, maxx, maxy = bbox
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise InvalidParameter(f"bbox {list(bbox)} is outside longitude/latitude range; is bbox-crs set?")


def parse_datetime(value: str) -> dt.datetime:
    """RFC 3339 date-time (``Z`` or offset; a date alone means its midnight UTC), returned in UTC.

    An instant that exists only in its own offset (``0001-01-01T00:00+01:00`` is before
    year 1 in UTC) is refused rather than overflowing later.
    """
    v = value.strip()
    try:
        if len(v) == 10:
            return dt.datetime.fromisoformat(v).replace(tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
        return parsed.astimezone(dt.UTC) if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    except ValueError:
        raise InvalidParameter(f"not an RFC 3339 date-time: {value!r}") from None
    except OverflowError:
        raise InvalidParameter(f"date-time {value!r} is outside years 1..9999 in UTC") from None


_INTEGER = re.compile(r"\A[+-]?[0-9]+\Z")
_NUMBER = re.compile(r"\A[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")
#: Digits beyond which an integer is out of every column's range; longer ones are clamped to this size.
_MAX_DIGITS = 40


def parse_int(text: str, what: str = "value") -> int:
    """A decimal integer written in ASCII digits with an optional sign (``12``, ``-3``, ``+7``).

    Python's ``int()`` also takes ``"٣"``, ``"３"``, ``"1_000"`` and surrounding blanks;
    an API value is one spelling of one number, so those are refused. Integers of more
    than 40 digits come back as ±10⁴⁰: still out of range of every column, without
    building huge numbers. Whether the value fits a column is :func:`twin.int_range.fits_column`.
    """
    if not _INTEGER.match(text):
        raise InvalidParameter(f"{what} must be an integer (ASCII digits), not {text[:60]!r}")
    sign = -1 if text[0] == "-" else 1
    digits = text.lstrip("+-").lstrip("0") or "0"
    if len(digits) > _MAX_DIGITS:
        return sign * 10**_MAX_DIGITS
    return sign * int(digits)


def parse_float(text: str, what: str = "value") -> float:
    """A finite decimal number in ASCII (``3``, ``-2.5``, ``1e3``); ``nan``/``inf`` and overflow are refused."""
    if not _NUMBER.match(text):
        raise InvalidParameter(f"{what} must be a number, not {text[:60]!r}")
    value = float(text)
    if not math.isfinite(value):
        raise InvalidParameter(f"{what} {text[:60]!r} is too large for a finite number")
    return value


def parse_date(value: str) -> dt.date:
    """A calendar date ``YYYY-MM-DD`` (ASCII digits only)."""
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise InvalidParameter(f"not a date YYYY-MM-DD: {value[:60]!r}")
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise InvalidParameter(f"not a date YYYY-MM-DD: {value[:60]!r}") from None


def parse_datetime_interval(value: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """OGC ``datetime``: an instant, ``start/end``, ``../end`` or ``start/..`` (inclusive)."""
    if "/" not in value:
        t = parse_datetime(value)
        return t, t
    start_s, _, end_s = value.partition("/")
    start = None if start_s in ("", "..") else parse_datetime(start_s)
    end = None if end_s in ("", "..") else parse_datetime(end_s)
    if start and end and start > end:
        raise InvalidParameter(f"datetime interval starts after it ends: {value!r}")
    return start, end
