"""TileJSON 3.0.0 documents for one or several twin layers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Boolean, Float, Integer

from twin.catalog import LayerSpec
from twin.dialect import BBox

WORLD: BBox = (-180.0, -85.0511287798066, 180.0, 85.0511287798066)


def field_type(spec: LayerSpec, name: str) -> str:
    """TileJSON/MapLibre field type of a tile property: ``Number``, ``Boolean`` or ``String``."""
    col = spec.table.c.get(name)
    if col is None:
        return "String"
    if isinstance(col.type, Boolean):
        return "Boolean"
    if isinstance(col.type, (Integer, Float)):
        return "Number"
    return "String"


#: The deepest zoom TileJSON advertises: z16 tiles are not simplified and their 4096-unit grid is
#: ~0.13 m at the town's latitude, so clients overzoom them for deeper views (MapLibre does, from
#: ``maxzoom``) instead of fetching a z17 or z18 pyramid four and sixteen times the size — the
#: choice OpenMapTiles makes at z14. Deeper tiles are still served to clients that ask for them
#: (WMTS / OGC API – Tiles matrix sets, other tools): ``LayerSpec.max_zoom`` bounds the content.
ADVERTISED_MAX_ZOOM = 16


def vector_layer(spec: LayerSpec) -> dict[str, Any]:
    """The ``vector_layers`` entry of one layer (fields: the properties shipped in tiles)."""
    return {
        "id": spec.id,
        "description": spec.description,
        "minzoom": spec.min_zoom,
        "maxzoom": min(spec.max_zoom, ADVERTISED_MAX_ZOOM),
        "fields": {name: field_type(spec, name) for name in spec.tile_properties},
        "geometry_type": spec.geometry_type,
    }


def union_extent(extents: Mapping[str, BBox | None]) -> BBox | None:
    boxes = [e for e in extents.values() if e is not None]
    if not boxes:
        return None
    return (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))


def tilejson(
    specs: Sequence[LayerSpec],
    tiles_url: str,
    extents: Mapping[str, BBox | None],
    *,
    name: str | None = None,
    version: str = "1.0.0",
) -> dict[str, Any]:
    """TileJSON for ``specs`` served at ``tiles_url`` (with ``{z}/{x}/{y}``).

    ``bounds`` is the union of the layers' data extents (the world when all are
    empty); ``center`` its middle at a zoom where the layers show.
    """
    bounds = union_extent(extents) or WORLD
    minzoom = min(s.min_zoom for s in specs)
    maxzoom = min(max(s.max_zoom for s in specs), ADVERTISED_MAX_ZOOM)
    center_zoom = max(minzoom, min(maxzoom, max(s.min_zoom for s in specs) + 2))
    ids = ",".join(s.id for s in specs)
    return {
        "tilejson": "3.0.0",
        "name": name or ids,
        "description": "; ".join(f"{s.title}" for s in specs),
        "version": version,
        "attribution": "twin",
        "scheme": "xyz",
        "tiles": [tiles_url],
        "minzoom": minzoom,
        "maxzoom": maxzoom,
        "bounds": [round(v, 7) for v in bounds],
        "center": [round((bounds[0] + bounds[2]) / 2, 7), round((bounds[1] + bounds[3]) / 2, 7), center_zoom],
        "vector_layers": [vector_layer(s) for s in specs],
    }


__all__ = ["ADVERTISED_MAX_ZOOM", "field_type", "tilejson", "union_extent", "vector_layer"]
