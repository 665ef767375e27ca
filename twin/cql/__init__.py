"""CQL2 filters and ``sortby`` for feature queries (OGC API – Features Part 3).

Two halves, so the HTTP layer can reject a bad expression before any database work:

* :func:`parse` reads ``cql2-text`` or ``cql2-json`` into a small tree of :class:`Op`,
  :class:`Prop` and Python literals (no SQLAlchemy). Geometry literals become shapely
  geometries in CRS84, transformed from ``filter-crs`` if one is given.
* :func:`to_sql` checks that tree against one layer (only its queryables, with matching
  types) and turns it into a SQLAlchemy boolean expression whose values are all bound
  parameters. Backend differences (SpatiaLite's integer spatial predicates, its
  case-insensitive ``LIKE``) are handled in :class:`_Compiler` only.

Supported: ``=  <>  <  <=  >  >=``, ``AND OR NOT``, ``LIKE``, ``IN``, ``BETWEEN``,
``IS [NOT] NULL``, ``+ - * /``, ``CASEI``, ``TIMESTAMP``/``DATE``/``INTERVAL`` literals,
``T_BEFORE T_AFTER T_EQUALS T_DURING T_INTERSECTS T_DISJOINT`` on the datetime column,
``S_INTERSECTS S_WITHIN S_CONTAINS S_DISJOINT S_TOUCHES S_CROSSES S_OVERLAPS S_EQUALS
S_DWITHIN`` with WKT / GeoJSON / ``BBOX(...)`` literals.

pygeofilter was considered: its cql2-text grammar (0.4) cannot parse ``NOT (a OR b)``, has no
``S_DWITHIN``, parses timestamps with dateparser's guessing and prints to stdout, so the
grammar here is a small recursive-descent parser instead.
"""

from __future__ import annotations

import re

from twin.cql.geometry import _map_geometries
from twin.cql.json_form import _parse_json
from twin.cql.sql import order_by, to_sql
from twin.cql.text import _TextParser
from twin.cql.tree import LANGS, CqlFilter, CqlLimits, Interval, Op, Prop, SortKey, check_shape
from twin.crs import check_supported, parse_crs
from twin.errors import InvalidParameter

# --- parsing -----------------------------------------------------------------


def parse(text: str, lang: str | None = None, crs: str | None = None, limits: CqlLimits | None = None) -> CqlFilter:
    """Parse ``text`` as ``lang`` (default cql2-text); geometry literals in ``crs`` (default CRS84).

    Both languages pass the same checks: the length, nesting and operator caps of
    ``limits`` (see :class:`CqlLimits`), finite numbers and finite geometry coordinates.
    """
    limits = limits or CqlLimits()
    lang = (lang or "cql2-text").strip().lower()
    if lang not in LANGS:
        raise InvalidParameter(f"filter-lang {lang!r} is not supported", detail={"supported": list(LANGS)})
    if not text.strip():
        raise InvalidParameter("filter is empty")
    if len(text) > limits.max_chars:
        raise InvalidParameter(f"filter is longer than {limits.max_chars} characters",
                               detail={"max_chars": limits.max_chars})
    tree = _TextParser(text, limits).parse() if lang == "cql2-text" else _parse_json(text, limits)
    check_shape(tree, limits)
    src = parse_crs(crs) if crs else None
    if src is not None:
        check_supported(src)
    tree = _map_geometries(tree, src)
    return CqlFilter(tree=tree, text=text, lang=lang)


def parse_sortby(text: str | None) -> tuple[SortKey, ...]:
    """``+floors,-height_m`` → keys (``+`` or no prefix ascending, ``-`` descending)."""
    if text is None:
        return ()
    keys: list[SortKey] = []
    # a literal '+' in a query string arrives as a space: strip it as "ascending"
    for part in text.split(","):
        p = part.strip()
        desc = p.startswith("-")
        if p[:1] in "+-" and p:
            p = p[1:].strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", p):
            raise InvalidParameter(f"sortby: {part.strip()!r} is not a property name with an optional +/- prefix")
        keys.append(SortKey(p, desc))
    if not keys:
        raise InvalidParameter("sortby is empty")
    return tuple(keys)

__all__ = ["LANGS", "CqlFilter", "CqlLimits", "Interval", "Op", "Prop", "SortKey", "order_by", "parse", "parse_sortby", "to_sql"]
