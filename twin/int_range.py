"""Whether an integer fits the integer column it is compared with.

A value outside the column's declared range can be no stored value, so an equality
with it matches nothing; but sent to the database it is an error (PostgreSQL refuses
to compare ``int4`` with a number past 2³¹−1 in some plans, SQLite's driver cannot bind
past 2⁶³−1). Callers check here first and answer "no match" / "not found" instead.

The range is the one the column is *declared* with (``SmallInteger`` int2, ``Integer``
int4, ``BigInteger`` int8), on both backends: SpatiaLite would store wider values, but
twin's loader keeps every value within the declared range, so both backends hold the
same data and answer the same.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Integer, SmallInteger

INT2 = (-(2**15), 2**15 - 1)
INT4 = (-(2**31), 2**31 - 1)
INT8 = (-(2**63), 2**63 - 1)


def column_int_range(column_type: Any) -> tuple[int, int]:
    """``(lowest, highest)`` value of an integer column type (an instance or a class)."""
    t = column_type if isinstance(column_type, type) else type(column_type)
    if issubclass(t, BigInteger):
        return INT8
    if issubclass(t, SmallInteger):
        return INT2
    if issubclass(t, Integer):
        return INT4
    return INT8  # any other integer-like type: the widest either backend stores


def fits_column(value: int, column_type: Any) -> bool:
    """True if ``value`` lies within the declared range of ``column_type``.

    >>> from sqlalchemy import Integer
    >>> fits_column(2**31 - 1, Integer()), fits_column(2**31, Integer())
    (True, False)
    """
    lo, hi = column_int_range(column_type)
    return lo <= value <= hi


__all__ = ["INT2", "INT4", "INT8", "column_int_range", "fits_column"]
