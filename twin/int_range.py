"""The integers a column can hold on each backend, for values that come from users.

PostgreSQL's ``integer`` is 32-bit (``bigint`` 64, ``smallint`` 16) and a bound value
outside that range is an error ("integer out of range"); SQLite stores every integer in
64 bits and the driver cannot even bind a Python ``int`` beyond that (OverflowError).
Either way a number a user typed would become a 500. Callers ask here first:

>>> from sqlalchemy import Integer
>>> integer_range(Integer(), "postgresql")
(-2147483648, 2147483647)
>>> outside_sentinel(3_000_000_000, (-2**31, 2**31 - 1))
4294967296.0

Backend names are the SQLAlchemy dialect names (``postgresql``, ``sqlite``) or twin's
(``postgis``, ``spatialite``).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, SmallInteger

INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

_POSTGRES = ("postgresql", "postgis")


def integer_range(col_type: Any, backend: str) -> tuple[int, int]:
    """Smallest and largest value an integer column of ``col_type`` holds on ``backend``."""
    if backend not in _POSTGRES:
        return INT64
    if isinstance(col_type, BigInteger):
        return INT64
    if isinstance(col_type, SmallInteger):
        return INT16
    return INT32


def fits(value: int, col_type: Any, backend: str) -> bool:
    """Whether ``value`` can be bound as a value of an integer column of ``col_type``."""
    lo, hi = integer_range(col_type, backend)
    return lo <= value <= hi


def outside_sentinel(value: int, bounds: tuple[int, int]) -> float:
    """A float that compares with every integer in ``bounds`` exactly as ``value`` does.

    For ``value`` outside ``bounds`` (``lo`` and ``hi + 1`` powers of two, as for every
    SQL integer type): ``2·lo`` below, ``2·(hi+1)`` above. Both are exact doubles outside the
    range, so ``=`` never matches, ``<``/``>`` answer as for ``value``, and no database sees
    an out-of-range integer. Values inside ``bounds`` are returned as floats unchanged.
    """
    lo, hi = bounds
    if value < lo:
        return 2.0 * lo
    if value > hi:
        return 2.0 * (hi + 1)
    return float(value)
