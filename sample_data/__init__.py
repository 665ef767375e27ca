"""The deterministic sample town: a Jiangsu township of ~60 km² (at scale 1) for demos and tests.

``generate_town(seed, scale)`` builds every core layer in memory (EPSG:4326 shapely
geometries, rows keyed by the column names of :mod:`twin.schema`);
``write_rasters(town, out_dir)`` writes the DEM and orthophoto COGs;
``build_sample_town(store, raster_dir)`` does both and loads the layers.
"""

from sample_data.town import DEFAULT_SEED, LAYER_ORDER, Town, build_sample_town, generate_town


def write_rasters(town, out_dir):  # noqa: D103 - re-exported lazily (rasterio import is slow)
    from sample_data.rasters import write_rasters as _w

    return _w(town, out_dir)


__all__ = ["DEFAULT_SEED", "LAYER_ORDER", "Town", "build_sample_town", "generate_town", "write_rasters"]
