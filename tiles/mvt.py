"""Vector tiles (MVT): which layers a tile holds, at what detail, and which encoder builds it.

A tile request becomes a list of :class:`LayerPlan` (one per twin layer that can
have content in the tile: inside its zoom range and its data extent), then one
encoder turns the plans into MVT bytes:

* PostGIS: one SQL statement per composite tile (``ST_AsMVT``), see
  :mod:`tiles.mvt_postgis`;
* SpatiaLite (and any other store): Python encoding with mapbox-vector-tile, see
  :mod:`tiles.mvt_python`.

Both encoders produce the same content: one MVT layer per twin layer, named by the
layer id, feature id = table id, the layer's ``tile_properties`` as attributes
(datetimes as ISO 8601 UTC text, nulls omitted), geometry in a 4096 grid with a
64-unit buffer (points are looked for in the buffer too; lines and polygons only when
they reach into the tile itself). Thinning: polygons smaller than ``min_area_px`` and lines shorter
than ``min_length_px`` (in 256-px display pixels at the tile's zoom) are dropped;
lines and polygons are simplified to ``simplify_px`` (default half a pixel) below zoom 16.
At z12–z13 the ``buildings`` layer is drawn from ``building_blocks`` (buildings merged into
built-up blocks, :mod:`twin.blocks`) with the same attributes a style uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import Table

from tiles.tms import BUFFER, Tile, bbox_intersects, pixel_size, tile_bounds_lonlat
from twin.blocks import BLOCK_ZOOMS
from twin.catalog import LayerSpec
from twin.dialect import BBox
from twin.schema import BuildingBlock

#: Bump when the tile content changes for the same data (encoding, properties, thinning):
#: it is part of every ETag and cache key, so old cached tiles stop matching.
ENCODING_VERSION = "mvt5"
#: Features at most per layer per tile.
DEFAULT_FEATURE_CAP = 20_000
#: Simplify lines and polygons (to the layer's ``simplify_px`` display pixels) below this zoom.
SIMPLIFY_BELOW_ZOOM = 16


@dataclass(frozen=True, slots=True)
class LayerPlan:
    """What one layer contributes to one tile. Thresholds are in EPSG:3857 units (m, m²)."""

    spec: LayerSpec
    min_area: float = 0.0
    min_length: float = 0.0
    simplify: float = 0.0
    #: how far past the tile edge (grid units) features are looked for: the full buffer for
    #: points (a marker centred just outside still shows inside), none for lines and polygons
    #: (one lying wholly in the buffer draws nothing here; those crossing the edge are found
    #: anyway and still clipped to the buffered tile). Saves ~4 % of a dense z14 building tile.
    margin: int = BUFFER
    #: read from this table instead of the layer's own (``building_blocks`` at z12–z13)
    table: Table | None = None
    #: ``(column, value)``: features with that value are left out at this zoom (``LayerSpec.tile_from_zoom``)
    exclude: tuple[tuple[str, str], ...] = ()

    @property
    def source(self) -> Table:
        return self.table if self.table is not None else self.spec.table

    @property
    def id(self) -> str:
        return self.spec.id


class TileEncoder(Protocol):
    """Turns layer plans for one tile into MVT bytes (``b""`` when nothing is in the tile)."""

    def encode(self, tile: Tile, plans: Sequence[LayerPlan], feature_cap: int) -> bytes: ...

    def close(self) -> None: ...


def plan_tile(
    tile: Tile, specs: Sequence[LayerSpec], extents: Mapping[str, BBox | None]
) -> list[LayerPlan]:
    """The layers of ``specs`` that can have features in ``tile``, with their thresholds.

    ``extents`` maps layer id → data extent (lon/lat) or ``None`` when the layer is
    empty; layers outside their zoom range or whose extent misses the (buffered) tile
    are left out, so such tiles cost no query at all.
    """
    plans: list[LayerPlan] = []
    box: BBox | None = None
    px = pixel_size(tile.z)
    for spec in specs:
        if not spec.min_zoom <= tile.z <= spec.max_zoom:
            continue
        extent = extents.get(spec.id)
        if extent is None:
            continue
        if box is None:
            box = tile_bounds_lonlat(tile, BUFFER)
        if not bbox_intersects(box, extent):
            continue
        kind = spec.geometry_type.lower()
        is_point = "point" in kind
        simplify = spec.simplify_px * px if (not is_point and tile.z < SIMPLIFY_BELOW_ZOOM) else 0.0
        plans.append(
            LayerPlan(
                spec,
                min_area=spec.min_area_px * px * px if "polygon" in kind else 0.0,
                min_length=spec.min_length_px * px if "line" in kind else 0.0,
                simplify=simplify,
                margin=BUFFER if is_point else 0,
                table=generalised_table(spec, tile.z),
                exclude=spec.tile_exclusions(tile.z) if spec.tile_from_zoom else (),
            )
        )
    return plans


def generalised_table(spec: LayerSpec, z: int) -> Table | None:
    """The table drawn in place of ``spec``'s at zoom ``z``: built-up blocks for buildings at z12–z13
    (single buildings are sub-pixel there; :mod:`twin.blocks`), else ``None``."""
    if spec.id == "buildings" and z in BLOCK_ZOOMS:
        return BuildingBlock.__table__  # type: ignore[return-value]
    return None


def key_layers(specs: Sequence[LayerSpec], z: int) -> list[str]:
    """Tables whose changes a tile's key follows: the layers' own, but the block table instead of the
    buildings where blocks are drawn (a building edit reaches those tiles when the blocks it changes
    are rewritten — once, not also when the edit itself lands, which would re-render the heaviest
    tiles of the town twice for one edit)."""
    ids = [s.id for s in specs]
    if "buildings" in ids and z in BLOCK_ZOOMS:
        ids[ids.index("buildings")] = "building_blocks"
    return ids


def encoder_for(store, statement_timeout_ms: int = 15_000) -> TileEncoder:  # noqa: ANN001 - a SpatialStore
    """The fastest encoder for ``store``: SQL on PostGIS, Python elsewhere."""
    if store.dialect.name == "postgis":
        from tiles.mvt_postgis import PostgisTileEncoder

        return PostgisTileEncoder(store.engine, statement_timeout_ms=statement_timeout_ms)
    from tiles.mvt_python import PythonTileEncoder

    return PythonTileEncoder(store)


__all__ = [
    "DEFAULT_FEATURE_CAP", "ENCODING_VERSION", "LayerPlan", "SIMPLIFY_BELOW_ZOOM", "TileEncoder", "encoder_for",
    "generalised_table", "key_layers", "plan_tile",
]
