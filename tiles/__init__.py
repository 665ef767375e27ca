"""Vector tiles of the twin layers: MVT encoding (PostGIS SQL or Python), cache, TileJSON,
MapLibre style, seeding and PMTiles export. No HTTP in here; ``gis_api`` serves it."""

from tiles.cache import LayerVersions, MemoryTileCache, RedisTileCache, TileCache
from tiles.mvt import ENCODING_VERSION, LayerPlan, plan_tile
from tiles.pmtiles_export import ExportResult, export_pmtiles
from tiles.seed import SeedResult, seed_tiles
from tiles.service import TileResult, TileService
from tiles.style import twin_style
from tiles.tilejson import tilejson
from tiles.tms import Tile, check_tile, parse_tile, tile_bounds

__all__ = [
    "ENCODING_VERSION", "ExportResult", "LayerPlan", "LayerVersions", "MemoryTileCache", "RedisTileCache",
    "SeedResult", "Tile", "TileCache", "TileResult", "TileService", "check_tile",
    "export_pmtiles", "parse_tile", "plan_tile", "seed_tiles", "tile_bounds", "tilejson", "twin_style",
]
