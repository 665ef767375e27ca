"""Parsing of query values shared by the HTTP layer and the CLI (bbox, datetime, limits).

Every function raises :class:`~twin.errors.InvalidParameter` with a message that
says what was wrong, so callers never produce a 500 on bad input.
"""

from __future__ import annotations

import datetime as dt
import math

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
    """RFC 3339 date-time (``Z`` or offset; a date alone means its midnight UTC)."""
    v = value.strip()
    try:
        if len(v) == 10:
            return dt.datetime.fromisoformat(v).replace(tzinfo=dt.UTC)
        parsed = dt.datetime.fromisoformat(v.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidParameter(f"not an RFC 3339 date-time: {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


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
