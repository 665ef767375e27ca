"""The catalogue of core layers: id, title, table, geometry type, what tiles ship.

This is the one list the HTTP services, tiles and the sample town read, so a new
layer is one entry here plus its table in :mod:`twin.schema`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Column, Table

from twin.errors import LayerNotFound
from twin.schema import LAYER_MODELS


@dataclass(frozen=True)
class LayerSpec:
    """Static description of one core layer.

    ``min_zoom``/``max_zoom`` bound where the layer's vector tiles have content;
    ``tile_properties`` are the attributes a vector tile carries (the rest stay in
    the feature service); ``temporal`` names the datetime column ``datetime``
    filters on; ``min_area_px``/``min_length_px`` thin out features below that
    size in pixels at the tile's zoom; ``simplify_px`` is the simplification tolerance
    (pixels) of lines and polygons below zoom 16 — 0 for shapes of a few vertices, such
    as building outlines, where the tile grid's own snapping is enough. ``tile_from_zoom``
    holds ``(column, value, zoom)`` rules: features whose ``column`` equals ``value`` are in
    the layer's vector tiles only from ``zoom`` on (closed events are history, drawn close
    up only: below z15 they would be nine tenths of every live tile, and every edit
    would re-render them). The feature service always has every feature.
    """

    id: str
    title: str
    description: str
    geometry_type: str
    min_zoom: int = 10
    max_zoom: int = 22
    tile_properties: tuple[str, ...] = ()
    temporal: str | None = None
    min_area_px: float = 0.0
    min_length_px: float = 0.0
    simplify_px: float = 0.5
    keywords: tuple[str, ...] = field(default_factory=tuple)
    tile_from_zoom: tuple[tuple[str, str, int], ...] = ()

    def tile_exclusions(self, z: int) -> tuple[tuple[str, str], ...]:
        """``(column, value)`` pairs whose features a tile at zoom ``z`` leaves out (``tile_from_zoom``)."""
        return tuple((col, value) for col, value, zoom in self.tile_from_zoom if z < zoom)

    @property
    def table(self) -> Table:
        return LAYER_MODELS[self.id].__table__  # type: ignore[return-value]

    @property
    def property_columns(self) -> list[Column]:
        """Every column but ``id`` and ``geom``: the feature's properties."""
        return [c for c in self.table.columns if c.name not in ("id", "geom")]


#: Closed events are in vector tiles (and drawn by the style) from this zoom on.
CLOSED_EVENTS_ZOOM = 15

LAYERS: dict[str, LayerSpec] = {
    s.id: s
    for s in (
        LayerSpec("grids", "Management grids", "Town, village/community and unit grids (网格) with codes.",
                  "MultiPolygon", 8, 22, ("code", "name", "level", "parent_code")),
        LayerSpec("evaluation_grids", "Evaluation grids", "Evaluation grids (评价网格) made of unit grids.",
                  "MultiPolygon", 10, 22, ("code", "name", "village_code")),
        LayerSpec("evaluation_points", "Evaluation points", "Evaluation points (评价点位) with indicator and inspection items.",
                  "Point", 12, 22, ("code", "name", "category", "score")),
        LayerSpec("buildings", "Buildings", "Building footprints with floors, height, use and address.",
                  "MultiPolygon", 12, 22, ("use", "floors", "height_m"), min_area_px=1.0,
                  simplify_px=0.0),
        LayerSpec("pipelines", "Underground pipelines", "Pipe segments by utility with diameter, material and inverts.",
                  "LineString", 12, 22, ("code", "utility", "material", "diameter_mm"), min_length_px=1.0),
        LayerSpec("pipe_nodes", "Pipe nodes", "Manholes, valves, hydrants, junctions and outfalls.",
                  "Point", 15, 22, ("code", "kind", "utility")),
        LayerSpec("farmland", "Farmland", "Farmland parcels with grade, permanent-basic flag, contract and crop.",
                  "MultiPolygon", 10, 22, ("code", "grade", "is_permanent_basic", "crop"), min_area_px=1.0),
        LayerSpec("zones", "Three zones", "Ecological, agricultural and urban space (三区).",
                  "MultiPolygon", 6, 22, ("code", "kind", "name")),
        LayerSpec("control_lines", "Three lines", "Ecological red line, permanent basic farmland, urban development boundary (三线).",
                  "MultiPolygon", 6, 22, ("code", "kind", "name")),
        LayerSpec("devices", "IoT devices", "Sensors: dust/PM10, water level, smoke, combustible gas, voltage, EV chargers.",
                  "Point", 10, 22, ("code", "name", "kind", "status")),
        LayerSpec("cameras", "Cameras", "Video cameras with heading, field of view, range and stream URL.",
                  "Point", 10, 22, ("code", "name", "heading_deg", "fov_deg", "range_m", "status")),
        LayerSpec("events", "Events", "Events from the hotline, city management, grid staff, IoT alarms and public opinion.",
                  "Point", 10, 22, ("code", "source", "category", "status", "reported_at"), temporal="reported_at",
                  tile_from_zoom=(("status", "closed", CLOSED_EVENTS_ZOOM),)),
        LayerSpec("roads", "Roads", "Road centrelines with class and daily traffic volume.",
                  "LineString", 8, 22, ("code", "name", "road_class", "traffic_volume"), min_length_px=0.5),
        LayerSpec("construction_sites", "Construction sites", "Construction sites with status and dust control.",
                  "MultiPolygon", 10, 22, ("code", "name", "status", "dust_controlled")),
    )
}


def get_layer(layer_id: str) -> LayerSpec:
    """The spec of ``layer_id``; :class:`LayerNotFound` naming the known ids otherwise."""
    try:
        return LAYERS[layer_id]
    except KeyError:
        raise LayerNotFound(
            f"unknown layer {layer_id!r}", detail={"known_layers": sorted(LAYERS)}
        ) from None
