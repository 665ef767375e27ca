"""CASEI: one Unicode case fold, computed the same way by Python, SpatiaLite and PostGIS.

A string is folded to its full Unicode lower case (``str.lower``: ``É``→``é``,
``Ａ``→``ａ``, a final ``Σ``→``ς``, ``İ``→``i̇``) and then normalised to NFC, so a
decomposed ``é`` (``e`` + U+0301) equals a composed one.

* Python / SpatiaLite: :func:`casei`, registered on every SpatiaLite connection as the
  SQL function ``twin_casei`` (SQLite's own ``lower()`` only knows ASCII).
* PostGIS: ``normalize(lower(x COLLATE "und-x-icu"), NFC)``. ICU's root-locale lower case
  is the same full mapping as Python's; the database's libc ``lower()`` is not (it depends
  on the server's ``LC_CTYPE``: in ``C.UTF-8`` a final sigma stays σ, ``İ`` becomes ``i``).
  Needs a PostgreSQL built with ICU (every Debian/PGDG/official Docker build is) and a
  UTF8 database.
"""

from __future__ import annotations

import unicodedata

#: the name of the SQL function registered on SpatiaLite connections
SQLITE_FUNCTION = "twin_casei"
#: the PostgreSQL collation whose lower() matches :func:`casei`
POSTGRES_COLLATION = "und-x-icu"


def casei(value: str | None) -> str | None:
    """``value`` case-folded for CASEI comparisons (``None`` stays ``None``, like SQL NULL)."""
    if value is None:
        return None
    return unicodedata.normalize("NFC", str(value).lower())
