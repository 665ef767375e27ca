"""Write vector tiles of twin layers to a PMTiles v3 archive (static hosting, offline maps).

The archive holds gzip-compressed MVT (the same bytes ``/tiles/...`` serves), tiles
in Hilbert order (clustered), a header with bounds, centre and zoom range, and
JSON metadata with ``vector_layers`` as in TileJSON, so MapLibre with the
``pmtiles://`` protocol reads it directly. Empty tiles are left out.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pmtiles.tile import Compression, TileType, zxy_to_tileid
from pmtiles.writer import Writer

from tiles.cache import TileCache
from tiles.seed import check_zooms, tiles_to_render
from tiles.service import TileService, gzip_bytes
from tiles.tilejson import vector_layer
from twin.blocks import BLOCK_ZOOMS, ensure_blocks
from twin.dialect import BBox
from twin.errors import InvalidParameter


@dataclass
class ExportResult:
    path: str
    layers: list[str]
    zooms: list[int]
    bbox: BBox | None
    tiles: int
    tiles_written: int
    bytes: int
    seconds: float


def _e7(v: float) -> int:
    return int(round(v * 10_000_000))


def export_pmtiles(
    store,  # noqa: ANN001 - a SpatialStore
    layers: Sequence[str],
    zooms: Iterable[int],
    out_path: str | Path,
    bbox: BBox | None = None,
) -> ExportResult:
    """Render ``layers`` (one composite MVT per tile) at ``zooms`` over ``bbox`` (default: their
    data extent, lon/lat) into the PMTiles file ``out_path``."""
    zooms = list(zooms)
    if "buildings" in layers and set(BLOCK_ZOOMS) & set(zooms):  # blocks: no server may be keeping them
        ensure_blocks(store)
    service = TileService(store, cache=TileCache(0))
    started = time.perf_counter()
    try:
        specs = service.layer_specs(list(layers))
        zl = check_zooms(zooms)
        area, tiles = tiles_to_render(service, specs, zl, bbox)
        ordered = sorted(tiles, key=lambda t: zxy_to_tileid(t.z, t.x, t.y))
        versions = service.versions.get()
        out = Path(out_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(out.suffix + ".part")
        written = 0
        with open(tmp, "wb") as f:
            writer = Writer(f)
            for tile in ordered:
                raw = service.render(specs, tile, versions)
                if raw:
                    writer.write_tile(zxy_to_tileid(tile.z, tile.x, tile.y), gzip_bytes(raw))
                    written += 1
            if not written:
                raise InvalidParameter(
                    "nothing to export: no features of these layers at these zooms in the area",
                    detail={"layers": [s.id for s in specs], "zooms": zl, "bbox": area},
                )
            assert area is not None
            cz = max(zl[0], min(zl[-1], max(s.min_zoom for s in specs) + 2))
            header = {
                "tile_compression": Compression.GZIP,
                "tile_type": TileType.MVT,
                "min_lon_e7": _e7(area[0]), "min_lat_e7": _e7(area[1]),
                "max_lon_e7": _e7(area[2]), "max_lat_e7": _e7(area[3]),
                "center_zoom": cz,
                "center_lon_e7": _e7((area[0] + area[2]) / 2), "center_lat_e7": _e7((area[1] + area[3]) / 2),
            }
            metadata = {
                "name": ",".join(s.id for s in specs),
                "description": "twin vector tiles",
                "attribution": "twin",
                "type": "overlay",
                "format": "pbf",
                "version": "1",
                "vector_layers": [vector_layer(s) for s in specs],
                "twin:data_versions": {s.id: versions.get(s.id, 0) for s in specs},
            }
            writer.finalize(header, metadata)
        tmp.replace(out)
        return ExportResult(
            path=str(out), layers=[s.id for s in specs], zooms=zl, bbox=area, tiles=len(ordered),
            tiles_written=written, bytes=out.stat().st_size, seconds=round(time.perf_counter() - started, 3),
        )
    except BaseException:
        Path(str(out_path) + ".part").unlink(missing_ok=True)
        raise
    finally:
        service.close()


__all__ = ["ExportResult", "export_pmtiles"]
