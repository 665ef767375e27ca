"""Raster tiles from real COG files: decoding, sizes, colormaps, hillshade seams, bounds."""

from __future__ import annotations

import math
from pathlib import Path

import morecantile
import numpy as np
import pytest
import rasterio
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from rasterio.transform import from_origin

from tiles.raster import (
    DatasetNotFound,
    RasterCatalog,
    TileOutsideBounds,
    TileParams,
    check_tile_index,
    parse_rescale,
)
from twin.errors import InvalidParameter

LON, LAT = 120.9, 31.7
TMS = morecantile.tms.get("WebMercatorQuad")


def write_cog(path: Path, data: np.ndarray, res: float, nodata: float | None = None, photometric: str | None = None) -> None:
    """Write ``data`` (bands × rows × cols) as a COG in EPSG:3857 centred on (LON, LAT)."""
    cx, cy = TMS.xy(LON, LAT)
    bands, rows, cols = data.shape
    transform = from_origin(cx - cols * res / 2, cy + rows * res / 2, res, res)
    profile = dict(driver="GTiff", width=cols, height=rows, count=bands, dtype=data.dtype.name,
                   crs="EPSG:3857", transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256)
    if photometric:
        profile["photometric"] = photometric
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(data)
        with mem.open() as src:
            rio_copy(src, str(path), driver="COG", COMPRESS="DEFLATE", OVERVIEW_RESAMPLING="AVERAGE")


