"""TiTiler peer for the raster benchmark: titiler.core's TilerFactory over local COGs.

    bench/.venv-titiler/bin/uvicorn --app-dir bench titiler_app:app --port P

Tiles: /cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url=/abs/path/dem.tif&rescale=a,b&colormap_name=terrain
GDAL settings match twin's raster service (tiles/raster.py GDAL_DEFAULTS) so both
read the COG the same way.
"""

import os

for key, value in {
    "GDAL_CACHEMAX": "512",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_NUM_THREADS": "1",
    "VSI_CACHE": "TRUE",
}.items():
    os.environ.setdefault(key, value)

from fastapi import FastAPI  # noqa: E402
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers  # noqa: E402
from titiler.core.factory import TilerFactory  # noqa: E402

app = FastAPI(title="titiler (bench)")
cog = TilerFactory(router_prefix="/cog")
app.include_router(cog.router, prefix="/cog")
add_exception_handlers(app, DEFAULT_STATUS_CODES)


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"ok": "yes"}