def make_dem(rows: int = 1024, cols: int = 1024) -> np.ndarray:
    """Rolling hills (2–60 m) with a ridge, nodata (-9999) in the south-west corner."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype("float64")
    z = 20 + 15 * np.sin(xx / 70.0) * np.cos(yy / 90.0) + 25 * np.exp(-(((xx - cols * 0.6) / 120) ** 2)) + yy / 50
    z[rows - 120 :, :120] = -9999
    return z.astype("float32")[None]


def make_ortho(rows: int = 1024, cols: int = 1024) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    r = (xx * 255 // cols).astype("uint8")
    g = (yy * 255 // rows).astype("uint8")
    b = (((xx // 32 + yy // 32) % 2) * 200 + 30).astype("uint8")
    return np.stack([r, g, b])


@pytest.fixture(scope="module")
def raster_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("rasters")
    write_cog(d / "dem.tif", make_dem(), res=2.0, nodata=-9999)
    write_cog(d / "ortho.tif", make_ortho(), res=1.0, photometric="RGB")
    return d


@pytest.fixture(scope="module")
def catalog(raster_dir: Path) -> RasterCatalog:
    return RasterCatalog(raster_dir)


def decode(png: bytes) -> np.ndarray:
    with MemoryFile(png) as mem, mem.open() as src:
        return src.read()


def centre_tile(z: int) -> morecantile.Tile:
    return TMS.tile(LON, LAT, z)


def test_datasets_are_the_tif_files_plus_hillshade_twins(catalog: RasterCatalog) -> None:
    assert catalog.names() == ["dem", "ortho", "dem-hillshade"]


def test_unknown_dataset_is_not_found(catalog: RasterCatalog) -> None:
    with pytest.raises(DatasetNotFound):
        catalog.get("nope")
    with pytest.raises(DatasetNotFound):
        catalog.get("../dem")
    with pytest.raises(DatasetNotFound):
        catalog.get("ortho-hillshade")  # three bands: no hillshade twin


def test_info_reports_bounds_dtype_overviews_and_statistics(catalog: RasterCatalog) -> None:
    info = catalog.info(catalog.get("dem"))
    assert info.dtype == "float32" and info.count == 1
    w, s, e, n = info.bounds
    assert w < LON < e and s < LAT < n
    assert info.overviews and info.overviews[0] == 2
    assert info.nodata == -9999
    stats = info.statistics["b1"]
    assert 0 < stats.min < stats.max < 100
    assert info.minzoom < info.maxzoom
    assert info.to_dict()["center"] == pytest.approx([LON, LAT], abs=0.01)


@pytest.mark.parametrize("size", [256, 512])
def test_dem_png_decodes_at_the_requested_size(catalog: RasterCatalog, size: int) -> None:
    t = centre_tile(15)
    png = catalog.render_tile(catalog.get("dem"), t.z, t.x, t.y, TileParams(tilesize=size))
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    arr = decode(png)
    assert arr.shape == (4, size, size)  # RGB from the colormap + alpha
    assert arr[3].max() == 255


def test_colormap_changes_the_pixels(catalog: RasterCatalog) -> None:
    t = centre_tile(15)
    ds = catalog.get("dem")
    terrain = decode(catalog.render_tile(ds, t.z, t.x, t.y, TileParams()))
    viridis = decode(catalog.render_tile(ds, t.z, t.x, t.y, TileParams(colormap="viridis")))
    assert not np.array_equal(terrain[:3], viridis[:3])
    np.testing.assert_array_equal(terrain[3], viridis[3])


def test_rescale_changes_the_pixels(catalog: RasterCatalog) -> None:
    t = centre_tile(15)
    ds = catalog.get("dem")
    default = decode(catalog.render_tile(ds, t.z, t.x, t.y, TileParams()))
    narrow = decode(catalog.render_tile(ds, t.z, t.x, t.y, TileParams(rescale=(30.0, 40.0))))
    assert not np.array_equal(default[:3], narrow[:3])


def test_webp_and_jpeg_encode(catalog: RasterCatalog) -> None:
    t = centre_tile(15)
    webp = catalog.render_tile(catalog.get("dem"), t.z, t.x, t.y, TileParams(fmt="webp"))
    assert webp[:4] == b"RIFF" and webp[8:12] == b"WEBP"
    jpg = catalog.render_tile(catalog.get("ortho"), t.z, t.x, t.y, TileParams(fmt="jpg"))
    assert jpg[:3] == b"\xff\xd8\xff"
    assert decode(jpg).shape == (3, 256, 256)


def test_ortho_tile_on_the_data_has_opaque_pixels(catalog: RasterCatalog) -> None:
    t = centre_tile(17)
    arr = decode(catalog.render_tile(catalog.get("ortho"), t.z, t.x, t.y, TileParams()))
    assert arr.shape == (4, 256, 256)
    assert (arr[3] == 255).all()
    assert arr[:3].std() > 0


def test_ortho_tile_on_the_edge_is_transparent_outside_the_data(catalog: RasterCatalog) -> None:
    info = catalog.info(catalog.get("ortho"))
    t = TMS.tile(info.bounds[0], LAT, 15)  # straddles the western edge
    arr = decode(catalog.render_tile(catalog.get("ortho"), t.z, t.x, t.y, TileParams()))
    assert (arr[3] == 0).any() and (arr[3] == 255).any()


def test_tile_outside_the_dataset_is_not_found(catalog: RasterCatalog) -> None:
    t = TMS.tile(LON + 1.0, LAT, 15)
    with pytest.raises(TileOutsideBounds):
        catalog.render_tile(catalog.get("ortho"), t.z, t.x, t.y, TileParams())


def test_hillshade_is_grey_with_alpha_and_responds_to_azimuth(catalog: RasterCatalog) -> None:
    t = centre_tile(15)
    ds = catalog.get("dem")
    a = decode(catalog.render_tile(ds, t.z, t.x, t.y, TileParams(algorithm="hillshade")))
    b = decode(catalog.render_tile(ds, t.z, t.x, t.y, TileParams(algorithm="hillshade", azimuth=135)))
    assert a.shape == (2, 256, 256)
    assert 1 <= a[0][a[1] == 255].min() and a[0].std() > 1
    assert not np.array_equal(a[0], b[0])
    twin = decode(catalog.render_tile(catalog.get("dem-hillshade"), t.z, t.x, t.y, TileParams()))
    np.testing.assert_array_equal(a, twin)


def test_hillshade_has_no_seams_between_neighbouring_tiles(catalog: RasterCatalog) -> None:
    """Two children stitched side by side equal their parent rendered at 512 px."""
    ds = catalog.get("dem")
    parent = centre_tile(15)
    params = TileParams(algorithm="hillshade")
    left = catalog.tile_arrays(ds, 16, 2 * parent.x, 2 * parent.y, params)[0][0].astype(int)
    right = catalog.tile_arrays(ds, 16, 2 * parent.x + 1, 2 * parent.y, params)[0][0].astype(int)
    whole = catalog.tile_arrays(ds, 15, parent.x, parent.y, TileParams(algorithm="hillshade", tilesize=512))[0][0]
    stitched = np.hstack([left, right])
    seam = slice(250, 262)
    # identical grid, so the shading across the seam matches the unbroken tile
    assert np.abs(stitched[:256, seam] - whole[:256, seam].astype(int)).max() <= 1
    # and the step across the seam is no larger than steps between interior columns
    step_at_seam = np.abs(right[:, 0] - left[:, -1]).mean()
    steps_inside = np.abs(np.diff(left, axis=1)).mean(axis=0)
    assert step_at_seam <= steps_inside.max() + 1


def test_hillshade_shades_slopes_facing_the_light_brighter() -> None:
    from tiles.hillshade import hillshade

    rows = cols = 16
    east_rising = np.tile(np.arange(cols, dtype="float32"), (rows, 1))  # faces west
    valid = np.ones((rows, cols), bool)
    west_sun, _ = hillshade(east_rising, valid, 0.0, 1.0, azimuth=270, altitude=45)
    east_sun, _ = hillshade(east_rising, valid, 0.0, 1.0, azimuth=90, altitude=45)
    flat, _ = hillshade(np.zeros((rows, cols)), valid, 0.0, 1.0, altitude=45)
    assert west_sun.mean() > flat.mean() > east_sun.mean()
    assert flat[0, 0] == round(1 + 254 * math.sin(math.radians(45)))


@pytest.mark.parametrize(
    "kwargs",
    [dict(colormap="not-a-map"), dict(tilesize=300), dict(fmt="gif"), dict(algorithm="slope"),
     dict(algorithm="hillshade", altitude=120), dict(azimuth=-5)],
)
def test_bad_tile_parameters_are_refused(kwargs: dict) -> None:
    with pytest.raises(InvalidParameter):
        TileParams(**kwargs)


@pytest.mark.parametrize("text", ["1", "a,b", "5,1", "1,2,3", "nan,1"])
def test_bad_rescale_is_refused(text: str) -> None:
    with pytest.raises(InvalidParameter):
        parse_rescale(text)


@pytest.mark.parametrize("zxy", [(25, 0, 0), (-1, 0, 0), (3, 8, 0), (3, 0, -1)])
def test_tile_index_out_of_range_is_refused(zxy: tuple[int, int, int]) -> None:
    with pytest.raises(InvalidParameter):
        check_tile_index(*zxy)


def test_colormap_on_a_three_band_dataset_is_refused(catalog: RasterCatalog) -> None:
    t = centre_tile(15)
    with pytest.raises(InvalidParameter):
        catalog.render_tile(catalog.get("ortho"), t.z, t.x, t.y, TileParams(colormap="viridis"))


def test_replaced_file_is_reopened(tmp_path: Path) -> None:
    write_cog(tmp_path / "ortho.tif", make_ortho(256, 256), res=4.0, photometric="RGB")
    cat = RasterCatalog(tmp_path)
    cat.recheck_s = 0.0  # notice the new file at once (default: within a second)
    t = centre_tile(14)
    first = cat.render_tile(cat.get("ortho"), t.z, t.x, t.y, TileParams())
    etag = cat.get("ortho").etag(t.z, t.x, t.y, TileParams())
    write_cog(tmp_path / "ortho.tif", 255 - make_ortho(256, 256), res=4.0, photometric="RGB")
    assert cat.get("ortho").etag(t.z, t.x, t.y, TileParams()) != etag
    assert cat.render_tile(cat.get("ortho"), t.z, t.x, t.y, TileParams()) != first
    with rasterio.open(tmp_path / "ortho.tif") as src:
        assert src.count == 3
